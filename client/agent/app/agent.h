// The modelfleet-agent process, composed of parts with one job each:
//   Enrollment       the device credential: the stored one, or enrolling for one (enrollment.h)
//   CheckInLoop      check-ins with jittered backoff, starting and continuing the update flow
//                    (check_in_loop.h)
//   Updater          the update flow itself, a declared state table (agent/update/updater.h)
//   Probation        the rollback window after an activation (probation.h)
//   InferenceLoop    sensor -> Preprocessor -> LoadedModel -> PresenceTracker, presence events as
//                    JSON lines on stdout, telemetry per model version (inference_loop.h)
//   ActiveModelSlot  the model running now, shared by all of them (active_model.h)
// The current model keeps running whatever the server does. A test hook (test_hooks.h,
// MODELFLEET_AGENT_PAUSE_AT) can pause the update flow at a given state for the kill tests.
//
// Threads: the caller of Run runs the check-in loop and the update flow; the inference loop has
// a thread of its own. RequestStop may be called from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "agent/app/active_model.h"
#include "agent/app/backoff.h"
#include "agent/app/config.h"
#include "agent/app/enrollment.h"
#include "agent/app/inference_loop.h"
#include "agent/app/probation.h"
#include "agent/app/stop_signal.h"
#include "agent/app/telemetry.h"
#include "agent/app/test_hooks.h"
#include "agent/runtime/torch_runtime.h"
#include "agent/update/model_store.h"
#include "agent/update/update_state.h"
#include "agent/update/updater.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::agent::app {

class Agent {
 public:
  explicit Agent(AgentConfig config);
  // Requests a stop and joins the inference thread.
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs until RequestStop(); the error if it cannot start: INVALID_ARGUMENT naming the key for
  // a bad configuration (publisher_key, tls_ca, state_dir, MODELFLEET_AGENT_PAUSE_AT,
  // enrollment_token), or the enrollment's refusal, a corrupt state directory, ...
  Status Run();
  // Thread-safe; idempotent.
  void RequestStop();

 private:
  // Reads the publisher keys, opens the state directory, the model store, the update record, the
  // model runtime and the server channel.
  Status Init();
  // Makes the installed model (or else the last-known-good one) active; none is fine.
  Status LoadActiveModel();
  // Switches the active model; `probation` watches its first inferences (a fresh activation).
  void SetActive(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model,
                 bool probation = false);
  std::unique_ptr<update::Updater> NewUpdater(const std::optional<PauseAt>& pause);

  AgentConfig config_;
  StopSignal stop_;
  Backoff backoff_;  // enrollment and check-ins: one server, one backoff
  Telemetry telemetry_;
  ActiveModelSlot active_;
  Probation probation_;

  std::vector<update::PinnedKey> keys_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DeviceService::Stub> device_;
  std::unique_ptr<runtime::TorchRuntime> runtime_;
  std::unique_ptr<update::ModelStore> store_;
  std::optional<update::UpdateStateStore> state_;
  std::unique_ptr<Enrollment> enrollment_;
  std::unique_ptr<update::DeploymentReporter> reporter_;
  std::unique_ptr<update::Updater> updater_;

  InferenceLoop inference_;
  std::thread inference_thread_;
};

}  // namespace modelfleet::agent::app
