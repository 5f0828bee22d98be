#include "agent/app/test_hooks.h"

#include <cstdlib>

#include "modelfleet/numbers.h"

namespace modelfleet::agent::app {

Expected<PauseAt> ParsePauseAt(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Fail(InvalidArgument(kPauseAtEnvironmentVariable, "'" + std::string(text) + "' " + why));
  };
  PauseAt pause;
  pause.text = std::string(text);
  std::string_view name = text;
  const size_t at = text.find('@');
  if (at != std::string_view::npos) {
    name = text.substr(0, at);
    const std::string_view number = text.substr(at + 1);
    const auto bytes = ParseNumber<decltype(pause.min_bytes)>(number);
    if (!bytes) return bad("has no byte count after '@' (Downloading@<bytes>)");
    pause.min_bytes = *bytes;
  }
  const auto state = update::UpdateStateFromName(name);
  if (!state || *state == update::UpdateState::kIdle) {
    return bad(
        "is not a state of the update flow (Downloading[@<bytes>], Verifying, Installing, "
        "SelfTesting, Activated, Failed, RolledBack)");
  }
  if (at != std::string_view::npos && *state != update::UpdateState::kDownloading) {
    return bad("gives a byte count to a state other than Downloading");
  }
  pause.state = *state;
  return pause;
}

Expected<std::optional<PauseAt>> PauseAtFromEnvironment() {
  const char* value = std::getenv(kPauseAtEnvironmentVariable);
  if (value == nullptr || *value == '\0') return std::optional<PauseAt>();
  MF_ASSIGN_OR_RETURN(PauseAt pause, ParsePauseAt(value));
  return std::optional<PauseAt>(std::move(pause));
}

bool PauseAtMatches(const PauseAt& pause, update::UpdateState state, uint64_t bytes_on_disk) {
  return state == pause.state && bytes_on_disk >= pause.min_bytes;
}

}  // namespace modelfleet::agent::app
