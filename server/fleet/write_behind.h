// WriteBehind: what devices report on every check-in (last seen, what they run, their agent
// state, per-version telemetry), merged in memory and written to PostgreSQL in batches by one
// thread, off the check-in path.
//
// Promises:
//   - A status that did not change is written only every status_refresh (so last_seen of a
//     quiet device is precise to that much); a changed one at the next flush.
//   - Telemetry of one (device, model, version) is summed across check-ins until written.
//   - One bad row never blocks the others. A batch that fails on its data (SQLSTATE class 22 or
//     23: a value out of range, a constraint) is split in halves until the offending rows stand
//     alone; those are dropped, each with one error log naming the device, what the row was and
//     the database's error, and counted (Stats::rows_dropped); every other row is written.
//   - A transient failure (database down, connections busy, serialization) keeps the rows and
//     retries with exponential backoff (flush_interval doubling up to max_backoff), logging
//     once when it starts failing and once when it recovers. Memory stays bounded: beyond
//     max_pending_telemetry entries the oldest telemetry is dropped first and counted
//     (Stats::telemetry_dropped); statuses are one per device.
//   - A crash loses at most what was queued since the last successful flush. The destructor
//     flushes once more and logs what it could not write.
// Deployment reports do not come through here: they are written synchronously.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct WriteBehindOptions {
  std::chrono::milliseconds flush_interval{200};
  std::chrono::seconds status_refresh{300};
  std::chrono::milliseconds max_backoff{5000};
  size_t max_pending_telemetry = 500000;  // (device, model, version) entries
};

class WriteBehind {
 public:
  // Starts the writer thread.
  WriteBehind(db::Pool& pool, WriteBehindOptions options);
  ~WriteBehind();  // stops the thread, then flushes once

  struct DeviceStatus {
    std::string model, version, digest;  // the first running model, if any
    std::string agent_state;             // "IDLE", "DOWNLOADING", ..., "UNKNOWN"
  };
  // Queues what `device_row_id` (public id `device_id`, for logs) reported. REQUIRES: every
  // entry of `telemetry` passed the check-in's validation (finite, in range, consistent).
  void Record(int64_t device_row_id, const std::string& device_id, DeviceStatus status,
              const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry);

  // Writes everything queued now. OK when nothing is left to retry (poison rows are dropped,
  // not retried); the transient error otherwise, with the rows kept for the next flush.
  Status Flush();

  struct Stats {
    uint64_t rows_dropped = 0;       // rows refused by the database for their data
    uint64_t telemetry_dropped = 0;  // entries dropped to bound memory while writes failed
    uint64_t flush_failures = 0;     // flushes that met a transient error
    size_t pending_statuses = 0, pending_telemetry = 0;
  };
  Stats GetStats();

 private:
  struct PendingStatus {
    int64_t row_id = 0;
    std::string device_id;
    DeviceStatus status;
  };
  struct PendingTelemetry {
    std::string device_id;
    uint64_t inferences = 0, errors = 0;
    double p95_weighted = 0, confidence_sum = 0;
    std::map<std::string, uint64_t> histogram;
    uint64_t first_queued = 0;  // sequence number: the oldest go first when memory is bounded
    void MergeFrom(const PendingTelemetry& other);
  };
  using TelemetryKey = std::tuple<int64_t, std::string, std::string>;  // device row, model, version

  void Run();
  // Drops the oldest telemetry beyond max_pending_telemetry. REQUIRES: mu_ held.
  void BoundTelemetryLocked();

  db::Pool& pool_;
  const WriteBehindOptions options_;

  std::mutex mu_;  // guards everything below up to the thread
  std::unordered_map<int64_t, PendingStatus> statuses_;  // by device row id
  // What was last queued per device, and when: unchanged statuses are written only every
  // status_refresh.
  std::unordered_map<int64_t, std::pair<std::string, std::chrono::steady_clock::time_point>> last_status_;
  std::map<TelemetryKey, PendingTelemetry> telemetry_;
  uint64_t sequence_ = 0;

  std::mutex flush_mu_;  // one flush at a time (the thread, tests, the destructor)
  std::atomic<uint64_t> rows_dropped_{0}, telemetry_dropped_{0}, flush_failures_{0};

  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread writer_;
};

}  // namespace modelfleet::fleet
