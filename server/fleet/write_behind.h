// WriteBehind: what devices report on every check-in (last seen, what they run, their agent
// state, per-version telemetry), merged in memory and written to PostgreSQL in batches by one
// thread, off the check-in path, at a cost that a million devices can afford.
//
// Two kinds of rows (migration 0004):
//   - telemetry_windows: telemetry summed per (model, version, rollout arm, time bucket of
//     telemetry_window, one minute by default, by the server's clock at receipt). Every flush
//     (flush_interval) adds what arrived since the previous one to the windows it touched: a
//     handful of rows whatever the number of devices. Upserts add, so replicas writing the
//     same window sum correctly. These are what the rollout gates read (RolloutManager::
//     Progress) and what can be plotted; a regression that starts late shows in its own
//     minutes instead of being diluted by hours of good history.
//   - per device: its status (devices.last_seen, running_*, agent_state) and its
//     version_telemetry sums (per device, model and version, summed forever). Both are written
//     together, only when the status is written: a changed status at the next flush; an
//     unchanged one once status_refresh has passed since it was last written (so last_seen of
//     a device that keeps checking in is precise to status_refresh); until then the device's
//     telemetry is merged in memory. The telemetry of a device that stopped checking in is
//     written within about status_refresh * 1.25 after its last status.
//
// What it costs (the goal: <= 0.1 PostgreSQL rows per check-in, amortized): with D devices
// checking in every I seconds (1,000,000 every 60 s = 16,700 check-ins/s), one device costs
// 2 rows (status + its one running version's telemetry) every status_refresh R, that is
// 2 * I / R rows per check-in: 0.4 at R = 300 s, 0.1 at R = 1200 s, 0.067 at the default
// R = 1800 s. The windows add K rows per flush per replica (K = distinct (model, version, arm)
// reporting, a few): K = 10, 5 flushes/s, 3 replicas is 150 rows/s, 0.009 per check-in.
// Total at the defaults: about 0.076 rows per check-in. (A device that changes status, e.g.
// while it applies an update, costs 2 rows per change on top.)
//
// Promises:
//   - Nothing is counted twice and nothing is lost while writes succeed: every reported
//     number reaches its window once and its device's version_telemetry once. (Exception: a
//     connection lost during COMMIT, UNKNOWN, is retried like a transient failure, so that
//     one batch may be counted twice.)
//   - A crash loses at most one flush_interval of the windows (what the gates see), and at
//     most the last status_refresh of per-device sums and last_seen.
//   - One bad row never blocks the others. A batch that fails on its data (SQLSTATE class 22 or
//     23: a value out of range, a constraint) is split in halves until the offending rows stand
//     alone; those are dropped, each with one error log naming the device (or the window),
//     what the row was and the database's error, and counted (Stats::rows_dropped); every
//     other row is written. This holds for statuses, per-device telemetry and windows.
//   - A transient failure (database down, connections busy, serialization) keeps the rows and
//     retries with exponential backoff (flush_interval doubling up to max_backoff), logging
//     once when it starts failing and once when it recovers. Memory stays bounded: beyond
//     max_pending_telemetry per-device entries the devices whose telemetry waits longest are
//     dropped first (their windows are kept), beyond max_pending_windows the oldest windows;
//     both counted (Stats::telemetry_dropped, Stats::windows_dropped). Statuses are one per
//     device.
//   - Memory per device: about 90 bytes for a device whose status is known and has nothing
//     pending, about 250 while one version's telemetry (4 classes) waits for its status
//     write; model, version and class names are shared, not held per device. Class names
//     are kept per device only for the first kMaxClassesPerSeries names of a (model,
//     version); counts of further names reach the windows but not version_telemetry.
//   - The destructor flushes once more (everything, as Flush) and logs what it could not
//     write.
// Deployment reports do not come through here: they are written synchronously.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct WriteBehindOptions {
  std::chrono::milliseconds flush_interval{200};
  // An unchanged status, and with it the device's telemetry, is written this long after it
  // was last written: the precision of a device's last_seen (and so of `offline_for` in
  // selectors). See the cost arithmetic above.
  std::chrono::seconds status_refresh{1800};
  std::chrono::milliseconds max_backoff{5000};
  // Width of a telemetry window. REQUIRES: the same on every replica, > 0.
  std::chrono::seconds telemetry_window{60};
  size_t max_pending_telemetry = 2'000'000;  // (device, model, version) entries
  size_t max_pending_windows = 100'000;      // (model, version, arm, window) entries
};

class WriteBehind {
 public:
  // Names of one (model, version) kept per device beyond which class counts reach only the
  // windows (a bound on what a device sending made-up class names can make this hold).
  static constexpr size_t kMaxClassesPerSeries = 256;

  // Starts the writer thread.
  WriteBehind(db::Pool& pool, WriteBehindOptions options);
  ~WriteBehind();  // stops the thread, then flushes once (everything)

  struct DeviceStatus {
    std::string model, version, digest;  // the first running model, if any
    std::string agent_state;             // "IDLE", "DOWNLOADING", ..., "UNKNOWN"
  };
  // Queues what `device_row_id` (public id `device_id`, for logs) reported.
  // `rollout_of_model`: for each model, the row id of the rollout whose cohort holds the
  // device (its arm); a model not listed is arm 0 (no rollout's cohort). The telemetry of
  // (model, version) goes to the windows of that arm.
  // REQUIRES: every entry of `telemetry` passed the check-in's validation (finite, in range,
  // consistent).
  void Record(int64_t device_row_id, const std::string& device_id, DeviceStatus status,
              const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry,
              const std::vector<std::pair<std::string, int64_t>>& rollout_of_model = {});

  // Tells what the database already holds for a device (its status and last_seen), as the
  // device cache loads it, so that an unchanged status is next written at last_seen +
  // status_refresh rather than on the device's first check-in to this replica. Knowledge
  // older than what this instance already has for the device is ignored. A device never seen
  // (last_seen NULL) needs no call.
  void KnowWritten(int64_t device_row_id, const DeviceStatus& status,
                   std::chrono::system_clock::time_point last_seen);

  // Writes everything queued now: windows, statuses, and every device's pending telemetry
  // whether due or not (for tests and shutdown; the writer thread writes only what is due).
  // OK when nothing is left to retry (poison rows are dropped, not retried); the transient
  // error otherwise, with the rows kept for the next flush.
  Status Flush();

  struct Stats {
    uint64_t rows_dropped = 0;       // rows refused by the database for their data
    uint64_t telemetry_dropped = 0;  // per-device entries dropped to bound memory while writes failed
    uint64_t windows_dropped = 0;    // windows dropped to bound memory while writes failed
    uint64_t flush_failures = 0;     // flushes that met a transient error
    // What was queued and written, to measure rows per check-in.
    uint64_t records = 0;            // Record calls
    uint64_t statuses_written = 0, telemetry_rows_written = 0, windows_written = 0;
    size_t pending_statuses = 0;     // statuses waiting for the next flush
    size_t pending_telemetry = 0;    // per-device (device, model, version) entries in memory
    size_t pending_windows = 0;
    size_t devices_known = 0;        // devices with per-device state
    // How long the oldest queued status or window has waited for a successful write, at most:
    // the time since the start of the last flush that left nothing to retry, while something
    // is queued; 0 when nothing is. About flush_interval when healthy; grows while writes fail.
    // (Per-device telemetry waiting for its status_refresh by design is not counted.)
    std::chrono::milliseconds oldest_due_age{0};
  };
  Stats GetStats();

 private:
  // A (model, version) as reported, shared by every device's entries; erased when none refers
  // to it any more.
  struct Series {
    std::string model, version;
    std::vector<std::string> classes;  // class id -> name
    std::unordered_map<std::string, uint32_t> class_ids;
    size_t refs = 0;
  };
  // One device's pending telemetry of one series.
  struct DeviceSums {
    Series* series = nullptr;
    uint64_t inferences = 0, errors = 0;
    double p95_weighted = 0, confidence_sum = 0;
    std::vector<std::pair<uint32_t, uint64_t>> histogram;  // class id -> count
  };
  // Per device, for every device seen or preloaded.
  struct DeviceState {
    uint64_t status_fingerprint = 0;  // of the status last written or queued; 0: none known
    int64_t status_at_ms = 0;         // when it was (steady clock, ms since start_)
    uint64_t telemetry_since = 0;     // order of its oldest pending telemetry (bounding memory)
    std::vector<DeviceSums> telemetry;
  };
  struct PendingStatus {
    std::string device_id;
    DeviceStatus status;
  };
  using WindowKey = std::tuple<std::string, std::string, int64_t, int64_t>;  // model, version, arm, start (s)
  struct WindowSums {
    uint64_t inferences = 0, errors = 0, reports = 0;
    double p95_weighted = 0, confidence_sum = 0;
    std::map<std::string, uint64_t> histogram;
    void MergeFrom(const WindowSums& other);
  };
  // What one flush writes of a device's telemetry of one (model, version), self-contained
  // (the names copied out) so it needs no lock while written and can be put back.
  struct TelemetryRow {
    int64_t device_row = 0;
    std::string model, version;
    uint64_t inferences = 0, errors = 0;
    double p95_weighted = 0, confidence_sum = 0;
    std::vector<std::pair<std::string, uint64_t>> histogram;
    uint64_t since = 0;  // the device's telemetry_since when taken
    std::string json;
  };
  enum class Scope {
    kDue,          // windows, queued statuses and their devices' telemetry
    kDueAndIdle,   // and the telemetry of devices whose status is older than status_refresh
    kEverything,   // and every device's telemetry
  };

  void Run();
  Status FlushScope(Scope scope);
  int64_t NowMs() const;
  Series* AcquireSeriesLocked(const std::string& model, const std::string& version);
  void ReleaseSeriesLocked(Series* series);
  // Adds to `into` (a device's entry) the numbers of `row`, re-acquiring its series.
  void MergeTelemetryLocked(DeviceState& into, const TelemetryRow& row);
  // Moves the device's pending telemetry out into rows. REQUIRES: mu_ held.
  void TakeTelemetryLocked(int64_t device_row, DeviceState& state, std::vector<TelemetryRow>& out);
  // Drops the telemetry waiting longest beyond max_pending_telemetry, and the oldest windows
  // beyond max_pending_windows. REQUIRES: mu_ held.
  void BoundMemoryLocked();

  db::Pool& pool_;
  const WriteBehindOptions options_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  std::mutex mu_;  // guards everything below up to flush_mu_
  std::unordered_map<int64_t, DeviceState> devices_;  // by device row id
  std::unordered_map<std::string, std::unique_ptr<Series>> series_;  // by model + '\n' + version
  std::unordered_map<int64_t, PendingStatus> statuses_;  // to write at the next flush
  std::unordered_set<int64_t> telemetry_due_;  // devices whose telemetry goes at the next flush
  std::map<WindowKey, WindowSums> windows_;
  size_t pending_telemetry_ = 0;  // DeviceSums entries over devices_
  uint64_t sequence_ = 0;

  std::mutex flush_mu_;  // one flush at a time (the thread, tests, the destructor)
  std::atomic<uint64_t> rows_dropped_{0}, telemetry_dropped_{0}, windows_dropped_{0}, flush_failures_{0};
  std::atomic<uint64_t> records_{0}, statuses_written_{0}, telemetry_rows_written_{0}, windows_written_{0};
  std::atomic<int64_t> last_clean_flush_start_ms_{0};  // NowMs() at the start of the last flush returning OK

  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread writer_;
};

}  // namespace modelfleet::fleet
