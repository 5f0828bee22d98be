#include "fleet/rollout_manager.h"

#include <cmath>
#include <map>

#include "fleet/cohort.h"
#include "fleet/deployment_state.h"
#include "fleet/device_selector.h"
#include "fleet/rollout_state.h"
#include "events/event_log.h"
#include "modelfleet/crypto.h"
#include "modelfleet/validation.h"
#include "util/time.h"

namespace modelfleet::fleet {

namespace {

constexpr int kMaxStages = 20;
constexpr uint32_t kMaxSoakSeconds = 30 * 24 * 3600;

const char* const kRolloutColumns =
    "r.id, m.name, v.version, r.target, r.stages, r.current_stage, r.state, r.state_reason, r.cohort_cutoff, "
    "r.auto_rollback, r.deployment_timeout_seconds, r.created_by, " MF_EPOCH_MICROS("r.created_at") ", " MF_EPOCH_MICROS(
        "r.stage_started_at") ", r.model_id";
const char* const kRolloutFrom = " FROM rollouts r JOIN models m ON m.id = r.model_id JOIN model_versions v ON v.id = r.version_id ";

Expected<v1::Rollout> RolloutFromRow(const db::Row& row) {
  v1::Rollout r;
  r.set_rollout_id(RolloutManager::RolloutId(row.Int(0)));
  r.set_model(row.Str(1));
  r.set_version(row.Str(2));
  r.set_target(row.Str(3));
  v1::CreateRolloutRequest stages;
  if (!stages.ParseFromString(row.Bytea(4))) return Fail(Internal("stored stages of " + r.rollout_id() + " are corrupt"));
  *r.mutable_stages() = stages.stages();
  r.set_current_stage(static_cast<uint32_t>(row.Int(5)));
  // A state this server does not know (written by a newer one) reads as UNSPECIFIED: listed,
  // but no verb applies to it.
  r.set_state(RolloutStateFromName(row.Str(6)).value_or(v1::ROLLOUT_STATE_UNSPECIFIED));
  r.set_state_reason(row.Str(7));
  r.set_cohort_cutoff(row.Double(8));
  r.set_auto_rollback(row.Bool(9));
  r.set_deployment_timeout_seconds(static_cast<uint32_t>(row.Int(10)));
  r.set_created_by(row.Str(11));
  SetTimestamp(row.OptInt(12), r.mutable_create_time());
  SetTimestamp(row.OptInt(13), r.mutable_stage_start_time());
  return r;
}

Status ValidateRatio(double v, const std::string& field, bool allow_zero = true) {
  if (!std::isfinite(v) || v < 0 || v > 1 || (!allow_zero && v == 0)) {
    return InvalidArgument(field, allow_zero ? "must be between 0 and 1" : "must be in (0, 1]");
  }
  return Status::Ok();
}

Status ValidateStages(const google::protobuf::RepeatedPtrField<v1::Stage>& stages) {
  if (stages.empty()) return InvalidArgument("stages", "at least one stage is required");
  if (stages.size() > kMaxStages) return InvalidArgument("stages", "has more than " + std::to_string(kMaxStages) + " stages");
  double previous = 0;
  for (int i = 0; i < stages.size(); ++i) {
    const v1::Stage& s = stages[i];
    const std::string f = "stages[" + std::to_string(i) + "]";
    if (!std::isfinite(s.percent()) || s.percent() <= 0 || s.percent() > 100) {
      return InvalidArgument(f + ".percent", "must be in (0, 100]");
    }
    if (s.percent() <= previous) {
      return InvalidArgument(f + ".percent", "must be larger than the previous stage's (" + std::to_string(previous) + ")");
    }
    previous = s.percent();
    if (s.min_devices() > 10'000'000) return InvalidArgument(f + ".min_devices", "is too large");
    if (s.soak_seconds() > kMaxSoakSeconds) return InvalidArgument(f + ".soak_seconds", "must be at most 30 days");
    MF_RETURN_IF_ERROR(ValidateRatio(s.success_threshold(), f + ".success_threshold", /*allow_zero=*/false));
    const auto& g = s.gates();
    MF_RETURN_IF_ERROR(ValidateRatio(g.max_failure_ratio(), f + ".gates.max_failure_ratio"));
    MF_RETURN_IF_ERROR(ValidateRatio(g.max_error_ratio(), f + ".gates.max_error_ratio"));
    MF_RETURN_IF_ERROR(ValidateRatio(g.max_class_shift(), f + ".gates.max_class_shift"));
    if (!std::isfinite(g.max_p95_latency_ms()) || g.max_p95_latency_ms() < 0) {
      return InvalidArgument(f + ".gates.max_p95_latency_ms", "must be >= 0 (0: no limit)");
    }
  }
  return Status::Ok();
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

// The state `spec` moves a rollout to: its verb's target from each of its from_states, which
// must agree (a mistake of the caller's otherwise, not a state of the rollout's).
Expected<v1::RolloutState> TargetOf(const TransitionSpec& spec) {
  std::optional<v1::RolloutState> target;
  for (v1::RolloutState from : spec.from_states) {
    auto to = Next(from, spec.verb);
    if (!to) return Fail(Internal("transition spec: " + to.error().message()));
    if (target && *target != *to) {
      return Fail(Internal("transition spec: " + std::string(RolloutVerbName(spec.verb)) + " leads to different states"));
    }
    target = *to;
  }
  if (!target) return Fail(Internal("transition spec: " + std::string(RolloutVerbName(spec.verb)) + " from no state"));
  return *target;
}

// What each transition kind (TransitionSpec::kind) records in the event log: its type, and for
// the controller's judgements of a stage, the gates' verdict, recorded first as its own
// rollout.gate_verdict event.
struct TransitionEvent {
  std::string_view kind, type, gate_verdict;
};
constexpr TransitionEvent kTransitionEvents[] = {
    {"paused", "rollout.paused", ""},
    {"resumed", "rollout.resumed", ""},
    {"approved", "rollout.approved", ""},
    {"aborted", "rollout.aborted", ""},
    {"rolled_back", "rollout.rolled_back", ""},
    {"dequeued", "rollout.dequeued", ""},
    {"gate_paused", "rollout.paused", "failed"},
    {"gate_rolled_back", "rollout.rolled_back", "failed"},
    {"stage_advanced", "rollout.stage_advanced", "passed"},
    {"waiting_approval", "rollout.waiting_approval", "passed"},
    {"completed", "rollout.completed", "passed"},
};

Expected<TransitionEvent> EventOf(std::string_view kind) {
  for (const TransitionEvent& e : kTransitionEvents) {
    if (e.kind == kind) return e;
  }
  return Fail(Internal("transition kind '" + std::string(kind) + "' has no event type"));
}

events::Payload RolloutPayload(const v1::Rollout& r) {
  return std::move(events::Payload().Str("model", r.model()).Str("version", r.version()));
}

}  // namespace

Expected<int64_t> RolloutManager::ParseRolloutId(const std::string& rollout_id, const std::string& field) {
  return util::ParsePrefixedId(rollout_id, kRolloutIdPrefix, field, "rollout");
}

Expected<v1::Rollout> RolloutManager::Load(db::Tx& tx, int64_t row_id) {
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(std::string("SELECT ") + kRolloutColumns + kRolloutFrom + "WHERE r.id = $1", {row_id}));
  if (rows.empty()) return Fail(NotFound("rollout " + RolloutId(row_id) + " does not exist"));
  return RolloutFromRow(rows[0]);
}

Expected<double> RolloutManager::ComputeCutoff(db::Tx& tx, int64_t row_id, const std::string& target,
                                               const v1::Stage& stage) {
  if (stage.percent() >= 100) return 1.0;
  MF_ASSIGN_OR_RETURN(auto selector, DeviceSelector::Parse(target, SelectorKind::kRolloutTarget, "target"));
  std::vector<db::Param> params;
  std::string where = selector.ToSql(params);
  params.push_back(RolloutId(row_id));
  std::string bucket = CohortBucketSql("d.device_id", "$" + std::to_string(params.size()) + "::text");
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " + bucket + " AS b FROM devices d WHERE d.admission = 'ACCEPTED' AND (" +
                                             where + ") ORDER BY b",
                                         params));
  const double floor = stage.percent() / 100.0;
  const size_t total = rows.size();
  size_t need = static_cast<size_t>(std::ceil(floor * static_cast<double>(total)));
  need = std::min<size_t>(std::max<size_t>(need, stage.min_devices()), total);
  if (need == 0) return floor;
  if (need == total) return 1.0;
  // Just above the need-th smallest bucket, so exactly the first `need` devices are inside
  // (devices enrolling later join when their bucket falls below it).
  return std::nextafter(rows[need - 1].Double(0), 2.0);
}

Expected<std::vector<int64_t>> RolloutManager::Conflicting(db::Tx& tx, int64_t model_id, const std::string& target,
                                                           std::optional<int64_t> except_row_id) {
  MF_ASSIGN_OR_RETURN(auto mine, DeviceSelector::Parse(target, SelectorKind::kRolloutTarget, "target"));
  MF_ASSIGN_OR_RETURN(auto others, tx.Exec(
      "SELECT id, target FROM rollouts WHERE model_id = $1 AND state = ANY($2::text[]) AND id <> $3 ORDER BY id",
      {model_id, RolloutStatesSqlArray(RolloutStatesWhere(ClaimsDevices)), except_row_id.value_or(0)}));
  std::vector<int64_t> conflicts;
  for (const auto& other : others) {
    auto theirs = DeviceSelector::Parse(other.Str(1), SelectorKind::kRolloutTarget, "target");
    if (!theirs || mine.MatchesEverything() || theirs->MatchesEverything() || other.Str(1) == target) {
      conflicts.push_back(other.Int(0));
      continue;
    }
    std::vector<db::Param> params;
    std::string a = mine.ToSql(params);
    std::string b = theirs->ToSql(params);
    MF_ASSIGN_OR_RETURN(auto shared, tx.Exec("SELECT EXISTS (SELECT 1 FROM devices d WHERE d.admission <> 'DECOMMISSIONED' AND (" +
                                                 a + ") AND (" + b + "))",
                                             params));
    if (shared[0].Bool(0)) conflicts.push_back(other.Int(0));
  }
  return conflicts;
}

Expected<v1::Rollout> RolloutManager::Create(const v1::CreateRolloutRequest& request, const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateSemVer(request.version(), "version"));
  MF_ASSIGN_OR_RETURN(auto selector, DeviceSelector::Parse(request.target(), SelectorKind::kRolloutTarget, "target"));
  (void)selector;
  MF_RETURN_IF_ERROR(ValidateStages(request.stages()));
  if (request.deployment_timeout_seconds() > 7 * 24 * 3600) {
    return Fail(InvalidArgument("deployment_timeout_seconds", "must be at most 7 days (0: the server default)"));
  }
  const uint32_t timeout = request.deployment_timeout_seconds() ? request.deployment_timeout_seconds()
                                                                 : options_.default_deployment_timeout_seconds;
  v1::CreateRolloutRequest stages_only;
  *stages_only.mutable_stages() = request.stages();
  int64_t row_id = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto version, tx.Exec(
        "SELECT m.id, v.id, v.state FROM models m LEFT JOIN model_versions v ON v.model_id = m.id AND v.version = $2 "
        "WHERE m.name = $1 FOR UPDATE OF m",
        {request.model(), request.version()}));
    if (version.empty()) return NotFound("model '" + request.model() + "' does not exist").WithField("model");
    if (version[0].IsNull(1)) {
      return NotFound("version " + request.version() + " of model '" + request.model() + "' does not exist")
          .WithField("version");
    }
    if (version[0].Str(2) != "READY") {
      return FailedPrecondition("version " + request.version() + " is " + version[0].Str(2) + "; only READY versions roll out");
    }
    const int64_t model_id = version[0].Int(0);
    MF_ASSIGN_OR_RETURN(auto conflicts, Conflicting(tx, model_id, request.target(), std::nullopt));
    v1::RolloutState state = v1::ROLLOUT_STATE_RUNNING;
    if (!conflicts.empty()) {
      std::vector<std::string> names;
      for (int64_t c : conflicts) names.push_back(RolloutId(c));
      if (!request.queue_if_conflicting()) {
        return FailedPrecondition("rollout(s) " + Join(names) + " of model '" + request.model() +
                                  "' already target some of these devices; finish, abort or roll them back first, "
                                  "or set queue_if_conflicting");
      }
      state = v1::ROLLOUT_STATE_QUEUED;
    } else if (request.stages(0).requires_approval()) {
      state = v1::ROLLOUT_STATE_WAITING_APPROVAL;
    }
    const std::string state_name(RolloutStateName(state));
    MF_ASSIGN_OR_RETURN(auto inserted, tx.Exec(
        "INSERT INTO rollouts (model_id, version_id, target, stages, state, auto_rollback, deployment_timeout_seconds, "
        "created_by) VALUES ($1, $2, $3, $4::bytea, $5, $6, $7, $8) RETURNING id",
        {model_id, version[0].Int(1), request.target(), db::Bytes{stages_only.SerializeAsString()}, state_name,
         request.auto_rollback(), static_cast<int64_t>(timeout), caller.Actor()}));
    row_id = inserted[0].Int(0);
    double cutoff = 0;
    if (state == v1::ROLLOUT_STATE_RUNNING) {
      MF_ASSIGN_OR_RETURN(cutoff, ComputeCutoff(tx, row_id, request.target(), request.stages(0)));
    }
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec("UPDATE rollouts SET cohort_cutoff = $2 WHERE id = $1", {row_id, cutoff})));
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
        "INSERT INTO rollout_events (rollout_id, kind, from_state, to_state, stage, actor, reason) "
        "VALUES ($1, 'created', '', $2, 0, $3, $4)",
        {row_id, state_name, caller.Actor(),
         state == v1::ROLLOUT_STATE_QUEUED ? "queued behind a conflicting rollout" : "target " + request.target()})));
    return StatusOf(events::AppendEvent(tx, {"rollout.created", caller.Actor(), "rollout", RolloutId(row_id),
                                             events::Payload()
                                                 .Str("model", request.model())
                                                 .Str("version", request.version())
                                                 .Str("target", request.target())
                                                 .Str("state", state_name)
                                                 .Int("stages", request.stages_size())
                                                 .Bool("auto_rollback", request.auto_rollback())}));
  }));
  NotifyRolloutsChanged();
  return Get(RolloutId(row_id));
}

Expected<uint32_t> RolloutManager::CountCohort(db::Tx& tx, const v1::Rollout& r) {
  MF_ASSIGN_OR_RETURN(auto selector, DeviceSelector::Parse(r.target(), SelectorKind::kRolloutTarget, "target"));
  std::vector<db::Param> params;
  std::string where = selector.ToSql(params);
  params.push_back(r.rollout_id());
  params.push_back(r.cohort_cutoff());
  const std::string n = std::to_string(params.size());
  MF_ASSIGN_OR_RETURN(auto devices, tx.Exec(
      "SELECT count(*) FROM devices d WHERE d.admission = 'ACCEPTED' AND (" + where + ") AND " +
          CohortBucketSql("d.device_id", "$" + std::to_string(params.size() - 1) + "::text") + " < $" + n + "::float8",
      params));
  return static_cast<uint32_t>(devices[0].Int(0));
}

Expected<v1::StageProgress> RolloutManager::Progress(db::Tx& tx, int64_t row_id, std::optional<uint32_t> cohort_devices) {
  MF_ASSIGN_OR_RETURN(v1::Rollout r, Load(tx, row_id));
  v1::StageProgress p;
  if (!cohort_devices) {
    MF_ASSIGN_OR_RETURN(cohort_devices, CountCohort(tx, r));
  }
  p.set_devices(*cohort_devices);
  MF_ASSIGN_OR_RETURN(auto steps, tx.Exec(
      "SELECT step, count(*) FROM deployments WHERE rollout_id = $1 AND NOT is_rollback GROUP BY step", {row_id}));
  for (const auto& s : steps) {
    v1::DeploymentStep step = StepFromName(s.Str(0));
    auto count = static_cast<uint32_t>(s.Int(1));
    if (step == v1::DEPLOYMENT_STEP_ACTIVATED) {
      p.set_activated(p.activated() + count);
    } else if (IsFailure(step)) {
      p.set_failed(p.failed() + count);
    } else {
      p.set_in_progress(p.in_progress() + count);
    }
  }
  // Telemetry from the rollout's arm of telemetry_windows (fleet/write_behind.h): what the
  // devices of its cohort reported while the cohort held them. The new version's figures are
  // the arm's windows of it; "before" is the same arm on any other version of the model, that
  // is the same devices on what they ran since they joined the cohort (and what they return
  // to after a rollback).
  MF_ASSIGN_OR_RETURN(auto totals, tx.Exec(
      "SELECT coalesce(sum(inference_count), 0)::bigint, coalesce(sum(error_count), 0)::bigint, "
      "coalesce(sum(p95_weighted_ms), 0)::float8 FROM telemetry_windows "
      "WHERE rollout_id = $1 AND model = $2 AND version = $3",
      {row_id, r.model(), r.version()}));
  const int64_t inferences = totals[0].Int(0);
  p.set_inferences(static_cast<uint64_t>(inferences));
  if (inferences > 0) {
    p.set_error_ratio(static_cast<double>(totals[0].Int(1)) / static_cast<double>(inferences));
    p.set_p95_latency_ms(totals[0].Double(2) / static_cast<double>(inferences));
  }
  // Class distribution of the new version against what the same devices ran before.
  MF_ASSIGN_OR_RETURN(auto hist, tx.Exec(
      "SELECT w.version = $3, h.key, sum(h.value::bigint)::bigint FROM telemetry_windows w, "
      "jsonb_each_text(w.class_histogram) h WHERE w.rollout_id = $1 AND w.model = $2 GROUP BY 1, 2",
      {row_id, r.model(), r.version()}));
  std::map<std::string, std::pair<double, double>> dist;
  double new_total = 0, old_total = 0;
  for (const auto& row : hist) {
    const auto count = static_cast<double>(row.Int(2));
    if (row.Bool(0)) {
      dist[row.Str(1)].first += count;
      new_total += count;
    } else {
      dist[row.Str(1)].second += count;
      old_total += count;
    }
  }
  if (new_total > 0 && old_total > 0) {
    double tvd = 0;
    for (const auto& [k, v] : dist) tvd += std::abs(v.first / new_total - v.second / old_total);
    p.set_class_shift(tvd / 2);
  }
  return p;
}

Expected<v1::Rollout> RolloutManager::Get(const std::string& rollout_id) {
  MF_ASSIGN_OR_RETURN(int64_t row_id, ParseRolloutId(rollout_id, "rollout_id"));
  v1::Rollout rollout;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(rollout, Load(tx, row_id));
    MF_ASSIGN_OR_RETURN(*rollout.mutable_progress(), Progress(tx, row_id));
    MF_ASSIGN_OR_RETURN(auto steps, tx.Exec(
        "SELECT step, count(*) FROM deployments WHERE rollout_id = $1 GROUP BY step", {row_id}));
    for (const auto& s : steps) (*rollout.mutable_devices_by_step())[s.Str(0)] = static_cast<uint64_t>(s.Int(1));
    return Status::Ok();
  }));
  return rollout;
}

Expected<v1::ListRolloutsResponse> RolloutManager::List(const v1::ListRolloutsRequest& request) {
  if (!request.model().empty()) MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  if (request.page_size() < 0 || request.page_size() > 1000) {
    return Fail(InvalidArgument("page_size", "must be between 0 and 1000"));
  }
  const int page_size = request.page_size() ? request.page_size() : 50;
  int64_t before = INT64_MAX;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(before, ParseRolloutId(request.page_token(), "page_token"));
  }
  v1::ListRolloutsResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(std::string("SELECT ") + kRolloutColumns + kRolloutFrom +
                                               "WHERE ($1 = '' OR m.name = $1) AND r.id < $2 ORDER BY r.id DESC LIMIT $3",
                                           {request.model(), before, static_cast<int64_t>(page_size) + 1}));
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      MF_ASSIGN_OR_RETURN(*response.add_rollouts(), RolloutFromRow(rows[i]));
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(response.rollouts().rbegin()->rollout_id());
    }
    return Status::Ok();
  }));
  return response;
}

Expected<std::vector<std::pair<int64_t, v1::RolloutEvent>>> RolloutManager::EventsAfter(const std::string& rollout_id,
                                                                                       int64_t after_event_id) {
  MF_ASSIGN_OR_RETURN(int64_t row_id, ParseRolloutId(rollout_id, "rollout_id"));
  std::vector<std::pair<int64_t, v1::RolloutEvent>> events;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, " MF_EPOCH_MICROS("at") ", kind, actor, reason, from_state, to_state, stage FROM rollout_events "
        "WHERE rollout_id = $1 AND id > $2 ORDER BY id LIMIT 1000",
        {row_id, after_event_id}));
    for (const auto& row : rows) {
      v1::RolloutEvent e;
      SetTimestamp(row.OptInt(1), e.mutable_time());
      e.set_rollout_id(rollout_id);
      e.set_kind(row.Str(2));
      e.set_actor(row.Str(3));
      std::string reason = row.Str(4);
      e.set_reason(row.Str(5) + " -> " + row.Str(6) + " (stage " + std::to_string(row.Int(7)) + ")" +
                   (reason.empty() ? "" : ": " + reason));
      events.emplace_back(row.Int(0), std::move(e));
    }
    return Status::Ok();
  }));
  return events;
}

Expected<bool> RolloutManager::Transition(int64_t row_id, int expected_stage, const TransitionSpec& spec) {
  MF_ASSIGN_OR_RETURN(const v1::RolloutState to, TargetOf(spec));
  MF_ASSIGN_OR_RETURN(const TransitionEvent event, EventOf(spec.kind));
  const std::string to_name(RolloutStateName(to));
  bool made = false;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(v1::Rollout r, Load(tx, row_id));
    int new_stage = expected_stage + (spec.advance_stage ? 1 : 0);
    double cutoff = r.cohort_cutoff();
    if (spec.advance_stage || (to == v1::ROLLOUT_STATE_RUNNING && cutoff == 0)) {
      if (new_stage >= r.stages_size()) return Internal("no stage " + std::to_string(new_stage) + " to advance to");
      MF_ASSIGN_OR_RETURN(cutoff, ComputeCutoff(tx, row_id, r.target(), r.stages(new_stage)));
    }
    MF_ASSIGN_OR_RETURN(auto updated, tx.Exec(
        "UPDATE rollouts SET state = $2, state_reason = $3, current_stage = $4, cohort_cutoff = $5, updated_at = now(), "
        "stage_started_at = CASE WHEN $6::boolean THEN now() ELSE stage_started_at END "
        "WHERE id = $1 AND state = ANY($7::text[]) AND current_stage = $8 RETURNING id",
        {row_id, to_name, spec.reason, static_cast<int64_t>(new_stage), cutoff,
         spec.advance_stage || (to == v1::ROLLOUT_STATE_RUNNING && r.cohort_cutoff() == 0),
         RolloutStatesSqlArray(spec.from_states), static_cast<int64_t>(expected_stage)}));
    if (updated.empty()) return Status::Ok();  // someone else moved it first
    made = true;
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
        "INSERT INTO rollout_events (rollout_id, kind, from_state, to_state, stage, actor, reason) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {row_id, spec.kind, std::string(RolloutStateName(r.state())), to_name, static_cast<int64_t>(new_stage),
         spec.actor, spec.reason})));
    if (IsTerminal(to)) {
      // Forward deployments still under way will not be finished.
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
          "UPDATE deployments SET step = $3, reason = $2, updated_at = now() WHERE rollout_id = $1 "
          "AND NOT is_rollback AND step IN " MF_IN_PROGRESS_STEPS_SQL,
          {row_id, "rollout " + to_name, std::string(StepName(v1::DEPLOYMENT_STEP_CANCELLED))})));
    }
    // The events last (AppendEvent's REQUIRES).
    const std::string from_name(RolloutStateName(r.state()));
    if (!event.gate_verdict.empty()) {
      MF_RETURN_IF_ERROR(StatusOf(events::AppendEvent(
          tx, {"rollout.gate_verdict", "gate:stage-" + std::to_string(expected_stage), "rollout", RolloutId(row_id),
               RolloutPayload(r)
                   .Int("stage", expected_stage)
                   .Str("verdict", event.gate_verdict)
                   .Str("action", spec.kind)
                   .Str("detail", spec.reason)})));
    }
    return StatusOf(events::AppendEvent(tx, {event.type, spec.actor, "rollout", RolloutId(row_id),
                                             RolloutPayload(r)
                                                 .Str("from_state", from_name)
                                                 .Str("to_state", to_name)
                                                 .Int("stage", new_stage)
                                                 .Str("reason", spec.reason)}));
  }));
  if (made) {
    NotifyRolloutsChanged();
    if (IsTerminal(to)) NotifyDeploymentsChanged();
  }
  return made;
}

Expected<v1::Rollout> RolloutManager::Act(const v1::RolloutActionRequest& request, const auth::Principal& caller,
                                          RolloutVerb verb, const std::string& kind, bool advance_stage) {
  MF_ASSIGN_OR_RETURN(int64_t row_id, ParseRolloutId(request.rollout_id(), "rollout_id"));
  MF_RETURN_IF_ERROR(ValidateText(request.reason(), 1024, "reason"));
  v1::Rollout current;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(current, Load(tx, row_id));
    return Status::Ok();
  }));
  // FAILED_PRECONDITION naming the state and the states the verb applies to.
  MF_RETURN_IF_ERROR(StatusOf(Next(current.state(), verb, "rollout " + request.rollout_id())));
  bool advance = advance_stage;
  if (verb == RolloutVerb::kApprove && current.current_stage() == 0 && current.cohort_cutoff() == 0) {
    advance = false;  // approving the first stage starts it rather than advancing past it
  }
  if (advance && static_cast<int>(current.current_stage()) + 1 >= current.stages_size()) {
    return Fail(FailedPrecondition("rollout " + request.rollout_id() + " has no stage after " +
                                   std::to_string(current.current_stage())));
  }
  TransitionSpec spec{verb, AllowedSources(verb), kind, caller.Actor(), request.reason(), advance};
  MF_ASSIGN_OR_RETURN(bool made, Transition(row_id, static_cast<int>(current.current_stage()), spec));
  if (!made) return Fail(Status(StatusCode::kAborted, "rollout " + request.rollout_id() + " changed meanwhile; retry"));
  return Get(request.rollout_id());
}

Expected<v1::Rollout> RolloutManager::Pause(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  return Act(request, caller, RolloutVerb::kPause, "paused", false);
}

Expected<v1::Rollout> RolloutManager::Resume(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  return Act(request, caller, RolloutVerb::kResume, "resumed", false);
}

Expected<v1::Rollout> RolloutManager::Approve(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  return Act(request, caller, RolloutVerb::kApprove, "approved", true);
}

Expected<v1::Rollout> RolloutManager::Abort(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  return Act(request, caller, RolloutVerb::kAbort, "aborted", false);
}

Expected<v1::Rollout> RolloutManager::Rollback(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  return Act(request, caller, RolloutVerb::kRollback, "rolled_back", false);
}

Expected<v1::Rollout> RolloutManager::RetryFailed(const v1::RolloutActionRequest& request, const auth::Principal& caller) {
  MF_ASSIGN_OR_RETURN(int64_t row_id, ParseRolloutId(request.rollout_id(), "rollout_id"));
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(v1::Rollout r, Load(tx, row_id));
    // FAILED_PRECONDITION unless retry applies; it leaves the rollout's state as it is.
    MF_ASSIGN_OR_RETURN(const v1::RolloutState state, Next(r.state(), RolloutVerb::kRetry, "rollout " + request.rollout_id()));
    // The failed deployments: those the server may assign again.
    MF_ASSIGN_OR_RETURN(auto retried, tx.Exec(
        "UPDATE deployments SET step = $2, attempt = attempt + 1, reason = '', bytes_done = 0, updated_at = now() "
        "WHERE rollout_id = $1 AND NOT is_rollback AND step = ANY($3::text[]) RETURNING id",
        {row_id, std::string(StepName(v1::DEPLOYMENT_STEP_ASSIGNED)),
         StepsSqlArray(LegalSources(v1::DEPLOYMENT_STEP_ASSIGNED, TransitionBy::kServer))}));
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
        "INSERT INTO rollout_events (rollout_id, kind, from_state, to_state, stage, actor, reason) "
        "VALUES ($1, 'retry_failed', $2, $2, $3, $4, $5)",
        {row_id, std::string(RolloutStateName(state)), static_cast<int64_t>(r.current_stage()), caller.Actor(),
         std::to_string(retried.size()) + " deployment(s) assigned again" +
             (request.reason().empty() ? "" : ": " + request.reason())})));
    return StatusOf(events::AppendEvent(tx, {"rollout.retried", caller.Actor(), "rollout", request.rollout_id(),
                                             RolloutPayload(r)
                                                 .Int("stage", r.current_stage())
                                                 .Int("count", static_cast<int64_t>(retried.size()))
                                                 .Str("reason", request.reason())}));
  }));
  NotifyDeploymentsChanged();
  return Get(request.rollout_id());
}

}  // namespace modelfleet::fleet
