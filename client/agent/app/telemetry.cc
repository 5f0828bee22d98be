#include "agent/app/telemetry.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>

namespace modelfleet::agent::app {

Telemetry::Window& Telemetry::WindowFor(const std::string& model, const std::string& version) {
  Window& w = windows_[model + "@" + version];
  if (w.model.empty()) {
    w.model = model;
    w.version = version;
    w.start = std::chrono::system_clock::now();
  }
  return w;
}

void Telemetry::RecordInference(const std::string& model, const std::string& version,
                                double latency_ms, const std::string& class_label, double confidence) {
  std::lock_guard lock(mu_);
  Window& w = WindowFor(model, version);
  ++w.count;
  ++w.histogram[class_label];
  w.confidence_sum += confidence;
  ++w.seen_latencies;
  if (w.latencies_ms.size() < kMaxSamples) {
    w.latencies_ms.push_back(latency_ms);
  } else {
    const uint64_t j = rng_() % w.seen_latencies;
    if (j < kMaxSamples) w.latencies_ms[j] = latency_ms;
  }
}

void Telemetry::RecordError(const std::string& model, const std::string& version) {
  std::lock_guard lock(mu_);
  Window& w = WindowFor(model, version);
  ++w.count;
  ++w.errors;
}

std::vector<Telemetry::Window> Telemetry::Take() {
  std::lock_guard lock(mu_);
  std::vector<Window> out;
  for (auto& [k, w] : windows_) out.push_back(std::move(w));
  windows_.clear();
  return out;
}

void Telemetry::Restore(std::vector<Window> windows) {
  std::lock_guard lock(mu_);
  for (Window& old : windows) {
    Window& w = WindowFor(old.model, old.version);
    w.start = std::min(w.start, old.start);
    w.count += old.count;
    w.errors += old.errors;
    w.confidence_sum += old.confidence_sum;
    w.seen_latencies += old.seen_latencies;
    for (auto& [k, n] : old.histogram) w.histogram[k] += n;
    for (double l : old.latencies_ms) {
      if (w.latencies_ms.size() < kMaxSamples) w.latencies_ms.push_back(l);
    }
  }
}

v1::VersionTelemetry Telemetry::ToProto(const Window& w, std::chrono::system_clock::time_point end) {
  using google::protobuf::util::TimeUtil;
  v1::VersionTelemetry t;
  t.set_model(w.model);
  t.set_version(w.version);
  t.set_inference_count(w.count);
  t.set_error_count(w.errors);
  std::vector<double> l = w.latencies_ms;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) {
    if (l.empty()) return 0.0;
    size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(l.size())));
    return l[std::clamp<size_t>(rank, 1, l.size()) - 1];
  };
  t.mutable_latency()->set_p50_ms(pct(50));
  t.mutable_latency()->set_p95_ms(pct(95));
  t.mutable_latency()->set_p99_ms(pct(99));
  for (const auto& [k, n] : w.histogram) (*t.mutable_class_histogram())[k] = n;
  const uint64_t succeeded = w.count - std::min(w.errors, w.count);
  t.set_mean_confidence(succeeded ? w.confidence_sum / static_cast<double>(succeeded) : 0.0);
  *t.mutable_window_start() = TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(w.start.time_since_epoch()).count());
  *t.mutable_window_end() = TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(end.time_since_epoch()).count());
  return t;
}

}  // namespace modelfleet::agent::app
