// FleetCensus: what only the database can count about the fleet, for metrics: devices by
// admission and by the model version they run, rollouts by state, and the measured gate
// values of the active rollouts' current stages.
//
// Taking one costs a scan of the devices table (two aggregates) and, per active rollout, a
// progress computation (RolloutManager::Get: a count of its cohort): callers take it every
// few seconds at most, never per scrape under load (app/server_metrics caches it).
//
// Every label it yields comes from a bounded set: admission and rollout states are the
// schema's CHECK lists; running versions are capped at `max_versions` (the most common);
// gates are limited to `max_rollouts` active rollouts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "db/pool.h"
#include "fleet/rollout_manager.h"
#include "modelfleet/status.h"

namespace modelfleet::fleet {

struct FleetCensusOptions {
  size_t max_versions = 50;  // (model, version) pairs reported, the most devices first
  size_t max_rollouts = 20;  // active rollouts whose gates are read, the newest first
};

struct FleetCensus {
  struct Count {
    std::string name;  // "ACCEPTED", "RUNNING", as stored
    int64_t count = 0;
  };
  struct VersionCount {
    std::string model, version;
    int64_t devices = 0;
  };
  // A gate of a rollout's current stage: what was measured and the stage's limit (0: none).
  struct GateReading {
    std::string rollout_id;  // "ro-12"
    std::string gate;        // "failure_ratio", "error_ratio", "p95_latency_seconds", "class_shift"
    double value = 0;
    double limit = 0;
  };

  std::vector<Count> devices_by_admission;  // every admission state, 0 included
  // Accepted devices by what they last reported running (not those running nothing).
  std::vector<VersionCount> devices_by_version;
  int64_t devices_in_unlisted_versions = 0;  // beyond max_versions
  std::vector<Count> rollouts_by_state;      // every rollout state, 0 included
  std::vector<GateReading> gates;            // of RUNNING, WAITING_APPROVAL and PAUSED rollouts
};

// Counts now. UNAVAILABLE (database down), or the error of reading a rollout's progress.
// Thread-safe (uses only the pool and the manager, both thread-safe).
Expected<FleetCensus> TakeFleetCensus(db::Pool& pool, RolloutManager& rollouts, const FleetCensusOptions& options = {});

}  // namespace modelfleet::fleet
