// What `devices list` and `devices show` say about a device's newest deployment: its rollout
// and step ("ro-3 FAILED"), from the Device message (current_rollout_id, current_deployment_*).
//
// Thread-safe (pure functions).
#pragma once

#include <string>

#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::cli {

std::string DeploymentStepName(v1::DeploymentStep step);  // "FAILED"
bool IsFailedStep(v1::DeploymentStep step);               // FAILED, ROLLED_BACK, TIMED_OUT, CANCELLED
// "ro-3 FAILED"; "dep-12 FAILED" from a server that does not send the rollout; "-" without a
// deployment.
std::string DeploymentLabel(const v1::Device& d);

}  // namespace modelfleet::cli
