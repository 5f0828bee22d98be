#include "app/server_metrics.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <optional>

namespace modelfleet::app {

namespace {

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// The last census and when it was taken. Used by one collector, whose calls the registry
// serializes; the lock keeps it correct if that ever changes.
class CensusCache {
 public:
  CensusCache(db::Pool& pool, fleet::RolloutManager& rollouts, std::chrono::milliseconds refresh,
              fleet::FleetCensusOptions options)
      : pool_(pool), rollouts_(rollouts), refresh_(refresh), options_(options) {}

  void Collect(metrics::CollectorOutput& out) {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (!census_ || now - taken_ >= refresh_) {
      auto census = fleet::TakeFleetCensus(pool_, rollouts_, options_);
      if (census) {
        census_ = std::move(*census);
        taken_ = now;
      } else {
        ++failures_;
        spdlog::warn("metrics: counting the fleet failed (keeping the previous counts): {}", census.error().ToString());
      }
    }
    out.Counter("modelfleet_fleet_census_failures_total",
                "Fleet censuses (devices, rollouts, gates counted in the database) that failed.",
                static_cast<double>(failures_));
    if (!census_) return;
    out.Gauge("modelfleet_fleet_census_age_seconds", "Age of the fleet census the fleet and rollout gauges show.",
              Seconds(now - taken_));
    for (const auto& [admission, count] : census_->devices_by_admission) {
      out.Gauge("modelfleet_fleet_devices", "Devices by admission state.", static_cast<double>(count),
                {{"admission", admission}});
    }
    for (const auto& v : census_->devices_by_version) {
      out.Gauge("modelfleet_fleet_devices_running", "Accepted devices by the model version they last reported running.",
                static_cast<double>(v.devices), {{"model", v.model}, {"version", v.version}});
    }
    out.Gauge("modelfleet_fleet_devices_running_unlisted",
              "Accepted devices running a version beyond the most common ones modelfleet_fleet_devices_running lists.",
              static_cast<double>(census_->devices_in_unlisted_versions));
    for (const auto& [state, count] : census_->rollouts_by_state) {
      out.Gauge("modelfleet_rollouts", "Rollouts by state.", static_cast<double>(count), {{"state", state}});
    }
    for (const auto& g : census_->gates) {
      out.Gauge("modelfleet_rollout_gate_value",
                "Measured value of a health gate of an active rollout's current stage (ratios, or seconds).", g.value,
                {{"rollout_id", g.rollout_id}, {"gate", g.gate}});
      if (g.limit > 0) {
        out.Gauge("modelfleet_rollout_gate_limit", "The limit of a health gate of an active rollout's current stage.",
                  g.limit, {{"rollout_id", g.rollout_id}, {"gate", g.gate}});
      }
    }
  }

 private:
  db::Pool& pool_;
  fleet::RolloutManager& rollouts_;
  const std::chrono::milliseconds refresh_;
  const fleet::FleetCensusOptions options_;
  std::mutex mu_;
  std::optional<fleet::FleetCensus> census_;
  std::chrono::steady_clock::time_point taken_;
  uint64_t failures_ = 0;
};

void CollectPool(const db::Pool& pool, metrics::CollectorOutput& out) {
  const db::Pool::Stats s = pool.GetStats();
  out.Gauge("modelfleet_db_pool_max_connections", "Connections the database pool may hold.", s.size);
  out.Gauge("modelfleet_db_pool_open_connections", "Database connections open, idle or in use.", s.open_connections);
  out.Gauge("modelfleet_db_pool_in_use_connections", "Database connections held by a call right now.", s.in_use);
  out.Counter("modelfleet_db_pool_acquisitions_total", "Database connections handed to calls.",
              static_cast<double>(s.acquisitions));
  out.Counter("modelfleet_db_pool_acquire_timeouts_total",
              "Calls that found no free database connection in time (RESOURCE_EXHAUSTED).",
              static_cast<double>(s.acquire_timeouts));
  out.Counter("modelfleet_db_pool_acquire_wait_seconds_total", "Total time calls waited for a database connection.",
              Seconds(s.acquire_wait));
  out.Gauge("modelfleet_db_up", "1 while the database is reachable, 0 while the pool finds it down.",
            pool.database_down() ? 0 : 1);
}

void CollectCheckIn(fleet::CheckInService& check_in, metrics::CollectorOutput& out) {
  const fleet::CheckInService::CacheStats s = check_in.Stats();
  out.Counter("modelfleet_check_ins_total",
              "Device check-ins past validation, by path: answered from memory on the I/O thread "
              "(without_blocking) or by a call that may wait on the database (may_block).",
              static_cast<double>(s.check_ins_without_blocking), {{"path", "without_blocking"}});
  out.Counter("modelfleet_check_ins_total", "", static_cast<double>(s.check_ins_may_block), {{"path", "may_block"}});
  out.Counter("modelfleet_check_in_telemetry_rejected_total", "Telemetry entries dropped at the edge as malformed.",
              static_cast<double>(s.telemetry_rejected));
  out.Counter("modelfleet_check_in_deployment_reads_total", "Check-ins that had to read a deployment row.",
              static_cast<double>(s.deployment_reads));

  out.Counter("modelfleet_device_cache_hits_total", "Check-ins whose device was in the device cache.",
              static_cast<double>(s.device_hits));
  out.Counter("modelfleet_device_cache_misses_total", "Device cache lookups that had to read the database.",
              static_cast<double>(s.device_misses));
  out.Counter("modelfleet_device_cache_miss_reads_total", "Database reads for device cache misses (batched).",
              static_cast<double>(s.device_miss_reads));
  out.Gauge("modelfleet_device_cache_devices", "Devices held by the device cache.", static_cast<double>(s.devices));
  out.Gauge("modelfleet_device_cache_preloaded", "1 once the device cache's first full load has finished.",
            s.devices_preloaded ? 1 : 0);

  out.Gauge("modelfleet_rollout_cache_rollouts", "Rollouts in the check-in path's rollout snapshot.",
            static_cast<double>(s.rollouts.rollouts));
  out.Counter("modelfleet_rollout_cache_reloads_total", "Rollout snapshots loaded.",
              static_cast<double>(s.rollouts.reloads));
  out.Gauge("modelfleet_deployment_store_deployments", "Deployments held in memory by the check-in path.",
            static_cast<double>(s.deployments));
  out.Gauge("modelfleet_deployment_store_loaded", "1 once the deployment store's first load has finished.",
            s.deployments_loaded ? 1 : 0);

  const fleet::WriteBehind::Stats& w = s.write_behind;
  constexpr char kPendingHelp[] = "Write-behind queue depth: items in memory waiting to be written, by kind.";
  out.Gauge("modelfleet_write_behind_pending", kPendingHelp, static_cast<double>(w.pending_statuses),
            {{"kind", "status"}});
  out.Gauge("modelfleet_write_behind_pending", kPendingHelp, static_cast<double>(w.pending_telemetry),
            {{"kind", "telemetry"}});
  out.Gauge("modelfleet_write_behind_pending", kPendingHelp, static_cast<double>(w.pending_windows),
            {{"kind", "window"}});
  out.Gauge("modelfleet_write_behind_oldest_due_age_seconds",
            "How long the oldest queued status or telemetry window has waited to be written, at most.",
            Seconds(w.oldest_due_age));
  out.Counter("modelfleet_write_behind_records_total", "Check-in reports queued for writing behind.",
              static_cast<double>(w.records));
  constexpr char kWrittenHelp[] = "Rows the write-behind wrote, by kind.";
  out.Counter("modelfleet_write_behind_rows_written_total", kWrittenHelp, static_cast<double>(w.statuses_written),
              {{"kind", "status"}});
  out.Counter("modelfleet_write_behind_rows_written_total", kWrittenHelp,
              static_cast<double>(w.telemetry_rows_written), {{"kind", "telemetry"}});
  out.Counter("modelfleet_write_behind_rows_written_total", kWrittenHelp, static_cast<double>(w.windows_written),
              {{"kind", "window"}});
  out.Counter("modelfleet_write_behind_rows_refused_total", "Rows the database refused for their data (dropped, logged).",
              static_cast<double>(w.rows_dropped));
  constexpr char kShedHelp[] = "Items dropped to bound memory while writes failed, by kind.";
  out.Counter("modelfleet_write_behind_shed_total", kShedHelp, static_cast<double>(w.telemetry_dropped),
              {{"kind", "telemetry"}});
  out.Counter("modelfleet_write_behind_shed_total", kShedHelp, static_cast<double>(w.windows_dropped),
              {{"kind", "window"}});
  out.Counter("modelfleet_write_behind_flush_failures_total", "Write-behind flushes that met a transient error.",
              static_cast<double>(w.flush_failures));
}

void CollectArtifactCache(const registry::ArtifactCache& cache, metrics::CollectorOutput& out) {
  const registry::ArtifactCacheStats s = cache.stats();
  out.Counter("modelfleet_artifact_cache_hits_total", "Artifact requests served from the verified cache (or its fetch in flight).",
              static_cast<double>(s.hits));
  out.Counter("modelfleet_artifact_cache_misses_total", "Artifact requests that fetched from the object store.",
              static_cast<double>(s.store_fetches));
  out.Counter("modelfleet_artifact_cache_verify_failures_total", "Fetched artifacts whose bytes did not match the manifest.",
              static_cast<double>(s.verify_failures));
  out.Gauge("modelfleet_artifact_cache_size_bytes", "Bytes of verified artifacts held.", static_cast<double>(s.cached_bytes));
  out.Gauge("modelfleet_artifact_cache_capacity_bytes", "Capacity of the artifact cache.",
            static_cast<double>(s.capacity_bytes));
  out.Gauge("modelfleet_artifact_cache_artifacts", "Verified artifacts held.", static_cast<double>(s.entries));
  // The artifact cache is the server's only reader of the object store.
  out.Counter("modelfleet_object_store_reads_total", "Objects read from the object store (blob store).",
              static_cast<double>(s.store_fetches));
  out.Counter("modelfleet_object_store_read_bytes_total", "Bytes read from the object store (blob store).",
              static_cast<double>(s.store_bytes_read));
}

void CollectTokens(auth::TokenStore& tokens, metrics::CollectorOutput& out) {
  const auth::TokenStore::CacheStats s = tokens.Stats();
  out.Counter("modelfleet_token_cache_hits_total", "Authentications answered from the token cache.",
              static_cast<double>(s.hits));
  out.Counter("modelfleet_token_cache_misses_total", "Authentications that read the database.",
              static_cast<double>(s.misses));
  out.Gauge("modelfleet_token_cache_tokens", "Tokens held by the token cache.", static_cast<double>(s.entries));
}

// Attempts made by this replica's dispatcher (the one that leads), by outcome: a 2xx, a failure
// that will be retried, a failure that was the last attempt.
void CollectWebhooks(const webhooks::Webhooks& hooks, metrics::CollectorOutput& out) {
  const webhooks::Webhooks::Counts c = hooks.counts();
  constexpr char kHelp[] = "Webhook delivery attempts by this replica, by outcome.";
  out.Counter("modelfleet_webhook_deliveries_total", kHelp, static_cast<double>(c.delivered), {{"outcome", "delivered"}});
  out.Counter("modelfleet_webhook_deliveries_total", kHelp, static_cast<double>(c.retried), {{"outcome", "retried"}});
  out.Counter("modelfleet_webhook_deliveries_total", kHelp, static_cast<double>(c.dead), {{"outcome", "dead"}});
}

}  // namespace

metrics::CollectorRegistration RegisterServerMetrics(metrics::Registry& registry, const ServerMetricSources& sources) {
  std::shared_ptr<CensusCache> census;
  if (sources.pool != nullptr && sources.rollouts != nullptr) {
    census = std::make_shared<CensusCache>(*sources.pool, *sources.rollouts, sources.census_refresh, sources.census);
  }
  return registry.AddCollector([sources, census](metrics::CollectorOutput& out) {
    if (sources.pool != nullptr) CollectPool(*sources.pool, out);
    if (sources.check_in != nullptr) CollectCheckIn(*sources.check_in, out);
    if (sources.artifact_cache != nullptr) CollectArtifactCache(*sources.artifact_cache, out);
    if (sources.tokens != nullptr) CollectTokens(*sources.tokens, out);
    if (sources.webhooks != nullptr) CollectWebhooks(*sources.webhooks, out);
    if (sources.controller != nullptr) {
      out.Gauge("modelfleet_rollout_controller_leader",
                "1 while this replica's rollout controller holds the leadership lock, else 0.",
                sources.controller->is_leader() ? 1 : 0);
    }
    if (census) census->Collect(out);
  });
}

}  // namespace modelfleet::app
