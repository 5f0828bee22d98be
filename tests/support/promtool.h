// Test helper: runs Prometheus' own checker, `promtool check metrics` (Debian's `prometheus`
// package), on text exposition output. It parses the format strictly and lints names (counters
// end in _total, units are base units, ...). A missing promtool is a failure, never a skip.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace modelfleet::testing {

struct PromtoolVerdict {
  bool ok = false;
  std::string output;  // what promtool printed (problems, one a line), or why it could not run
};

// $MODELFLEET_PROMTOOL, else promtool on PATH, else /usr/bin/promtool.
inline std::string PromtoolBinary() {
  if (const char* env = std::getenv("MODELFLEET_PROMTOOL"); env != nullptr && *env != '\0') return env;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string dirs = path;
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::filesystem::path candidate = std::filesystem::path(dirs.substr(start, end - start)) / "promtool";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      start = end + 1;
    }
  }
  return "/usr/bin/promtool";
}

// `promtool check metrics < text`: ok when it exits 0 and prints nothing (no lint either).
inline PromtoolVerdict CheckWithPromtool(const std::string& text) {
  const std::string binary = PromtoolBinary();
  if (::access(binary.c_str(), X_OK) != 0) {
    return {false, "promtool not found (" + binary + "): install Debian's prometheus package (scripts/install-deps.sh)"};
  }
  char path[] = "/tmp/modelfleet-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return {false, "mkstemp failed"};
  ::close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const std::string command = "'" + binary + "' check metrics < '" + path + "' 2>&1";
  PromtoolVerdict verdict;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ::unlink(path);
    return {false, "cannot run " + command};
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) verdict.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  ::unlink(path);
  verdict.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && verdict.output.empty();
  if (!verdict.ok && verdict.output.empty()) verdict.output = "promtool exited with status " + std::to_string(status);
  return verdict;
}

}  // namespace modelfleet::testing
