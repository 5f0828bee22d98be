#include "agent/sensor/preprocessor.h"

#include <cmath>

namespace modelfleet::agent::sensor {
namespace {

std::string ShapeString(const v1::InputSpec& spec) {
  std::string s = "[";
  for (int i = 0; i < spec.shape_size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(spec.shape(i));
  }
  return s + "]";
}

}  // namespace

Expected<Preprocessor> Preprocessor::Create(const v1::InputSpec& spec) {
  if (spec.dtype() != "float32") {
    return Fail(InvalidArgument("input_spec.dtype", "'" + spec.dtype() +
                                                        "' is not supported by the sensor "
                                                        "preprocessor (only float32)"));
  }
  int h_dim = 0, w_dim = 0, c_dim = 0;
  if (spec.layout() == "NCHW") {
    c_dim = 1, h_dim = 2, w_dim = 3;
  } else if (spec.layout() == "NHWC") {
    h_dim = 1, w_dim = 2, c_dim = 3;
  } else {
    return Fail(InvalidArgument("input_spec.layout", "'" + spec.layout() +
                                                         "' is not supported (NCHW or NHWC)"));
  }
  const std::string expect =
      spec.layout() == "NCHW" ? "[1, 1, H, W]" : "[1, H, W, 1]";
  if (spec.shape_size() != 4) {
    return Fail(InvalidArgument("input_spec.shape", ShapeString(spec) + " must be " + expect +
                                                        " for layout " + spec.layout()));
  }
  if (spec.shape(0) != 1) {
    return Fail(InvalidArgument("input_spec.shape", ShapeString(spec) + ": batch must be 1"));
  }
  if (spec.shape(c_dim) != 1) {
    return Fail(InvalidArgument("input_spec.shape",
                                ShapeString(spec) + ": the pressure grid has one channel, " +
                                    "expected " + expect));
  }
  const int64_t h = spec.shape(h_dim);
  const int64_t w = spec.shape(w_dim);
  if (h < 1 || h > 255 || w < 1 || w > 255) {
    return Fail(InvalidArgument("input_spec.shape",
                                ShapeString(spec) + ": H and W must be 1..255"));
  }
  double mean = 0;
  double sd = 1;
  if (spec.mean_size() > 1) {
    return Fail(InvalidArgument("input_spec.mean", "has " + std::to_string(spec.mean_size()) +
                                                       " values for 1 channel"));
  }
  if (spec.mean_size() == 1) mean = spec.mean(0);
  if (!std::isfinite(mean)) return Fail(InvalidArgument("input_spec.mean", "must be finite"));
  if (spec.std_size() > 1) {
    return Fail(InvalidArgument("input_spec.std", "has " + std::to_string(spec.std_size()) +
                                                      " values for 1 channel"));
  }
  if (spec.std_size() == 1) sd = spec.std(0);
  if (!std::isfinite(sd) || sd <= 0) {
    return Fail(InvalidArgument("input_spec.std", "must be finite and > 0"));
  }
  Preprocessor p;
  p.rows_ = static_cast<size_t>(h);
  p.cols_ = static_cast<size_t>(w);
  p.mean_ = mean;
  p.std_ = sd;
  p.layout_ = spec.layout();
  return p;
}

Status Preprocessor::Run(const PressureFrame& frame, std::span<float> out) const {
  const std::string want = std::to_string(rows_) + "x" + std::to_string(cols_);
  const std::string got = std::to_string(frame.rows) + "x" + std::to_string(frame.cols);
  if (frame.rows != rows_) {
    return InvalidArgument("frame.rows", "grid " + got + " does not match the model's " + want);
  }
  if (frame.cols != cols_) {
    return InvalidArgument("frame.cols", "grid " + got + " does not match the model's " + want);
  }
  if (!frame.well_formed()) {
    return InvalidArgument("frame.values", "holds " + std::to_string(frame.values.size()) +
                                               " readings for a " + got + " grid");
  }
  if (out.size() != element_count()) {
    return InvalidArgument("output", "has " + std::to_string(out.size()) + " floats, need " +
                                         std::to_string(element_count()));
  }
  // One channel: NCHW [1,1,H,W] and NHWC [1,H,W,1] both put (r, c) at r * W + c.
  for (size_t i = 0; i < out.size(); ++i) {
    const double x = static_cast<double>(frame.values[i]) / 65535.0;
    out[i] = static_cast<float>((x - mean_) / std_);
  }
  return Status::Ok();
}

Expected<std::vector<float>> Preprocessor::Run(const PressureFrame& frame) const {
  std::vector<float> out(element_count());
  MF_RETURN_IF_ERROR(Run(frame, out));
  return out;
}

}  // namespace modelfleet::agent::sensor
