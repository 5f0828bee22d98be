// What `devices list` and `devices show` say about a device's newest deployment: the rollout it
// belongs to, its step, and the reason the device gave for that step.
//
// The Device message carries the deployment's id and step only. The rest is read from the
// device's history (ListDeviceHistory, oldest first), where the server writes
//   kind "assigned"    detail "ro-3: mat-person@1.2.0"   when a rollout creates a (forward)
//                                                        deployment for the device;
//   kind "deployment"  detail "dep-12 FAILED: <reason>"  when the device reports a final step.
// Rollback deployments get no "assigned" event, and the steps the server sets (TIMED_OUT,
// CANCELLED) no "deployment" event. So the rollout is read as the one assigned last before the
// deployment's first report (or last of all if it has none yet), and left unknown rather than
// guessed when the deployment may be a rollback of another rollout:
//   - another deployment showed up after that assignment (that one is the assignment's own; this
//     one, newer, is a rollback), and the rollout assigned was not rolled back;
//   - a rollout assigned earlier was rolled back since, the device ran it (the deployment first
//     reported after its assignment activated), and no further deployment (its rollback) showed
//     up before the later assignment.
// The reason is that of the deployment's last report of the step shown.
// Server-side fields (the deployment's rollout and reason on Device) would make this exact and
// save the history calls.
//
// Thread-safe (pure functions).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::cli {

struct DeploymentFacts {
  std::string rollout_id;  // "ro-3"; empty: unknown
  // The reason in the device's report of the step shown (may be empty); unset: no report of
  // that step in the history.
  std::optional<std::string> reason;
};

// `history` oldest first; `rolled_back` the ids of rollouts in state ROLLED_BACK.
DeploymentFacts ReadDeploymentFacts(const std::vector<v1::DeviceEvent>& history,
                                    const std::string& deployment_id, v1::DeploymentStep step,
                                    const std::set<std::string>& rolled_back);

std::string DeploymentStepName(v1::DeploymentStep step);  // "FAILED"
bool IsFailedStep(v1::DeploymentStep step);               // FAILED, ROLLED_BACK, TIMED_OUT, CANCELLED
// "ro-3 FAILED"; "dep-12 FAILED" when the rollout is unknown; "-" without a deployment.
std::string DeploymentLabel(const v1::Device& d, const std::string& rollout_id);

}  // namespace modelfleet::cli
