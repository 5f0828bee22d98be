// RolloutCache: the rollouts in force, held in memory for the check-in path.
//
// A snapshot holds the newest 200 rollouts that have started (QUEUED ones assign nothing),
// each with its manifest, parsed target selector, cohort cutoff and state. It is reloaded when
// the rollouts table changed: a background thread polls a cheap fingerprint of the table every
// `refresh_interval`, and Invalidate() (called by this replica's RolloutManager after a
// change) makes the next Current() reload before it answers, so this replica never hands out
// a new assignment of a rollout it has just paused, aborted or rolled back. Other replicas
// see a change within one refresh interval.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "db/pool.h"
#include "fleet/device_selector.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::fleet {

struct RolloutView {
  int64_t row_id = 0;
  std::string rollout_id;                                   // "ro-<row id>"
  v1::RolloutState state = v1::ROLLOUT_STATE_UNSPECIFIED;  // unknown stored text: UNSPECIFIED
  std::string model, version;
  v1::Manifest manifest;
  DeviceSelector target;
  double cutoff = 0;  // cohort: devices whose bucket is below it
  uint32_t timeout_seconds = 0;
};

struct RolloutSnapshot {
  std::vector<RolloutView> rollouts;  // newest first
};

class RolloutCache {
 public:
  RolloutCache(db::Pool& pool, std::chrono::milliseconds refresh_interval);
  ~RolloutCache();  // stops the polling thread

  // The current snapshot, reloaded first if it was invalidated (or never loaded).
  // UNAVAILABLE if it cannot be loaded.
  Expected<std::shared_ptr<const RolloutSnapshot>> Current();
  // The current snapshot if it needs no reload; nullptr otherwise (then call Current()).
  std::shared_ptr<const RolloutSnapshot> CurrentIfFresh();
  // Forces the next Current() to see the rollouts table as it is now.
  void Invalidate() { dirty_ = true; }

  struct Stats {
    size_t rollouts = 0;   // in the current snapshot (0 before the first load)
    uint64_t reloads = 0;  // snapshots loaded
  };
  Stats GetStats();

 private:
  Status Reload();
  void RunPoller();

  db::Pool& pool_;
  const std::chrono::milliseconds refresh_interval_;

  std::mutex load_mu_;  // serialises reloads, so a later load is never overwritten by an earlier one
  std::mutex mu_;
  std::shared_ptr<const RolloutSnapshot> snapshot_;  // under mu_
  std::atomic<bool> dirty_{true};
  std::atomic<uint64_t> reloads_{0};

  std::atomic<bool> stop_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread poller_;
};

}  // namespace modelfleet::fleet
