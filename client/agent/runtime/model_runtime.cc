#include "agent/runtime/model_runtime.h"

#include <algorithm>
#include <cmath>

namespace modelfleet::agent::runtime {

Expected<InferenceResult> ResultFromOutputs(std::span<const float> outputs) {
  if (outputs.empty()) return Fail(Internal("the model produced no outputs"));
  bool probabilities = true;
  double sum = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const float v = outputs[i];
    if (!std::isfinite(v)) {
      return Fail(Internal("the model produced a non-finite output (output[" + std::to_string(i) +
                           "] = " + std::to_string(v) + ")"));
    }
    probabilities &= v >= 0.0f && v <= 1.0f;
    sum += v;
  }
  probabilities &= std::abs(sum - 1.0) <= 1e-3;

  InferenceResult result;
  result.scores.resize(outputs.size());
  if (probabilities) {
    std::copy(outputs.begin(), outputs.end(), result.scores.begin());
  } else {
    const double max = *std::max_element(outputs.begin(), outputs.end());
    double total = 0;
    std::vector<double> e(outputs.size());
    for (size_t i = 0; i < outputs.size(); ++i) total += e[i] = std::exp(double{outputs[i]} - max);
    for (size_t i = 0; i < outputs.size(); ++i) result.scores[i] = static_cast<float>(e[i] / total);
  }
  const auto best = std::max_element(result.scores.begin(), result.scores.end());
  result.class_index = static_cast<int>(best - result.scores.begin());
  result.confidence = *best;
  return result;
}

std::string ShapeToString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace modelfleet::agent::runtime
