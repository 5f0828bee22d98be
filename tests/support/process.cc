#include "process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <utility>
#include <sstream>
#include <thread>

namespace modelfleet::testing {

TempDir::TempDir(const std::string& prefix) {
  std::string templ = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* made = ::mkdtemp(templ.data());
  if (made == nullptr) throw std::runtime_error("mkdtemp failed: " + std::string(strerror(errno)));
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int FreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

bool WaitForTcpPort(int port, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (rc == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

namespace {

[[noreturn]] void ExecChild(const Subprocess::Options& o) {
  ::setpgid(0, 0);
  if (!o.log_path.empty()) {
    int fd = ::open(o.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
  }
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  if (!o.working_dir.empty() && ::chdir(o.working_dir.c_str()) != 0) _exit(126);
  for (const auto& [k, v] : o.env) ::setenv(k.c_str(), v.c_str(), 1);
  if (o.run_as_gid) {
    ::setgroups(0, nullptr);
    if (::setgid(*o.run_as_gid) != 0) _exit(126);
  }
  if (o.run_as_uid && ::setuid(*o.run_as_uid) != 0) _exit(126);
  std::vector<char*> args;
  for (const auto& a : o.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  fprintf(stderr, "exec %s failed: %s\n", args[0], strerror(errno));
  _exit(127);
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::optional<Subprocess> Subprocess::Start(const Options& options, std::string* error) {
  if (options.argv.empty()) {
    if (error) *error = "empty argv";
    return std::nullopt;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    if (error) *error = std::string("fork: ") + strerror(errno);
    return std::nullopt;
  }
  if (pid == 0) ExecChild(options);
  ::setpgid(pid, pid);  // also in the parent, to avoid a race with Signal()
  return Subprocess(pid);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_code_(other.exit_code_) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !exit_code_) Stop(std::chrono::milliseconds(0));
    pid_ = std::exchange(other.pid_, -1);
    exit_code_ = other.exit_code_;
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(-pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

bool Subprocess::Running() {
  if (exit_code_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = DecodeWaitStatus(status);
    return false;
  }
  return true;
}

void Subprocess::Signal(int signal) {
  if (pid_ > 0 && !exit_code_) ::kill(-pid_, signal);
}

std::optional<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (!Running()) return exit_code_;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int Subprocess::Stop(std::chrono::milliseconds grace) {
  if (!Running()) return *exit_code_;
  Signal(SIGTERM);
  if (auto code = Wait(grace)) return *code;
  Signal(SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_code_ = DecodeWaitStatus(status);
  return *exit_code_;
}

int RunCommand(const std::vector<std::string>& argv, std::string* output,
               std::optional<uid_t> run_as_uid, std::optional<gid_t> run_as_gid) {
  TempDir dir("modelfleet-cmd");
  Subprocess::Options o;
  o.argv = argv;
  o.log_path = dir.path() / "out.log";
  o.run_as_uid = run_as_uid;
  o.run_as_gid = run_as_gid;
  std::string error;
  auto p = Subprocess::Start(o, &error);
  if (!p) {
    if (output) *output = error;
    return -1;
  }
  auto code = p->Wait(std::chrono::hours(1));
  if (output) *output = ReadFileOrEmpty(o.log_path);
  return code.value_or(-1);
}

std::string ReadFileOrEmpty(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path BinaryDir() {
  const char* v = std::getenv("MODELFLEET_BINARY_DIR");
  return v ? v : ".";
}

std::filesystem::path SourceDir() {
  if (const char* v = std::getenv("MODELFLEET_SOURCE_DIR"); v && *v) return v;
  return MODELFLEET_SOURCE_DIR_FALLBACK;
}

std::string TorchPython() {
  if (const char* v = std::getenv("MODELFLEET_TEST_PYTHON"); v && *v) return v;
  return "/usr/bin/python3";
}

}  // namespace modelfleet::testing
