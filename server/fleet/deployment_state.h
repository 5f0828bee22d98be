// The per-device deployment state machine, as a declared table.
//
//   ASSIGNED -> DOWNLOADING -> VERIFYING -> INSTALLING -> SELF_TESTING -> ACTIVATED
//   DOWNLOADING -> DOWNLOADING (progress)
//   any non-terminal -> FAILED | ROLLED_BACK           (reported by the device)
//   ACTIVATED -> ROLLED_BACK                           (device-local rollback after activation)
//   any non-terminal -> TIMED_OUT | CANCELLED          (set by the server only)
//   FAILED | TIMED_OUT | ROLLED_BACK | CANCELLED -> ASSIGNED   (server: retry failed devices)
// Terminal: ACTIVATED (unless rolled back locally), FAILED, ROLLED_BACK, TIMED_OUT, CANCELLED.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"
#include "util/prefixed_id.h"

namespace modelfleet::fleet {

enum class TransitionBy { kDevice, kServer };

// True if `by` may move a deployment from `from` to `to`.
bool IsLegalTransition(v1::DeploymentStep from, v1::DeploymentStep to, TransitionBy by);
// The steps from which `by` may move to `to` (for an UPDATE ... WHERE step IN (...)).
std::vector<v1::DeploymentStep> LegalSources(v1::DeploymentStep to, TransitionBy by);
bool IsTerminal(v1::DeploymentStep step);
// Terminal and not a success: FAILED, ROLLED_BACK, TIMED_OUT, CANCELLED.
bool IsFailure(v1::DeploymentStep step);

// The non-terminal steps (a deployment under way) as an SQL list, for "step IN " ...; a
// literal so queries stay literals. deployment_state_test checks it against IsTerminal.
#define MF_IN_PROGRESS_STEPS_SQL "('ASSIGNED', 'DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SELF_TESTING')"

// "DOWNLOADING" <-> DEPLOYMENT_STEP_DOWNLOADING (the database spelling).
std::string_view StepName(v1::DeploymentStep step);
v1::DeploymentStep StepFromName(std::string_view name);
// `steps` as a PostgreSQL text[] literal of their names, "{FAILED,TIMED_OUT}", to bind to
// "step = ANY($n::text[])" (e.g. LegalSources(...) as an UPDATE's guard).
std::string StepsSqlArray(const std::vector<v1::DeploymentStep>& steps);

// A deployment's public id, "dep-<row id>", and back (INVALID_ARGUMENT naming `field`).
inline constexpr std::string_view kDeploymentIdPrefix = "dep-";
inline std::string DeploymentId(int64_t row_id) { return util::FormatPrefixedId(kDeploymentIdPrefix, row_id); }
inline Expected<int64_t> ParseDeploymentId(std::string_view id, std::string_view field) {
  return util::ParsePrefixedId(id, kDeploymentIdPrefix, field, "deployment");
}

}  // namespace modelfleet::fleet
