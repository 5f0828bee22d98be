// Test support: the built modelfleet-server binary, started as a child process against a real
// database and blob store, and a gRPC channel to it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "process.h"

namespace modelfleet::testing {

class ServerProcess {
 public:
  struct Options {
    std::string database_url;
    std::string blob_store = "local";          // "local" or "s3"
    std::filesystem::path blob_dir;            // local store (default: inside the work dir)
    std::string s3_endpoint, s3_bucket = "modelfleet", s3_access_key, s3_secret_key;
    std::filesystem::path tls_cert, tls_key;   // empty: --insecure
    int db_pool_size = 4;
    int port = 0;                    // 0: a free port
    bool http = false;               // also serve HTTP (--http-listen) on a free port
    int shutdown_grace_seconds = 20;
    std::vector<std::string> extra_args;
  };

  // Starts the server on a free port and waits until it serves gRPC. nullptr + *error (with
  // the server's log) if it does not come up.
  static std::unique_ptr<ServerProcess> Start(const Options& options, std::string* error);
  ~ServerProcess();

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int http_port() const { return http_port_; }     // 0 unless Options::http
  std::shared_ptr<grpc::Channel> Channel() const;  // plaintext
  const std::filesystem::path& blob_dir() const { return blob_dir_; }
  Subprocess& process() { return *process_; }
  std::string Log() const { return ReadFileOrEmpty(log_path_); }
  // SIGTERM and wait; returns the exit code.
  int Stop();

 private:
  ServerProcess() = default;
  std::unique_ptr<TempDir> work_;
  std::filesystem::path log_path_, blob_dir_;
  int port_ = 0;
  int http_port_ = 0;
  std::optional<Subprocess> process_;
};

// The built binaries.
std::filesystem::path ServerBinary();  // $MODELFLEET_BINARY_DIR/server/modelfleet-server
std::filesystem::path CliBinary();     // $MODELFLEET_BINARY_DIR/client/cli/modelfleet

// Runs the `modelfleet` CLI against the server at `address` (plaintext) as `token`, reading no
// config file; returns its exit code, with what it printed (stdout and stderr) in *output.
int RunCli(const std::string& address, const std::string& token, const std::vector<std::string>& args,
           std::string* output);

// Runs `modelfleet-server create-token` against `database_url` and returns the secret
// (empty on failure, with the output in *error).
std::string CreateTokenOffline(const std::string& database_url, const std::string& name,
                               const std::string& role, std::string* error);

// Adds "authorization: Bearer <token>" to a client context.
void Authorize(grpc::ClientContext& context, const std::string& token);

}  // namespace modelfleet::testing
