// TorchRuntime: TorchScript models through libtorch (Debian's libtorch 1.13), for int8 models
// quantized for the QNNPACK engine (format "torchscript-int8", quantization
// "ptq-static-qnnpack"; float models run too).
//
//   auto runtime = TorchRuntime::Create({.num_threads = 1});
//   auto model = (*runtime)->Load("/var/lib/modelfleet/models/mat-detector/1.4.0/model.pt");
//   auto result = (*model)->Run(input, {1, 1, 16, 16});   // result->scores: 4 probabilities
//
// - The quantized engine is set to QNNPACK before every load (a quantized model's packed
//   weights are built for the engine current at load time) and at Create.
// - Inference runs under c10::InferenceMode (no autograd bookkeeping).
// - The model's output must be one tensor (float, or quantized: it is dequantized) holding one
//   score vector (e.g. [1, 4] or [4]); logits are softmaxed, probabilities kept
//   (ResultFromOutputs in model_runtime.h).
// - A model may declare its input shape in the TorchScript extra file
//   "modelfleet_input_shape" (e.g. "1,1,16,16"; torch.jit.save(..., _extra_files=...), as
//   tests/models/make_test_model.py does): Run then rejects any other shape with
//   INVALID_ARGUMENT before running. Without it, a shape the model cannot take surfaces as the
//   model's own error (INTERNAL), and some wrong shapes are not caught at all: libtorch 1.13's
//   QNNPACK quantized::linear does not check its input's feature count, so a [1, 1, 16, 16]
//   model "runs" on [1, 1, 8, 8] and returns garbage.
// - Every libtorch exception (c10::Error, std::exception) is caught here and becomes a Status
//   naming the model file; nothing throws.
// - Threads: libtorch's intra-op thread count is process-wide; Create sets it to num_threads
//   (the last TorchRuntime created wins). Run on one LoadedModel is serialised by a mutex;
//   different LoadedModels run concurrently.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "agent/runtime/model_runtime.h"

namespace modelfleet::agent::runtime {

struct TorchRuntimeOptions {
  // libtorch intra-op threads (QNNPACK's thread pool included), 1..256. 1 on the device: the
  // mat's CPU also runs the sensor and the agent.
  int num_threads = 1;
};

// The TorchScript extra file a model may carry to declare its input shape.
inline constexpr const char* kTorchInputShapeExtraFile = "modelfleet_input_shape";

class TorchRuntime final : public ModelRuntime {
 public:
  // INVALID_ARGUMENT ("num_threads"); FAILED_PRECONDITION if this libtorch has no QNNPACK.
  static Expected<std::unique_ptr<TorchRuntime>> Create(const TorchRuntimeOptions& options = {});

  std::string Name() const override { return "torchscript"; }
  // See ModelRuntime::Load. DATA_LOSS for an empty, truncated or otherwise unreadable archive;
  // INVALID_ARGUMENT for a directory, a readable archive that is not a TorchScript module (e.g.
  // a torch.save'd state dict), a module without forward(), or a malformed
  // modelfleet_input_shape.
  Expected<std::unique_ptr<LoadedModel>> Load(const std::filesystem::path& model_file) override;

  const TorchRuntimeOptions& options() const { return options_; }

 private:
  explicit TorchRuntime(const TorchRuntimeOptions& options) : options_(options) {}
  TorchRuntimeOptions options_;
};

}  // namespace modelfleet::agent::runtime
