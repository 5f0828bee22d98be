#include "agent/runtime/self_test.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace modelfleet::agent::runtime {
namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string Ms(std::chrono::microseconds us) { return Num(static_cast<double>(us.count()) / 1000.0); }

}  // namespace

Status RunSelfTest(LoadedModel& model, const v1::Manifest& manifest) {
  return RunSelfTest(model, manifest, SelfTestOptions{}, nullptr);
}

Status RunSelfTest(LoadedModel& model, const v1::Manifest& manifest,
                   const SelfTestOptions& options, SelfTestReport* report) {
  SelfTestReport local;
  SelfTestReport& r = report ? *report : local;
  r = SelfTestReport{};
  const v1::SelfTest& test = manifest.self_test();

  // The manifest's side.
  if (options.warmup_runs < 1 || options.timed_runs < 1) {
    return InvalidArgument("options", "warmup_runs and timed_runs must be >= 1");
  }
  const auto& spec_shape = manifest.input_spec().shape();
  if (spec_shape.empty()) {
    return InvalidArgument("manifest.input_spec.shape",
                           "is empty: the reference input cannot be shaped");
  }
  std::vector<int64_t> shape(spec_shape.begin(), spec_shape.end());
  uint64_t elements = 1;
  for (int64_t d : shape) {
    if (d <= 0 || static_cast<uint64_t>(d) > (uint64_t{1} << 32) / elements) {
      return InvalidArgument("manifest.input_spec.shape",
                             ShapeToString(shape) + " is not a valid shape");
    }
    elements *= static_cast<uint64_t>(d);
  }
  if (test.reference_input().empty()) {
    return InvalidArgument("manifest.self_test.reference_input", "is empty: no self-test");
  }
  if (static_cast<uint64_t>(test.reference_input_size()) != elements) {
    return InvalidArgument("manifest.self_test.reference_input",
                           "has " + std::to_string(test.reference_input_size()) +
                               " values; input_spec.shape " + ShapeToString(shape) + " needs " +
                               std::to_string(elements));
  }
  if (test.reference_output().empty()) {
    return InvalidArgument("manifest.self_test.reference_output", "is empty");
  }
  if (!std::isfinite(test.tolerance()) || test.tolerance() < 0) {
    return InvalidArgument("manifest.self_test.tolerance", "must be finite and >= 0");
  }
  if (!std::isfinite(test.latency_budget_ms()) || test.latency_budget_ms() < 0) {
    return InvalidArgument("manifest.self_test.latency_budget_ms", "must be finite and >= 0");
  }
  const std::span<const float> input(test.reference_input().data(),
                                     static_cast<size_t>(test.reference_input_size()));
  const auto label = [&](int i) {
    return i < manifest.class_labels_size() ? " (" + manifest.class_labels(i) + ")"
                                            : std::string();
  };

  // The model's side.
  const int total_runs = options.warmup_runs + options.timed_runs;
  for (int run = 0; run < total_runs; ++run) {
    auto result = model.Run(input, shape);
    if (!result) {
      return FailedPrecondition("self-test: the model failed on the reference input (run " +
                                std::to_string(run + 1) + "): " + result.error().ToString());
    }
    const auto& scores = result->scores;
    if (run == 0) {
      r.scores = scores;
      if (manifest.class_labels_size() > 0 &&
          scores.size() != static_cast<size_t>(manifest.class_labels_size())) {
        return FailedPrecondition("self-test: the model gives " + std::to_string(scores.size()) +
                                  " outputs, the manifest has " +
                                  std::to_string(manifest.class_labels_size()) +
                                  " class_labels");
      }
      if (scores.size() != static_cast<size_t>(test.reference_output_size())) {
        return FailedPrecondition("self-test: the model gives " + std::to_string(scores.size()) +
                                  " outputs, self_test.reference_output has " +
                                  std::to_string(test.reference_output_size()));
      }
    }
    // Every run, not only the first: an output that drifts between runs fails too.
    int worst = -1, differing = 0;
    double worst_diff = -1;
    for (size_t i = 0; i < scores.size(); ++i) {
      const double diff = std::abs(double{scores[i]} - double{test.reference_output(static_cast<int>(i))});
      const bool bad = !(diff <= test.tolerance());  // NaN fails too
      differing += bad;
      if (bad && (worst < 0 || !(diff <= worst_diff))) worst = static_cast<int>(i), worst_diff = diff;
      if (diff > r.max_abs_difference || std::isnan(diff)) {
        r.max_abs_difference = diff;
        r.worst_element = static_cast<int>(i);
      }
    }
    if (differing > 0) {
      return FailedPrecondition(
          "self-test: output[" + std::to_string(worst) + "]" + label(worst) + " is " +
          Num(scores[worst]) + ", expected " + Num(test.reference_output(worst)) +
          ": difference " + Num(worst_diff) + " > tolerance " + Num(test.tolerance()) + " (" +
          std::to_string(differing) + " of " + std::to_string(scores.size()) +
          " outputs differ, run " + std::to_string(run + 1) + ")");
    }
    if (run >= options.warmup_runs) r.latencies.push_back(result->latency);
  }

  std::vector<std::chrono::microseconds> sorted = r.latencies;
  std::sort(sorted.begin(), sorted.end());
  r.median_latency = sorted[sorted.size() / 2];
  const double budget = test.latency_budget_ms();
  if (budget > 0 && static_cast<double>(r.median_latency.count()) / 1000.0 > budget) {
    return FailedPrecondition("self-test: latency " + Ms(r.median_latency) + " ms (median of " +
                              std::to_string(sorted.size()) + " runs after " +
                              std::to_string(options.warmup_runs) + " warm-up run" +
                              (options.warmup_runs == 1 ? "" : "s") + ") exceeds the budget of " +
                              Num(budget) + " ms");
  }
  return Status::Ok();
}

}  // namespace modelfleet::agent::runtime
