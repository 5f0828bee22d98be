// LocalBlobStore: a directory on the local filesystem (the embedded default).
//
// Layout: <root>/objects/<encoded key> for committed objects, one flat directory, where the
// key's '/' become '~' (a character keys may not contain), so that "a" and "a/b" are
// independent objects as on S3; <root>/tmp/ for uploads in progress.
// An upload is written to a temp file, fsynced, renamed into place and its directory fsynced,
// so a power cut leaves either the whole old object or the whole new one, never a torn file.
// Temp files left by a crash are removed when the store is opened.
#pragma once

#include <filesystem>
#include <memory>

#include "blob/blob_store.h"

namespace modelfleet::blob {

class LocalBlobStore final : public BlobStore {
 public:
  // Creates the directories if needed. Errors: INTERNAL (not creatable / not writable).
  static Expected<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& root);

  std::string Describe() const override;
  Expected<std::unique_ptr<BlobWriter>> Create(const std::string& key) override;
  Status Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
              const BlobSink& sink) override;
  Expected<BlobInfo> Stat(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Expected<std::vector<std::string>> List(const std::string& prefix) override;

  // Where a committed object lives (tests corrupt it to check DATA_LOSS handling).
  std::filesystem::path ObjectPath(const std::string& key) const { return ObjectPathFor(root_, key); }
  static std::filesystem::path ObjectPathFor(const std::filesystem::path& root, const std::string& key);

 private:
  explicit LocalBlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

}  // namespace modelfleet::blob
