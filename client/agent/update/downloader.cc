#include "agent/update/downloader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/update/fs_util.h"

namespace modelfleet::agent::update {

Expected<DownloadResult> DownloadToPartial(ChunkFetcher& fetcher, const std::string& digest,
                                           uint64_t size, const std::filesystem::path& part,
                                           const DownloadOptions& options,
                                           const std::function<void(uint64_t)>& progress) {
  MF_RETURN_IF_ERROR(EnsureDir(part.parent_path()));
  uint64_t done = FileSizeOrZero(part);
  if (done > size) {  // not ours to trust
    RemoveCounting(part);
    done = 0;
  }
  DownloadResult result;
  result.resumed_from = done;
  MF_ASSIGN_OR_RETURN(uint64_t free_bytes, FreeDiskBytes(part.parent_path()));
  const uint64_t need = (size - done) + options.reserve_bytes;
  if (free_bytes < need) {
    return Fail(Status(StatusCode::kResourceExhausted,
                       "not enough disk space for " + digest + ": " + std::to_string(need) +
                           " bytes needed (" + std::to_string(size - done) + " missing + " +
                           std::to_string(options.reserve_bytes) + " reserve), " +
                           std::to_string(free_bytes) + " free"));
  }
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(Unavailable("opening " + part.string() + ": " + std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::ftruncate(fd, static_cast<off_t>(done)) != 0) {
    return Fail(Unavailable("truncating " + part.string() + ": " + std::strerror(errno)));
  }
  if (progress) progress(done);
  const auto start = std::chrono::steady_clock::now();
  uint64_t fetched = 0;
  while (done < size) {
    if (options.stop && options.stop->load()) return Fail(Status(StatusCode::kCancelled, "download stopped"));
    const uint64_t want = options.request_bytes == 0 ? 0 : std::min(options.request_bytes, size - done);
    Status s = fetcher.Fetch(done, want, [&](const v1::DownloadChunk& chunk) -> Status {
      if (chunk.has_manifest() && !chunk.manifest().digest().empty() &&
          chunk.manifest().digest() != digest) {
        return DataLoss("the server sends " + chunk.manifest().digest() + ", expected " + digest);
      }
      if (chunk.data().empty()) return Status::Ok();
      if (chunk.offset() != done) {
        return DataLoss("chunk at offset " + std::to_string(chunk.offset()) + ", expected " +
                        std::to_string(done));
      }
      if (done + chunk.data().size() > size) return DataLoss("more bytes than the manifest's size");
      const char* p = chunk.data().data();
      size_t left = chunk.data().size();
      while (left > 0) {
        const ssize_t n = ::pwrite(fd, p, left, static_cast<off_t>(done));
        if (n < 0) {
          if (errno == EINTR) continue;
          return Status(errno == ENOSPC ? StatusCode::kResourceExhausted : StatusCode::kUnavailable,
                        "writing " + part.string() + ": " + std::strerror(errno));
        }
        p += n;
        left -= static_cast<size_t>(n);
        done += static_cast<uint64_t>(n);
        fetched += static_cast<uint64_t>(n);
      }
      if (options.stop && options.stop->load()) return Status(StatusCode::kCancelled, "download stopped");
      return Status::Ok();
    });
    ::fdatasync(fd);
    if (!s.ok()) return Fail(s);
    if (progress) progress(done);
    if (options.rate_limit_bytes_per_s > 0) {
      const auto due = start + std::chrono::microseconds(fetched * 1000000 / options.rate_limit_bytes_per_s);
      while (std::chrono::steady_clock::now() < due) {
        if (options.stop && options.stop->load()) return Fail(Status(StatusCode::kCancelled, "download stopped"));
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
      }
    }
  }
  if (::fsync(fd) != 0) return Fail(Unavailable("fsync of " + part.string()));
  result.bytes_fetched = fetched;
  result.bytes_done = done;
  return result;
}

}  // namespace modelfleet::agent::update
