// Verification of a downloaded artifact before it is installed:
//   - size and SHA-256 of the file equal manifest.size_bytes / manifest.digest;
//   - manifest.signature verifies (Ed25519 over the canonical bytes, manifest.h) with one of the
//     publisher keys pinned in the agent's config. A pinned key with a key id only accepts
//     signatures naming that id; one without accepts any id. Unsigned, or no pinned key
//     verifies: PERMISSION_DENIED;
//   - manifest.version_counter is not lower than the running model's, unless the assignment is a
//     rollback: FAILED_PRECONDITION.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::agent::update {

struct PinnedKey {
  std::string key_id;      // empty: any key id
  std::string public_key;  // raw 32 bytes
  std::string source;      // the PEM path, for messages
};

Status VerifyManifestTrust(const v1::Manifest& manifest, const std::vector<PinnedKey>& keys);
Status VerifyVersionCounter(const v1::Manifest& manifest, std::optional<uint64_t> running_counter,
                            bool is_rollback);
// DATA_LOSS when the file differs from the manifest's size or digest.
Status VerifyArtifactFile(const std::filesystem::path& file, const v1::Manifest& manifest);

}  // namespace modelfleet::agent::update
