// modelfleet-agent's configuration: a file of `key = value` lines ('#' starts a comment; blank
// lines ignored; repeatable keys may appear several times), then command-line flags
// `--key value` / `--key=value` overriding it (a repeatable key given as a flag replaces the
// file's values). Every key and its default is documented in deploy/agent.conf.example.
// Errors name the key (and the file line): INVALID_ARGUMENT "frame_rate_hz: ...".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::agent::app {

struct AgentConfig {
  std::string server;                  // host:port (required)
  std::string tls_ca;                  // PEM CA bundle; required unless insecure
  bool insecure = false;               // plaintext gRPC
  std::string enrollment_token;        // needed only for the first start
  std::string state_dir = "/var/lib/modelfleet-agent";
  std::vector<std::string> publisher_keys;  // "[key_id=]path.pem", at least one
  std::string sensor = "synthetic";    // synthetic | replay:<path> | serial:<path>
  std::string synthetic_schedule = "empty:5s,sitting:10s,lying_full:10s,lying_partial:5s";
  uint64_t synthetic_seed = 1;
  int serial_baud = 115200;
  double frame_rate_hz = 10;
  std::chrono::seconds check_in_interval{60};  // when the server does not say
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{300000};
  std::chrono::seconds rpc_timeout{10};
  std::string hardware_id;             // default: /etc/machine-id, else the host name
  std::string site;
  std::string hardware_revision;
  std::string firmware_version;
  uint32_t sensor_rows = 16;
  uint32_t sensor_cols = 16;
  std::map<std::string, std::string> labels;  // label = key=value (repeatable)
  int num_threads = 1;
  double presence_min_confidence = 0.6;
  int presence_hold_frames = 3;
  std::chrono::milliseconds presence_nobody_after{30000};
  uint64_t disk_reserve_bytes = 8u << 20;
  uint64_t download_chunk_bytes = 1u << 20;
  uint64_t download_rate_limit = 0;    // bytes/s, 0 = unlimited
  std::string log_level = "info";
  // Local rollback: the first rollback_window inferences of a newly activated model are watched;
  // if more than half of them error or exceed the manifest's latency budget, the agent goes
  // back to the last-known-good model and reports ROLLED_BACK. 0 = off.
  int rollback_window = 20;
};

// The keys, for --help and validation.
const std::vector<std::string>& ConfigKeys();

// Applies one key (from a file or a flag). INVALID_ARGUMENT naming the key.
Status ApplyConfigValue(AgentConfig& config, const std::string& key, const std::string& value);
// Parses a whole file's text into `config` (on top of what is there).
Status ParseConfigText(AgentConfig& config, const std::string& text, const std::string& origin);
// Cross-key checks after everything is applied (required keys, tls_ca vs insecure, ...).
Status ValidateConfig(AgentConfig& config);

// Parses "250ms", "5s", "2m", "1h"; a plain number is seconds.
Expected<std::chrono::milliseconds> ParseDuration(const std::string& text);

}  // namespace modelfleet::agent::app
