// CheckInLoop: the agent's main loop, on the thread that called Agent::Run. Each round:
//   1. goes on with an update under way (Updater::Continue);
//   2. checks in (DeviceService.CheckIn): the running model, what the update flow is doing, the
//      device attributes (until a check-in succeeded once) and the telemetry windows; when idle,
//      starts the assignment the server answers with (unless it is the one that just finished);
//   3. sleeps the server's interval (config.check_in_interval when it names none; 1 s while an
//      update is under way), or after a failure the jittered backoff. UNAUTHENTICATED means the
//      credential was revoked: with an enrollment token configured the agent enrolls again.
// The telemetry of a failed check-in is put back for the next one, unless the server refused the
// check-in as INVALID_ARGUMENT: it would refuse it again with every later check-in, so it is
// dropped (and logged).
//
// Thread safety: not thread-safe; one thread runs it.
#pragma once

#include <chrono>

#include "agent/app/active_model.h"
#include "agent/app/backoff.h"
#include "agent/app/config.h"
#include "agent/app/enrollment.h"
#include "agent/app/stop_signal.h"
#include "agent/app/telemetry.h"
#include "agent/update/update_state.h"
#include "agent/update/updater.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::agent::app {

class CheckInLoop {
 public:
  // Every argument must outlive the loop. `state` is the record `updater` drives.
  CheckInLoop(const AgentConfig& config, v1::DeviceService::Stub& device, Enrollment& enrollment,
              const ActiveModelSlot& active, Telemetry& telemetry,
              const update::UpdateStateStore& state, update::Updater& updater, StopSignal& stop,
              Backoff& backoff);

  // Runs until a stop is requested. Errors are logged, never returned: the current model keeps
  // running whatever the server does.
  void Run();

 private:
  // One check-in; the server's interval in *next. The gRPC error (StatusFromGrpc), or the
  // non-retryable error of starting the assignment it answered with.
  Status CheckIn(std::chrono::seconds* next);
  // Starts `assignment` unless an update is under way or it already finished.
  Status TakeAssignment(const v1::Assignment& assignment);

  const AgentConfig& config_;
  v1::DeviceService::Stub& device_;
  Enrollment& enrollment_;
  const ActiveModelSlot& active_;
  Telemetry& telemetry_;
  const update::UpdateStateStore& state_;
  update::Updater& updater_;
  StopSignal& stop_;
  Backoff& backoff_;
  bool attributes_sent_ = false;
};

}  // namespace modelfleet::agent::app
