// The `modelfleet` CLI's commands, each a function of its parsed options that talks to the
// server over gRPC and prints the result as JSON (one object per line) on stdout.
// Errors go to stderr as "modelfleet: CODE: message"; the exit code is non-zero.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::cli {

struct Connection {
  std::string server = "127.0.0.1:7443";
  std::string token;        // bearer token
  std::string tls_ca;       // PEM file of the CA that signed the server's certificate
  bool insecure = false;    // plaintext
};

Expected<std::shared_ptr<grpc::Channel>> OpenChannel(const Connection& c);

struct PushOptions {
  std::string model, version, file;
  std::string format = "torchscript-int8", quantization;
  std::vector<std::string> metrics;  // name=value
  std::vector<std::string> labels;   // key=value
  std::vector<std::string> params;   // key=value
  std::string git_commit, ci_run_id, ci_run_url, parent_version;
  std::string sign_key_file, key_id; // Ed25519 private key (PEM) and its key id
  std::string manifest_template;     // optional JSON Manifest merged under the flags
};

Status CreateModel(const Connection& c, const std::string& name, const std::string& task,
                   const std::string& description, const std::vector<std::string>& class_labels);
Status ListModels(const Connection& c);
Status Push(const Connection& c, const PushOptions& o);
Status ListVersions(const Connection& c, const std::string& model, const std::string& filter);
// `ref` is "model@version" or "model@alias".
Status GetVersion(const Connection& c, const std::string& ref);
Status SetAlias(const Connection& c, const std::string& model, const std::string& alias,
                const std::string& version, const std::string& reason);
Status AliasHistory(const Connection& c, const std::string& model, const std::string& alias);
// Resumes into `out` if it already holds a prefix of the artifact; verifies SHA-256 at the end
// and renames "<out>.part" to `out` only then.
Status Download(const Connection& c, const std::string& ref, const std::string& out);
Status CreateToken(const Connection& c, const std::string& name, const std::string& role, int64_t ttl);
Status AddPublisherKey(const Connection& c, const std::string& key_id, const std::string& pem_file);

}  // namespace modelfleet::cli
