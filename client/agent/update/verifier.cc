#include "agent/update/verifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"

namespace modelfleet::agent::update {

Status VerifyManifestTrust(const v1::Manifest& manifest, const std::vector<PinnedKey>& keys) {
  if (!manifest.has_signature() || manifest.signature().signature().empty()) {
    return PermissionDenied("manifest " + manifest.model() + "@" + manifest.version() + " is unsigned");
  }
  const std::string& key_id = manifest.signature().key_id();
  for (const PinnedKey& key : keys) {
    if (!key.key_id.empty() && key.key_id != key_id) continue;
    if (VerifyManifestSignature(manifest, key.public_key).ok()) return Status::Ok();
  }
  return PermissionDenied("manifest signature (key id '" + key_id +
                          "') does not verify with any of the " + std::to_string(keys.size()) +
                          " pinned publisher keys");
}

Status VerifyVersionCounter(const v1::Manifest& manifest, std::optional<uint64_t> running_counter,
                            bool is_rollback) {
  if (running_counter && manifest.version_counter() < *running_counter && !is_rollback) {
    return FailedPrecondition("anti-rollback: version_counter " +
                              std::to_string(manifest.version_counter()) + " of " +
                              manifest.version() + " is lower than the running " +
                              std::to_string(*running_counter) + " and the assignment is not a rollback");
  }
  return Status::Ok();
}

Status VerifyArtifactFile(const std::filesystem::path& file, const v1::Manifest& manifest) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DataLoss("opening " + file.string() + ": " + std::strerror(errno));
  Sha256 sha;
  uint64_t size = 0;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return DataLoss("reading " + file.string() + ": " + std::strerror(err));
    }
    if (n == 0) break;
    sha.Update(std::string_view(buf, static_cast<size_t>(n)));
    size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (size != manifest.size_bytes()) {
    return DataLoss("artifact has " + std::to_string(size) + " bytes, the manifest says " +
                    std::to_string(manifest.size_bytes()));
  }
  const std::string digest = sha.FinishHex();
  if (digest != manifest.digest()) {
    return DataLoss("artifact digest " + digest + " differs from the manifest's " + manifest.digest());
  }
  return Status::Ok();
}

}  // namespace modelfleet::agent::update
