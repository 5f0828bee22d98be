// CheckInService: the device-facing hot path (check-ins and deployment reports).
//
// Desired state is computed in memory: the rollouts in force are held in a snapshot
// (refreshed when the rollouts table changes, polled every `refresh_interval`, and at once
// after this replica changed one), and a device's membership of a rollout is its target match
// plus its cohort bucket. So a check-in of a device that is not part of a rollout, or already
// runs what it should, costs no database round trip: the device record comes from a cache,
// and what it reports (last seen, running model, agent state, telemetry) is written behind,
// merged and batched, by one writer thread (an unchanged status only every status_refresh,
// so last_seen of a quiet device is precise to that much). Only a device that is being
// deployed touches the database on its check-in: one autocommit read of its deployment row,
// and the first time the deployment is created: creations are queued and written by one
// thread, many per transaction (a group commit), and each check-in waits for its own to be
// durable before it hands the assignment out.
//
// The device cache is kept by a second background thread: it loads every accepted device at
// start (so a freshly started replica does not pay one lookup per device), reloads them every
// device_cache_ttl / 2, and every device_poll_interval reads the devices whose admission,
// attributes or credential changed since its last poll (devices.changed_at, migration 0003),
// so a change made on any replica reaches every replica's cache within about that interval.
//
// Deployment reports are written synchronously and acknowledged only once committed.
// Status and telemetry are written behind (fleet/write_behind.h): a crash loses at most one
// flush interval of them, one device's bad row never blocks the others, and they are flushed on
// shutdown.
//
// Every number a device sends is checked at the edge. A malformed check-in (a bad running
// model, too many entries, bad attributes) is refused with INVALID_ARGUMENT naming the field.
// A telemetry entry whose numbers are not finite, out of range or inconsistent is dropped,
// counted (Stats().telemetry_rejected) and logged naming the device and field, and the
// check-in goes on: a mat with a telemetry bug still gets its updates (perhaps the fix). An
// agent_state this server does not know (a newer agent) is stored as "UNKNOWN".
//
// Every replica computes the same desired state from the same rollouts table (cohorts are a
// pure function of device and rollout), so assignments do not flip between replicas; a replica
// may lag one refresh interval behind a rollout change, which can delay a device's first
// assignment by that much but never withdraw one under way: a device that says it is applying
// an assignment the snapshot does not give it gets its deployment from the database.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "auth/principal.h"
#include "db/pool.h"
#include "fleet/device_selector.h"
#include "modelfleet/status.h"
#include "fleet/write_behind.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct CheckInOptions {
  uint32_t check_in_interval_seconds = 60;       // spread +-25% per answer
  std::chrono::milliseconds refresh_interval{250};
  std::chrono::milliseconds flush_interval{200};
  std::chrono::seconds device_cache_ttl{600};        // accepted devices only
  std::chrono::seconds status_refresh{300};          // last_seen precision of a quiet device
  std::chrono::milliseconds device_poll_interval{1000};  // device changes reach the cache
};

class CheckInService {
 public:
  CheckInService(db::Pool& pool, CheckInOptions options);
  ~CheckInService();  // flushes and stops the background threads

  // roles: device. PERMISSION_DENIED if the credential belongs to no device; a device that is
  // not ACCEPTED gets keep_current and its admission; INVALID_ARGUMENT for bad fields.
  Expected<v1::CheckInResponse> CheckIn(const auth::Principal& device, const v1::CheckInRequest& request);
  // NOT_FOUND (no such deployment of this device), FAILED_PRECONDITION (illegal transition).
  Status ReportDeployment(const auth::Principal& device, const v1::DeploymentReport& report);

  // Forces the next check-in to see rollout changes made by this replica.
  void InvalidateRollouts();
  // Drops every cached device record (after an admission change on this replica; other
  // replicas see it within device_cache_ttl, and a revoked credential stops working within
  // the token cache's TTL).
  void InvalidateDevices();
  // Writes everything queued now (tests, shutdown).
  Status Flush();

  struct CacheStats {
    uint64_t device_hits = 0, device_misses = 0;
    size_t devices = 0;
    bool devices_preloaded = false;  // the first full load of the device cache has finished
    uint64_t telemetry_rejected = 0;  // telemetry entries dropped at the edge
    WriteBehind::Stats write_behind;
  };
  CacheStats Stats();

 private:
  struct RolloutView {
    int64_t row_id = 0;
    std::string rollout_id;
    v1::RolloutState state = v1::ROLLOUT_STATE_UNSPECIFIED;  // unknown stored text: UNSPECIFIED
    std::string model, version;
    v1::Manifest manifest;
    DeviceSelector target;
    double cutoff = 0;
    uint32_t timeout_seconds = 0;
  };
  struct Snapshot {
    std::vector<RolloutView> rollouts;  // newest first
    std::string fingerprint;
  };
  struct DeviceInfo {
    int64_t row_id = 0;
    std::string device_id;
    std::string admission;
    v1::DeviceAttributes attributes;
    std::chrono::steady_clock::time_point fetched;
  };
  struct DeploymentRow {
    int64_t id = 0;
    std::string step, previous_version;
  };
  // A forward deployment to create (if its rollout is still RUNNING or COMPLETED).
  struct Creation {
    int64_t rollout_row_id = 0, device_row_id = 0;
    std::string target_version, previous_model, previous_version, event_detail;
    std::promise<Expected<std::optional<DeploymentRow>>> done;  // nullopt: the rollout stopped
  };
  Expected<std::shared_ptr<const Snapshot>> CurrentSnapshot();
  Status ReloadSnapshot();
  Expected<DeviceInfo> LookupDevice(const auth::Principal& device);
  Expected<v1::CheckInResponse> Decide(const DeviceInfo& device, const v1::CheckInRequest& request,
                                       const Snapshot& snapshot);
  // The newest deployment of `device` still under way (assigned, not yet terminal), from the
  // database, as an assignment; nullopt if none.
  Expected<std::optional<v1::Assignment>> AssignmentUnderWay(const DeviceInfo& device);
  Expected<v1::Manifest> ManifestOf(const std::string& model, const std::string& version);
  // Queues what the device reported; `telemetry` holds only the entries that passed validation.
  void Enqueue(const DeviceInfo& device, const v1::CheckInRequest& request,
               const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry);
  void RunBackground();
  // Queues `creation` for the creator thread and waits for its result.
  Expected<std::optional<DeploymentRow>> CreateDeployment(std::unique_ptr<Creation> creation);
  void RunCreator();
  Status WriteCreations(std::vector<std::unique_ptr<Creation>>& batch);
  // The device-cache thread (see the top of this file) and its two kinds of read.
  void RunDeviceSync();
  Status LoadAllDevices();
  Expected<int64_t> ApplyDeviceChangesSince(int64_t since_micros);  // returns the new watermark
  void CacheDeviceRow(const db::Row& row, std::chrono::steady_clock::time_point now);  // under devices_mu_

  db::Pool& pool_;
  const CheckInOptions options_;

  std::mutex snapshot_load_mu_;  // serialises reloads, so a later load is never overwritten
  std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::atomic<bool> snapshot_dirty_{true};

  std::shared_mutex devices_mu_;
  std::unordered_map<int64_t, DeviceInfo> devices_;  // by token id
  std::atomic<uint64_t> device_hits_{0}, device_misses_{0};
  std::atomic<bool> devices_preloaded_{false};

  std::mutex manifests_mu_;
  std::map<std::string, v1::Manifest> manifests_;  // "model@version"

  WriteBehind write_behind_;
  std::atomic<uint64_t> telemetry_rejected_{0};
  std::atomic<int64_t> last_rejection_log_{0};  // steady-clock seconds: rejections log at most once a second

  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread background_;  // polls the rollouts table
  std::thread device_sync_;

  std::mutex creations_mu_;
  std::condition_variable creations_cv_;
  std::vector<std::unique_ptr<Creation>> creations_;
  std::thread creator_;
};

}  // namespace modelfleet::fleet
