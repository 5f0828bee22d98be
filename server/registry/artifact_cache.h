// ArtifactCache: a bounded local cache of artifacts whose bytes have been verified against
// their manifest digest. A whole fleet fetching the same version costs one read from the
// object store: concurrent requests for the same digest wait for the one fetch in flight
// (single flight), later ones are served from the cached file.
//
// Nothing unverified is ever handed out: a fetch streams the object into a temp file while
// hashing it and only a file whose SHA-256 and size match is published (DATA_LOSS otherwise,
// and the temp file is removed).
//
// Eviction is least-recently-used by bytes. An evicted file is unlinked, but readers holding
// a VerifiedArtifact keep reading it through their open descriptor. An artifact larger than
// the whole capacity is still served, from a file unlinked as soon as it is opened.
// The cache directory is emptied on construction (its contents are not trusted across
// restarts).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "blob/blob_store.h"
#include "modelfleet/status.h"

namespace modelfleet::registry {

// An open, verified artifact file. Read with pread on fd(). Closed when the last holder lets go.
class VerifiedArtifact {
 public:
  VerifiedArtifact(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~VerifiedArtifact();
  VerifiedArtifact(const VerifiedArtifact&) = delete;
  VerifiedArtifact& operator=(const VerifiedArtifact&) = delete;
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  int fd_;
  uint64_t size_;
};

struct ArtifactCacheStats {
  uint64_t hits = 0;
  uint64_t store_fetches = 0;   // reads from the blob store
  uint64_t verify_failures = 0;
  uint64_t cached_bytes = 0;
  uint64_t store_bytes_read = 0;  // bytes received from the blob store (failed fetches too)
  uint64_t entries = 0;           // artifacts held
  uint64_t capacity_bytes = 0;
};

class ArtifactCache {
 public:
  ArtifactCache(blob::BlobStore& store, std::filesystem::path dir, uint64_t capacity_bytes);

  // Returns the verified bytes of `blob_key`, which must hash to `digest` (64 hex) and have
  // `size` bytes. Errors: DATA_LOSS (the stored bytes do not match, or the object is missing
  // although a version refers to it), UNAVAILABLE (store down), INTERNAL (local disk).
  Expected<std::shared_ptr<VerifiedArtifact>> Get(const std::string& digest, uint64_t size,
                                                  const std::string& blob_key);

  // Drops `digest` from the cache (after a purge).
  void Forget(const std::string& digest);

  ArtifactCacheStats stats() const;

 private:
  using Result = Expected<std::shared_ptr<VerifiedArtifact>>;
  struct Entry {
    std::shared_ptr<VerifiedArtifact> artifact;
    std::list<std::string>::iterator lru_position;
  };

  // `*bytes_read`: what the store sent, for the stats.
  Result Fetch(const std::string& digest, uint64_t size, const std::string& blob_key, uint64_t* bytes_read);
  void InsertLocked(const std::string& digest, const std::shared_ptr<VerifiedArtifact>& artifact);
  void EvictLocked();

  blob::BlobStore& store_;
  const std::filesystem::path dir_;
  const uint64_t capacity_bytes_;

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // front = most recently used
  std::map<std::string, std::shared_future<Result>> in_flight_;
  ArtifactCacheStats stats_;
};

}  // namespace modelfleet::registry
