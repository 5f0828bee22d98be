#include "server_process.h"

#include <csignal>
#include <thread>

namespace modelfleet::testing {

std::filesystem::path ServerBinary() { return BinaryDir() / "server" / "modelfleet-server"; }
std::filesystem::path CliBinary() { return BinaryDir() / "client" / "cli" / "modelfleet"; }

int RunCli(const std::string& address, const std::string& token, const std::vector<std::string>& args,
           std::string* output) {
  std::vector<std::string> argv = {"/usr/bin/env", "MODELFLEET_SERVER=" + address, "MODELFLEET_INSECURE=1",
                                   "MODELFLEET_TOKEN=" + token, "MODELFLEET_CONFIG=/dev/null", CliBinary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, output);
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const Options& o, std::string* error) {
  std::unique_ptr<ServerProcess> server(new ServerProcess());
  server->work_ = std::make_unique<TempDir>("modelfleet-server");
  server->log_path_ = server->work_->path() / "server.log";
  server->blob_dir_ = o.blob_dir.empty() ? server->work_->path() / "blobs" : o.blob_dir;
  server->port_ = o.port != 0 ? o.port : FreeTcpPort();
  Subprocess::Options p;
  p.argv = {ServerBinary().string(), "serve",
            "--listen", server->address(),
            "--database-url", o.database_url,
            "--blob-store", o.blob_store,
            "--blob-dir", server->blob_dir_.string(),
            "--cache-dir", (server->work_->path() / "cache").string(),
            "--shutdown-grace-seconds", std::to_string(o.shutdown_grace_seconds),
            "--db-pool-size", std::to_string(o.db_pool_size)};
  if (o.blob_store == "s3") {
    for (const auto& a : {std::string("--s3-endpoint"), o.s3_endpoint, std::string("--s3-bucket"), o.s3_bucket}) {
      p.argv.push_back(a);
    }
    p.env["MODELFLEET_S3_ACCESS_KEY"] = o.s3_access_key;
    p.env["MODELFLEET_S3_SECRET_KEY"] = o.s3_secret_key;
  }
  if (o.tls_cert.empty()) {
    p.argv.push_back("--insecure");
  } else {
    for (const auto& a : {std::string("--tls-cert"), o.tls_cert.string(), std::string("--tls-key"), o.tls_key.string()}) {
      p.argv.push_back(a);
    }
  }
  if (o.http) {
    server->http_port_ = FreeTcpPort();
    p.argv.push_back("--http-listen");
    p.argv.push_back("127.0.0.1:" + std::to_string(server->http_port_));
  }
  for (const auto& a : o.extra_args) p.argv.push_back(a);
  p.log_path = server->log_path_;
  auto process = Subprocess::Start(p, error);
  if (!process) return nullptr;
  server->process_.emplace(std::move(*process));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server->process_->Running()) break;
    if (server->Log().find("listening on") != std::string::npos && WaitForTcpPort(server->port_, std::chrono::seconds(1)) &&
        (server->http_port_ == 0 || WaitForTcpPort(server->http_port_, std::chrono::seconds(1)))) {
      return server;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (error) *error = "modelfleet-server did not come up; its log:\n" + server->Log();
  return nullptr;
}

ServerProcess::~ServerProcess() {
  if (process_) process_->Stop(std::chrono::seconds(5));
}

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
}

int ServerProcess::Stop() { return process_->Stop(std::chrono::seconds(30)); }

std::string CreateTokenOffline(const std::string& database_url, const std::string& name, const std::string& role,
                               std::string* error) {
  TempDir dir("modelfleet-token");
  std::string out;
  // stdout (the secret) to a file; logs stay in the combined output for diagnostics.
  std::string command = "'" + ServerBinary().string() + "' create-token --database-url '" + database_url +
                        "' --name '" + name + "' --role '" + role + "' > '" + (dir.path() / "secret").string() + "'";
  int code = RunCommand({"/bin/sh", "-c", command}, &out);
  std::string secret = ReadFileOrEmpty(dir.path() / "secret");
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (code != 0 || secret.empty()) {
    if (error) *error = "create-token exited " + std::to_string(code) + ": " + out;
    return "";
  }
  return secret;
}

void Authorize(grpc::ClientContext& context, const std::string& token) {
  context.AddMetadata("authorization", "Bearer " + token);
}

}  // namespace modelfleet::testing
