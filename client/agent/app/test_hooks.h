// Test hooks of modelfleet-agent. NOT for production: they exist so the end-to-end tests can
// stop the agent at a precise point of the update flow and SIGKILL it there ("killed in every
// state", tests/e2e/agent_kill_e2e_test.cc).
//
// MODELFLEET_AGENT_PAUSE_AT (environment variable; unset = no hook):
//   <State>            pause right after the update flow persisted <State> (one of Downloading,
//                      Verifying, Installing, SelfTesting, Activated, Failed, RolledBack),
//                      before that state's step reports or does anything. For Activated: the
//                      `active` pointer has switched and ACTIVATED is not reported yet.
//   Downloading@<N>    pause during a download as soon as at least N bytes of the artifact are
//                      fsynced in the partial file (N = 0 is the same as plain Downloading).
// Pausing logs one line at warn level,
//   "test hook MODELFLEET_AGENT_PAUSE_AT=<value>: paused in <State> with <B> bytes on disk",
// and then blocks the update flow (inference and everything else go on) until the agent is
// stopped (SIGTERM: it then exits as usual) or killed. It pauses at most once per process.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/update/update_state.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::app {

inline constexpr const char* kPauseAtEnvironmentVariable = "MODELFLEET_AGENT_PAUSE_AT";

struct PauseAt {
  update::UpdateState state = update::UpdateState::kIdle;
  uint64_t min_bytes = 0;  // Downloading@N
  std::string text;        // as given, for the log line
};

// Parses a MODELFLEET_AGENT_PAUSE_AT value. INVALID_ARGUMENT (field MODELFLEET_AGENT_PAUSE_AT)
// naming the bad value: an unknown or Idle state, "@N" on another state than Downloading, a
// malformed N.
Expected<PauseAt> ParsePauseAt(std::string_view text);

// The hook's value from the environment: nullopt when the variable is unset or empty.
Expected<std::optional<PauseAt>> PauseAtFromEnvironment();

// True when the hook fires for the update flow being in `state` with `bytes_on_disk`.
bool PauseAtMatches(const PauseAt& pause, update::UpdateState state, uint64_t bytes_on_disk);

}  // namespace modelfleet::agent::app
