#include "fleet/rollout_controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "fleet/deployment_state.h"
#include "fleet/rollout_state.h"
#include "events/event_log.h"

namespace modelfleet::fleet {

RolloutController::RolloutController(db::Pool& pool, RolloutManager& rollouts, std::chrono::milliseconds interval,
                                     std::chrono::milliseconds cohort_recount_interval)
    : pool_(pool), rollouts_(rollouts), interval_(interval), cohort_recount_interval_(cohort_recount_interval) {}

RolloutController::~RolloutController() { Stop(); }

void RolloutController::Start() { thread_ = std::thread([this] { Run(); }); }

void RolloutController::Stop() {
  stop_ = true;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RolloutController::Run() {
  auto sleep = [&] {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, interval_, [&] { return stop_.load(); });
  };
  while (!stop_) {
    Status s = pool_.WithSession([&](db::Session& session) -> Status {
      MF_ASSIGN_OR_RETURN(auto locked, session.ExecAutocommit("SELECT pg_try_advisory_lock($1)", {kControllerLockKey}));
      if (!locked[0].Bool(0)) return Status::Ok();  // another replica leads
      leader_ = true;
      spdlog::info("rollout controller: this replica leads");
      while (!stop_) {
        // Still holding the lock? (The connection may have broken.)
        MF_RETURN_IF_ERROR(StatusOf(session.ExecAutocommit("SELECT 1")));
        auto made = Tick();
        if (!made) spdlog::warn("rollout controller tick failed: {}", made.error().ToString());
        sleep();
      }
      return Status::Ok();
    });
    if (leader_) spdlog::info("rollout controller: leadership released ({})", s.ToString());
    leader_ = false;
    if (!s.ok()) spdlog::warn("rollout controller: {}", s.ToString());
    sleep();
  }
}

Expected<int> RolloutController::Tick() {
  std::lock_guard tick_lock(tick_mu_);
  int transitions = 0;
  // (1) Every in-progress deployment reaches a terminal state.
  bool any_timed_out = false;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto timed_out, tx.Exec(
        "UPDATE deployments dp SET step = $1, reason = 'no progress within ' || r.deployment_timeout_seconds || ' s', "
        "updated_at = now() FROM rollouts r WHERE dp.rollout_id = r.id "
        "AND dp.step IN " MF_IN_PROGRESS_STEPS_SQL " "
        "AND dp.updated_at < now() - make_interval(secs => r.deployment_timeout_seconds) "
        // The same bound with the shortest timeout of all: a constant for the planner, so only
        // the rows old enough to time out are visited (deployments_updated_at), not every
        // deployment under way in the fleet on every tick.
        "AND dp.updated_at < now() - make_interval(secs => (SELECT coalesce(min(deployment_timeout_seconds), 0) "
        "FROM rollouts)) RETURNING dp.id, dp.rollout_id, (SELECT device_id FROM devices WHERE id = dp.device_id)",
        {std::string(StepName(v1::DEPLOYMENT_STEP_TIMED_OUT))}));
    if (!timed_out.empty()) spdlog::info("timed out {} deployment(s)", timed_out.size());
    any_timed_out = !timed_out.empty();
    // One deployment.timed_out event per rollout and tick, not one per device: a stalled
    // stage may time out thousands at once. It names the first kMaxDevicesNamed devices.
    constexpr size_t kMaxDevicesNamed = 100;
    std::map<int64_t, std::vector<std::string>> by_rollout;
    std::map<int64_t, int64_t> counts;
    for (const auto& row : timed_out) {
      auto& devices = by_rollout[row.Int(1)];
      if (devices.size() < kMaxDevicesNamed) devices.push_back(row.Str(2));
      ++counts[row.Int(1)];
    }
    for (const auto& [rollout_row_id, devices] : by_rollout) {
      MF_RETURN_IF_ERROR(StatusOf(events::AppendEvent(
          tx, {"deployment.timed_out", "controller", "rollout", RolloutManager::RolloutId(rollout_row_id),
               events::Payload().Int("count", counts[rollout_row_id]).StrList("device_ids", devices)})));
    }
    return Status::Ok();
  }));
  if (any_timed_out) rollouts_.NotifyDeploymentsChanged();
  // (2) and (3).
  struct Active {
    int64_t row_id = 0, model_id = 0;
    v1::RolloutState state = v1::ROLLOUT_STATE_UNSPECIFIED;
  };
  std::vector<Active> active;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    // The rollouts this controller moves by itself (QUEUED, RUNNING).
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, model_id, state FROM rollouts WHERE state = ANY($1::text[]) ORDER BY id",
        {RolloutStatesSqlArray(MovedByController())}));
    for (const auto& row : rows) {
      auto state = RolloutStateFromName(row.Str(2));
      if (!state) return Internal("rollout " + RolloutManager::RolloutId(row.Int(0)) + " has unknown state " + row.Str(2));
      active.push_back({row.Int(0), row.Int(1), *state});
    }
    return Status::Ok();
  }));
  for (const auto& [row_id, model_id, state] : active) {
    v1::Rollout rollout;
    MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(rollout, rollouts_.Load(tx, row_id));
      if (state == v1::ROLLOUT_STATE_RUNNING) {
        CohortCount& count = cohort_counts_[row_id];
        const auto now = std::chrono::steady_clock::now();
        if (count.cutoff != rollout.cohort_cutoff() || now - count.counted >= cohort_recount_interval_) {
          MF_ASSIGN_OR_RETURN(count.devices, rollouts_.CountCohort(tx, rollout));
          count.cutoff = rollout.cohort_cutoff();
          count.counted = now;
        }
        MF_ASSIGN_OR_RETURN(*rollout.mutable_progress(), rollouts_.Progress(tx, row_id, count.devices));
      }
      return Status::Ok();
    }));
    if (state == v1::ROLLOUT_STATE_QUEUED) {
      std::vector<int64_t> conflicts;
      MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
        MF_ASSIGN_OR_RETURN(conflicts, rollouts_.Conflicting(tx, model_id, rollout.target(), row_id));
        return Status::Ok();
      }));
      if (!conflicts.empty()) continue;
      TransitionSpec spec{rollout.stages(0).requires_approval() ? RolloutVerb::kAwaitApproval : RolloutVerb::kStart,
                          {v1::ROLLOUT_STATE_QUEUED}, "dequeued", "controller", "no conflicting rollout any more",
                          false};
      MF_ASSIGN_OR_RETURN(bool made, rollouts_.Transition(row_id, 0, spec));
      transitions += made;
      continue;
    }
    MF_ASSIGN_OR_RETURN(int made, JudgeRunning(rollout, row_id));
    transitions += made;
  }
  std::erase_if(cohort_counts_, [&](const auto& entry) {
    return std::none_of(active.begin(), active.end(), [&](const Active& a) { return a.row_id == entry.first; });
  });
  return transitions;
}

Expected<int> RolloutController::JudgeRunning(const v1::Rollout& r, int64_t row_id) {
  const int stage_index = static_cast<int>(r.current_stage());
  const v1::Stage& stage = r.stages(stage_index);
  const v1::HealthGates& gates = stage.gates();
  const v1::StageProgress& p = r.progress();

  // Gates first: a broken gate stops the rollout whatever else holds.
  std::string broken;
  if (gates.max_failure_ratio() > 0 && p.devices() > 0 &&
      static_cast<double>(p.failed()) / p.devices() > gates.max_failure_ratio()) {
    broken = "failure ratio " + std::to_string(static_cast<double>(p.failed()) / p.devices()) + " > " +
             std::to_string(gates.max_failure_ratio()) + " (" + std::to_string(p.failed()) + " of " +
             std::to_string(p.devices()) + " devices failed)";
  } else if (p.inferences() > 0 && p.inferences() >= gates.min_inferences()) {
    if (gates.max_error_ratio() > 0 && p.error_ratio() > gates.max_error_ratio()) {
      broken = "on-device error ratio " + std::to_string(p.error_ratio()) + " > " + std::to_string(gates.max_error_ratio());
    } else if (gates.max_p95_latency_ms() > 0 && p.p95_latency_ms() > gates.max_p95_latency_ms()) {
      broken = "on-device p95 latency " + std::to_string(p.p95_latency_ms()) + " ms > " +
               std::to_string(gates.max_p95_latency_ms()) + " ms";
    } else if (gates.max_class_shift() > 0 && p.class_shift() > gates.max_class_shift()) {
      broken = "class distribution shift " + std::to_string(p.class_shift()) + " > " +
               std::to_string(gates.max_class_shift());
    }
  }
  if (!broken.empty()) {
    const bool rollback = r.auto_rollback();
    TransitionSpec spec{rollback ? RolloutVerb::kGateRollback : RolloutVerb::kGatePause, {v1::ROLLOUT_STATE_RUNNING},
                        rollback ? "gate_rolled_back" : "gate_paused", "gate:stage-" + std::to_string(stage_index),
                        broken, false};
    MF_ASSIGN_OR_RETURN(bool made, rollouts_.Transition(row_id, stage_index, spec));
    if (made) spdlog::warn("rollout {} {} by its gate: {}", r.rollout_id(), rollback ? "rolled back" : "paused", broken);
    return made ? 1 : 0;
  }

  // Advance when enough of the stage has activated and the soak time is over.
  if (p.devices() == 0) return 0;
  const double activated_share = static_cast<double>(p.activated()) / p.devices();
  if (activated_share < stage.success_threshold()) return 0;
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  if (now_s - r.stage_start_time().seconds() < static_cast<int64_t>(stage.soak_seconds())) return 0;
  if (gates.min_inferences() > 0 && p.inferences() < gates.min_inferences()) return 0;  // not judged yet

  const std::string why = std::to_string(p.activated()) + " of " + std::to_string(p.devices()) +
                          " devices activated, gates held for " + std::to_string(stage.soak_seconds()) + " s";
  TransitionSpec spec{RolloutVerb::kAdvance, {v1::ROLLOUT_STATE_RUNNING}, "stage_advanced", "controller", why, true};
  if (stage_index + 1 >= r.stages_size()) {
    spec = {RolloutVerb::kComplete, {v1::ROLLOUT_STATE_RUNNING}, "completed", "controller", why, false};
  } else if (r.stages(stage_index + 1).requires_approval()) {
    spec = {RolloutVerb::kAwaitApproval, {v1::ROLLOUT_STATE_RUNNING}, "waiting_approval", "controller", why, false};
  }
  MF_ASSIGN_OR_RETURN(bool made, rollouts_.Transition(row_id, stage_index, spec));
  if (made) spdlog::info("rollout {} stage {}: {} ({})", r.rollout_id(), stage_index, spec.kind, why);
  return made ? 1 : 0;
}

}  // namespace modelfleet::fleet
