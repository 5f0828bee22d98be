// modelfleet-server: the registry and fleet server.
//
//   modelfleet-server [serve] [flags]      run the gRPC server (default)
//   modelfleet-server migrate [flags]      apply database migrations and exit
//   modelfleet-server create-token --name N --role R [flags]
//                                          create an API token (e.g. the first admin's)
//
// Every flag can also be given as an environment variable (shown in --help).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "app/server_config.h"
#include "app/server_runner.h"

namespace {

void AddDatabaseFlags(CLI::App& app, modelfleet::app::ServerConfig& c) {
  app.add_option("--database-url", c.database_url, "libpq connection string or postgresql:// URI")
      ->envname("MODELFLEET_DATABASE_URL")
      ->capture_default_str();
  app.add_option("--db-pool-size", c.db_pool_size, "database connections kept open")
      ->envname("MODELFLEET_DB_POOL_SIZE")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
}

void AddServeFlags(CLI::App& app, modelfleet::app::ServerConfig& c, bool& no_migrate) {
  app.add_option("--listen", c.listen, "host:port to serve gRPC on")->envname("MODELFLEET_LISTEN")->capture_default_str();
  // A plain flag, negated after parsing: CLI11's "!--no-migrate" form would take
  // MODELFLEET_NO_MIGRATE=true as "migrate".
  app.add_flag("--no-migrate", no_migrate, "do not apply migrations at start")->envname("MODELFLEET_NO_MIGRATE");
  app.add_option("--blob-store", c.blob_store, "artifact store: local or s3")
      ->envname("MODELFLEET_BLOB_STORE")
      ->capture_default_str();
  app.add_option("--blob-dir", c.blob_dir, "directory of the local blob store")
      ->envname("MODELFLEET_BLOB_DIR")
      ->capture_default_str();
  app.add_option("--s3-endpoint", c.s3_endpoint, "S3/MinIO endpoint, e.g. http://127.0.0.1:9000")
      ->envname("MODELFLEET_S3_ENDPOINT");
  app.add_option("--s3-region", c.s3_region, "S3 region")->envname("MODELFLEET_S3_REGION")->capture_default_str();
  app.add_option("--s3-bucket", c.s3_bucket, "S3 bucket (created if missing)")
      ->envname("MODELFLEET_S3_BUCKET")
      ->capture_default_str();
  app.add_option("--s3-access-key", c.s3_access_key, "S3 access key")->envname("MODELFLEET_S3_ACCESS_KEY");
  app.add_option("--s3-secret-key", c.s3_secret_key, "S3 secret key (prefer the environment variable)")
      ->envname("MODELFLEET_S3_SECRET_KEY");
  app.add_option("--s3-prefix", c.s3_prefix, "prefix for every object key")->envname("MODELFLEET_S3_PREFIX");
  app.add_option("--cache-dir", c.cache_dir, "directory of the verified-artifact cache (emptied at start)")
      ->envname("MODELFLEET_CACHE_DIR")
      ->capture_default_str();
  app.add_option("--cache-bytes", c.cache_bytes, "capacity of the artifact cache in bytes")
      ->envname("MODELFLEET_CACHE_BYTES")
      ->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain for TLS")->envname("MODELFLEET_TLS_CERT");
  app.add_option("--tls-key", c.tls_key, "PEM private key for TLS")->envname("MODELFLEET_TLS_KEY");
  app.add_flag("--insecure", c.insecure, "serve plaintext gRPC and HTTP (no TLS)")->envname("MODELFLEET_INSECURE");
  app.add_option("--http-listen", c.http_listen,
                 "host:port to serve HTTP on (JSON API, artifact downloads, /metrics, /healthz, /readyz); "
                 "TLS with --tls-cert/--tls-key; off when empty")
      ->envname("MODELFLEET_HTTP_LISTEN");
  app.add_option("--http-threads", c.http_threads, "HTTP requests served at once")
      ->envname("MODELFLEET_HTTP_THREADS")
      ->capture_default_str()
      ->check(CLI::Range(2, 1024));
  app.add_flag("--metrics-require-token", c.metrics_require_token,
               "GET /metrics needs an admin or viewer bearer token")
      ->envname("MODELFLEET_METRICS_REQUIRE_TOKEN");
  app.add_flag("--no-rpc-metrics", c.no_rpc_metrics,
               "do not record the per-RPC metrics (what bench/checkin_bench compares against to measure their cost)")
      ->envname("MODELFLEET_NO_RPC_METRICS");
  app.add_flag("--require-signatures", c.require_signatures, "reject pushes of unsigned manifests")
      ->envname("MODELFLEET_REQUIRE_SIGNATURES");
  app.add_option("--check-in-interval-seconds", c.check_in_interval_seconds,
                 "how often devices are told to check in (spread +-25%)")
      ->envname("MODELFLEET_CHECK_IN_INTERVAL_SECONDS")
      ->capture_default_str();
  app.add_option("--deployment-timeout-seconds", c.deployment_timeout_seconds,
                 "default time a deployment may go without progress before it is timed out")
      ->envname("MODELFLEET_DEPLOYMENT_TIMEOUT_SECONDS")
      ->capture_default_str();
  app.add_option("--controller-interval-ms", c.controller_interval_ms, "rollout controller tick")
      ->envname("MODELFLEET_CONTROLLER_INTERVAL_MS")
      ->capture_default_str()
      ->check(CLI::Range(50, 600000));
  app.add_option("--event-retention-hours", c.event_retention_hours,
                 "events (ListEvents, WatchEvents) older than this are pruned")
      ->envname("MODELFLEET_EVENT_RETENTION_HOURS")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 3650));
  app.add_option("--secret-key-file", c.secret_key_file,
                 "file of 32 random bytes (raw or hex, `openssl rand -hex 32`) sealing webhook secrets; "
                 "webhooks cannot be created without it")
      ->envname("MODELFLEET_SECRET_KEY_FILE");
  app.add_option("--webhook-max-attempts", c.webhook_max_attempts, "attempts before a delivery is dead-lettered")
      ->envname("MODELFLEET_WEBHOOK_MAX_ATTEMPTS")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--webhook-retry-base-ms", c.webhook_retry_base_ms, "first retry delay bound (doubles, full jitter)")
      ->envname("MODELFLEET_WEBHOOK_RETRY_BASE_MS")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
  app.add_option("--webhook-retry-cap-ms", c.webhook_retry_cap_ms, "largest retry delay")
      ->envname("MODELFLEET_WEBHOOK_RETRY_CAP_MS")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400000));
  app.add_option("--webhook-timeout-ms", c.webhook_timeout_ms, "time a receiver gets to answer one delivery")
      ->envname("MODELFLEET_WEBHOOK_TIMEOUT_MS")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_flag("--allow-publisher-rollouts", c.allow_publisher_rollouts, "let publisher tokens (CI) create rollouts")
      ->envname("MODELFLEET_ALLOW_PUBLISHER_ROLLOUTS");
  app.add_option("--shutdown-grace-seconds", c.shutdown_grace_seconds, "time in-flight calls get at SIGTERM")
      ->envname("MODELFLEET_SHUTDOWN_GRACE_SECONDS")
      ->capture_default_str();
}

void AddLogFlags(CLI::App& app, modelfleet::app::ServerConfig& c) {
  app.add_option("--log-format", c.log_format, "text or json (one object per line)")
      ->envname("MODELFLEET_LOG_FORMAT")
      ->capture_default_str();
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")
      ->envname("MODELFLEET_LOG_LEVEL")
      ->capture_default_str();
}

int ExitWith(const modelfleet::Status& s) {
  if (s.ok()) return 0;
  std::cerr << "modelfleet-server: " << s.ToString() << std::endl;
  return s.code() == modelfleet::StatusCode::kInvalidArgument ? 64 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the shutdown signals in every thread; RunServer waits for them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  modelfleet::app::ServerConfig config;
  CLI::App app{"modelfleet-server: model registry and fleet server"};
  app.require_subcommand(0, 1);
  app.fallthrough();  // flags may follow the subcommand: "serve --listen ..."
  AddDatabaseFlags(app, config);
  bool no_migrate = false;
  AddServeFlags(app, config, no_migrate);
  AddLogFlags(app, config);

  auto* serve = app.add_subcommand("serve", "run the gRPC server (the default)");
  serve->footer("Every flag of `modelfleet-server --help` applies; flags may come before or after `serve`.");
  auto* migrate = app.add_subcommand("migrate", "apply database migrations and exit");
  auto* create_token = app.add_subcommand("create-token", "create an API token in the database and print it");
  std::string token_name, token_role = "admin";
  int64_t token_ttl = 0;
  create_token->add_option("--name", token_name, "token name")->required();
  create_token->add_option("--role", token_role, "admin, publisher, device or viewer")->capture_default_str();
  create_token->add_option("--ttl-seconds", token_ttl, "expiry; 0 = never")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  config.migrate_on_start = !no_migrate;
  if (auto s = modelfleet::app::ConfigureLogging(config.log_format, config.log_level); !s.ok()) return ExitWith(s);
  if (*migrate) return ExitWith(modelfleet::app::RunMigrations(config));
  if (*create_token) {
    return ExitWith(modelfleet::app::CreateTokenOffline(config, token_name, token_role, token_ttl));
  }
  return modelfleet::app::RunServer(config);
}
