// RolloutManager: staged rollouts of a model version to a target of devices.
//
// A rollout has stages (cumulative percentages of the target, each with a minimum number of
// devices, a soak time, a success threshold and health gates). Its state machine is the table
// in fleet/rollout_state.h; the admin verbs below are its admin rows, RolloutController makes
// the others.
// Every transition is one conditional UPDATE (on the state and stage it starts from) plus a
// rollout_events row and its rollout.* event (server/events/) in the same transaction, so it
// happens exactly once even when several replicas race, and survives restarts. The
// controller's judgements of a stage also record a rollout.gate_verdict event first.
//
// Cohorts: a device is in the rollout when it matches the target, is ACCEPTED, and its
// CohortBucket(device, rollout) is below the rollout's cohort_cutoff. A stage starts with
// max(ceil(percent% of the matching devices), min_devices) devices: its cutoff lies just above
// the bucket of the last of them (1.0 at 100%), so later stages contain earlier ones.
//
// Thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/principal.h"
#include "db/pool.h"
#include "fleet/rollout_state.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"
#include "util/prefixed_id.h"

namespace modelfleet::fleet {

struct RolloutOptions {
  uint32_t default_deployment_timeout_seconds = 3600;
};

// A transition to make: a verb of the rollout state table, the states it may start from, and
// what it changes besides the state.
struct TransitionSpec {
  RolloutVerb verb;
  // The UPDATE applies only while the rollout is still in one of these (at the expected stage):
  // an admin verb passes AllowedSources(verb), the controller the state it judged. Each must be
  // a source of `verb`, and all must lead to the same state.
  std::vector<v1::RolloutState> from_states;
  std::string kind;     // event kind: "paused", "stage_advanced", "gate_paused", ...
  std::string actor;    // a principal's Actor() or "gate:<name>" or "controller"
  std::string reason;
  bool advance_stage = false;  // current_stage + 1 with a new cutoff and stage start
};

class RolloutManager {
 public:
  RolloutManager(db::Pool& pool, RolloutOptions options) : pool_(pool), options_(options) {}

  // Called after a committed change, outside any transaction: `rollouts_changed` when a rollout
  // was created or moved, `deployments_changed` when deployment rows changed in bulk (cancelled
  // by a terminal move, retried, timed out by the controller). The server points them at the
  // check-in's caches, so this replica's next check-in sees the change. Set before serving.
  struct Listeners {
    std::function<void()> rollouts_changed, deployments_changed;
  };
  void SetListeners(Listeners listeners) { listeners_ = std::move(listeners); }
  // For the controller, after it timed deployments out.
  void NotifyDeploymentsChanged() const {
    if (listeners_.deployments_changed) listeners_.deployments_changed();
  }

  // INVALID_ARGUMENT (model, version, target, stages[i].*, deployment_timeout_seconds),
  // NOT_FOUND (model or version), FAILED_PRECONDITION (version not READY; an active rollout
  // of the model targets some of the same devices and queue_if_conflicting is false).
  Expected<v1::Rollout> Create(const v1::CreateRolloutRequest& request, const auth::Principal& caller);
  // NOT_FOUND. Includes the current stage's progress.
  Expected<v1::Rollout> Get(const std::string& rollout_id);
  Expected<v1::ListRolloutsResponse> List(const v1::ListRolloutsRequest& request);
  // Events with id > after_event_id, oldest first (for WatchRollout).
  Expected<std::vector<std::pair<int64_t, v1::RolloutEvent>>> EventsAfter(const std::string& rollout_id,
                                                                          int64_t after_event_id);

  // Admin verbs. NOT_FOUND; FAILED_PRECONDITION when the rollout is not in a state the verb
  // applies to (named in the message).
  Expected<v1::Rollout> Pause(const v1::RolloutActionRequest& request, const auth::Principal& caller);
  Expected<v1::Rollout> Resume(const v1::RolloutActionRequest& request, const auth::Principal& caller);
  Expected<v1::Rollout> Approve(const v1::RolloutActionRequest& request, const auth::Principal& caller);
  Expected<v1::Rollout> Abort(const v1::RolloutActionRequest& request, const auth::Principal& caller);
  Expected<v1::Rollout> Rollback(const v1::RolloutActionRequest& request, const auth::Principal& caller);
  Expected<v1::Rollout> RetryFailed(const v1::RolloutActionRequest& request, const auth::Principal& caller);

  // Applies `spec` to the rollout (row id) if it is still in one of spec.from_states at
  // `expected_stage`. Returns true if this call made the transition, false if the rollout had
  // moved on (someone else made it). Used by the verbs above and by the controller. INTERNAL
  // if spec.from_states is empty, or not all sources of spec.verb leading to one state.
  Expected<bool> Transition(int64_t rollout_row_id, int expected_stage, const TransitionSpec& spec);

  // The progress of the rollout's current stage (devices, activated, failed, telemetry).
  // The current stage's progress. `cohort_devices`, when given, is used as the number of
  // devices in the stage's cohort instead of counting them (a scan of the target's devices,
  // hashing each: the controller counts once per stage and then every few seconds).
  Expected<v1::StageProgress> Progress(db::Tx& tx, int64_t rollout_row_id,
                                       std::optional<uint32_t> cohort_devices = std::nullopt);
  // How many accepted devices of the target are inside the cohort at `r.cohort_cutoff()`.
  Expected<uint32_t> CountCohort(db::Tx& tx, const v1::Rollout& r);

  // Row id from "ro-<n>"; INVALID_ARGUMENT otherwise.
  static Expected<int64_t> ParseRolloutId(const std::string& rollout_id, const std::string& field);
  static constexpr std::string_view kRolloutIdPrefix = "ro-";
  static std::string RolloutId(int64_t row_id) { return util::FormatPrefixedId(kRolloutIdPrefix, row_id); }

  // Loads a rollout with its stages (no progress) inside `tx`.
  Expected<v1::Rollout> Load(db::Tx& tx, int64_t rollout_row_id);

  // Recomputes the cohort cutoff for `stage` of the rollout.
  Expected<double> ComputeCutoff(db::Tx& tx, int64_t rollout_row_id, const std::string& target, const v1::Stage& stage);

  // Ids of rollouts of the same model, in a state that ClaimsDevices, whose targets share a
  // device with `target` (or where either selects everything).
  Expected<std::vector<int64_t>> Conflicting(db::Tx& tx, int64_t model_id, const std::string& target,
                                             std::optional<int64_t> except_row_id);

 private:
  Expected<v1::Rollout> Act(const v1::RolloutActionRequest& request, const auth::Principal& caller, RolloutVerb verb,
                            const std::string& kind, bool advance_stage);

  void NotifyRolloutsChanged() const {
    if (listeners_.rollouts_changed) listeners_.rollouts_changed();
  }

  db::Pool& pool_;
  const RolloutOptions options_;
  Listeners listeners_;
};

}  // namespace modelfleet::fleet
