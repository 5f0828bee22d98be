// InferenceLoop: the body of the agent's inference thread. Reads frames from the configured
// sensor (synthetic | replay:<path> | serial:<path>; a failing replay or serial source is
// reopened after 1 s), runs the active model on them at most frame_rate_hz times a second, and
// feeds each result to the telemetry of the model's version, to the probation count, and to a
// PresenceTracker whose events go to stdout as JSON lines. The tracker belongs to one model: it
// is rebuilt when the active model changes, and frame-less ticks still advance it, so a
// "nobody for" event arrives on time.
//
// Thread safety: Run is called on one thread. It shares only thread-safe objects with the rest
// of the agent (ActiveModelSlot, Telemetry, Probation, StopSignal).
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "agent/app/active_model.h"
#include "agent/app/config.h"
#include "agent/app/probation.h"
#include "agent/app/stop_signal.h"
#include "agent/app/telemetry.h"
#include "agent/sensor/frame_source.h"
#include "agent/sensor/presence_tracker.h"

namespace modelfleet::agent::app {

class InferenceLoop {
 public:
  // Every argument must outlive the loop.
  InferenceLoop(const AgentConfig& config, const ActiveModelSlot& active, Telemetry& telemetry,
                Probation& probation, StopSignal& stop);

  // Runs until a stop is requested. Returns early, logged, when the sensor cannot be opened at
  // the start (or the synthetic schedule is malformed).
  void Run();

 private:
  // The synthetic source, or nullptr (logged) for a malformed schedule or bad sensor options.
  std::unique_ptr<sensor::FrameSource> OpenSynthetic() const;
  // A replay or serial source, or nullptr (logged) when it cannot be opened or the sensor is
  // neither.
  std::unique_ptr<sensor::FrameSource> OpenDevice() const;
  // The presence tracker for `model`'s class labels; nullopt (logged) if it cannot be made.
  std::optional<sensor::PresenceTracker> NewTracker(const ActiveModel& model) const;
  // Runs `model` on one frame and hands the result to telemetry, probation and `tracker`.
  void Infer(const ActiveModel& model, const sensor::PressureFrame& frame,
             std::optional<sensor::PresenceTracker>& tracker);
  // Milliseconds since Run started: the presence tracker's clock.
  std::chrono::milliseconds Elapsed() const;

  const AgentConfig& config_;
  const ActiveModelSlot& active_;
  Telemetry& telemetry_;
  Probation& probation_;
  StopSignal& stop_;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace modelfleet::agent::app
