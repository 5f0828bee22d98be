// Test support: child processes, free ports, temporary directories.
// Used by the fixtures that start PostgreSQL, s3rver and the built modelfleet binaries.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace modelfleet::testing {

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "modelfleet-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeTcpPort();

// Polls until something accepts TCP connections on 127.0.0.1:port. False on timeout.
bool WaitForTcpPort(int port, std::chrono::milliseconds timeout);

// A child process in its own process group. Its stdout and stderr go to `log_path`.
// The destructor kills the whole group (SIGKILL) if it is still running.
class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;                 // argv[0] is looked up in PATH if not a path
    std::map<std::string, std::string> env;        // added to (overriding) the parent's environment
    std::filesystem::path log_path;                // stdout+stderr; empty = inherit
    std::optional<uid_t> run_as_uid;               // drop privileges in the child (root only)
    std::optional<gid_t> run_as_gid;
    std::filesystem::path working_dir;             // empty = inherit
  };

  static std::optional<Subprocess> Start(const Options& options, std::string* error);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `signal` to the process group.
  void Signal(int signal);
  // Waits for exit; returns the exit code (128+signal if killed), nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// Runs a command to completion; returns its exit code, with its combined output in *output.
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               std::optional<uid_t> run_as_uid = std::nullopt,
               std::optional<gid_t> run_as_gid = std::nullopt);

// Reads a whole file (for logs in failure messages). Empty string if unreadable.
std::string ReadFileOrEmpty(const std::filesystem::path& path);

// Environment helpers for locating the build tree.
std::filesystem::path BinaryDir();  // $MODELFLEET_BINARY_DIR
std::filesystem::path SourceDir();  // $MODELFLEET_SOURCE_DIR, else the source tree this was built from
// The python3 with Debian's python3-torch: $MODELFLEET_TEST_PYTHON, else /usr/bin/python3 (a
// python3 earlier in PATH, e.g. pyenv's, usually has no torch).
std::string TorchPython();

}  // namespace modelfleet::testing
