// The agent's model store in its state directory:
//   partial/<digest>.part          a download in progress (resumed from its size)
//   models/<digest>/model.pt       an installed, verified artifact
//   models/<digest>/manifest.pb    its manifest (binary v1::Manifest)
//   active                         the digest the agent runs (switched atomically)
//   last_good                      the digest that was active before (the local rollback target)
// Installing renames the verified .part into a staging directory and renames that directory to
// models/<digest>, so models/<digest> exists only complete. Every step is idempotent.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::agent::update {

class ModelStore {
 public:
  explicit ModelStore(std::filesystem::path state_dir) : dir_(std::move(state_dir)) {}

  // Creates partial/ and models/.
  Status Init() const;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path PartPath(const std::string& digest) const;
  std::filesystem::path ModelDir(const std::string& digest) const;
  std::filesystem::path ModelFile(const std::string& digest) const;
  bool IsInstalled(const std::string& digest) const;

  // Moves the verified partial file into models/<digest> with its manifest. OK if already there.
  Status Install(const v1::Manifest& manifest) const;
  // Points `active` at `digest` (which must be installed); the previous one becomes last_good.
  // OK and no change if it already is active.
  Status Activate(const std::string& digest) const;
  // Points `active` back at last_good (FAILED_PRECONDITION if there is none).
  Status RollBack() const;

  std::optional<std::string> ActiveDigest() const;
  std::optional<std::string> LastGoodDigest() const;
  Expected<v1::Manifest> LoadManifest(const std::string& digest) const;
  // Replaces the stored manifest of an installed model (same bytes, e.g. another version).
  Status WriteManifest(const v1::Manifest& manifest) const;

  // Removes the partial file and (unless active or last_good) the installed model of `digest`.
  // Returns the bytes deleted.
  uint64_t Discard(const std::string& digest) const;
  // Removes every installed model other than active and last_good, and every partial file other
  // than `keep_partial`'s. Returns the bytes deleted.
  uint64_t CollectGarbage(const std::string& keep_partial = "") const;

 private:
  std::optional<std::string> ReadPointer(const char* name) const;
  std::filesystem::path dir_;
};

}  // namespace modelfleet::agent::update
