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

// The digest SmallManifest() carries (SHA-256 of "abc").
inline constexpr char kSmallManifestDigest[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

// A small manifest exercising every kind of record of the canonical encoding (common_test pins
// its bytes; parser_fuzz_test mutates it). Map entries are inserted in reverse
// order so that sorted output cannot come from insertion order.
inline v1::Manifest SmallManifest() {
  v1::Manifest m;
  m.set_model("mat-detector");
  m.set_version("1.2.0");
  m.set_format("torchscript-int8");
  // quantization left empty: the record must still be present.
  m.set_digest(kSmallManifestDigest);
  m.set_size_bytes(1234);
  m.set_version_counter(7);
  auto* in = m.mutable_input_spec();
  in->add_shape(1);
  in->add_shape(16);
  in->set_dtype("float32");
  in->set_layout("NC");
  in->add_mean(0.1);
  in->add_std(1.0);
  m.add_class_labels("empty");
  m.add_class_labels("sitting");
  (*m.mutable_metrics())["latency_ms"] = 3.5;
  (*m.mutable_metrics())["eps"] = 0.00001;
  (*m.mutable_metrics())["accuracy"] = 0.94;
  (*m.mutable_params())["lr"] = "0.001";
  (*m.mutable_labels())["hw"] = "rev3";
  (*m.mutable_labels())["board"] = "pi";
  (*m.mutable_labels())["Zone"] = "eu";  // 'Z' (0x5a) sorts before 'b' (0x62) by bytes
  auto* l = m.mutable_lineage();
  l->set_git_commit("abc123");
  l->set_parent_version("1.1.0");
  l->set_dataset("mats-v2");
  auto* t = m.mutable_self_test();
  t->add_reference_input(0.1f);  // a float: shortest form for float is "0.1"
  t->add_reference_output(0.25f);
  t->add_reference_output(1.0f);
  t->set_tolerance(0.01);
  t->set_latency_budget_ms(5);
  m.mutable_signature()->set_key_id("ci-key-1");
  m.mutable_signature()->set_signature(std::string(64, 'S'));
  return m;
}

}  // namespace modelfleet::testing
