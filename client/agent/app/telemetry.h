// Per-model-version inference telemetry between two check-ins: count, errors, latency
// percentiles (nearest rank over the window's samples, at most kMaxSamples kept by reservoir
// sampling), class histogram, mean confidence. Thread-safe.
//
// `count` (the check-in's inference_count) counts every inference attempted, the failed ones
// included, so error_count <= inference_count always holds (the server refuses a check-in
// otherwise); latencies, the histogram and the mean confidence are over the successful ones.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::agent::app {

class Telemetry {
 public:
  static constexpr size_t kMaxSamples = 4096;

  void RecordInference(const std::string& model, const std::string& version, double latency_ms,
                       const std::string& class_label, double confidence);
  void RecordError(const std::string& model, const std::string& version);

  struct Window {
    std::string model, version;
    uint64_t count = 0, errors = 0, seen_latencies = 0;  // count includes errors
    std::vector<double> latencies_ms;
    std::map<std::string, uint64_t> histogram;
    double confidence_sum = 0;
    std::chrono::system_clock::time_point start{};
  };
  // Takes the current windows (and starts new ones).
  std::vector<Window> Take();
  // Puts windows back (the check-in that should have carried them failed).
  void Restore(std::vector<Window> windows);

  static v1::VersionTelemetry ToProto(const Window& w, std::chrono::system_clock::time_point end);

 private:
  Window& WindowFor(const std::string& model, const std::string& version);
  std::mutex mu_;
  std::map<std::string, Window> windows_;
  std::mt19937_64 rng_{12345};
};

}  // namespace modelfleet::agent::app
