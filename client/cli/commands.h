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
#include "modelfleet/v1/fleet.pb.h"

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

// ---- fleet
Status CreateEnrollmentToken(const Connection& c, const std::string& name, uint32_t max_uses, int64_t ttl,
                             bool auto_accept);
Status ListDevices(const Connection& c, const std::string& filter);
Status SetDeviceAdmission(const Connection& c, const std::string& device_id, const std::string& admission,
                          const std::string& reason);

// A stage spec: "PERCENT[:key=value...]" with keys min (devices), soak (seconds), threshold
// (success share), max-failure, max-error, max-p95 (ms), max-shift, min-inferences, approval.
// e.g. "10:min=5:soak=30:threshold=0.9:max-failure=0.1:max-p95=40"
Expected<v1::Stage> ParseStage(const std::string& spec);
Status CreateRollout(const Connection& c, const std::string& model, const std::string& version,
                     const std::string& target, const std::vector<std::string>& stages, bool auto_rollback,
                     uint32_t timeout_seconds, bool queue);
Status ListRollouts(const Connection& c, const std::string& model);
Status GetRollout(const Connection& c, const std::string& rollout_id);
// verb: pause, resume, approve, abort, rollback, retry
Status RolloutAction(const Connection& c, const std::string& verb, const std::string& rollout_id,
                     const std::string& reason);
// Streams events until the rollout ends. Returns OK if it COMPLETED, FAILED_PRECONDITION if it
// ended otherwise (aborted, rolled back) or paused when `fail_on_pause` is set.
Status WatchRollout(const Connection& c, const std::string& rollout_id, bool fail_on_pause);

}  // namespace modelfleet::cli
