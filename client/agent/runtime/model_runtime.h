// The agent's model runtime, behind an interface: a ModelRuntime loads a model file into a
// LoadedModel, which runs one input at a time. The agent, the self-test (self_test.h) and the
// rest of modelfleet-agent only see these types, so another runtime (ExecuTorch on Android, a
// fake in tests) is one more implementation, not a change elsewhere.
//
// Implementations:
//   torch_runtime.h   TorchScript via libtorch (int8 models on the QNNPACK engine).
//
// Error style (common/modelfleet/status.h): nothing here throws; library exceptions are caught
// inside the implementation and become a Status.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::agent::runtime {

struct InferenceResult {
  // One probability per class (the model's outputs, softmaxed unless they already are
  // probabilities), in the order of the manifest's class_labels. Sums to 1.
  std::vector<float> scores;
  int class_index = -1;  // argmax of scores (the first one on ties)
  float confidence = 0;  // scores[class_index]
  // Wall time of this call on the steady clock: input tensor, inference, output conversion.
  std::chrono::microseconds latency{0};
};

class LoadedModel {
 public:
  virtual ~LoadedModel() = default;

  // Runs the model on one input: `input` is the flattened (row-major) float tensor of `shape`
  // (e.g. [1, 1, 16, 16], as agent/sensor/preprocessor.h produces it; one frame per call).
  // INVALID_ARGUMENT for a size/shape mismatch (field "input" or "shape"), INTERNAL for a
  // runtime failure. Never throws. Safe to call from several threads (calls on one model may
  // be serialised); different LoadedModels run concurrently.
  virtual Expected<InferenceResult> Run(std::span<const float> input,
                                        const std::vector<int64_t>& shape) = 0;
};

class ModelRuntime {
 public:
  virtual ~ModelRuntime() = default;

  // "torchscript", "executorch", ...: for logs and check-in reports.
  virtual std::string Name() const = 0;

  // Loads a model file. NOT_FOUND (no such file), DATA_LOSS (a corrupt or truncated file),
  // INVALID_ARGUMENT (readable but not a model this runtime can run), INTERNAL (anything
  // else). The messages name the file.
  virtual Expected<std::unique_ptr<LoadedModel>> Load(const std::filesystem::path& model_file) = 0;
};

// For implementations: a classifier's raw outputs as an InferenceResult (latency unset). The
// outputs are kept as they are when they already are probabilities (every one in [0, 1] and
// their sum within 1e-3 of 1), else softmaxed (computed in double, max-subtracted).
// INTERNAL when there are no outputs or one is not finite.
Expected<InferenceResult> ResultFromOutputs(std::span<const float> outputs);

// "[1, 1, 16, 16]", for messages.
std::string ShapeToString(std::span<const int64_t> shape);

}  // namespace modelfleet::agent::runtime
