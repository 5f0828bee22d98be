#include "fleet/deployment_state.h"

#include <algorithm>

#include "db/pool.h"

namespace modelfleet::fleet {

namespace {

using S = v1::DeploymentStep;

struct Transition {
  S from;
  S to;
  TransitionBy by;
};

// The whole state machine. Anything not listed is illegal.
constexpr Transition kTransitions[] = {
    {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_DOWNLOADING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_DOWNLOADING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_VERIFYING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_VERIFYING, S::DEPLOYMENT_STEP_INSTALLING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_INSTALLING, S::DEPLOYMENT_STEP_SELF_TESTING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_SELF_TESTING, S::DEPLOYMENT_STEP_ACTIVATED, TransitionBy::kDevice},
    // A device that already has the bytes (e.g. after a restart) may skip ahead.
    {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_VERIFYING, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_ACTIVATED, TransitionBy::kDevice},
    {S::DEPLOYMENT_STEP_ACTIVATED, S::DEPLOYMENT_STEP_ROLLED_BACK, TransitionBy::kDevice},
};

constexpr S kNonTerminal[] = {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_DOWNLOADING,
                              S::DEPLOYMENT_STEP_VERIFYING, S::DEPLOYMENT_STEP_INSTALLING,
                              S::DEPLOYMENT_STEP_SELF_TESTING};
constexpr S kFailures[] = {S::DEPLOYMENT_STEP_FAILED, S::DEPLOYMENT_STEP_ROLLED_BACK, S::DEPLOYMENT_STEP_TIMED_OUT,
                           S::DEPLOYMENT_STEP_CANCELLED};

bool Contains(const auto& list, S s) { return std::find(std::begin(list), std::end(list), s) != std::end(list); }

}  // namespace

bool IsTerminal(S step) { return !Contains(kNonTerminal, step) && step != S::DEPLOYMENT_STEP_UNSPECIFIED; }

bool IsFailure(S step) { return Contains(kFailures, step); }

bool IsLegalTransition(S from, S to, TransitionBy by) {
  for (const auto& t : kTransitions) {
    if (t.from == from && t.to == to && t.by == by) return true;
  }
  if (Contains(kNonTerminal, from)) {
    if (by == TransitionBy::kDevice && (to == S::DEPLOYMENT_STEP_FAILED || to == S::DEPLOYMENT_STEP_ROLLED_BACK)) {
      return true;
    }
    if (by == TransitionBy::kServer && (to == S::DEPLOYMENT_STEP_TIMED_OUT || to == S::DEPLOYMENT_STEP_CANCELLED)) {
      return true;
    }
  }
  return by == TransitionBy::kServer && to == S::DEPLOYMENT_STEP_ASSIGNED && Contains(kFailures, from);
}

std::vector<S> LegalSources(S to, TransitionBy by) {
  std::vector<S> out;
  for (int i = v1::DeploymentStep_MIN; i <= v1::DeploymentStep_MAX; ++i) {
    if (v1::DeploymentStep_IsValid(i) && IsLegalTransition(static_cast<S>(i), to, by)) out.push_back(static_cast<S>(i));
  }
  return out;
}

std::string_view StepName(S step) {
  const std::string& full = v1::DeploymentStep_Name(step);  // "DEPLOYMENT_STEP_DOWNLOADING"
  constexpr std::string_view kPrefix = "DEPLOYMENT_STEP_";
  return std::string_view(full).substr(kPrefix.size());
}

S StepFromName(std::string_view name) {
  S step = S::DEPLOYMENT_STEP_UNSPECIFIED;
  v1::DeploymentStep_Parse("DEPLOYMENT_STEP_" + std::string(name), &step);
  return step;
}

std::string StepsSqlArray(const std::vector<S>& steps) {
  std::vector<std::string_view> names;
  for (S step : steps) names.push_back(StepName(step));
  return db::TextArrayLiteral(names);
}

}  // namespace modelfleet::fleet
