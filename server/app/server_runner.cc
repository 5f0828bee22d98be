#include "app/server_runner.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "app/server_metrics.h"
#include "auth/method_roles.h"
#include "auth/token_store.h"
#include "blob/local_blob_store.h"
#include "blob/s3/s3_blob_store.h"
#include "db/migrations.h"
#include "db/pool.h"
#include "events/event_log.h"
#include "events/event_notifier.h"
#include "events/event_pruner.h"
#include "fleet/check_in.h"
#include "fleet/device_registry.h"
#include "fleet/rollout_controller.h"
#include "fleet/rollout_manager.h"
#include "grpc/admin_service.h"
#include "grpc/call_context.h"
#include "grpc/event_service.h"
#include "grpc/fleet_services.h"
#include "grpc/registry_service.h"
#include "grpc/rpc_metrics.h"
#include "grpc/webhook_service.h"
#include "http/http_server.h"
#include "metrics/metrics.h"
#include "registry/artifact_cache.h"
#include "registry/registry.h"
#include "webhooks/webhook_dispatcher.h"
#include "webhooks/webhooks.h"

namespace modelfleet::app {

namespace {

// %* in a pattern: the log message as a JSON string body (quotes, backslashes and control
// characters escaped), so JSON lines stay valid whatever is logged.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

Expected<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  if (!in) return Fail(InvalidArgument(flag, "cannot read " + path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Expected<std::unique_ptr<db::Pool>> OpenDatabase(const ServerConfig& config) {
  db::PoolOptions options;
  options.conninfo = config.database_url;
  options.size = config.db_pool_size;
  auto pool = db::Pool::Open(options);
  if (!pool) return Fail(pool.error().Annotate("connecting to the database"));
  return pool;
}

Expected<std::unique_ptr<blob::BlobStore>> OpenBlobStore(const ServerConfig& config) {
  if (config.blob_store == "local") return blob::LocalBlobStore::Open(config.blob_dir);
  if (config.blob_store == "s3") {
    blob::S3Options s3;
    s3.endpoint = config.s3_endpoint;
    s3.region = config.s3_region;
    s3.bucket = config.s3_bucket;
    s3.access_key = config.s3_access_key;
    s3.secret_key = config.s3_secret_key;
    s3.key_prefix = config.s3_prefix;
    return blob::S3BlobStore::Open(s3);
  }
  return Fail(InvalidArgument("--blob-store", "must be 'local' or 's3', not '" + config.blob_store + "'"));
}

Expected<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const ServerConfig& config) {
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    return Fail(InvalidArgument("--tls-cert", "--tls-cert and --tls-key go together"));
  }
  if (config.tls_cert.empty()) {
    if (!config.insecure) {
      return Fail(InvalidArgument("--tls-cert", "give --tls-cert and --tls-key, or --insecure for plaintext"));
    }
    return grpc::InsecureServerCredentials();
  }
  MF_ASSIGN_OR_RETURN(std::string cert, ReadFile(config.tls_cert, "--tls-cert"));
  MF_ASSIGN_OR_RETURN(std::string key, ReadFile(config.tls_key, "--tls-key"));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(ssl);
}

std::string DescribeOr(std::string text, const char* fallback) { return text.empty() ? fallback : text; }

// Keeps SIGTERM's promise when something hangs (a handler that ignores cancellation, a stuck
// flush): if the process is still shutting down a moment after the grace, it logs what is
// left and exits at once, so an orchestrator's own kill deadline is never what stops it.
class ShutdownWatchdog {
 public:
  static constexpr std::chrono::milliseconds kOverrun{750};

  explicit ShutdownWatchdog(std::chrono::steady_clock::time_point deadline)
      : thread_([this, deadline] { Watch(deadline + kOverrun); }) {}
  ~ShutdownWatchdog() { Done(); }
  void Done() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Watch(std::chrono::steady_clock::time_point give_up) {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, give_up, [&] { return done_; })) return;
    spdlog::error("shutdown overran its grace by {} ms (calls still in flight: {}); exiting now without the final flush",
                  kOverrun.count(), DescribeOr(grpc_edge::CallsInFlight::Get().Describe(), "none"));
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace

Status ConfigureLogging(const std::string& format, const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgument("--log-level", "must be trace, debug, info, warn, error, critical or off");
  }
  auto logger = std::make_shared<spdlog::logger>("modelfleet", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","thread":%t,"msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else if (format == "text") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  } else {
    return InvalidArgument("--log-format", "must be 'text' or 'json'");
  }
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

Status RunMigrations(const ServerConfig& config) {
  MF_ASSIGN_OR_RETURN(auto pool, OpenDatabase(config));
  MF_RETURN_IF_ERROR(db::ApplyMigrations(*pool, db::EmbeddedMigrations()));
  MF_ASSIGN_OR_RETURN(auto applied, db::AppliedMigrations(*pool));
  spdlog::info("database schema is at version {}", applied.empty() ? 0 : applied.back());
  return Status::Ok();
}

Status CreateTokenOffline(const ServerConfig& config, const std::string& name, const std::string& role,
                          int64_t ttl_seconds) {
  MF_ASSIGN_OR_RETURN(auto pool, OpenDatabase(config));
  MF_RETURN_IF_ERROR(db::ApplyMigrations(*pool, db::EmbeddedMigrations()));
  auto parsed_role = auth::ParseRole(role);
  if (!parsed_role) return InvalidArgument("--role", "must be admin, publisher, device or viewer");
  auth::TokenStore tokens(*pool);
  v1::CreateTokenRequest request;
  request.set_name(name);
  request.set_role(*parsed_role);
  request.set_ttl_seconds(ttl_seconds);
  MF_ASSIGN_OR_RETURN(auto created, tokens.Create(request, "modelfleet-server create-token"));
  std::cout << created.secret() << std::endl;
  spdlog::info("created {} token '{}' (id {})", role, name, created.token().id());
  return Status::Ok();
}

int RunServer(const ServerConfig& config) {
  auto fail = [](const Status& s) {
    spdlog::critical("cannot start: {}", s.ToString());
    return 2;
  };
  // One metrics registry per server, declared first so it outlives everything that records
  // into it; GuardCall records into the installed RpcMetrics.
  metrics::Registry metrics;
  grpc_edge::RpcMetrics rpc_metrics(
      metrics, {v1::RegistryService::service_full_name(), v1::AdminService::service_full_name(),
                v1::DeviceService::service_full_name(), v1::FleetService::service_full_name(),
                v1::EventService::service_full_name()});
  std::optional<grpc_edge::ScopedRpcMetricsInstall> rpc_metrics_installed;
  if (!config.no_rpc_metrics) rpc_metrics_installed.emplace(rpc_metrics);
  auto credentials = ServerCredentials(config);
  if (!credentials) return fail(credentials.error());
  auto pool = OpenDatabase(config);
  if (!pool) return fail(pool.error());
  if (config.migrate_on_start) {
    Status migrated = db::ApplyMigrations(**pool, db::EmbeddedMigrations());
    if (!migrated.ok()) return fail(migrated.Annotate("applying migrations"));
  }
  auto store = OpenBlobStore(config);
  if (!store) return fail(store.error().Annotate("opening the blob store"));
  spdlog::info("blob store: {}", (*store)->Describe());

  registry::ArtifactCache cache(**store, config.cache_dir, config.cache_bytes);
  registry::RegistryOptions registry_options;
  registry_options.require_signatures = config.require_signatures;
  registry::Registry registry(**pool, **store, cache, registry_options);
  // Long-lived authentication cache, loaded at start; revocations reach it within a second from
  // any replica.
  auth::TokenStore tokens(**pool, std::chrono::minutes(10));
  tokens.StartCacheSync(std::chrono::seconds(1));
  fleet::DeviceRegistry devices(**pool, tokens);
  grpc_edge::RegistryServiceImpl registry_service(
      registry, tokens, [&devices](const auth::Principal& device, const v1::VersionRef& ref) {
        return devices.AuthorizeDownload(device, ref);
      });
  grpc_edge::AdminServiceImpl admin_service(registry, tokens);

  fleet::RolloutManager rollouts(**pool, {.default_deployment_timeout_seconds = config.deployment_timeout_seconds});
  fleet::CheckInOptions check_in_options;
  check_in_options.check_in_interval_seconds = config.check_in_interval_seconds;
  auto check_in = std::make_unique<fleet::CheckInService>(**pool, check_in_options);
  // Changes made on this replica reach its check-in caches at once (other replicas' by polling).
  devices.SetDeviceListener([&check_in](int64_t device_row_id) { check_in->DeviceChanged(device_row_id); });
  rollouts.SetListeners({.rollouts_changed = [&check_in] { check_in->RolloutsChanged(); },
                         .deployments_changed = [&check_in] { check_in->DeploymentsChanged(); }});
  grpc_edge::DeviceServiceImpl device_service(devices, *check_in, tokens);
  grpc_edge::FleetServiceImpl fleet_service(devices, rollouts, tokens,
                                            {.allow_publisher_rollouts = config.allow_publisher_rollouts});
  fleet::RolloutController controller(**pool, rollouts, std::chrono::milliseconds(config.controller_interval_ms));
  // The events the cores write: read back, streamed live (LISTEN on a connection of its own),
  // pruned after the retention.
  events::EventLog event_log(**pool);
  events::EventNotifier event_notifier(event_log, config.database_url);
  events::EventPruner event_pruner(event_log, std::chrono::hours(config.event_retention_hours));
  event_notifier.Start();
  event_pruner.Start();
  grpc_edge::EventServiceImpl event_service(event_log, event_notifier, tokens);
  // Webhooks: subscriptions (their secrets sealed under --secret-key-file) and the dispatcher
  // that delivers events to them, on one replica at a time.
  std::optional<webhooks::SecretBox> secret_box;
  if (!config.secret_key_file.empty()) {
    auto loaded = webhooks::SecretBox::Load(config.secret_key_file);
    if (!loaded) return fail(loaded.error().Annotate("--secret-key-file"));
    secret_box = std::move(*loaded);
  }
  std::unique_ptr<webhooks::WebhookSender> webhook_sender = webhooks::MakeHttpSender();
  webhooks::Webhooks webhook_core(
      **pool, secret_box ? &*secret_box : nullptr, *webhook_sender,
      {.retry = {.max_attempts = config.webhook_max_attempts,
                 .base = std::chrono::milliseconds(config.webhook_retry_base_ms),
                 .cap = std::chrono::milliseconds(config.webhook_retry_cap_ms)},
       .timeout = std::chrono::milliseconds(config.webhook_timeout_ms)});
  webhooks::WebhookDispatcher webhook_dispatcher(
      **pool, webhook_core, event_log, &event_notifier,
      {.delivered_retention = std::chrono::hours(config.event_retention_hours)});
  grpc_edge::WebhookServiceImpl webhook_service(webhook_core, tokens);
  metrics::CollectorRegistration server_metrics = app::RegisterServerMetrics(
      metrics, {.pool = pool->get(), .check_in = check_in.get(), .artifact_cache = &cache, .tokens = &tokens,
                .controller = &controller, .rollouts = &rollouts, .webhooks = &webhook_core});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(config.listen, *credentials, &selected_port);
  builder.RegisterService(&registry_service);
  builder.RegisterService(&admin_service);
  builder.RegisterService(&device_service);
  builder.RegisterService(&fleet_service);
  builder.RegisterService(&event_service);
  builder.RegisterService(&webhook_service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  // gRPC's sync-server threads wait this long for work before they notice a shutdown; its
  // default (10 s) kept the process alive well past the grace.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::CQ_TIMEOUT_MSEC, 100);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected_port == 0) return fail(Unavailable("cannot listen on " + config.listen));
  server->GetHealthCheckService()->SetServingStatus(true);

  // The HTTP face calls the same services through an in-process channel (see http_server.h).
  // Declared after `server`, so it is destroyed first.
  std::unique_ptr<http_edge::HttpServer> http_server;
  if (!config.http_listen.empty()) {
    http_edge::HttpServerOptions http;
    http.listen = config.http_listen;
    http.tls_cert = config.tls_cert;
    http.tls_key = config.tls_key;
    http.threads = config.http_threads;
    http.services = {"modelfleet.v1.RegistryService", "modelfleet.v1.AdminService", "modelfleet.v1.DeviceService",
                     "modelfleet.v1.FleetService", "modelfleet.v1.EventService", "modelfleet.v1.WebhookService"};
    http.ready = [&pool] { return !grpc_edge::CallsInFlight::Get().draining() && !(*pool)->database_down(); };
    http.metrics = [&metrics] { return metrics.Render(); };
    http.metrics_require_token = config.metrics_require_token;
    auto started = http_edge::HttpServer::Start(http, server->InProcessChannel(grpc::ChannelArguments()), tokens);
    if (!started) {
      server->Shutdown(std::chrono::system_clock::now());
      return fail(started.error().Annotate("starting the HTTP listener"));
    }
    http_server = std::move(*started);
    spdlog::info("HTTP listening on {} (port {}, {})", config.http_listen, http_server->port(),
                 config.tls_cert.empty() ? "plaintext" : "TLS");
  }
  controller.Start();
  if (secret_box) webhook_dispatcher.Start();  // without a key there is nothing it could sign
  spdlog::info("modelfleet-server listening on {} (port {}, {})", config.listen, selected_port,
               config.tls_cert.empty() ? "plaintext" : "TLS");

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  sigwait(&signals, &received);
  const auto grace = std::chrono::seconds(config.shutdown_grace_seconds);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  grpc_edge::CallsInFlight& calls = grpc_edge::CallsInFlight::Get();
  calls.StartDraining();  // new calls get UNAVAILABLE from here on
  spdlog::info("received {}, shutting down: new calls are refused; in-flight calls get {} s ({})", strsignal(received),
               config.shutdown_grace_seconds, DescribeOr(calls.Describe(), "none in flight"));
  ShutdownWatchdog watchdog(deadline);
  server->GetHealthCheckService()->SetServingStatus(false);
  if (!calls.WaitUntilIdle(deadline)) {
    spdlog::warn("shutdown grace is over, cancelling the calls still in flight: {}", calls.Describe());
  }
  // An immediate deadline: gRPC cancels what is left and closes the clients' connections
  // (with a later one it would wait for idle clients to hang up).
  server->Shutdown(std::chrono::system_clock::now());
  if (http_server) http_server->Stop();  // its calls through gRPC have ended or been cancelled
  server->Wait();
  controller.Stop();
  webhook_dispatcher.Stop();
  devices.SetDeviceListener(nullptr);
  rollouts.SetListeners({});
  server_metrics.Reset();  // waits for a scrape under way; the collector never runs again
  check_in.reset();  // flushes what was written behind
  watchdog.Done();
  spdlog::info("stopped");
  return 0;
}

}  // namespace modelfleet::app
