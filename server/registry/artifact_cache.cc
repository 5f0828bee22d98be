#include "registry/artifact_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "modelfleet/crypto.h"

namespace modelfleet::registry {

namespace fs = std::filesystem;

VerifiedArtifact::~VerifiedArtifact() { ::close(fd_); }

ArtifactCache::ArtifactCache(blob::BlobStore& store, fs::path dir, uint64_t capacity_bytes)
    : store_(store), dir_(std::move(dir)), capacity_bytes_(capacity_bytes) {
  std::error_code ec;
  fs::remove_all(dir_, ec);
  fs::create_directories(dir_, ec);
}

Expected<std::shared_ptr<VerifiedArtifact>> ArtifactCache::Get(const std::string& digest,
                                                               uint64_t size,
                                                               const std::string& blob_key) {
  std::promise<Result> promise;
  std::shared_future<Result> fetch_in_flight;
  {
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(digest); it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_position);
      ++stats_.hits;
      return it->second.artifact;
    }
    if (auto it = in_flight_.find(digest); it != in_flight_.end()) {
      ++stats_.hits;
      fetch_in_flight = it->second;
    } else {
      in_flight_.emplace(digest, promise.get_future().share());
      ++stats_.store_fetches;
    }
  }
  if (fetch_in_flight.valid()) return fetch_in_flight.get();  // another caller is fetching it
  uint64_t bytes_read = 0;
  Result result = Fetch(digest, size, blob_key, &bytes_read);
  {
    std::lock_guard lock(mu_);
    stats_.store_bytes_read += bytes_read;
    if (result) {
      InsertLocked(digest, *result);
    } else if (result.error().code() == StatusCode::kDataLoss) {
      ++stats_.verify_failures;
    }
    in_flight_.erase(digest);
  }
  promise.set_value(result);
  return result;
}

ArtifactCache::Result ArtifactCache::Fetch(const std::string& digest, uint64_t size,
                                           const std::string& blob_key, uint64_t* bytes_read) {
  fs::path final_path = dir_ / digest;
  fs::path temp_path = dir_ / (digest + ".part-" + HexEncode(RandomBytes(6)));
  int fd = ::open(temp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(Internal("cache: create " + temp_path.string() + ": " + std::strerror(errno)));
  auto fail = [&](Status s) {
    ::close(fd);
    ::unlink(temp_path.c_str());
    return Fail(std::move(s));
  };
  Sha256 hash;
  uint64_t received = 0;
  Status read = store_.Read(blob_key, 0, std::nullopt, [&](std::span<const uint8_t> piece) -> Status {
    received += piece.size();
    *bytes_read = received;
    if (received > size) return DataLoss("stored artifact " + digest + " is larger than its manifest says");
    hash.Update(piece);
    size_t done = 0;
    while (done < piece.size()) {
      ssize_t n = ::write(fd, piece.data() + done, piece.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Internal(std::string("cache: write: ") + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  });
  if (read.code() == StatusCode::kNotFound) {
    return fail(DataLoss("stored artifact " + digest + " is missing from the blob store"));
  }
  if (!read.ok()) return fail(read.Annotate("reading artifact " + digest));
  std::string actual = hash.FinishHex();
  if (received != size || actual != digest) {
    return fail(DataLoss("stored artifact does not match its manifest: expected sha256 " + digest + " (" +
                         std::to_string(size) + " bytes), got " + actual + " (" +
                         std::to_string(received) + " bytes)"));
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    return fail(Internal("cache: rename: " + std::string(std::strerror(errno))));
  }
  if (size > capacity_bytes_) ::unlink(final_path.c_str());  // serve once, do not keep
  return std::make_shared<VerifiedArtifact>(fd, size);
}

void ArtifactCache::InsertLocked(const std::string& digest,
                                 const std::shared_ptr<VerifiedArtifact>& artifact) {
  if (artifact->size() > capacity_bytes_) return;
  lru_.push_front(digest);
  entries_[digest] = Entry{artifact, lru_.begin()};
  stats_.cached_bytes += artifact->size();
  EvictLocked();
}

void ArtifactCache::EvictLocked() {
  while (stats_.cached_bytes > capacity_bytes_ && !lru_.empty()) {
    std::string victim = lru_.back();
    lru_.pop_back();
    auto it = entries_.find(victim);
    stats_.cached_bytes -= it->second.artifact->size();
    entries_.erase(it);
    std::error_code ec;
    fs::remove(dir_ / victim, ec);
  }
}

void ArtifactCache::Forget(const std::string& digest) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(digest);
  if (it == entries_.end()) return;
  stats_.cached_bytes -= it->second.artifact->size();
  lru_.erase(it->second.lru_position);
  entries_.erase(it);
  std::error_code ec;
  fs::remove(dir_ / digest, ec);
}

ArtifactCacheStats ArtifactCache::stats() const {
  std::lock_guard lock(mu_);
  ArtifactCacheStats stats = stats_;
  stats.entries = entries_.size();
  stats.capacity_bytes = capacity_bytes_;
  return stats;
}

}  // namespace modelfleet::registry
