#include "modelfleet/manifest.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "modelfleet/crypto.h"
#include "modelfleet/validation.h"

namespace modelfleet {

namespace {

class CanonicalWriter {
 public:
  void Field(std::string_view name, std::string_view value) {
    out_.append(name);
    out_.push_back(' ');
    out_.append(std::to_string(value.size()));
    out_.push_back(' ');
    out_.append(value);
    out_.push_back('\n');
  }
  void Int(std::string_view name, uint64_t v) { Field(name, std::to_string(v)); }
  void SignedInt(std::string_view name, int64_t v) { Field(name, std::to_string(v)); }
  template <typename F>
  void Float(std::string_view name, F v) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    Field(name, std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
  }
  template <typename Map, typename Fn>
  void SortedMap(std::string_view prefix, const Map& map, Fn&& value_of) {
    std::map<std::string, typename Map::mapped_type> sorted(map.begin(), map.end());
    for (const auto& [k, v] : sorted) value_of(std::string(prefix) + "." + k, v);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_ = "modelfleet-manifest-v1\n";
};

std::string Indexed(std::string_view name, int i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

}  // namespace

std::string CanonicalManifestBytes(const v1::Manifest& m) {
  CanonicalWriter w;
  w.Field("model", m.model());
  w.Field("version", m.version());
  w.Field("format", m.format());
  w.Field("quantization", m.quantization());
  w.Field("digest", m.digest());
  w.Int("size_bytes", m.size_bytes());
  w.Int("version_counter", m.version_counter());
  const auto& in = m.input_spec();
  for (int i = 0; i < in.shape_size(); ++i) w.SignedInt(Indexed("input_spec.shape", i), in.shape(i));
  w.Field("input_spec.dtype", in.dtype());
  w.Field("input_spec.layout", in.layout());
  for (int i = 0; i < in.mean_size(); ++i) w.Float(Indexed("input_spec.mean", i), in.mean(i));
  for (int i = 0; i < in.std_size(); ++i) w.Float(Indexed("input_spec.std", i), in.std(i));
  for (int i = 0; i < m.class_labels_size(); ++i) w.Field(Indexed("class_labels", i), m.class_labels(i));
  w.SortedMap("metrics", m.metrics(), [&](const std::string& n, double v) { w.Float(n, v); });
  w.SortedMap("params", m.params(), [&](const std::string& n, const std::string& v) { w.Field(n, v); });
  w.SortedMap("labels", m.labels(), [&](const std::string& n, const std::string& v) { w.Field(n, v); });
  const auto& l = m.lineage();
  w.Field("lineage.git_commit", l.git_commit());
  w.Field("lineage.ci_run_id", l.ci_run_id());
  w.Field("lineage.ci_run_url", l.ci_run_url());
  w.Field("lineage.parent_version", l.parent_version());
  w.Field("lineage.dataset", l.dataset());
  const auto& t = m.self_test();
  for (int i = 0; i < t.reference_input_size(); ++i) {
    w.Float(Indexed("self_test.reference_input", i), t.reference_input(i));
  }
  for (int i = 0; i < t.reference_output_size(); ++i) {
    w.Float(Indexed("self_test.reference_output", i), t.reference_output(i));
  }
  w.Float("self_test.tolerance", t.tolerance());
  w.Float("self_test.latency_budget_ms", t.latency_budget_ms());
  w.Field("signature.key_id", m.signature().key_id());
  return w.Take();
}

Status ValidateInputSpec(const v1::InputSpec& spec, const std::string& prefix) {
  if (spec.shape_size() > 8) return InvalidArgument(prefix + ".shape", "has more than 8 dimensions");
  int64_t elements = 1;
  for (int i = 0; i < spec.shape_size(); ++i) {
    if (spec.shape(i) <= 0 || spec.shape(i) > (1 << 20)) {
      return InvalidArgument(Indexed(prefix + ".shape", i), "must be between 1 and 1048576");
    }
    elements *= spec.shape(i);
    if (elements > (int64_t{1} << 28)) return InvalidArgument(prefix + ".shape", "is too large");
  }
  static const char* kDtypes[] = {"", "float32", "float16", "int8", "uint8", "int16", "int32"};
  bool dtype_ok = false;
  for (const char* d : kDtypes) dtype_ok |= spec.dtype() == d;
  if (!dtype_ok) {
    return InvalidArgument(prefix + ".dtype",
                           "'" + spec.dtype() + "' is not one of float32, float16, int8, uint8, int16, int32");
  }
  static const char* kLayouts[] = {"", "NCHW", "NHWC", "NC", "CHW", "HW"};
  bool layout_ok = false;
  for (const char* l : kLayouts) layout_ok |= spec.layout() == l;
  if (!layout_ok) {
    return InvalidArgument(prefix + ".layout", "'" + spec.layout() + "' is not one of NCHW, NHWC, NC, CHW, HW");
  }
  for (int i = 0; i < spec.mean_size(); ++i) {
    if (!std::isfinite(spec.mean(i))) return InvalidArgument(Indexed(prefix + ".mean", i), "is not finite");
  }
  for (int i = 0; i < spec.std_size(); ++i) {
    if (!std::isfinite(spec.std(i)) || spec.std(i) <= 0) {
      return InvalidArgument(Indexed(prefix + ".std", i), "must be finite and > 0");
    }
  }
  return Status::Ok();
}

namespace {

Status ValidateStringMap(const google::protobuf::Map<std::string, std::string>& map,
                         const std::string& field) {
  if (map.size() > 256) return InvalidArgument(field, "has more than 256 entries");
  for (const auto& [k, v] : map) {
    MF_RETURN_IF_ERROR(ValidateIdentifier(k, field + " key"));
    MF_RETURN_IF_ERROR(ValidateText(v, 1024, field + "." + k));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateManifest(const v1::Manifest& m, const std::string& p) {
  if (m.ByteSizeLong() > kMaxManifestBytes) {
    return InvalidArgument(p, "is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  }
  MF_RETURN_IF_ERROR(ValidateModelName(m.model(), p + ".model"));
  MF_RETURN_IF_ERROR(ValidateSemVer(m.version(), p + ".version"));
  MF_RETURN_IF_ERROR(ValidateIdentifier(m.format(), p + ".format"));
  if (!m.quantization().empty()) {
    MF_RETURN_IF_ERROR(ValidateIdentifier(m.quantization(), p + ".quantization"));
  }
  if (!IsSha256Hex(m.digest())) {
    return InvalidArgument(p + ".digest", "must be 64 lowercase hex characters (SHA-256)");
  }
  if (m.size_bytes() == 0) return InvalidArgument(p + ".size_bytes", "must be > 0");
  if (m.size_bytes() > (uint64_t{1} << 40)) return InvalidArgument(p + ".size_bytes", "is larger than 1 TiB");
  MF_RETURN_IF_ERROR(ValidateInputSpec(m.input_spec(), p + ".input_spec"));
  if (m.class_labels_size() > 1024) return InvalidArgument(p + ".class_labels", "has more than 1024 entries");
  for (int i = 0; i < m.class_labels_size(); ++i) {
    if (m.class_labels(i).empty()) return InvalidArgument(Indexed(p + ".class_labels", i), "is empty");
    MF_RETURN_IF_ERROR(ValidateText(m.class_labels(i), 128, Indexed(p + ".class_labels", i)));
  }
  if (m.metrics_size() > 256) return InvalidArgument(p + ".metrics", "has more than 256 entries");
  for (const auto& [k, v] : m.metrics()) {
    MF_RETURN_IF_ERROR(ValidateIdentifier(k, p + ".metrics key"));
    if (!std::isfinite(v)) return InvalidArgument(p + ".metrics." + k, "is not finite");
  }
  MF_RETURN_IF_ERROR(ValidateStringMap(m.params(), p + ".params"));
  MF_RETURN_IF_ERROR(ValidateStringMap(m.labels(), p + ".labels"));
  const auto& l = m.lineage();
  MF_RETURN_IF_ERROR(ValidateText(l.git_commit(), 64, p + ".lineage.git_commit"));
  MF_RETURN_IF_ERROR(ValidateText(l.ci_run_id(), 128, p + ".lineage.ci_run_id"));
  MF_RETURN_IF_ERROR(ValidateText(l.ci_run_url(), 2048, p + ".lineage.ci_run_url"));
  MF_RETURN_IF_ERROR(ValidateText(l.dataset(), 1024, p + ".lineage.dataset"));
  if (!l.parent_version().empty()) {
    MF_RETURN_IF_ERROR(ValidateSemVer(l.parent_version(), p + ".lineage.parent_version"));
  }
  const auto& t = m.self_test();
  if (!std::isfinite(t.tolerance()) || t.tolerance() < 0) {
    return InvalidArgument(p + ".self_test.tolerance", "must be finite and >= 0");
  }
  if (!std::isfinite(t.latency_budget_ms()) || t.latency_budget_ms() < 0) {
    return InvalidArgument(p + ".self_test.latency_budget_ms", "must be finite and >= 0");
  }
  for (float f : t.reference_input()) {
    if (!std::isfinite(f)) return InvalidArgument(p + ".self_test.reference_input", "has a non-finite value");
  }
  for (float f : t.reference_output()) {
    if (!std::isfinite(f)) return InvalidArgument(p + ".self_test.reference_output", "has a non-finite value");
  }
  if (m.has_signature()) {
    MF_RETURN_IF_ERROR(ValidateIdentifier(m.signature().key_id(), p + ".signature.key_id"));
    if (m.signature().signature().size() != 64) {
      return InvalidArgument(p + ".signature.signature", "an Ed25519 signature is 64 bytes");
    }
  }
  return Status::Ok();
}

Status SignManifest(v1::Manifest& manifest, const std::string& key_id,
                    const std::string& private_key) {
  manifest.mutable_signature()->set_key_id(key_id);
  manifest.mutable_signature()->clear_signature();
  MF_ASSIGN_OR_RETURN(std::string sig, Ed25519Sign(private_key, CanonicalManifestBytes(manifest)));
  manifest.mutable_signature()->set_signature(sig);
  return Status::Ok();
}

Status VerifyManifestSignature(const v1::Manifest& manifest, const std::string& public_key) {
  if (!manifest.has_signature() || manifest.signature().signature().empty()) {
    return PermissionDenied("manifest is not signed");
  }
  // Map entries are encoded "<field>.<key>" with no length for the key: a key holding ' ' or
  // '\n' could spell out further records, so that another manifest has the same signed bytes
  // (found by the parser fuzz test). Keys are identifiers in every manifest the registry
  // accepts; refusing anything else here keeps a signature bound to the manifest it was made for.
  auto keys_are_identifiers = [](const auto& map) {
    return std::all_of(map.begin(), map.end(), [](const auto& entry) { return ValidateIdentifier(entry.first, "key").ok(); });
  };
  if (!keys_are_identifiers(manifest.metrics()) || !keys_are_identifiers(manifest.params()) ||
      !keys_are_identifiers(manifest.labels())) {
    return PermissionDenied("manifest has a metrics, params or labels key that is not an identifier: not verifiable");
  }
  Status verified = Ed25519Verify(public_key, CanonicalManifestBytes(manifest), manifest.signature().signature());
  if (verified.ok() || verified.code() == StatusCode::kPermissionDenied) return verified;
  return PermissionDenied("manifest signature does not verify: " + verified.message());  // e.g. a wrong length
}

}  // namespace modelfleet
