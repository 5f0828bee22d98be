// The rollout state machine, as a declared table: kRolloutTransitions below is the whole of it.
//
//   CreateRollout stores QUEUED (a rollout of the same model claims some of its devices),
//   WAITING_APPROVAL (stage 0 requires approval) or RUNNING. From there the controller, on its judgement of
//   the current stage, and admins, through the RPC of the verb's name, move it along the table. Every state
//   is reachable from QUEUED.
//
//   Active: QUEUED, RUNNING, WAITING_APPROVAL, PAUSED (not finished; abort applies).
//   Terminal: ABORTED, ROLLED_BACK (nothing leaves them; entering one cancels the rollout's
//   forward deployments still under way). COMPLETED is neither: finished, yet it may still be
//   rolled back.
//
// The database stores a state as its name without the enum prefix ("WAITING_APPROVAL"); the
// rollouts.state CHECK constraint and the rollouts_active index of the migrations list the same
// names (rollout_state_test compares them). SQL that needs a set of states binds it as a text[]
// parameter rendered here from a predicate, so no query spells a state name.
//
// Everything here is pure and thread-safe.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

enum class RolloutVerb {
  // The controller's, on its judgement of the current stage (RolloutController).
  kStart,          // no conflicting rollout any more
  kAwaitApproval,  // the stage about to start requires approval
  kAdvance,        // threshold met, soak time over, gates held: the next stage starts
  kComplete,       // ditto, on the last stage
  kGatePause,      // a health gate broke
  kGateRollback,   // a health gate broke and auto_rollback is set
  // An admin's (RolloutManager, one per RPC).
  kApprove,  // starts the waiting stage
  kPause,
  kResume,
  kAbort,     // devices not yet updated stay where they are
  kRollback,  // the rollout's devices go back to what they ran
  kRetry,     // failed deployments are assigned again; the state stays as it is
};

struct RolloutTransition {
  v1::RolloutState from;
  RolloutVerb verb;
  v1::RolloutState to;
};

// The whole state machine: anything not listed is refused. At most one row per (from, verb).
// clang-format off
inline constexpr RolloutTransition kRolloutTransitions[] = {
    // from                              verb                         to
    // The controller.
    {v1::ROLLOUT_STATE_QUEUED,           RolloutVerb::kStart,         v1::ROLLOUT_STATE_RUNNING},
    {v1::ROLLOUT_STATE_QUEUED,           RolloutVerb::kAwaitApproval, v1::ROLLOUT_STATE_WAITING_APPROVAL},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kAdvance,       v1::ROLLOUT_STATE_RUNNING},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kAwaitApproval, v1::ROLLOUT_STATE_WAITING_APPROVAL},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kComplete,      v1::ROLLOUT_STATE_COMPLETED},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kGatePause,     v1::ROLLOUT_STATE_PAUSED},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kGateRollback,  v1::ROLLOUT_STATE_ROLLED_BACK},
    // Admins.
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, RolloutVerb::kApprove,       v1::ROLLOUT_STATE_RUNNING},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kPause,         v1::ROLLOUT_STATE_PAUSED},
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, RolloutVerb::kPause,         v1::ROLLOUT_STATE_PAUSED},
    {v1::ROLLOUT_STATE_PAUSED,           RolloutVerb::kResume,        v1::ROLLOUT_STATE_RUNNING},
    {v1::ROLLOUT_STATE_QUEUED,           RolloutVerb::kAbort,         v1::ROLLOUT_STATE_ABORTED},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kAbort,         v1::ROLLOUT_STATE_ABORTED},
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, RolloutVerb::kAbort,         v1::ROLLOUT_STATE_ABORTED},
    {v1::ROLLOUT_STATE_PAUSED,           RolloutVerb::kAbort,         v1::ROLLOUT_STATE_ABORTED},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kRollback,      v1::ROLLOUT_STATE_ROLLED_BACK},
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, RolloutVerb::kRollback,      v1::ROLLOUT_STATE_ROLLED_BACK},
    {v1::ROLLOUT_STATE_PAUSED,           RolloutVerb::kRollback,      v1::ROLLOUT_STATE_ROLLED_BACK},
    {v1::ROLLOUT_STATE_COMPLETED,        RolloutVerb::kRollback,      v1::ROLLOUT_STATE_ROLLED_BACK},
    {v1::ROLLOUT_STATE_RUNNING,          RolloutVerb::kRetry,         v1::ROLLOUT_STATE_RUNNING},
    {v1::ROLLOUT_STATE_WAITING_APPROVAL, RolloutVerb::kRetry,         v1::ROLLOUT_STATE_WAITING_APPROVAL},
    {v1::ROLLOUT_STATE_PAUSED,           RolloutVerb::kRetry,         v1::ROLLOUT_STATE_PAUSED},
};
// clang-format on

// The state `verb` moves a rollout in `from` to. FAILED_PRECONDITION otherwise, naming the
// state, the verb and the states it applies to: "<subject> is COMPLETED; pause applies to
// RUNNING, WAITING_APPROVAL".
Expected<v1::RolloutState> Next(v1::RolloutState from, RolloutVerb verb,
                                std::string_view subject = "rollout");
// The states `verb` applies to, in enum order (derived from the table).
std::vector<v1::RolloutState> AllowedSources(RolloutVerb verb);
// "await_approval", "pause", ... (admin verbs are named as their RPCs and CLI commands).
std::string_view RolloutVerbName(RolloutVerb verb);
bool IsControllerVerb(RolloutVerb verb);
// The states the controller moves rollouts out of by itself: the sources of its verbs.
std::vector<v1::RolloutState> MovedByController();

// What CreateRollout may store: QUEUED, RUNNING, WAITING_APPROVAL.
bool IsInitial(v1::RolloutState state);
// Not finished: QUEUED, RUNNING, WAITING_APPROVAL, PAUSED.
bool IsActive(v1::RolloutState state);
// Nothing leaves it: ABORTED, ROLLED_BACK.
bool IsTerminal(v1::RolloutState state);
// Holds its target: an overlapping new rollout of the same model is refused or queued, and a
// queued one stays queued. RUNNING, WAITING_APPROVAL, PAUSED.
bool ClaimsDevices(v1::RolloutState state);
// A device of its cohort without a deployment of it gets one at check-in: RUNNING, COMPLETED.
bool AssignsNewDevices(v1::RolloutState state);

// "WAITING_APPROVAL" for ROLLOUT_STATE_WAITING_APPROVAL: the database spelling. "UNSPECIFIED"
// for UNSPECIFIED and for values outside the enum (never stored).
std::string_view RolloutStateName(v1::RolloutState state);
// The state stored as `name`; nullopt for any other text (including "UNSPECIFIED").
std::optional<v1::RolloutState> RolloutStateFromName(std::string_view name);

// Every state but UNSPECIFIED, in enum order; and those for which `predicate` holds.
std::vector<v1::RolloutState> AllRolloutStates();
std::vector<v1::RolloutState> RolloutStatesWhere(bool (*predicate)(v1::RolloutState));
// `states` as a PostgreSQL text[] literal of their names, "{RUNNING,COMPLETED}", to bind to
// "state = ANY($n::text[])".
std::string RolloutStatesSqlArray(std::span<const v1::RolloutState> states);

}  // namespace modelfleet::fleet
