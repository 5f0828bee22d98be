// The `modelfleet` CLI's commands: each a function of the resolved settings and its own
// options, independent of CLI11 (main.cc only wires flags to these). Each talks to the server,
// prints its result on stdout (output.h: table or JSON) and returns OK or the failure, which
// main.cc prints on stderr as "modelfleet: <CODE>: <message>" and maps to an exit code
// (exit_codes.h). Nothing is printed on stdout for a failed command, except `versions verify`,
// which prints its verdict either way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/config.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::cli {

// ---------------------------------------------------------------- models (commands_models.cc)
struct ModelSpec {
  std::string name, task, description;
  std::vector<std::string> class_labels;
};
Status CreateModel(const Settings& s, const ModelSpec& spec);
Status ListModels(const Settings& s, bool include_archived);
Status ShowModel(const Settings& s, const std::string& name);
Status ArchiveModel(const Settings& s, const std::string& name);

// ---------------------------------------------------------------- versions (commands_versions.cc)
struct PushOptions {
  std::string model, version, file;
  std::string format = "torchscript-int8", quantization;
  std::vector<std::string> metrics;  // name=value
  std::vector<std::string> labels;   // key=value
  std::vector<std::string> params;   // key=value
  std::string git_commit, ci_run_id, ci_run_url, parent_version, dataset;
  uint64_t version_counter = 0;       // 0: keep the --manifest file's
  std::string sign_key_file, key_id;  // Ed25519 private key (PEM) and its key id on the server
  std::string manifest_file;          // optional JSON Manifest; the flags override its fields
  bool progress = true;
};
// Hashes the file, builds (and signs) the manifest, and streams the bytes. Safe to re-run: if
// the version exists with the same digest and size nothing is uploaded and it succeeds; with
// other bytes it is ALREADY_EXISTS (exit 6) saying both digests.
Status PushVersion(const Settings& s, const PushOptions& o);
// The table shows the headline metrics (kHeadlineMetrics, those any listed version has), or the
// `metrics` named, or with s.wide every metric; rounded (format.h). JSON output has every metric,
// exact, whatever `metrics` says.
inline constexpr const char* kHeadlineMetrics[] = {"accuracy", "latency_p50_ms_int8", "size_bytes_int8"};
Status ListVersions(const Settings& s, const std::string& model, const std::string& filter,
                    const std::vector<std::string>& metrics);
// One metric, label and param per line, sorted by name; metrics rounded.
Status ShowVersion(const Settings& s, const std::string& ref);
// Resumes from "<out>.part", verifies size and SHA-256 against the manifest, renames to `out`
// only then. DATA_LOSS (exit 7) on a mismatch, removing the partial file.
Status DownloadVersion(const Settings& s, const std::string& ref, const std::string& out, bool progress);
struct VerifyOptions {
  std::string ref, file;
  std::string public_key_file;  // PEM; empty: the server's trusted publisher keys
  bool allow_unsigned = false;
};
// Checks a local file against the manifest of `ref`: size, SHA-256, and the manifest's
// Ed25519 signature. Prints the verdict (also on failure); DATA_LOSS (exit 7) if any check fails.
Status VerifyVersion(const Settings& s, const VerifyOptions& o);
Status ArchiveVersion(const Settings& s, const std::string& ref);  // MODEL@VERSION
Status PurgeVersion(const Settings& s, const std::string& ref);    // MODEL@VERSION, archived

// ---------------------------------------------------------------- aliases (commands_aliases.cc)
// `expected_current` empty: unconditional; "-": the alias must not exist yet; else it must
// point at that version now (compare-and-set; ABORTED, exit 6, if it does not).
Status SetAlias(const Settings& s, const std::string& model, const std::string& alias,
                const std::string& version, const std::string& reason, const std::string& expected_current);
Status AliasHistory(const Settings& s, const std::string& model, const std::string& alias);

// ---------------------------------------------------------------- keys (commands_keys.cc)
// Writes a new Ed25519 keypair as PKCS#8 / SPKI PEM: `private_file` (mode 0600) and
// `public_file`. Refuses to overwrite either unless `force` (ALREADY_EXISTS).
Status GenerateKey(const Settings& s, const std::string& private_file, const std::string& public_file,
                   bool force);
Status ListKeys(const Settings& s);
Status AddKey(const Settings& s, const std::string& key_id, const std::string& public_pem_file);
Status RevokeKey(const Settings& s, const std::string& key_id);

// ---------------------------------------------------------------- tokens (commands_tokens.cc)
Status CreateToken(const Settings& s, const std::string& name, const std::string& role, int64_t ttl_seconds);
Status ListTokens(const Settings& s, bool include_revoked);
Status RevokeToken(const Settings& s, int64_t id);

// ---------------------------------------------------------------- devices (commands_devices.cc)
// The table's DEPLOYMENT column names the rollout of the device's newest deployment with its
// step ("ro-3 FAILED"); `show` adds the reason of a failed, timed-out or cancelled step, in full.
Status ListDevices(const Settings& s, const std::string& filter);
Status ShowDevice(const Settings& s, const std::string& device_id);
// verb: accept, reject, decommission
Status SetDeviceAdmission(const Settings& s, const std::string& device_id, const std::string& verb,
                          const std::string& reason);
struct PreauthorizeOptions {
  std::string hardware_id, hardware_revision, firmware_version, site;
  uint32_t sensor_rows = 0, sensor_cols = 0;
  std::vector<std::string> labels;  // key=value
};
Status PreauthorizeDevice(const Settings& s, const PreauthorizeOptions& o);
Status DeviceHistory(const Settings& s, const std::string& device_id);

Status CreateEnrollmentToken(const Settings& s, const std::string& name, uint32_t max_uses,
                             int64_t ttl_seconds, bool auto_accept);
Status ListEnrollmentTokens(const Settings& s);
Status RevokeEnrollmentToken(const Settings& s, int64_t id);

// ---------------------------------------------------------------- rollouts (commands_rollouts.cc)
// A stage spec: "PERCENT[:key=value...]" with keys min (devices), soak (seconds), threshold
// (success share, default 1), max-failure, max-error, max-p95 (ms), max-shift, min-inferences,
// and the bare word approval. e.g. "10:min=5:soak=30:threshold=0.9:max-failure=0.1:max-p95=40"
Expected<v1::Stage> ParseStage(const std::string& spec);
struct RolloutSpec {
  std::string model, version, target;
  std::vector<std::string> stages;
  bool auto_rollback = false, queue = false;
  uint32_t deployment_timeout_seconds = 0;
};
Status CreateRollout(const Settings& s, const RolloutSpec& spec);
Status ListRollouts(const Settings& s, const std::string& model);
Status ShowRollout(const Settings& s, const std::string& rollout_id);
// verb: pause, resume, approve, abort, rollback, retry
Status RolloutAction(const Settings& s, const std::string& verb, const std::string& rollout_id,
                     const std::string& reason);
// Follows a rollout until it completes, pauses, is aborted or rolled back, and returns that
// state (COMPLETED, PAUSED, ABORTED, ROLLED_BACK). On a terminal (table output) draws it live
// (rollout_view.h); otherwise prints one line per event, or one JSON object per event with -o
// json. Errors: those of the stream; UNAVAILABLE if it ends before the rollout does.
Expected<v1::RolloutState> WatchRollout(const Settings& s, const std::string& rollout_id, bool live);

// ---------------------------------------------------------------- events (commands_events.cc)
struct TailEventsOptions {
  std::vector<std::string> types;  // "rollout.paused" or "rollout.*"; empty: all the role may read
  std::string subject;             // "kind" or "kind/id", e.g. "rollout/ro-3"
  int64_t since = 0;               // after this event id; -1 with follow: only new ones
  bool follow = false;             // keep streaming new events until interrupted
};
// One line per event, oldest first ("ID  TIME  TYPE  KIND/ID  ACTOR  PAYLOAD"), or one JSON
// object per line with -o json. Without follow, returns after the newest event.
Status TailEvents(const Settings& s, const TailEventsOptions& o);

// ---------------------------------------------------------------- webhooks (commands_webhooks.cc)
// `types`: exact or "family.*"; empty: every type. Prints the secret, shown once.
Status AddWebhook(const Settings& s, const std::string& url, const std::vector<std::string>& types);
Status ListWebhooks(const Settings& s);
Status RemoveWebhook(const Settings& s, int64_t id);
// FAILED_PRECONDITION when the receiver did not answer 2xx (after printing what it answered).
Status TestWebhook(const Settings& s, int64_t id);
// `state`: "", "pending", "delivered" or "dead". Newest first.
Status ListWebhookDeliveries(const Settings& s, int64_t id, const std::string& state);
// delivery_id 0: every dead delivery of the webhook.
Status ReplayWebhookDeliveries(const Settings& s, int64_t id, int64_t delivery_id);

}  // namespace modelfleet::cli
