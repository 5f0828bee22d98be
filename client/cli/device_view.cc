#include "cli/device_view.h"

#include <utility>

namespace modelfleet::cli {

namespace {

// "ro-3" of an "assigned" event's "ro-3: mat-person@1.2.0"; empty if it does not read so.
std::string AssignedRollout(const v1::DeviceEvent& e) {
  if (e.kind() != "assigned") return "";
  const size_t colon = e.detail().find(':');
  if (colon == std::string::npos || e.detail().rfind("ro-", 0) != 0) return "";
  return e.detail().substr(0, colon);
}

// The step and the reason of a "deployment" event: "dep-12 FAILED: reason" -> {"FAILED", "reason"}.
std::pair<std::string, std::string> ReportedStep(const v1::DeviceEvent& e) {
  if (e.kind() != "deployment") return {};
  const size_t space = e.detail().find(' ');
  if (space == std::string::npos) return {};
  const std::string rest = e.detail().substr(space + 1);
  const size_t colon = rest.find(": ");
  if (colon == std::string::npos) return {rest, ""};
  return {rest.substr(0, colon), rest.substr(colon + 2)};
}

}  // namespace

DeploymentFacts ReadDeploymentFacts(const std::vector<v1::DeviceEvent>& history,
                                    const std::string& deployment_id, v1::DeploymentStep step,
                                    const std::set<std::string>& rolled_back) {
  DeploymentFacts facts;
  if (deployment_id.empty()) return facts;
  const size_t n = history.size();
  // Per event: the deployment it reports on ("" for other events), and whether it is the first
  // report of that deployment (when the deployment shows up).
  std::vector<std::string> reports_on(n);
  std::vector<bool> first_report(n, false);
  std::set<std::string> seen;
  size_t first = n;  // this deployment's first report
  for (size_t i = 0; i < n; ++i) {
    if (history[i].kind() != "deployment") continue;
    reports_on[i] = history[i].detail().substr(0, history[i].detail().find(' '));
    first_report[i] = seen.insert(reports_on[i]).second;
    if (reports_on[i] != deployment_id) continue;
    if (first == n) first = i;
    // The last report of the step shown wins (a retried deployment may have failed before).
    auto [reported, reason] = ReportedStep(history[i]);
    if (reported == DeploymentStepName(step)) facts.reason = reason;
  }
  // Whether a deployment other than this one and `except` shows up between two events.
  auto new_deployment_between = [&](size_t from, size_t to, const std::string& except) {
    for (size_t i = from + 1; i < to; ++i) {
      if (first_report[i] && reports_on[i] != deployment_id && reports_on[i] != except) return true;
    }
    return false;
  };

  size_t assigned = n;
  for (size_t i = first; i-- > 0;) {
    if (!AssignedRollout(history[i]).empty()) {
      assigned = i;
      break;
    }
  }
  if (assigned == n) return facts;
  const std::string candidate = AssignedRollout(history[assigned]);
  // Another deployment showed up after that assignment: it is the assignment's own, and this
  // one, newer, a rollback -- of that rollout if it was rolled back, else of one before it.
  if (new_deployment_between(assigned, first, "") && !rolled_back.contains(candidate)) return facts;
  // A rollout assigned earlier and rolled back since, which ran here (its deployment, the first
  // to show up after its assignment, activated), and whose rollback has not shown up before
  // that later assignment (no further deployment): this one may be that rollback.
  for (size_t e = 0; e < assigned; ++e) {
    const std::string earlier = AssignedRollout(history[e]);
    if (earlier.empty() || earlier == candidate || !rolled_back.contains(earlier)) continue;
    size_t own = e + 1;
    while (own < assigned && !first_report[own]) ++own;
    if (own == assigned) continue;
    size_t activated = own;
    while (activated < assigned && !(reports_on[activated] == reports_on[own] &&
                                     ReportedStep(history[activated]).first == "ACTIVATED")) {
      ++activated;
    }
    if (activated == assigned) continue;
    if (!new_deployment_between(activated, assigned, reports_on[own])) return facts;
  }
  facts.rollout_id = candidate;
  return facts;
}

std::string DeploymentStepName(v1::DeploymentStep step) {
  const std::string name = v1::DeploymentStep_Name(step);
  return name.rfind("DEPLOYMENT_STEP_", 0) == 0 ? name.substr(sizeof("DEPLOYMENT_STEP_") - 1) : name;
}

bool IsFailedStep(v1::DeploymentStep step) {
  return step == v1::DEPLOYMENT_STEP_FAILED || step == v1::DEPLOYMENT_STEP_ROLLED_BACK ||
         step == v1::DEPLOYMENT_STEP_TIMED_OUT || step == v1::DEPLOYMENT_STEP_CANCELLED;
}

std::string DeploymentLabel(const v1::Device& d, const std::string& rollout_id) {
  if (d.current_deployment_id().empty()) return "-";
  return (rollout_id.empty() ? d.current_deployment_id() : rollout_id) + " " +
         DeploymentStepName(d.current_deployment_step());
}

}  // namespace modelfleet::cli
