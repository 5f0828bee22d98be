// The on-device self-test a model version carries in its manifest (v1::SelfTest in
// proto/modelfleet/v1/model.proto): before the agent switches to a new model it runs the
// manifest's reference input and expects
//   - one output per class label (when the manifest has class_labels),
//   - the reference output, element-wise within self_test.tolerance (absolute), on every run,
//   - the median latency of a few runs after a warm-up within self_test.latency_budget_ms
//     (0 = no budget).
// reference_output holds what LoadedModel::Run reports as `scores`: probabilities (the softmax
// of a model's logits), as tests/models/make_test_model.py writes them.
#pragma once

#include <chrono>
#include <vector>

#include "agent/runtime/model_runtime.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::agent::runtime {

struct SelfTestOptions {
  int warmup_runs = 3;  // >= 1: not timed (the TorchScript executor profiles its first runs)
  int timed_runs = 5;   // >= 1: the latency checked is their median
};

// What a self-test measured, for the agent's check-in report. Filled as far as the test got.
struct SelfTestReport {
  std::vector<float> scores;                 // of the first run
  double max_abs_difference = 0;             // over every run and element
  int worst_element = -1;
  std::chrono::microseconds median_latency{0};
  std::vector<std::chrono::microseconds> latencies;  // the timed runs
};

// OK, or:
//   INVALID_ARGUMENT  the manifest cannot describe a self-test: no/invalid input_spec.shape,
//                     reference_input empty or not of the shape's size, reference_output
//                     empty, tolerance or latency_budget_ms negative or not finite (field
//                     "manifest.input_spec.shape", "manifest.self_test.*");
//   FAILED_PRECONDITION  the model failed it, the message naming what failed: the model's error
//                     on the reference input; "model gives 5 outputs, the manifest has 4
//                     class_labels"; "output[2] (lying_full) is 0.1738, expected 0.3148:
//                     difference 0.141 > tolerance 0.01"; "latency 301.2 ms (median of 5 runs)
//                     exceeds the budget of 50 ms".
Status RunSelfTest(LoadedModel& model, const v1::Manifest& manifest);
Status RunSelfTest(LoadedModel& model, const v1::Manifest& manifest,
                   const SelfTestOptions& options, SelfTestReport* report = nullptr);

}  // namespace modelfleet::agent::runtime
