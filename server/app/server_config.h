// Everything modelfleet-server can be told, with its defaults. Each field maps to one
// command-line flag and one environment variable (see AddServerFlags in main.cc and the
// README's configuration table).
#pragma once

#include <cstdint>
#include <string>

namespace modelfleet::app {

struct ServerConfig {
  std::string listen = "0.0.0.0:7443";
  std::string database_url = "host=127.0.0.1 port=5432 dbname=modelfleet user=modelfleet";
  int db_pool_size = 8;
  bool migrate_on_start = true;

  std::string blob_store = "local";             // "local" or "s3"
  std::string blob_dir = "/var/lib/modelfleet/blobs";
  std::string s3_endpoint;                      // http://127.0.0.1:9000
  std::string s3_region = "us-east-1";
  std::string s3_bucket = "modelfleet";
  std::string s3_access_key;
  std::string s3_secret_key;
  std::string s3_prefix;

  std::string cache_dir = "/var/cache/modelfleet";
  uint64_t cache_bytes = 2ULL << 30;            // 2 GiB of verified artifacts

  std::string tls_cert;                         // PEM files; both or neither
  std::string tls_key;
  bool insecure = false;                        // plaintext, only when asked for

  std::string http_listen;                      // HTTP face (JSON API, /metrics); empty = off
  int http_threads = 32;                        // concurrent HTTP requests
  bool metrics_require_token = false;           // /metrics asks for an admin or viewer token
  bool no_rpc_metrics = false;                  // skip per-RPC metrics (to measure what they cost)

  bool require_signatures = false;

  uint32_t check_in_interval_seconds = 60;      // what devices are told, spread +-25%
  uint32_t deployment_timeout_seconds = 3600;   // default for rollouts that set none
  int controller_interval_ms = 1000;            // rollout controller tick
  uint32_t event_retention_hours = 720;         // events older than this are pruned (30 days)
  std::string secret_key_file;                  // 32 bytes (raw or hex) sealing webhook secrets
  int webhook_max_attempts = 10;                // then a delivery is dead-lettered
  int webhook_retry_base_ms = 1000;             // full-jitter exponential backoff ...
  int webhook_retry_cap_ms = 600000;            // ... capped at 10 min
  int webhook_timeout_ms = 5000;                // per delivery attempt
  bool allow_publisher_rollouts = false;        // let CI (publisher tokens) create rollouts
  int shutdown_grace_seconds = 30;
  std::string log_format = "text";              // "text" or "json"
  std::string log_level = "info";
};

}  // namespace modelfleet::app
