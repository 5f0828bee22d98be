// The manifest: validation, and the canonical byte encoding that signatures cover.
//
// Canonical encoding, version 1. The bytes are
//   "modelfleet-manifest-v1\n"
// followed by one record per field, in exactly the order listed below, each record being
//   <name> ' ' <decimal length of value in bytes> ' ' <value bytes> '\n'
// - strings: their UTF-8 bytes as given (no escaping: the length prefix delimits them);
// - integers: decimal ASCII; doubles and floats: the shortest decimal string that reads back
//   to the same value (C++ std::to_chars without a format, e.g. "0.1", "1", "1e-05");
// - every scalar field is always present, even when empty or zero;
// - repeated fields: one record per element, named "<field>[<index>]";
// - maps: one record per entry, sorted by key bytes, named "<field>.<key>"; keys are
//   identifiers (no ' ' or '\n', so names stay unambiguous), and a manifest with any other
//   key never verifies.
// Order: model, version, format, quantization, digest, size_bytes, version_counter,
//   input_spec.shape[i], input_spec.dtype, input_spec.layout, input_spec.mean[i],
//   input_spec.std[i], class_labels[i], metrics.<k>, params.<k>, labels.<k>,
//   lineage.git_commit, lineage.ci_run_id, lineage.ci_run_url, lineage.parent_version,
//   lineage.dataset, self_test.reference_input[i], self_test.reference_output[i],
//   self_test.tolerance, self_test.latency_budget_ms, signature.key_id.
// The signature bytes themselves are not covered; the key id is.
// The signature is Ed25519 (RFC 8032) over these bytes.
#pragma once

#include <string>

#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet {

inline constexpr size_t kMaxManifestBytes = 256 * 1024;

std::string CanonicalManifestBytes(const v1::Manifest& manifest);

// Checks every field of a manifest as pushed: names, semver, format, digest (64 lowercase hex),
// size (> 0), input spec, finite metrics, label keys, text limits, signature shape.
// Field names in errors are prefixed with `field_prefix` ("manifest").
Status ValidateManifest(const v1::Manifest& manifest, const std::string& field_prefix);
Status ValidateInputSpec(const v1::InputSpec& spec, const std::string& field_prefix);

// Signs `manifest` in place: sets signature.key_id, then the signature over the canonical bytes.
Status SignManifest(v1::Manifest& manifest, const std::string& key_id,
                    const std::string& private_key);
// OK if manifest.signature verifies with `public_key`. PERMISSION_DENIED if not (unsigned, a
// signature of the wrong length or by another key, a map key that is not an identifier).
Status VerifyManifestSignature(const v1::Manifest& manifest, const std::string& public_key);

}  // namespace modelfleet
