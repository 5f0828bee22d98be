#include "agent/update/update_state.h"

#include "agent/update/fs_util.h"

namespace modelfleet::agent::update {
namespace {
constexpr std::string_view kMagic = "modelfleet-update-v1";
constexpr std::array<std::string_view, 8> kNames = {"Idle",        "Downloading", "Verifying",
                                                     "Installing",  "SelfTesting", "Activated",
                                                     "Failed",      "RolledBack"};

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}
}  // namespace

bool IsLegalUpdateTransition(UpdateState from, UpdateState to) {
  for (const Transition& t : kUpdateTransitions) {
    if (t.from == from && t.to == to) return true;
  }
  return false;
}

bool IsTerminalUpdateState(UpdateState state) {
  return state == UpdateState::kActivated || state == UpdateState::kFailed ||
         state == UpdateState::kRolledBack;
}

std::string_view UpdateStateName(UpdateState state) {
  return kNames[static_cast<size_t>(state)];
}

std::optional<UpdateState> UpdateStateFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<UpdateState>(i);
  }
  return std::nullopt;
}

v1::DeploymentStep ReportedStep(UpdateState state) {
  switch (state) {
    case UpdateState::kIdle: return v1::DEPLOYMENT_STEP_UNSPECIFIED;
    case UpdateState::kDownloading: return v1::DEPLOYMENT_STEP_DOWNLOADING;
    case UpdateState::kVerifying: return v1::DEPLOYMENT_STEP_VERIFYING;
    case UpdateState::kInstalling: return v1::DEPLOYMENT_STEP_INSTALLING;
    case UpdateState::kSelfTesting: return v1::DEPLOYMENT_STEP_SELF_TESTING;
    case UpdateState::kActivated: return v1::DEPLOYMENT_STEP_ACTIVATED;
    case UpdateState::kFailed: return v1::DEPLOYMENT_STEP_FAILED;
    case UpdateState::kRolledBack: return v1::DEPLOYMENT_STEP_ROLLED_BACK;
  }
  return v1::DEPLOYMENT_STEP_UNSPECIFIED;
}

v1::AgentState AgentStateFor(UpdateState state) {
  switch (state) {
    case UpdateState::kDownloading: return v1::AGENT_STATE_DOWNLOADING;
    case UpdateState::kVerifying: return v1::AGENT_STATE_VERIFYING;
    case UpdateState::kInstalling: return v1::AGENT_STATE_INSTALLING;
    case UpdateState::kSelfTesting: return v1::AGENT_STATE_SELF_TESTING;
    case UpdateState::kRolledBack: return v1::AGENT_STATE_ROLLING_BACK;
    default: return v1::AGENT_STATE_IDLE;
  }
}

std::string UpdateStateStore::Encode(const UpdateRecord& r) {
  std::string out(kMagic);
  out += "\n";
  out += UpdateStateName(r.state);
  out += "\n" + OneLine(r.reason) + "\n" + OneLine(r.last_finished_deployment) + "\n";
  out += r.assignment.SerializeAsString();
  return out;
}

Expected<UpdateRecord> UpdateStateStore::Decode(std::string_view bytes) {
  std::string_view lines[4];
  size_t pos = 0;
  for (auto& line : lines) {
    const size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) return Fail(DataLoss("update record truncated"));
    line = bytes.substr(pos, nl - pos);
    pos = nl + 1;
  }
  if (lines[0] != kMagic) return Fail(DataLoss("update record has no magic line"));
  auto state = UpdateStateFromName(lines[1]);
  if (!state) return Fail(DataLoss("update record has unknown state '" + std::string(lines[1]) + "'"));
  UpdateRecord r;
  r.state = *state;
  r.reason = std::string(lines[2]);
  r.last_finished_deployment = std::string(lines[3]);
  const std::string_view rest = bytes.substr(pos);
  if (!r.assignment.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) {
    return Fail(DataLoss("update record: assignment does not parse"));
  }
  return r;
}

Expected<UpdateStateStore> UpdateStateStore::Open(const std::filesystem::path& state_dir) {
  UpdateStateStore store(state_dir / "update.state");
  auto bytes = ReadWholeFile(store.path_);
  if (!bytes) {
    if (bytes.error().code() == StatusCode::kNotFound) return store;
    return Fail(bytes.error());
  }
  MF_ASSIGN_OR_RETURN(store.record_, Decode(*bytes));
  return store;
}

Status UpdateStateStore::Save(const UpdateRecord& record) {
  return AtomicWriteFile(path_, Encode(record), 0600);
}

Status UpdateStateStore::Transition(UpdateState to, std::string reason) {
  if (!IsLegalUpdateTransition(record_.state, to)) {
    return FailedPrecondition("illegal update transition " +
                              std::string(UpdateStateName(record_.state)) + " -> " +
                              std::string(UpdateStateName(to)));
  }
  UpdateRecord next = record_;
  next.state = to;
  next.reason = std::move(reason);
  if (to == UpdateState::kIdle) {
    next.last_finished_deployment = record_.assignment.deployment_id();
    next.assignment.Clear();
  }
  MF_RETURN_IF_ERROR(Save(next));
  record_ = std::move(next);
  return Status::Ok();
}

Status UpdateStateStore::Begin(const v1::Assignment& assignment) {
  if (!IsLegalUpdateTransition(record_.state, UpdateState::kDownloading) ||
      record_.state != UpdateState::kIdle) {
    return FailedPrecondition("an update is already under way (" +
                              std::string(UpdateStateName(record_.state)) + ")");
  }
  UpdateRecord next = record_;
  next.state = UpdateState::kDownloading;
  next.reason.clear();
  next.assignment = assignment;
  MF_RETURN_IF_ERROR(Save(next));
  record_ = std::move(next);
  return Status::Ok();
}

Status UpdateStateStore::Reset() {
  UpdateRecord next;
  next.last_finished_deployment = record_.last_finished_deployment;
  MF_RETURN_IF_ERROR(Save(next));
  record_ = std::move(next);
  return Status::Ok();
}

}  // namespace modelfleet::agent::update
