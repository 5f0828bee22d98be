// DeviceCache: the device behind each device credential, held in memory for the check-in path.
//
// Only ACCEPTED devices are held (a pending device is read on every check-in, so an acceptance
// on any replica counts at once). Entries are keyed by credential (api token id), since that is
// all a device call carries.
//
// How it stays true:
//   - A background thread loads every accepted device at start (in pages; `Stats().preloaded`
//     says when the first load finished) and again every `ttl / 2`, and every `poll_interval`
//     reads the devices whose admission, attributes or credential changed since its last poll
//     (devices.changed_at, migration 0003), so a change made on any replica reaches every
//     replica's cache within about that interval.
//   - A change made on this replica (enrollment, admission, revocation) calls DeviceChanged()
//     with that device: its one entry is re-read or dropped at once. Nothing clears the cache.
//   - A credential the cache does not hold costs one database read. Misses that arrive while
//     a read is under way are batched into the next read (one round trip for many devices).
//   - An entry older than `ttl` is read again (a safety net if polling failed for that long).
//
// Memory: one entry per accepted device (its public id, row id and attributes).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct CachedDevice {
  int64_t row_id = 0;
  std::string device_id;
  std::string admission;  // "ACCEPTED" for every cached entry; "PENDING", ... for a lookup
  v1::DeviceAttributes attributes;
  std::chrono::steady_clock::time_point fetched;
};

// What the devices table says a device last reported (for the write-behind: an unchanged status
// need not be written again before its refresh is due).
struct StoredDeviceStatus {
  int64_t row_id = 0;
  std::string model, version, digest, agent_state;
  std::chrono::system_clock::time_point last_seen;
};

struct DeviceCacheOptions {
  std::chrono::seconds ttl{600};
  std::chrono::milliseconds poll_interval{1000};
  // Called for every device a full load reads (from the loading thread, no lock held).
  std::function<void(const StoredDeviceStatus&)> on_loaded;
};

class DeviceCache {
 public:
  DeviceCache(db::Pool& pool, DeviceCacheOptions options);
  ~DeviceCache();  // stops the background thread

  // The device holding credential `token_id`: from memory, or one (batched) database read.
  // PERMISSION_DENIED if the credential belongs to no device; UNAVAILABLE.
  Expected<CachedDevice> Lookup(int64_t token_id);
  // The same from memory only: nullopt if the cache does not hold it. Counts nothing: a
  // caller that goes on with the entry calls CountHit().
  std::optional<CachedDevice> Find(int64_t token_id);
  void CountHit() { hits_.fetch_add(1, std::memory_order_relaxed); }
  // Re-reads device `device_row_id` now and updates or drops its entry (after this replica
  // enrolled, accepted, rejected or decommissioned it). Best effort: if the read fails the
  // entry is dropped, so the next check-in reads it again.
  void DeviceChanged(int64_t device_row_id);
  // Records attributes a device reported and this replica wrote.
  void AttributesWritten(int64_t token_id, const v1::DeviceAttributes& attributes);

  struct Stats {
    uint64_t hits = 0, misses = 0, miss_reads = 0;  // miss_reads <= misses: batched
    size_t devices = 0;
    bool preloaded = false;  // the first full load has finished
  };
  Stats GetStats();

 private:
  // One database read for many missing credentials.
  struct MissBatch {
    std::vector<int64_t> token_ids;
    bool done = false;
    Status status;
    std::unordered_map<int64_t, CachedDevice> found;  // by token id
  };
  Status ReadMisses(MissBatch& batch);
  void Run();
  Status LoadAll();
  Expected<int64_t> ApplyChangesSince(int64_t since_micros);  // returns the new watermark
  // Updates the entry of the device in `row` (MF_DEVICE_CACHE_COLUMNS). REQUIRES: mu_ held.
  void ApplyRowLocked(const db::Row& row, std::chrono::steady_clock::time_point now);

  db::Pool& pool_;
  const DeviceCacheOptions options_;

  std::shared_mutex mu_;
  std::unordered_map<int64_t, CachedDevice> devices_;  // by token id
  std::atomic<uint64_t> hits_{0}, misses_{0}, miss_reads_{0};
  std::atomic<bool> preloaded_{false};

  std::mutex miss_mu_;
  std::condition_variable miss_cv_;
  std::shared_ptr<MissBatch> open_batch_;  // collecting; read by the next leader
  bool reading_ = false;                   // a leader is reading a batch

  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread sync_;
};

}  // namespace modelfleet::fleet
