// Preprocessor: a PressureFrame -> the model's input tensor data, per the model's InputSpec
// (proto/modelfleet/v1/model.proto).
//
// Supported specs (anything else is INVALID_ARGUMENT naming the field):
//   dtype   "float32"
//   layout  "NCHW" with shape [1, 1, H, W], or "NHWC" with shape [1, H, W, 1]
//           (one channel: the pressure grid; batch 1; 1 <= H, W <= 255)
//   mean    empty (= 0) or one value, finite
//   std     empty (= 1) or one value, finite and > 0
// Each reading v becomes  x = ((v / 65535) - mean) / std, computed in double and rounded once to
// float. With one channel NCHW and NHWC have the same memory order: element [r * W + c] is the
// frame's row r, column c (the frame's rows map to H, its cols to W).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "agent/sensor/frame.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::agent::sensor {

class Preprocessor {
 public:
  // INVALID_ARGUMENT naming "input_spec.dtype", "input_spec.layout", "input_spec.shape",
  // "input_spec.mean" or "input_spec.std" when the spec is unusable.
  static Expected<Preprocessor> Create(const v1::InputSpec& spec);

  // Writes element_count() floats to `out`. INVALID_ARGUMENT naming "frame.rows" /
  // "frame.cols" when the grid is not H x W, "frame.values" when the frame is malformed, and
  // "output" when `out` has the wrong size.
  Status Run(const PressureFrame& frame, std::span<float> out) const;
  // The same into a new vector.
  Expected<std::vector<float>> Run(const PressureFrame& frame) const;

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  size_t element_count() const { return rows_ * cols_; }
  double mean() const { return mean_; }
  double stddev() const { return std_; }
  const std::string& layout() const { return layout_; }

 private:
  Preprocessor() = default;
  size_t rows_ = 0;
  size_t cols_ = 0;
  double mean_ = 0;
  double std_ = 1;
  std::string layout_;
};

}  // namespace modelfleet::agent::sensor
