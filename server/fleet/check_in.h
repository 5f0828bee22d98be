// CheckInService: the device-facing hot path (check-ins and deployment reports).
//
// It composes four parts, each with one job and its own lock (see their headers):
//   - DeviceCache (fleet/device_cache.h): credential -> device, in memory;
//   - RolloutCache (fleet/rollout_cache.h): the rollouts in force, as an immutable snapshot;
//   - DeploymentStore (fleet/deployment_store.h): the deployments of those rollouts, in memory,
//     written through (creations are group-committed);
//   - WriteBehind (fleet/write_behind.h): what devices report, merged and written in batches;
// and decides with a pure function (fleet/check_in_decision.h). So a check-in costs no database
// round trip unless the device is new to this replica (one read, batched with others), changed
// its attributes, or needs a deployment created (one group-committed write); a device being
// deployed is answered from memory.
//
// Deployment reports are written synchronously and acknowledged only once committed.
// Status and telemetry are written behind (fleet/write_behind.h): telemetry is summed into
// one-minute windows per (model, version, rollout arm), which is what the rollout gates read,
// and a crash loses at most one flush interval of those; per-device status and telemetry are
// written only every status_refresh (or when the status changes), so a crash may lose up to
// that much of them. One device's bad row never blocks the others; all is flushed on shutdown.
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
// Changes made elsewhere in this process reach the caches through DeviceChanged(),
// RolloutsChanged() and DeploymentsChanged(), which the device registry, rollout manager and
// controller call (wired by the server); other replicas' changes arrive by polling.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "auth/principal.h"
#include "db/pool.h"
#include "fleet/check_in_decision.h"
#include "fleet/deployment_store.h"
#include "fleet/device_cache.h"
#include "fleet/rollout_cache.h"
#include "fleet/write_behind.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct CheckInOptions {
  uint32_t check_in_interval_seconds = 60;       // spread +-25% per answer
  std::chrono::milliseconds refresh_interval{250};
  std::chrono::milliseconds flush_interval{200};
  std::chrono::seconds device_cache_ttl{600};        // accepted devices only
  // last_seen precision of a quiet device; 30 min keeps a fleet checking in every minute at
  // ~0.07 rows written per check-in (fleet/write_behind.h has the arithmetic).
  std::chrono::seconds status_refresh{1800};
  std::chrono::milliseconds device_poll_interval{1000};  // device changes reach the cache
};

class CheckInService {
 public:
  CheckInService(db::Pool& pool, CheckInOptions options);
  ~CheckInService();  // flushes and stops the background threads

  // roles: device. PERMISSION_DENIED if the credential belongs to no device; a device that is
  // not ACCEPTED gets keep_current and its admission; INVALID_ARGUMENT for bad fields.
  // May wait on the database (a device new to this replica, a deployment to create or read).
  Expected<v1::CheckInResponse> CheckIn(const auth::Principal& device, const v1::CheckInRequest& request);
  // The same, answered only if that needs no wait on the database (the device, rollouts and
  // deployments are in memory, nothing to create: the steady state of a fleet). Otherwise
  // nullopt, and nothing happened (nothing recorded or counted): the caller asks CheckIn()
  // from a thread that may block. For transports that answer on their I/O threads.
  std::optional<Expected<v1::CheckInResponse>> CheckInWithoutBlocking(const auth::Principal& device,
                                                                      const v1::CheckInRequest& request);
  // NOT_FOUND (no such deployment of this device), FAILED_PRECONDITION (illegal transition).
  Status ReportDeployment(const auth::Principal& device, const v1::DeploymentReport& report);

  // This replica changed the rollouts table: the next check-in sees it.
  void RolloutsChanged();
  // This replica changed deployment rows in bulk (cancelled, timed out, retried).
  void DeploymentsChanged();
  // This replica enrolled device `device_row_id` or changed its admission or credential: its
  // one cache entry is re-read (nothing else is dropped).
  void DeviceChanged(int64_t device_row_id);
  // Writes everything queued now (tests, shutdown).
  Status Flush();

  struct CacheStats {
    uint64_t device_hits = 0, device_misses = 0, device_miss_reads = 0;
    size_t devices = 0;
    bool devices_preloaded = false;  // the first full load of the device cache has finished
    size_t deployments = 0;
    bool deployments_loaded = false;
    uint64_t deployment_reads = 0;    // check-ins that had to read a deployment row
    uint64_t telemetry_rejected = 0;  // telemetry entries dropped at the edge
    WriteBehind::Stats write_behind;
    RolloutCache::Stats rollouts;
    // Check-ins that got past validation, by the call that answered them: CheckInWithoutBlocking
    // (from memory, on the caller's thread) or CheckIn (which may have waited on the database).
    uint64_t check_ins_without_blocking = 0, check_ins_may_block = 0;
  };
  CacheStats Stats();

 private:
  // Both CheckIn forms; nullopt only when !may_block and the answer needs the database.
  std::optional<Expected<v1::CheckInResponse>> CheckIn(const auth::Principal& principal,
                                                       const v1::CheckInRequest& request, bool may_block);
  // Carries out DecideCheckIn until it answers. `holding`: RolloutsHolding() of the device.
  // nullopt (nothing done) when !may_block and the answer needs the database.
  std::optional<Expected<v1::CheckInResponse>> Decide(const CachedDevice& device, const v1::CheckInRequest& request,
                                                      const std::vector<const RolloutView*>& holding, bool may_block);
  // The newest deployment of `device` still under way (assigned, not yet terminal), from the
  // database, as an assignment; nullopt if none.
  Expected<std::optional<v1::Assignment>> AssignmentUnderWay(const CachedDevice& device);
  Expected<v1::Manifest> ManifestOf(const std::string& model, const std::string& version);
  std::optional<v1::Manifest> CachedManifestOf(const std::string& model, const std::string& version);
  // Queues what the device reported; `telemetry` holds only the entries that passed validation.
  // `holding`: the rollouts whose cohorts hold the device (its telemetry's arms).
  void Enqueue(const CachedDevice& device, const v1::CheckInRequest& request,
               const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry,
               const std::vector<const RolloutView*>& holding);

  db::Pool& pool_;
  const CheckInOptions options_;

  WriteBehind write_behind_;
  DeviceCache devices_;  // after write_behind_: its loads tell the write-behind what is stored
  RolloutCache rollouts_;
  DeploymentStore deployments_;

  std::mutex manifests_mu_;
  std::map<std::string, v1::Manifest> manifests_;  // "model@version"

  std::atomic<uint64_t> deployment_reads_{0};
  std::atomic<uint64_t> telemetry_rejected_{0};
  std::atomic<uint64_t> check_ins_without_blocking_{0}, check_ins_may_block_{0};
  std::atomic<int64_t> last_rejection_log_{0};  // steady-clock seconds: rejections log at most once a second
};

}  // namespace modelfleet::fleet
