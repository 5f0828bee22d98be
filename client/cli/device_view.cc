#include "cli/device_view.h"

namespace modelfleet::cli {

std::string DeploymentStepName(v1::DeploymentStep step) {
  const std::string name = v1::DeploymentStep_Name(step);
  return name.rfind("DEPLOYMENT_STEP_", 0) == 0 ? name.substr(sizeof("DEPLOYMENT_STEP_") - 1) : name;
}

bool IsFailedStep(v1::DeploymentStep step) {
  return step == v1::DEPLOYMENT_STEP_FAILED || step == v1::DEPLOYMENT_STEP_ROLLED_BACK ||
         step == v1::DEPLOYMENT_STEP_TIMED_OUT || step == v1::DEPLOYMENT_STEP_CANCELLED;
}

std::string DeploymentLabel(const v1::Device& d) {
  if (d.current_deployment_id().empty()) return "-";
  const std::string& rollout = d.current_rollout_id();
  return (rollout.empty() ? d.current_deployment_id() : rollout) + " " +
         DeploymentStepName(d.current_deployment_step());
}

}  // namespace modelfleet::cli
