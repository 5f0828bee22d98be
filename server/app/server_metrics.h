// The server's own metrics, computed at scrape time from the parts RunServer assembles: the
// check-in caches and write-behind, the database pool, the artifact cache (the only reader of
// the blob store), the token cache, the rollout controller, webhook deliveries, and a census of the fleet that
// only the database knows (devices by admission and running version, rollouts by state, the
// gate values of active rollouts).
//
// Everything but the census reads counters the parts already keep (atomics, or a short lock
// of the part's own). The census costs SQL (fleet/fleet_census.h), so it is taken at most
// every `census_refresh`, by the first scrape after that much time (that scrape waits for
// it); scrapes in between reuse it, and modelfleet_fleet_census_age_seconds says how old it
// is. A census that fails keeps the previous one (counted in
// modelfleet_fleet_census_failures_total).
//
// Metric names (all modelfleet_*; see RegisterServerMetrics in server_metrics.cc for the full
// list with help texts) follow Prometheus' conventions: base units (_seconds, _bytes),
// counters _total, labels from bounded sets only.
#pragma once

#include <chrono>

#include "auth/token_store.h"
#include "db/pool.h"
#include "fleet/check_in.h"
#include "fleet/fleet_census.h"
#include "fleet/rollout_controller.h"
#include "fleet/rollout_manager.h"
#include "metrics/metrics.h"
#include "registry/artifact_cache.h"
#include "webhooks/webhooks.h"

namespace modelfleet::app {

// What the server metrics read. A null member leaves its metrics out (the census needs both
// `pool` and `rollouts`). Nothing is owned.
struct ServerMetricSources {
  db::Pool* pool = nullptr;
  fleet::CheckInService* check_in = nullptr;
  registry::ArtifactCache* artifact_cache = nullptr;
  auth::TokenStore* tokens = nullptr;
  fleet::RolloutController* controller = nullptr;
  fleet::RolloutManager* rollouts = nullptr;
  const webhooks::Webhooks* webhooks = nullptr;
  std::chrono::milliseconds census_refresh = std::chrono::seconds(15);
  fleet::FleetCensusOptions census = {};
};

// Adds the server's collector to `registry`. The collector reads the sources until the
// returned registration is destroyed or Reset(), which waits for a scrape in progress: reset
// it before destroying any source (in RunServer: before check_in.reset()).
// REQUIRES: every non-null source outlives the registration; `registry` outlives it too.
[[nodiscard]] metrics::CollectorRegistration RegisterServerMetrics(metrics::Registry& registry,
                                                                   const ServerMetricSources& sources);

}  // namespace modelfleet::app
