// The agent's update flow as a declared state-transition table, and its durable record.
//
//   Idle -> Downloading                      an assignment was accepted
//   Downloading -> Downloading               progress (and resume after a restart)
//   Downloading -> Verifying -> Installing -> SelfTesting -> Activated
//   Downloading|Verifying|Installing|SelfTesting -> Failed
//   Activated -> RolledBack                  local rollback after activation
//   Activated|Failed|RolledBack -> Idle      the terminal report was acknowledged
//
// Every other transition is refused. Activated, Failed and RolledBack are the terminal states of
// an assignment (each maps to the DeploymentStep the agent reports).
//
// After a power cut the agent re-enters the persisted state and re-runs its step; every step is
// idempotent (the download resumes from the bytes on disk, the install and the pointer switch
// check what is already there), so re-entering is not a transition.
//
// The record lives in <state_dir>/update.state, written atomically (fs_util.h):
//   line 1 "modelfleet-update-v1", line 2 the state name, line 3 the reason (one line),
//   line 4 the last finished deployment id, then the serialized v1::Assignment (binary).
#pragma once

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::agent::update {

enum class UpdateState {
  kIdle,
  kDownloading,
  kVerifying,
  kInstalling,
  kSelfTesting,
  kActivated,
  kFailed,
  kRolledBack,
};

struct Transition {
  UpdateState from;
  UpdateState to;
  std::string_view why;
};

// The table itself (for documentation, tests and the checker below).
inline constexpr std::array<Transition, 14> kUpdateTransitions = {{
    {UpdateState::kIdle, UpdateState::kDownloading, "assignment accepted"},
    {UpdateState::kDownloading, UpdateState::kDownloading, "progress"},
    {UpdateState::kDownloading, UpdateState::kVerifying, "all bytes on disk"},
    {UpdateState::kVerifying, UpdateState::kInstalling, "size, digest, signature, counter ok"},
    {UpdateState::kInstalling, UpdateState::kSelfTesting, "installed in models/<digest>"},
    {UpdateState::kSelfTesting, UpdateState::kActivated, "self-test passed, pointer switched"},
    {UpdateState::kDownloading, UpdateState::kFailed, "download failed"},
    {UpdateState::kVerifying, UpdateState::kFailed, "verification failed"},
    {UpdateState::kInstalling, UpdateState::kFailed, "install failed"},
    {UpdateState::kSelfTesting, UpdateState::kFailed, "self-test failed"},
    {UpdateState::kActivated, UpdateState::kRolledBack, "local rollback"},
    {UpdateState::kActivated, UpdateState::kIdle, "terminal report acknowledged"},
    {UpdateState::kFailed, UpdateState::kIdle, "terminal report acknowledged"},
    {UpdateState::kRolledBack, UpdateState::kIdle, "terminal report acknowledged"},
}};

bool IsLegalUpdateTransition(UpdateState from, UpdateState to);
bool IsTerminalUpdateState(UpdateState state);  // Activated, Failed, RolledBack
std::string_view UpdateStateName(UpdateState state);  // "Downloading"
std::optional<UpdateState> UpdateStateFromName(std::string_view name);
// The step reported to the server on entering `state` (UNSPECIFIED for Idle).
v1::DeploymentStep ReportedStep(UpdateState state);
// What the agent tells CheckIn it is doing.
v1::AgentState AgentStateFor(UpdateState state);

struct UpdateRecord {
  UpdateState state = UpdateState::kIdle;
  std::string reason;
  std::string last_finished_deployment;  // the last deployment that reached Idle again
  v1::Assignment assignment;             // meaningful unless Idle
};

// Holds the current record and persists every change before it takes effect.
class UpdateStateStore {
 public:
  // Loads <state_dir>/update.state (Idle if missing). INVALID_ARGUMENT/DATA_LOSS for a corrupt
  // record (the caller may Reset()).
  static Expected<UpdateStateStore> Open(const std::filesystem::path& state_dir);

  const UpdateRecord& record() const { return record_; }
  UpdateState state() const { return record_.state; }

  // FAILED_PRECONDITION for an illegal transition (nothing changes); otherwise persists first.
  Status Transition(UpdateState to, std::string reason = "");
  // Idle -> Downloading with the assignment.
  Status Begin(const v1::Assignment& assignment);
  // Forces Idle (corrupt record cleanup).
  Status Reset();

  static std::string Encode(const UpdateRecord& record);
  static Expected<UpdateRecord> Decode(std::string_view bytes);

 private:
  explicit UpdateStateStore(std::filesystem::path path) : path_(std::move(path)) {}
  Status Save(const UpdateRecord& record);
  std::filesystem::path path_;
  UpdateRecord record_;
};

}  // namespace modelfleet::agent::update
