// Test support: reproducible artifact bytes and valid manifests for them.
#pragma once

#include <cstdint>
#include <string>

#include "modelfleet/crypto.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::testing {

// Deterministic pseudo-random bytes (xorshift32), so a failure is reproducible.
inline std::string PatternBytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

// A valid manifest for `bytes`: digest and size computed, the mat's input spec and classes,
// accuracy 0.93, label hw=rev3.
inline v1::Manifest ManifestFor(const std::string& model, const std::string& version, const std::string& bytes) {
  v1::Manifest m;
  m.set_model(model);
  m.set_version(version);
  m.set_format("torchscript-int8");
  m.set_quantization("ptq-static-qnnpack");
  m.set_digest(Sha256Hex(bytes));
  m.set_size_bytes(bytes.size());
  auto* spec = m.mutable_input_spec();
  for (int64_t d : {1, 1, 16, 16}) spec->add_shape(d);
  spec->set_dtype("float32");
  spec->set_layout("NCHW");
  for (const char* label : {"empty", "sitting", "lying_full", "lying_partial"}) m.add_class_labels(label);
  (*m.mutable_metrics())["accuracy"] = 0.93;
  (*m.mutable_labels())["hw"] = "rev3";
  m.mutable_lineage()->set_git_commit("0123456789abcdef");
  m.mutable_lineage()->set_ci_run_id("42");
  m.set_version_counter(1);
  return m;
}

}  // namespace modelfleet::testing
