#include "fleet/rollout_state.h"

#include <algorithm>
#include <utility>

#include "db/pool.h"

namespace modelfleet::fleet {

namespace {

using S = v1::RolloutState;

// The database spelling of each state: the one place rollout state names are written out.
constexpr std::pair<S, std::string_view> kNames[] = {
    {v1::ROLLOUT_STATE_QUEUED, "QUEUED"},
    {v1::ROLLOUT_STATE_RUNNING, "RUNNING"},
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, "WAITING_APPROVAL"},
    {v1::ROLLOUT_STATE_PAUSED, "PAUSED"},
    {v1::ROLLOUT_STATE_COMPLETED, "COMPLETED"},
    {v1::ROLLOUT_STATE_ABORTED, "ABORTED"},
    {v1::ROLLOUT_STATE_ROLLED_BACK, "ROLLED_BACK"},
};

constexpr S kInitial[] = {v1::ROLLOUT_STATE_QUEUED, v1::ROLLOUT_STATE_RUNNING,
                          v1::ROLLOUT_STATE_WAITING_APPROVAL};
constexpr S kActive[] = {v1::ROLLOUT_STATE_QUEUED, v1::ROLLOUT_STATE_RUNNING,
                         v1::ROLLOUT_STATE_WAITING_APPROVAL, v1::ROLLOUT_STATE_PAUSED};
constexpr S kTerminal[] = {v1::ROLLOUT_STATE_ABORTED, v1::ROLLOUT_STATE_ROLLED_BACK};
constexpr S kClaimsDevices[] = {v1::ROLLOUT_STATE_RUNNING, v1::ROLLOUT_STATE_WAITING_APPROVAL,
                                v1::ROLLOUT_STATE_PAUSED};
constexpr S kAssignsNewDevices[] = {v1::ROLLOUT_STATE_RUNNING, v1::ROLLOUT_STATE_COMPLETED};

bool Contains(const auto& list, S s) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

bool HasRow(S from, RolloutVerb verb) {
  return std::any_of(std::begin(kRolloutTransitions), std::end(kRolloutTransitions),
                     [&](const RolloutTransition& t) { return t.from == from && t.verb == verb; });
}

std::string JoinNames(const std::vector<S>& states) {
  std::string out;
  for (S s : states) out += (out.empty() ? "" : ", ") + std::string(RolloutStateName(s));
  return out;
}

}  // namespace

Expected<S> Next(S from, RolloutVerb verb, std::string_view subject) {
  for (const RolloutTransition& t : kRolloutTransitions) {
    if (t.from == from && t.verb == verb) return t.to;
  }
  return Fail(FailedPrecondition(std::string(subject) + " is " + std::string(RolloutStateName(from)) + "; " +
                                 std::string(RolloutVerbName(verb)) + " applies to " +
                                 JoinNames(AllowedSources(verb))));
}

std::vector<S> AllowedSources(RolloutVerb verb) {
  std::vector<S> out;
  for (S s : AllRolloutStates()) {
    if (HasRow(s, verb)) out.push_back(s);
  }
  return out;
}

std::string_view RolloutVerbName(RolloutVerb verb) {
  switch (verb) {
    case RolloutVerb::kStart:
      return "start";
    case RolloutVerb::kAwaitApproval:
      return "await_approval";
    case RolloutVerb::kAdvance:
      return "advance";
    case RolloutVerb::kComplete:
      return "complete";
    case RolloutVerb::kGatePause:
      return "gate_pause";
    case RolloutVerb::kGateRollback:
      return "gate_rollback";
    case RolloutVerb::kApprove:
      return "approve";
    case RolloutVerb::kPause:
      return "pause";
    case RolloutVerb::kResume:
      return "resume";
    case RolloutVerb::kAbort:
      return "abort";
    case RolloutVerb::kRollback:
      return "rollback";
    case RolloutVerb::kRetry:
      return "retry";
  }
  return "unknown";
}

bool IsControllerVerb(RolloutVerb verb) {
  switch (verb) {
    case RolloutVerb::kStart:
    case RolloutVerb::kAwaitApproval:
    case RolloutVerb::kAdvance:
    case RolloutVerb::kComplete:
    case RolloutVerb::kGatePause:
    case RolloutVerb::kGateRollback:
      return true;
    case RolloutVerb::kApprove:
    case RolloutVerb::kPause:
    case RolloutVerb::kResume:
    case RolloutVerb::kAbort:
    case RolloutVerb::kRollback:
    case RolloutVerb::kRetry:
      return false;
  }
  return false;
}

std::vector<S> MovedByController() {
  std::vector<S> out;
  for (S s : AllRolloutStates()) {
    if (std::any_of(std::begin(kRolloutTransitions), std::end(kRolloutTransitions),
                    [&](const RolloutTransition& t) { return t.from == s && IsControllerVerb(t.verb); })) {
      out.push_back(s);
    }
  }
  return out;
}

bool IsInitial(S state) { return Contains(kInitial, state); }
bool IsActive(S state) { return Contains(kActive, state); }
bool IsTerminal(S state) { return Contains(kTerminal, state); }
bool ClaimsDevices(S state) { return Contains(kClaimsDevices, state); }
bool AssignsNewDevices(S state) { return Contains(kAssignsNewDevices, state); }

std::string_view RolloutStateName(S state) {
  for (const auto& [s, name] : kNames) {
    if (s == state) return name;
  }
  return "UNSPECIFIED";
}

std::optional<S> RolloutStateFromName(std::string_view name) {
  for (const auto& [s, n] : kNames) {
    if (n == name) return s;
  }
  return std::nullopt;
}

std::vector<S> AllRolloutStates() {
  std::vector<S> out;
  for (int i = v1::RolloutState_MIN; i <= v1::RolloutState_MAX; ++i) {
    if (v1::RolloutState_IsValid(i) && i != v1::ROLLOUT_STATE_UNSPECIFIED) out.push_back(static_cast<S>(i));
  }
  return out;
}

std::vector<S> RolloutStatesWhere(bool (*predicate)(S)) {
  std::vector<S> out;
  for (S s : AllRolloutStates()) {
    if (predicate(s)) out.push_back(s);
  }
  return out;
}

std::string RolloutStatesSqlArray(std::span<const S> states) {
  std::vector<std::string_view> names;
  for (S s : states) names.push_back(RolloutStateName(s));
  return db::TextArrayLiteral(names);
}

}  // namespace modelfleet::fleet
