#include "agent/runtime/torch_runtime.h"

// libtorch's headers are SYSTEM includes (an imported target), so the project's
// -Wall -Wextra -Werror does not apply to them.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/script.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include "modelfleet/numbers.h"

namespace modelfleet::agent::runtime {
namespace {

namespace fs = std::filesystem;

// libtorch messages can be long (TorchScript tracebacks with source excerpts) and carry the
// reason at the end ("... RuntimeError: mat1 and mat2 shapes cannot be multiplied"): one line,
// whitespace collapsed, and when long its head and its tail.
std::string OneLine(std::string_view in) {
  constexpr size_t kHead = 160, kTail = 440;
  std::string s;
  s.reserve(in.size());
  for (char c : in) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (space && (s.empty() || s.back() == ' ')) continue;
    s += space ? ' ' : c;
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (s.size() > kHead + kTail + 5) s = s.substr(0, kHead) + " ... " + s.substr(s.size() - kTail);
  return s;
}
std::string Describe(const c10::Error& e) { return OneLine(e.what_without_backtrace()); }
std::string Describe(const std::exception& e) { return OneLine(e.what()); }

// Whether a load error says the archive itself is unreadable (corrupt, truncated: the zip
// layer, caffe2::serialize::PytorchStreamReader, failed) rather than a readable archive that is
// not a TorchScript module (e.g. "PytorchStreamReader failed locating file constants.pkl").
bool IsArchiveCorruption(std::string_view message) {
  for (std::string_view needle :
       {"PytorchStreamReader failed reading",  // "... zip archive: failed finding central
                                               // directory", "... file data/0: invalid header"
        "failed finding central directory", "archive is corrupted",
        "unexpected decompressed size"}) {
    if (message.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

// The Status of a file torch::jit::load rejected with `message`.
Status LoadError(const std::string& name, const std::string& message) {
  if (IsArchiveCorruption(message)) {
    return DataLoss("model file '" + name + "' is corrupt or truncated: " + message);
  }
  return InvalidArgument("model_file",
                         "'" + name + "' is not a loadable TorchScript model: " + message);
}

// "1,1,16,16" -> {1, 1, 16, 16}; nullopt unless 1..8 integers in 1..2^31.
std::optional<std::vector<int64_t>> ParseShape(std::string_view text) {
  std::vector<int64_t> shape;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.starts_with('[') && text.ends_with(']')) text = text.substr(1, text.size() - 2);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(pos, end - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    const std::optional<int64_t> v = ParseNumber<int64_t>(item);
    if (!v || *v < 1 || *v > (int64_t{1} << 31)) return std::nullopt;
    shape.push_back(*v);
    pos = end + 1;
  }
  if (shape.empty() || shape.size() > 8) return std::nullopt;
  return shape;
}

class TorchLoadedModel final : public LoadedModel {
 public:
  TorchLoadedModel(torch::jit::Module module, std::string name,
                   std::optional<std::vector<int64_t>> declared_shape)
      : module_(std::move(module)),
        name_(std::move(name)),
        declared_shape_(std::move(declared_shape)) {}

  Expected<InferenceResult> Run(std::span<const float> input,
                                const std::vector<int64_t>& shape) override {
    if (shape.empty() || shape.size() > 8) {
      return Fail(InvalidArgument("shape", ShapeToString(shape) + " must have 1 to 8 dimensions"));
    }
    size_t elements = 1;
    for (int64_t d : shape) {
      if (d <= 0) {
        return Fail(InvalidArgument("shape", ShapeToString(shape) + " has a dimension <= 0"));
      }
      if (static_cast<uint64_t>(d) > std::numeric_limits<size_t>::max() / elements) {
        return Fail(InvalidArgument("shape", ShapeToString(shape) + " is too large"));
      }
      elements *= static_cast<size_t>(d);
    }
    if (input.size() != elements) {
      return Fail(InvalidArgument("input", "has " + std::to_string(input.size()) +
                                               " values; shape " + ShapeToString(shape) +
                                               " needs " + std::to_string(elements)));
    }
    if (declared_shape_ && shape != *declared_shape_) {
      return Fail(InvalidArgument("shape", ShapeToString(shape) + " is not the input shape " +
                                               ShapeToString(*declared_shape_) + " model '" +
                                               name_ + "' declares"));
    }

    std::lock_guard lock(mu_);
    const auto start = std::chrono::steady_clock::now();
    std::vector<float> outputs;
    try {
      c10::InferenceMode inference_mode;
      at::Tensor in = torch::empty(shape, torch::dtype(torch::kFloat32));
      std::memcpy(in.data_ptr<float>(), input.data(), elements * sizeof(float));
      std::vector<c10::IValue> args{std::move(in)};
      c10::IValue out = module_.forward(std::move(args));
      if (!out.isTensor()) {
        return Fail(Internal("model '" + name_ + "' returned a " + out.tagKind() +
                             ", not a tensor"));
      }
      at::Tensor t = out.toTensor();
      if (t.is_quantized()) t = t.dequantize();
      int non_unit_dims = 0;
      for (int64_t d : t.sizes()) non_unit_dims += d != 1;
      if (non_unit_dims > 1 || t.numel() == 0) {
        return Fail(Internal("model '" + name_ + "' returned shape " +
                             ShapeToString(t.sizes().vec()) +
                             ", not one score vector (one input per call)"));
      }
      t = t.to(torch::kFloat32).contiguous();
      outputs.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    } catch (const c10::Error& e) {
      return Fail(Internal(Running(shape) + Describe(e)));
    } catch (const std::bad_alloc&) {
      return Fail(Internal(Running(shape) + "out of memory"));
    } catch (const std::exception& e) {
      // torch::jit::JITException (an error inside the TorchScript interpreter) is a
      // std::runtime_error, not a c10::Error.
      return Fail(Internal(Running(shape) + Describe(e)));
    } catch (...) {
      return Fail(Internal(Running(shape) + "unknown exception"));
    }
    auto result = ResultFromOutputs(outputs);
    if (!result) return Fail(result.error().Annotate("model '" + name_ + "'"));
    result->latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    return result;
  }

 private:
  std::string Running(const std::vector<int64_t>& shape) const {
    return "running model '" + name_ + "' on input " + ShapeToString(shape) + ": ";
  }

  std::mutex mu_;
  torch::jit::Module module_;
  const std::string name_;
  const std::optional<std::vector<int64_t>> declared_shape_;
};

// Selects QNNPACK; false if this libtorch was built without it.
bool SelectQnnpack() {
  const auto& engines = at::globalContext().supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::QNNPACK) == engines.end()) {
    return false;
  }
  if (at::globalContext().qEngine() != at::QEngine::QNNPACK) {
    at::globalContext().setQEngine(at::QEngine::QNNPACK);
  }
  return true;
}

}  // namespace

Expected<std::unique_ptr<TorchRuntime>> TorchRuntime::Create(const TorchRuntimeOptions& options) {
  if (options.num_threads < 1 || options.num_threads > 256) {
    return Fail(InvalidArgument("num_threads", std::to_string(options.num_threads) +
                                                   " is not in 1..256"));
  }
  try {
    if (!SelectQnnpack()) {
      return Fail(FailedPrecondition("this libtorch has no QNNPACK quantized engine"));
    }
    at::set_num_threads(options.num_threads);
  } catch (const c10::Error& e) {
    return Fail(Internal("initialising libtorch: " + Describe(e)));
  } catch (const std::exception& e) {
    return Fail(Internal("initialising libtorch: " + Describe(e)));
  }
  return std::unique_ptr<TorchRuntime>(new TorchRuntime(options));
}

Expected<std::unique_ptr<LoadedModel>> TorchRuntime::Load(const fs::path& model_file) {
  const std::string name = model_file.string();
  std::error_code ec;
  const auto status = fs::status(model_file, ec);
  if (status.type() == fs::file_type::not_found) {
    return Fail(NotFound("model file '" + name + "' does not exist"));
  }
  if (ec) return Fail(Internal("model file '" + name + "': " + ec.message()));
  if (!fs::is_regular_file(status)) {
    return Fail(InvalidArgument("model_file", "'" + name + "' is not a regular file"));
  }
  const auto size = fs::file_size(model_file, ec);
  if (ec) return Fail(Internal("model file '" + name + "': " + ec.message()));
  if (size == 0) return Fail(DataLoss("model file '" + name + "' is empty"));

  try {
    if (!SelectQnnpack()) {
      return Fail(FailedPrecondition("this libtorch has no QNNPACK quantized engine"));
    }
    torch::jit::ExtraFilesMap extra{{kTorchInputShapeExtraFile, ""}};
    torch::jit::Module module = torch::jit::load(name, torch::kCPU, extra);
    module.eval();
    if (!module.find_method("forward")) {
      return Fail(InvalidArgument("model_file", "'" + name + "' has no forward() method"));
    }
    std::optional<std::vector<int64_t>> declared;
    if (auto it = extra.find(kTorchInputShapeExtraFile); it != extra.end() && !it->second.empty()) {
      declared = ParseShape(it->second);
      if (!declared) {
        return Fail(InvalidArgument("model_file", "'" + name + "': extra file " +
                                                      kTorchInputShapeExtraFile + " '" +
                                                      it->second.substr(0, 64) +
                                                      "' is not a shape like 1,1,16,16"));
      }
    }
    return std::unique_ptr<LoadedModel>(
        new TorchLoadedModel(std::move(module), name, std::move(declared)));
  } catch (const c10::Error& e) {
    return Fail(LoadError(name, Describe(e)));
  } catch (const std::bad_alloc&) {
    return Fail(Internal("loading model '" + name + "': out of memory"));
  } catch (const std::exception& e) {
    // Not only c10::Error: the TorchScript parser throws torch::jit::ErrorReport (a
    // std::exception) for mangled code, the unpickler std::out_of_range and the like for
    // mangled data. All are about the file's content.
    return Fail(LoadError(name, Describe(e)));
  } catch (...) {
    return Fail(Internal("loading model '" + name + "': unknown exception"));
  }
}

}  // namespace modelfleet::agent::runtime
