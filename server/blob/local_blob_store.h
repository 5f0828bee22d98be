// LocalBlobStore: a directory on the local filesystem (the embedded default).
//
// Layout: <root>/objects/<key> for committed objects, <root>/tmp/ for uploads in progress.
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
  std::filesystem::path ObjectPath(const std::string& key) const;

 private:
  explicit LocalBlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

}  // namespace modelfleet::blob
