#include "temp_postgres.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <thread>
#include <vector>

namespace modelfleet::testing {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kInitdbTimeout{120};
constexpr seconds kReadyTimeout{60};
constexpr seconds kShutdownTimeout{60};
constexpr size_t kLogTailBytes = 3000;
constexpr int kStartAttempts = 3;  // a fresh port each time, in case ours was taken meanwhile

std::filesystem::path FindPostgresBinDir() {
  if (const char* from_env = std::getenv("MODELFLEET_PG_BIN"); from_env && *from_env) {
    return from_env;
  }
  const std::filesystem::path debian12 = "/usr/lib/postgresql/15/bin";
  if (std::filesystem::exists(debian12 / "initdb")) return debian12;
  // Any other installed major version: take the newest.
  std::vector<std::filesystem::path> candidates;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(entry.path() / "bin" / "initdb")) {
      candidates.push_back(entry.path() / "bin");
    }
  }
  if (candidates.empty()) return debian12;  // the error will name the expected location
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return std::atoi(a.parent_path().filename().c_str()) <
           std::atoi(b.parent_path().filename().c_str());
  });
  return candidates.back();
}

std::string Tail(const std::string& text, size_t bytes) {
  if (text.size() <= bytes) return text;
  return "..." + text.substr(text.size() - bytes);
}

}  // namespace

std::unique_ptr<TempPostgres> TempPostgres::Start(std::string* error) {
  std::unique_ptr<TempPostgres> pg(new TempPostgres());
  auto fail = [&](const std::string& message) -> std::unique_ptr<TempPostgres> {
    if (error) *error = "TempPostgres: " + message;
    return nullptr;
  };

  pg->bin_dir_ = FindPostgresBinDir();
  if (!std::filesystem::exists(pg->bin_dir_ / "initdb")) {
    return fail("no initdb in " + pg->bin_dir_.string() +
                " (install postgresql or set MODELFLEET_PG_BIN)");
  }
  try {
    pg->dir_ = std::make_unique<TempDir>("modelfleet-pg");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  pg->data_dir_ = pg->dir_->path() / "data";
  pg->log_path_ = pg->dir_->path() / "server.log";

  // initdb and postgres refuse to run as root: hand the directory to the postgres user.
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) return fail("running as root, but there is no 'postgres' user");
    if (::chown(pg->dir_->path().c_str(), user->pw_uid, user->pw_gid) != 0) {
      return fail("chown " + pg->dir_->path().string() + ": " + std::strerror(errno));
    }
    pg->run_as_uid_ = user->pw_uid;
    pg->run_as_gid_ = user->pw_gid;
  }

  if (!pg->InitCluster()) return fail(pg->last_error_);
  bool started = false;
  for (int attempt = 0; attempt < kStartAttempts && !started; ++attempt) {
    pg->port_ = FreeTcpPort();
    started = pg->StartServer();
  }
  if (!started) return fail(pg->last_error_);
  if (!pg->CreateDatabase("modelfleet")) return fail(pg->last_error_);
  return pg;
}

TempPostgres::~TempPostgres() { Stop(); }

std::string TempPostgres::conninfo(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + dbname + " user=postgres";
}

bool TempPostgres::InitCluster() {
  const std::filesystem::path initdb_log = dir_->path() / "initdb.log";
  Subprocess::Options options;
  options.argv = {(bin_dir_ / "initdb").string(),
                  "--pgdata=" + data_dir_.string(),
                  "--username=postgres",
                  "--auth=trust",
                  "--encoding=UTF8",
                  "--no-locale",
                  "--no-sync"};
  options.log_path = initdb_log;
  options.run_as_uid = run_as_uid_;
  options.run_as_gid = run_as_gid_;
  options.working_dir = dir_->path();  // the caller's cwd may not be readable by `postgres`
  std::string error;
  auto initdb = Subprocess::Start(options, &error);
  if (!initdb) {
    last_error_ = "cannot start initdb: " + error;
    return false;
  }
  std::optional<int> code = initdb->Wait(kInitdbTimeout);
  if (code != 0) {
    if (!code) initdb->Stop(milliseconds(0));
    last_error_ = "initdb failed (" + (code ? "exit code " + std::to_string(*code)
                                            : std::string("timed out")) +
                  "):\n" + Tail(ReadFileOrEmpty(initdb_log), kLogTailBytes);
    return false;
  }
  return true;
}

bool TempPostgres::StartServer() {
  Subprocess::Options options;
  options.argv = {(bin_dir_ / "postgres").string(),
                  "-D", data_dir_.string(),
                  "-p", std::to_string(port_),
                  "-c", "listen_addresses=127.0.0.1",
                  "-c", "unix_socket_directories=" + dir_->path().string(),
                  "-c", "fsync=off",
                  "-c", "synchronous_commit=off",
                  "-c", "full_page_writes=off",
                  "-c", "shared_buffers=16MB",
                  "-c", "max_connections=100"};
  options.log_path = log_path_;
  options.run_as_uid = run_as_uid_;
  options.run_as_gid = run_as_gid_;
  options.working_dir = dir_->path();
  std::string error;
  server_ = Subprocess::Start(options, &error);
  if (!server_) {
    last_error_ = "cannot start postgres: " + error;
    return false;
  }
  if (!WaitUntilReady()) {
    server_->Stop(seconds(5));
    server_.reset();
    return false;
  }
  return true;
}

bool TempPostgres::WaitUntilReady() {
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server_->Running()) {
      last_error_ = "postgres exited during startup (port " + std::to_string(port_) + "):\n" +
                    LogTail();
      return false;
    }
    std::string output;
    int code = RunCommand({(bin_dir_ / "pg_isready").string(), "-q", "-h", "127.0.0.1", "-p",
                           std::to_string(port_), "-U", "postgres", "-d", "postgres", "-t", "1"},
                          &output);
    if (code == 0) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  last_error_ = "postgres did not accept connections within " +
                std::to_string(kReadyTimeout.count()) + " s:\n" + LogTail();
  return false;
}

bool TempPostgres::Stop() {
  if (!server_) return true;
  bool clean = true;
  if (server_->Running()) {
    server_->Signal(SIGINT);  // fast shutdown: does not wait for clients to disconnect
    std::optional<int> code = server_->Wait(kShutdownTimeout);
    if (!code) {
      server_->Stop(milliseconds(0));
      last_error_ = "postgres did not shut down within " +
                    std::to_string(kShutdownTimeout.count()) + " s; killed:\n" + LogTail();
      clean = false;
    } else if (*code != 0) {
      last_error_ = "postgres exited with code " + std::to_string(*code) + ":\n" + LogTail();
      clean = false;
    }
  }
  server_.reset();
  return clean;
}

bool TempPostgres::StartAgain() {
  if (server_) {
    last_error_ = "StartAgain: the server is still running";
    return false;
  }
  return StartServer();
}

bool TempPostgres::Restart() { return Stop() && StartAgain(); }

bool TempPostgres::CreateDatabase(const std::string& name) {
  static const std::regex kIdentifier("[a-z_][a-z0-9_]*");
  if (!std::regex_match(name, kIdentifier)) {
    last_error_ = "CreateDatabase: not a plain identifier: " + name;
    return false;
  }
  return RunPsql("postgres", "CREATE DATABASE " + name);
}

bool TempPostgres::RunPsql(const std::string& dbname, const std::string& sql) {
  std::string output;
  int code = RunCommand({(bin_dir_ / "psql").string(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                         "127.0.0.1", "-p", std::to_string(port_), "-U", "postgres", "-d", dbname,
                         "-c", sql},
                        &output);
  if (code != 0) {
    last_error_ = "psql '" + sql + "' failed (exit code " + std::to_string(code) + "): " +
                  output + "\nserver log:\n" + LogTail();
    return false;
  }
  return true;
}

std::string TempPostgres::ServerLog() const { return ReadFileOrEmpty(log_path_); }

std::string TempPostgres::LogTail() const { return Tail(ServerLog(), kLogTailBytes); }

}  // namespace modelfleet::testing
