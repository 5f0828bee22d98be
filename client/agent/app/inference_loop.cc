#include "agent/app/inference_loop.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "agent/sensor/replay_frame_source.h"
#include "agent/sensor/serial_frame_source.h"
#include "agent/sensor/synthetic.h"

namespace modelfleet::agent::app {

InferenceLoop::InferenceLoop(const AgentConfig& config, const ActiveModelSlot& active,
                             Telemetry& telemetry, Probation& probation, StopSignal& stop)
    : config_(config), active_(active), telemetry_(telemetry), probation_(probation), stop_(stop) {}

std::chrono::milliseconds InferenceLoop::Elapsed() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_);
}

std::unique_ptr<sensor::FrameSource> InferenceLoop::OpenSynthetic() const {
  sensor::SyntheticSourceOptions o;
  o.sensor.rows = static_cast<uint16_t>(config_.sensor_rows);
  o.sensor.cols = static_cast<uint16_t>(config_.sensor_cols);
  o.sensor.seed = config_.synthetic_seed;
  o.frame_rate_hz = config_.frame_rate_hz;
  o.realtime = true;
  auto schedule = sensor::ParseSchedule(config_.synthetic_schedule);
  if (!schedule) {
    spdlog::error("synthetic_schedule: {}", schedule.error().ToString());
    return nullptr;
  }
  o.schedule = *schedule;
  auto src = sensor::SyntheticFrameSource::Create(o);
  if (!src) {
    spdlog::error("sensor: {}", src.error().ToString());
    return nullptr;
  }
  return std::move(*src);
}

std::unique_ptr<sensor::FrameSource> InferenceLoop::OpenDevice() const {
  if (config_.sensor.rfind("replay:", 0) == 0) {
    sensor::ReplayOptions o;
    o.path = config_.sensor.substr(7);
    o.rate_hz = config_.frame_rate_hz;
    o.loop = true;
    auto src = sensor::ReplayFrameSource::Open(o);
    if (!src) {
      spdlog::error("sensor: {}", src.error().ToString());
      return nullptr;
    }
    return std::move(*src);
  }
  if (config_.sensor.rfind("serial:", 0) == 0) {
    sensor::SerialOptions o;
    o.path = config_.sensor.substr(7);
    o.baud = config_.serial_baud;
    o.decoder.expected_rows = static_cast<uint16_t>(config_.sensor_rows);
    o.decoder.expected_cols = static_cast<uint16_t>(config_.sensor_cols);
    auto src = sensor::SerialFrameSource::Open(o);
    if (!src) {
      spdlog::error("sensor: {}", src.error().ToString());
      return nullptr;
    }
    return std::move(*src);
  }
  return nullptr;
}

std::optional<sensor::PresenceTracker> InferenceLoop::NewTracker(const ActiveModel& model) const {
  sensor::PresenceOptions po;
  po.class_labels.assign(model.manifest.class_labels().begin(), model.manifest.class_labels().end());
  if (po.class_labels.empty()) po.class_labels = {"empty"};
  po.empty_label = std::find(po.class_labels.begin(), po.class_labels.end(), "empty") != po.class_labels.end()
                       ? "empty" : po.class_labels.front();
  po.min_confidence = config_.presence_min_confidence;
  po.hold_frames = config_.presence_hold_frames;
  po.nobody_after = config_.presence_nobody_after;
  auto t = sensor::PresenceTracker::Create(po, [](const sensor::PresenceEvent& e) {
    const std::string line = e.ToJson() + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
  });
  if (!t) {
    spdlog::error("presence tracker: {}", t.error().ToString());
    return std::nullopt;
  }
  return std::move(*t);
}

void InferenceLoop::Run() {
  const bool synthetic = config_.sensor == "synthetic";
  std::unique_ptr<sensor::FrameSource> source = synthetic ? OpenSynthetic() : OpenDevice();
  if (!source) return;

  start_ = std::chrono::steady_clock::now();
  std::shared_ptr<const ActiveModel> model;
  std::optional<sensor::PresenceTracker> tracker;
  const auto min_period = std::chrono::duration<double>(1.0 / config_.frame_rate_hz);
  auto next_due = std::chrono::steady_clock::now();
  while (!stop_.requested()) {
    auto frame = source->Next(std::chrono::milliseconds(200));
    if (!frame) {
      spdlog::error("sensor failed: {}; reopening in 1 s", frame.error().ToString());
      stop_.SleepFor(std::chrono::seconds(1));
      if (!synthetic) {
        if (auto reopened = OpenDevice()) source = std::move(reopened);
      }
      continue;
    }
    if (auto current = active_.Get(); current != model) {
      model = std::move(current);
      tracker.reset();
      if (model) tracker = NewTracker(*model);
    }
    if (!frame->has_value()) {
      if (tracker) (void)tracker->Tick(Elapsed());
      continue;
    }
    if (!model) continue;
    // At most frame_rate_hz inferences per second, whatever the source delivers.
    const auto now = std::chrono::steady_clock::now();
    if (now < next_due) continue;
    next_due = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(min_period * 0.9);
    Infer(*model, **frame, tracker);
  }
}

void InferenceLoop::Infer(const ActiveModel& model, const sensor::PressureFrame& frame,
                          std::optional<sensor::PresenceTracker>& tracker) {
  const v1::Manifest& m = model.manifest;
  auto input = model.preprocessor.Run(frame);
  if (!input) {
    telemetry_.RecordError(m.model(), m.version());
    probation_.Count(m.digest(), true);
    spdlog::debug("preprocess: {}", input.error().ToString());
    return;
  }
  std::vector<int64_t> shape(m.input_spec().shape().begin(), m.input_spec().shape().end());
  auto result = model.model->Run(*input, shape);
  if (!result) {
    telemetry_.RecordError(m.model(), m.version());
    probation_.Count(m.digest(), true);
    spdlog::debug("inference: {}", result.error().ToString());
    return;
  }
  const std::string label =
      result->class_index >= 0 && result->class_index < m.class_labels_size()
          ? m.class_labels(result->class_index) : std::to_string(result->class_index);
  const double latency_ms = static_cast<double>(result->latency.count()) / 1000.0;
  telemetry_.RecordInference(m.model(), m.version(), latency_ms, label, result->confidence);
  const double budget = m.self_test().latency_budget_ms();
  probation_.Count(m.digest(), budget > 0 && latency_ms > budget);
  if (tracker) {
    Status s = tracker->Observe(label, result->confidence, Elapsed());
    if (!s.ok()) spdlog::debug("presence: {}", s.ToString());
  }
}

}  // namespace modelfleet::agent::app
