#include "agent/sensor/presence_tracker.h"

#include <algorithm>
#include <cmath>

#include "modelfleet/json.h"

namespace modelfleet::agent::sensor {

std::string_view PresenceEvent::name() const {
  switch (kind) {
    case Kind::kPersonArrived: return "person_arrived";
    case Kind::kPostureChanged: return "posture_changed";
    case Kind::kPersonLeft: return "person_left";
    case Kind::kNobodyFor: return "nobody_for";
  }
  return "unknown";
}

std::string PresenceEvent::ToJson() const {
  std::string out = "{\"event\":" + JsonString(name());
  if (kind == Kind::kNobodyFor) {
    out += ",\"seconds\":" + JsonNumber(static_cast<double>(nobody_after.count()) / 1000.0);
    out += ",\"since_ms\":" + std::to_string(since.count());
  } else {
    out += ",\"class\":" + JsonString(class_label);
    if (kind != Kind::kPersonArrived) out += ",\"from\":" + JsonString(from);
    out += ",\"confidence\":" + JsonNumber(std::round(confidence * 1000.0) / 1000.0);
  }
  out += ",\"time_ms\":" + std::to_string(time.count());
  return out + "}";
}

Expected<PresenceTracker> PresenceTracker::Create(const PresenceOptions& options, Sink sink) {
  if (!(options.min_confidence >= 0 && options.min_confidence <= 1)) {
    return Fail(InvalidArgument("presence.min_confidence", "must be 0..1"));
  }
  if (options.hold_frames < 0) return Fail(InvalidArgument("presence.hold_frames", "must be >= 0"));
  if (options.hold_time < std::chrono::milliseconds(0)) {
    return Fail(InvalidArgument("presence.hold_time", "must be >= 0"));
  }
  if (options.hold_frames == 0 && options.hold_time == std::chrono::milliseconds(0)) {
    return Fail(InvalidArgument("presence.hold_frames",
                                "and presence.hold_time are both 0: set at least one"));
  }
  if (options.nobody_after <= std::chrono::milliseconds(0)) {
    return Fail(InvalidArgument("presence.nobody_after", "must be > 0"));
  }
  if (!options.class_labels.empty() &&
      std::find(options.class_labels.begin(), options.class_labels.end(), options.empty_label) ==
          options.class_labels.end()) {
    return Fail(InvalidArgument("presence.empty_label",
                                "'" + options.empty_label + "' is not one of the class labels"));
  }
  if (!sink) return Fail(InvalidArgument("presence.sink", "is not set"));
  return PresenceTracker(options, std::move(sink));
}

Status PresenceTracker::Observe(std::string_view label, double confidence,
                                std::chrono::milliseconds time) {
  if (!options_.class_labels.empty() &&
      std::find(options_.class_labels.begin(), options_.class_labels.end(), label) ==
          options_.class_labels.end()) {
    return InvalidArgument("class_label", "'" + std::string(label) + "' is not a class label");
  }
  if (!(confidence >= 0 && confidence <= 1)) {
    return InvalidArgument("confidence", "must be 0..1");
  }
  if (last_time_ && time < *last_time_) {
    return InvalidArgument("time", "went backwards: " + std::to_string(time.count()) + " ms < " +
                                       std::to_string(last_time_->count()) + " ms");
  }
  last_time_ = time;

  if (confidence < options_.min_confidence || (state_ && *state_ == label)) {
    ResetCandidate();
    CheckNobody(time);
    return Status::Ok();
  }
  if (!candidate_ || candidate_->label != label) {
    candidate_ = Candidate{std::string(label), time, 0, 0};
  }
  ++candidate_->frames;
  candidate_->confidence_sum += confidence;

  const bool by_frames = options_.hold_frames > 0 && candidate_->frames >= options_.hold_frames;
  const bool by_time = options_.hold_time > std::chrono::milliseconds(0) &&
                       time - candidate_->first >= options_.hold_time;
  if (by_frames || by_time) {
    const Candidate c = std::move(*candidate_);
    ResetCandidate();
    const bool was_person = person_present();
    const std::optional<std::string> from = state_;
    state_ = c.label;
    const bool is_person = c.label != options_.empty_label;

    PresenceEvent e;
    e.class_label = c.label;
    e.from = from.value_or("");
    e.confidence = c.confidence_sum / c.frames;
    e.time = time;
    if (is_person) {
      empty_since_.reset();
      nobody_fired_ = false;
      e.kind = was_person ? PresenceEvent::Kind::kPostureChanged
                          : PresenceEvent::Kind::kPersonArrived;
      sink_(e);
    } else {
      empty_since_ = c.first;
      nobody_fired_ = false;
      if (was_person) {
        e.kind = PresenceEvent::Kind::kPersonLeft;
        sink_(e);
      }
    }
  }
  CheckNobody(time);
  return Status::Ok();
}

Status PresenceTracker::Tick(std::chrono::milliseconds time) {
  if (last_time_ && time < *last_time_) {
    return InvalidArgument("time", "went backwards: " + std::to_string(time.count()) + " ms < " +
                                       std::to_string(last_time_->count()) + " ms");
  }
  last_time_ = time;
  CheckNobody(time);
  return Status::Ok();
}

void PresenceTracker::CheckNobody(std::chrono::milliseconds now) {
  if (!empty_since_ || nobody_fired_) return;
  if (now - *empty_since_ < options_.nobody_after) return;
  nobody_fired_ = true;
  PresenceEvent e;
  e.kind = PresenceEvent::Kind::kNobodyFor;
  e.time = now;
  e.since = *empty_since_;
  e.nobody_after = options_.nobody_after;
  sink_(e);
}

}  // namespace modelfleet::agent::sensor
