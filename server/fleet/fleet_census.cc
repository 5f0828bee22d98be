#include "fleet/fleet_census.h"

#include <map>

#include "fleet/rollout_state.h"

namespace modelfleet::fleet {

namespace {

// Every admission the proto names, in the database's spelling ("ACCEPTED"), so a state with no
// device still shows as 0. (PREAUTHORIZED exists only in the database; it shows when counted.)
std::map<std::string, int64_t> ZeroAdmissions() {
  std::map<std::string, int64_t> zero;
  const auto* descriptor = v1::DeviceAdmission_descriptor();
  constexpr std::string_view kPrefix = "DEVICE_ADMISSION_";
  for (int i = 0; i < descriptor->value_count(); ++i) {
    if (descriptor->value(i)->number() == v1::DEVICE_ADMISSION_UNSPECIFIED) continue;
    std::string_view name = descriptor->value(i)->name();
    if (name.starts_with(kPrefix)) name.remove_prefix(kPrefix.size());
    zero.emplace(std::string(name), 0);
  }
  return zero;
}

void AddGateReadings(const v1::Rollout& rollout, std::vector<FleetCensus::GateReading>& out) {
  if (rollout.stages_size() == 0) return;
  const int stage = std::min<int>(static_cast<int>(rollout.current_stage()), rollout.stages_size() - 1);
  const v1::HealthGates& limits = rollout.stages(stage).gates();
  const v1::StageProgress& p = rollout.progress();
  // The same quantities RolloutController::JudgeRunning compares with the limits.
  const double failure_ratio = p.devices() > 0 ? static_cast<double>(p.failed()) / p.devices() : 0;
  out.push_back({rollout.rollout_id(), "failure_ratio", failure_ratio, limits.max_failure_ratio()});
  out.push_back({rollout.rollout_id(), "error_ratio", p.error_ratio(), limits.max_error_ratio()});
  out.push_back({rollout.rollout_id(), "p95_latency_seconds", p.p95_latency_ms() / 1000.0,
                 limits.max_p95_latency_ms() / 1000.0});
  out.push_back({rollout.rollout_id(), "class_shift", p.class_shift(), limits.max_class_shift()});
}

}  // namespace

Expected<FleetCensus> TakeFleetCensus(db::Pool& pool, RolloutManager& rollouts, const FleetCensusOptions& options) {
  FleetCensus census;
  std::vector<int64_t> active;
  const std::vector<v1::RolloutState> claiming = RolloutStatesWhere(ClaimsDevices);
  MF_RETURN_IF_ERROR(pool.Read([&](db::Tx& tx) -> Status {
    std::map<std::string, int64_t> admissions = ZeroAdmissions();
    MF_ASSIGN_OR_RETURN(auto by_admission, tx.Exec("SELECT admission, count(*) FROM devices GROUP BY admission"));
    for (const auto& row : by_admission) admissions[row.Str(0)] = row.Int(1);
    for (auto& [name, count] : admissions) census.devices_by_admission.push_back({name, count});

    MF_ASSIGN_OR_RETURN(auto by_version,
                        tx.Exec("SELECT running_model, running_version, count(*) FROM devices "
                                "WHERE admission = 'ACCEPTED' AND running_model <> '' "
                                "GROUP BY running_model, running_version ORDER BY count(*) DESC, 1, 2"));
    for (const auto& row : by_version) {
      if (census.devices_by_version.size() < options.max_versions) {
        census.devices_by_version.push_back({row.Str(0), row.Str(1), row.Int(2)});
      } else {
        census.devices_in_unlisted_versions += row.Int(2);
      }
    }

    std::map<std::string, int64_t> states;
    for (v1::RolloutState state : AllRolloutStates()) states.emplace(std::string(RolloutStateName(state)), 0);
    MF_ASSIGN_OR_RETURN(auto by_state, tx.Exec("SELECT state, count(*) FROM rollouts GROUP BY state"));
    for (const auto& row : by_state) states[row.Str(0)] = row.Int(1);
    for (auto& [name, count] : states) census.rollouts_by_state.push_back({name, count});

    MF_ASSIGN_OR_RETURN(auto ids, tx.Exec("SELECT id FROM rollouts WHERE state = ANY($1::text[]) ORDER BY id DESC LIMIT $2",
                                          {RolloutStatesSqlArray(claiming), static_cast<int64_t>(options.max_rollouts)}));
    for (const auto& row : ids) active.push_back(row.Int(0));
    return Status::Ok();
  }));
  for (int64_t row_id : active) {
    auto rollout = rollouts.Get(RolloutManager::RolloutId(row_id));
    if (!rollout && rollout.error().code() == StatusCode::kNotFound) continue;  // gone meanwhile
    if (!rollout) return Fail(rollout.error().Annotate("reading the gates of " + RolloutManager::RolloutId(row_id)));
    AddGateReadings(*rollout, census.gates);
  }
  return census;
}

}  // namespace modelfleet::fleet
