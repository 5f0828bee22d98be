// Resumable artifact download into <state>/partial/<digest>.part.
//
// The bytes already in the partial file are kept: the download asks for [size of the file, end)
// and appends, so a download cut by a power cut or a lost connection continues where it
// stopped. The file is fsynced after every request so what is on disk is what was confirmed.
// Before anything is fetched the free space (statvfs) must cover the missing bytes plus a
// reserve, else RESOURCE_EXHAUSTED.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "modelfleet/status.h"
#include "modelfleet/v1/registry.pb.h"

namespace modelfleet::agent::update {

// Where chunks come from: RegistryService.Download (agent/app/grpc_transport.h), or a fake in
// tests. The update flow itself knows no gRPC.
class ChunkFetcher {
 public:
  virtual ~ChunkFetcher() = default;
  using Sink = std::function<Status(const v1::DownloadChunk&)>;
  // Streams [offset, offset+length) (length 0 = to the end) into `sink`, in order.
  virtual Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) = 0;
};

struct DownloadOptions {
  uint64_t request_bytes = 0;        // bytes per Download call; 0 = the rest in one call
  uint64_t rate_limit_bytes_per_s = 0;  // 0 = unlimited
  uint64_t reserve_bytes = 0;        // free space that must remain after the download
  const std::atomic<bool>* stop = nullptr;  // set: CANCELLED at the next chunk
};

struct DownloadResult {
  uint64_t resumed_from = 0;   // bytes that were already on disk
  uint64_t bytes_fetched = 0;  // bytes received from the fetcher by this call
  uint64_t bytes_done = 0;     // == expected size on success (resumed_from + bytes_fetched)
};

// `progress(bytes_done)` is called after every request (and once at the start).
// Errors: RESOURCE_EXHAUSTED (disk), DATA_LOSS (the server sent other bytes than asked, or
// another digest), CANCELLED, or the fetcher's error.
Expected<DownloadResult> DownloadToPartial(ChunkFetcher& fetcher, const std::string& digest,
                                           uint64_t size, const std::filesystem::path& part,
                                           const DownloadOptions& options,
                                           const std::function<void(uint64_t)>& progress);

}  // namespace modelfleet::agent::update
