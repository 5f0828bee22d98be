#include "fleet/check_in_decision.h"

#include <algorithm>
#include <set>

#include "fleet/cohort.h"
#include "fleet/deployment_state.h"
#include "fleet/rollout_state.h"

namespace modelfleet::fleet {

namespace {

const v1::RunningModel* RunningOf(const v1::CheckInRequest& request, const std::string& model) {
  for (const auto& m : request.running()) {
    if (m.model() == model) return &m;
  }
  return nullptr;
}

bool SaysApplying(v1::AgentState state) {
  switch (state) {
    case v1::AGENT_STATE_DOWNLOADING:
    case v1::AGENT_STATE_VERIFYING:
    case v1::AGENT_STATE_INSTALLING:
    case v1::AGENT_STATE_SELF_TESTING:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::vector<const RolloutView*> RolloutsHolding(const std::string& device_id, const v1::DeviceAttributes& attributes,
                                                const RolloutSnapshot& snapshot) {
  std::vector<const RolloutView*> holding;
  std::set<std::string_view> decided_models;
  for (const RolloutView& r : snapshot.rollouts) {
    if (decided_models.count(r.model)) continue;
    if (!r.target.Matches(attributes)) continue;
    if (CohortBucket(device_id, r.rollout_id) >= r.cutoff) continue;
    decided_models.insert(r.model);
    holding.push_back(&r);
  }
  return holding;
}

CheckInDecision DecideCheckIn(const v1::CheckInRequest& request, const std::vector<const RolloutView*>& holding,
                              const DeploymentLookup& deployment_of, const std::vector<int64_t>& settled) {
  using Action = CheckInDecision::Action;
  for (const RolloutView* rollout : holding) {
    const RolloutView& r = *rollout;
    if (std::find(settled.begin(), settled.end(), r.row_id) != settled.end()) continue;
    if (r.state == v1::ROLLOUT_STATE_ABORTED) continue;  // devices stay where they are
    const v1::RunningModel* running = RunningOf(request, r.model);
    const bool rollback = r.state == v1::ROLLOUT_STATE_ROLLED_BACK;
    // Only devices still running the rolled-back version have anything to do.
    if (rollback && (!running || running->version() != r.version)) continue;
    if (!rollback && running && running->version() == r.version &&
        (running->digest().empty() || running->digest() == r.manifest.digest())) {
      continue;  // already runs it
    }
    // From here on the device is being deployed: its deployment rows decide.
    CheckInDecision d;
    d.rollout = &r;
    d.previous_model = running ? r.model : std::string();
    d.previous_version = running ? running->version() : std::string();
    DeploymentEntry forward;
    const DeploymentStore::Known has_forward = deployment_of(r.row_id, false, &forward);
    if (has_forward == DeploymentStore::Known::kUnknown) {
      d.action = Action::kReadDeployment;
      return d;
    }
    if (rollback) {
      if (has_forward == DeploymentStore::Known::kNo || forward.previous_version.empty()) continue;  // nothing to go back to
      if (running->version() == forward.previous_version) continue;  // already back (cannot be: it runs r.version)
      DeploymentEntry backward;
      const DeploymentStore::Known has_backward = deployment_of(r.row_id, true, &backward);
      d.is_rollback = true;
      d.download_version = forward.previous_version;
      if (has_backward == DeploymentStore::Known::kUnknown) {
        d.action = Action::kReadDeployment;
        return d;
      }
      if (has_backward == DeploymentStore::Known::kNo) {
        d.action = Action::kCreateRollback;
        return d;
      }
      if (IsTerminal(backward.step)) continue;
      d.action = Action::kAssign;
      d.deployment_id = backward.id;
      return d;
    }
    if (has_forward == DeploymentStore::Known::kNo) {
      if (!AssignsNewDevices(r.state)) continue;  // paused, waiting for approval: no new devices
      d.action = Action::kCreateForward;
      d.download_version = r.version;
      return d;
    }
    if (IsTerminal(forward.step)) continue;  // activated, failed, timed out, ...
    d.action = Action::kAssign;
    d.deployment_id = forward.id;
    d.download_version = r.version;
    return d;
  }
  CheckInDecision d;
  if (SaysApplying(request.agent_state())) d.action = Action::kLookUpUnderWay;
  return d;
}

}  // namespace modelfleet::fleet
