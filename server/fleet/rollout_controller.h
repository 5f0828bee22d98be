// RolloutController: the loop that moves rollouts forward by themselves.
//
// Every tick it (1) times out deployments that showed no progress within their rollout's
// deployment timeout, (2) for every RUNNING rollout, judges the current stage: a broken gate
// pauses it (or rolls it back when auto_rollback is set); a stage whose success threshold is
// met after its soak time advances (or waits for approval when the next stage asks for it);
// the last one completes the rollout; and (3) starts QUEUED rollouts that no longer conflict.
//
// Only one replica's controller works at a time: it holds a session-level PostgreSQL advisory
// lock on a dedicated pooled connection; when that replica dies, its connection closes, the
// lock is released and another replica's controller takes over at its next attempt. Even
// without the lock, every transition is a conditional UPDATE, so none happens twice.
//
// Counting a stage's cohort scans the target's devices (hashing each), so the controller counts
// it when a stage starts and then at most every `cohort_recount_interval`: a device enrolling
// into a running stage is counted within that interval.
//
// Gate limits of 0 mean "no limit". Telemetry gates are judged once the stage's cohort has
// reported at least gates.min_inferences inferences of the new version.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "db/pool.h"
#include "fleet/rollout_manager.h"

namespace modelfleet::fleet {

class RolloutController {
 public:
  RolloutController(db::Pool& pool, RolloutManager& rollouts, std::chrono::milliseconds interval,
                    std::chrono::milliseconds cohort_recount_interval = std::chrono::seconds(10));
  ~RolloutController();  // stops the loop

  void Start();
  void Stop();

  // One pass over everything (the loop calls this while it holds the lock; tests may call it
  // directly). Returns the number of transitions made.
  Expected<int> Tick();

  bool is_leader() const { return leader_; }

 private:
  void Run();
  Expected<int> JudgeRunning(const v1::Rollout& rollout, int64_t row_id);

  db::Pool& pool_;
  RolloutManager& rollouts_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds cohort_recount_interval_;
  struct CohortCount {
    double cutoff = -1;
    uint32_t devices = 0;
    std::chrono::steady_clock::time_point counted;
  };
  std::mutex tick_mu_;                                      // one Tick at a time
  std::unordered_map<int64_t, CohortCount> cohort_counts_;  // by rollout row id, under tick_mu_
  std::atomic<bool> stop_{false};
  std::atomic<bool> leader_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread thread_;
};

inline constexpr int64_t kControllerLockKey = 0x6d66726f6c6c6f75;  // "mfrollou"

}  // namespace modelfleet::fleet
