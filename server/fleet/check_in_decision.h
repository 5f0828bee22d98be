// What a device should do, decided as a pure function of what it reported, the rollouts in
// force and its deployments. No database, no clock, no lock: CheckInService gathers the inputs
// from its caches and carries the decision out (creating a deployment, reading a manifest), and
// unit tests drive every branch directly (tests/unit/check_in_decision_test.cc).
//
// The rules, per model, newest rollout first:
//   - The newest rollout whose target matches the device and whose cohort holds it decides for
//     its model; older rollouts of that model are not looked at.
//   - ABORTED: the device stays where it is.
//   - ROLLED_BACK: only a device still running the rolled-back version has anything to do: it
//     goes back to the version its forward deployment replaced (a rollback deployment, created
//     if needed), unless it has no forward deployment, replaced nothing, or already runs it.
//   - Otherwise (RUNNING, WAITING_APPROVAL, PAUSED, COMPLETED): a device that already runs
//     the rollout's version (and digest, if it says one) has nothing to do; else its forward
//     deployment decides: under way -> hand it out again; terminal (activated, failed, timed
//     out, ...) -> nothing; none yet -> create one if the rollout assigns new devices
//     (AssignsNewDevices: RUNNING, and COMPLETED for devices that join its target later),
//     else nothing.
//   - If no rollout gives the device anything, but it says it is applying an assignment, the
//     database decides (kLookUpUnderWay): this replica's snapshot may lag a stage change made
//     elsewhere, and replicas must never disagree about an assignment under way.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fleet/deployment_store.h"
#include "fleet/rollout_cache.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct CheckInDecision {
  enum class Action {
    kKeep,            // nothing to do
    kAssign,          // hand out deployment `deployment_id` (under way)
    kCreateForward,   // create the forward deployment of `rollout`, then decide again
    kCreateRollback,  // create the rollback deployment to `download_version`, then decide again
    kReadDeployment,  // the store does not know this device's deployment in `rollout`: read it, then decide again
    kLookUpUnderWay,  // the device says it is applying something no rollout here gives it
  };
  Action action = Action::kKeep;
  const RolloutView* rollout = nullptr;  // points into the snapshot
  bool is_rollback = false;
  int64_t deployment_id = 0;
  std::string download_version;                  // the version to install (kAssign, kCreateRollback)
  std::string previous_model, previous_version;  // what the device runs now (creations)
};

// Answers what the device's deployment in a rollout is: kYes with *entry, kNo (none), or
// kUnknown (the caller's store cannot tell).
using DeploymentLookup =
    std::function<DeploymentStore::Known(int64_t rollout_row_id, bool is_rollback, DeploymentEntry* entry)>;

// The rollout that decides for each model: per model, the newest rollout of `snapshot` whose
// target matches the device and whose cohort holds it; newest first, pointing into `snapshot`.
// (Computed once per check-in: it hashes the device id once per rollout.)
std::vector<const RolloutView*> RolloutsHolding(const std::string& device_id, const v1::DeviceAttributes& attributes,
                                                const RolloutSnapshot& snapshot);

// `holding`: RolloutsHolding() of the device. `settled`: rollouts the caller already handled
// for this check-in (a creation that found the rollout stopped); nothing more to do in them.
CheckInDecision DecideCheckIn(const v1::CheckInRequest& request, const std::vector<const RolloutView*>& holding,
                              const DeploymentLookup& deployment_of, const std::vector<int64_t>& settled = {});

}  // namespace modelfleet::fleet
