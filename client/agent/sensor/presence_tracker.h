// PresenceTracker: turns per-frame classifications into debounced presence events, the signal
// the mat's app uses to shut itself off when nobody is there.
//
// Input, once per inference: (class label, confidence, time). Times are milliseconds on any
// monotonic timeline the caller chooses (e.g. steady_clock since start, or Unix time); they
// are echoed in the events and must never go backwards.
//
// Debouncing: the tracker's state is one of the class labels, or "unknown" before anything has
// been confirmed. An observation whose label differs from the state starts (or extends) a
// candidate streak; a streak is confirmed -- and the state changes -- once it has lasted
//   hold_frames consecutive observations (if hold_frames > 0), or
//   hold_time from its first to its latest observation (if hold_time > 0),
// whichever comes first. An observation below min_confidence, one of another label, or one
// agreeing with the current state breaks the streak. So a one-frame flicker never changes
// anything.
//
// Events, when the state changes (the "person" classes are every label but empty_label):
//   person_arrived   unknown/empty -> a person class
//   posture_changed  a person class -> another person class (e.g. sitting -> lying_full)
//   person_left      a person class -> empty
//   nobody_for       once per empty period, when the state has been empty for nobody_after,
//                    counted from the first observation of the confirming empty streak (when
//                    the person actually left, not when the debounce caught up). Also fired by
//                    Tick() so it arrives on time even if inferences stop.
// (unknown -> empty emits nothing, but starts the nobody_for clock.)
//
// JSON lines (PresenceEvent::ToJson), one object per event, no trailing newline:
//   {"event":"person_arrived","class":"sitting","confidence":0.93,"time_ms":1200}
//   {"event":"posture_changed","class":"lying_full","from":"sitting","confidence":0.9,"time_ms":5200}
//   {"event":"person_left","class":"empty","from":"lying_full","confidence":0.97,"time_ms":9000}
//   {"event":"nobody_for","seconds":30,"since_ms":8800,"time_ms":38800}
// "confidence" is the mean confidence of the confirming streak, rounded to 3 decimals;
// "time_ms" is the time of the observation (or Tick) that produced the event.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

struct PresenceEvent {
  enum class Kind { kPersonArrived, kPostureChanged, kPersonLeft, kNobodyFor };
  Kind kind = Kind::kPersonArrived;
  std::string class_label;  // the new state (empty for nobody_for)
  std::string from;         // the previous state (posture_changed, person_left)
  double confidence = 0;    // mean confidence of the confirming streak
  std::chrono::milliseconds time{0};
  std::chrono::milliseconds since{0};  // nobody_for: when the empty period began
  std::chrono::milliseconds nobody_after{0};  // nobody_for: the configured threshold

  std::string_view name() const;  // "person_arrived", ...
  std::string ToJson() const;     // see the header comment
};

struct PresenceOptions {
  // The model's labels; observations of anything else are rejected. Empty = accept any label.
  std::vector<std::string> class_labels = {"empty", "sitting", "lying_full", "lying_partial"};
  std::string empty_label = "empty";
  double min_confidence = 0.6;               // 0..1
  int hold_frames = 3;                       // >= 0; 0 = use hold_time only
  std::chrono::milliseconds hold_time{0};    // >= 0; 0 = use hold_frames only
  std::chrono::milliseconds nobody_after{std::chrono::seconds(30)};  // > 0
};

class PresenceTracker {
 public:
  using Sink = std::function<void(const PresenceEvent&)>;

  // INVALID_ARGUMENT naming "presence.min_confidence", "presence.hold_frames",
  // "presence.hold_time" (both hold criteria 0, or negative), "presence.nobody_after",
  // "presence.empty_label" (not among class_labels), or "presence.sink" (unset).
  static Expected<PresenceTracker> Create(const PresenceOptions& options, Sink sink);

  // One inference. INVALID_ARGUMENT ("class_label", "confidence", "time") for an unknown label,
  // a confidence outside [0, 1] or NaN, or a time before the previous one; the state is
  // unchanged then. Events are delivered to the sink before Observe returns.
  Status Observe(std::string_view class_label, double confidence, std::chrono::milliseconds time);
  // Advances time without an inference: only fires a due nobody_for. INVALID_ARGUMENT ("time")
  // if time goes backwards.
  Status Tick(std::chrono::milliseconds time);

  // The confirmed state: a class label, or nullopt while unknown.
  const std::optional<std::string>& state() const { return state_; }
  bool person_present() const { return state_ && *state_ != options_.empty_label; }

 private:
  PresenceTracker(const PresenceOptions& options, Sink sink)
      : options_(options), sink_(std::move(sink)) {}
  void CheckNobody(std::chrono::milliseconds now);
  void ResetCandidate() { candidate_.reset(); }

  struct Candidate {
    std::string label;
    std::chrono::milliseconds first{0};
    int frames = 0;
    double confidence_sum = 0;
  };

  PresenceOptions options_;
  Sink sink_;
  std::optional<std::string> state_;
  std::optional<Candidate> candidate_;
  std::optional<std::chrono::milliseconds> last_time_;
  std::optional<std::chrono::milliseconds> empty_since_;  // set while the state is empty
  bool nobody_fired_ = false;
};

}  // namespace modelfleet::agent::sensor
