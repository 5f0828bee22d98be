// Test fixture: a throwaway PostgreSQL cluster (initdb + postgres) on 127.0.0.1 with a free
// port, data in a temporary directory, trust authentication, fsync off, and an empty database
// "modelfleet". Works as root (CI) by running the PostgreSQL binaries as the `postgres` user.
//
// Binaries come from $MODELFLEET_PG_BIN, else /usr/lib/postgresql/15/bin (Debian 12), else the
// newest /usr/lib/postgresql/*/bin.
//
// Not thread-safe: use one TempPostgres from one thread (the database itself can of course be
// used from many threads).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "process.h"

namespace modelfleet::testing {

class TempPostgres {
 public:
  // initdb + start + CREATE DATABASE modelfleet. nullptr on failure, with *error (if non-null)
  // describing it, including the tail of the initdb / server log.
  static std::unique_ptr<TempPostgres> Start(std::string* error);

  // Stops the server (fast shutdown) and removes the cluster's directory.
  ~TempPostgres();
  TempPostgres(const TempPostgres&) = delete;
  TempPostgres& operator=(const TempPostgres&) = delete;

  // "host=127.0.0.1 port=N dbname=modelfleet user=postgres"
  std::string conninfo() const { return conninfo("modelfleet"); }
  // Same for another database of this cluster.
  std::string conninfo(const std::string& dbname) const;
  int port() const { return port_; }

  // Fast shutdown (SIGINT: open client connections are terminated), waiting for the server
  // to exit. True if it stopped cleanly (or was not running).
  bool Stop();
  // Starts the server again on the same data directory and port and waits until it accepts
  // queries. False if it did not come up (see last_error()).
  bool StartAgain();
  // Stop() then StartAgain().
  bool Restart();

  // CREATE DATABASE <name> (an identifier of [a-z0-9_]). False on failure (see last_error()).
  bool CreateDatabase(const std::string& name);

  // What the last failing call went wrong with (includes the tail of the server log).
  const std::string& last_error() const { return last_error_; }
  // The server's log so far (for test failure messages).
  std::string ServerLog() const;

 private:
  TempPostgres() = default;
  bool InitCluster();
  bool StartServer();
  bool WaitUntilReady();
  bool RunPsql(const std::string& dbname, const std::string& sql);
  std::string LogTail() const;

  std::unique_ptr<TempDir> dir_;  // destroyed last (declared first)
  std::filesystem::path bin_dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path log_path_;
  int port_ = 0;
  std::optional<uid_t> run_as_uid_;  // set when we are root: run as `postgres`
  std::optional<gid_t> run_as_gid_;
  std::optional<Subprocess> server_;
  std::string last_error_;
};

}  // namespace modelfleet::testing
