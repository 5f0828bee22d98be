// DeploymentStore: the deployments of the rollouts in force, held in memory for the check-in
// path, and written through.
//
// A check-in of a device that is being deployed needs its deployment row (does it exist, what
// step, what it ran before). Reading it from PostgreSQL on every such check-in made a rollout
// cost one round trip per check-in of every device in its cohort; here it is a map lookup.
//
// How it stays true:
//   - At start, and every `reload_every`, it loads the deployments of the newest 200 rollouts
//     that have started (the ones the rollout cache holds). `Stats().loaded` says when the
//     first load finished; until then Find() answers "unknown" and the caller reads the row.
//   - What this replica writes is written through: creations (CreateForward, CreateRollback)
//     and device reports (Reported) update the entry after their transaction committed.
//   - Every `poll_interval` it reads the deployments updated since its last poll (by any
//     replica, or by this replica's rollout manager, controller or device registry, which
//     change many rows in one statement: they call Refresh()). An entry is only replaced by
//     a row at least as new (updated_at), so a poll that raced a write-through never moves
//     an entry back.
//   - An entry it does not hold for a rollout it holds is created on demand: the creation's
//     ON CONFLICT returns the existing row, so a lagging store costs a write, never a
//     duplicate or a wrong answer.
//
// Creations are queued and written many per transaction (a group commit) by two threads, so
// one batch is being written while the next one gathers; each caller waits for its own to be
// durable before it hands the assignment out.
//
// Memory: about 64 bytes per deployment (previous versions are interned).
//
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <limits>
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

// One deployment as the check-in decision sees it.
struct DeploymentEntry {
  int64_t id = 0;
  v1::DeploymentStep step = v1::DEPLOYMENT_STEP_UNSPECIFIED;
  std::string previous_version;  // what the device ran before (forward deployments)
};

struct DeploymentStoreOptions {
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds reload_every{600000};
};

class DeploymentStore {
 public:
  DeploymentStore(db::Pool& pool, DeploymentStoreOptions options);
  ~DeploymentStore();  // fails queued creations with UNAVAILABLE, stops the threads

  enum class Known { kYes, kNo, kUnknown };
  // The deployment of `device_row_id` in `rollout_row_id` (forward or rollback). kUnknown
  // (`*entry` untouched) while the first load runs or for a rollout the store does not hold:
  // the caller must ask the database (a creation does: it returns the existing row).
  Known Find(int64_t rollout_row_id, int64_t device_row_id, bool is_rollback, DeploymentEntry* entry) const;

  struct ForwardCreation {
    int64_t rollout_row_id = 0, device_row_id = 0;
    std::string target_version, previous_model, previous_version;
    std::string event_detail;  // for the device's history
  };
  // Creates the forward deployment (or returns the one that exists) if the rollout still
  // assigns new devices; nullopt if it no longer does (paused, aborted, ... on any replica).
  // Batched with other callers' creations into one transaction. UNAVAILABLE.
  Expected<std::optional<DeploymentEntry>> CreateForward(ForwardCreation creation);
  // Creates the rollback deployment back to `previous_version` (or returns the one that exists).
  Expected<DeploymentEntry> CreateRollback(int64_t rollout_row_id, int64_t device_row_id, const std::string& model,
                                           const std::string& previous_version, const std::string& running_version);
  // A device report moved its deployment to `step` (committed; `updated_micros` its updated_at).
  void Reported(int64_t rollout_row_id, int64_t device_row_id, bool is_rollback, v1::DeploymentStep step,
                int64_t updated_micros);
  // Rows changed in bulk on this replica (cancel, time out, retry): poll now.
  void Refresh();

  struct Stats {
    size_t deployments = 0;
    bool loaded = false;
    uint64_t creations = 0, creation_batches = 0;
  };
  Stats GetStats() const;

 private:
  struct Key {
    int64_t rollout_and_direction;  // rollout row id * 2 + is_rollback
    int64_t device_row_id;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<int64_t>()(k.rollout_and_direction * 1000003 ^ k.device_row_id);
    }
  };
  struct Entry {
    int64_t id = 0;
    int64_t updated_micros = 0;
    uint32_t previous_version = 0;  // index into versions_
    v1::DeploymentStep step = v1::DEPLOYMENT_STEP_UNSPECIFIED;
  };
  struct PendingCreation {
    ForwardCreation creation;
    std::promise<Expected<std::optional<DeploymentEntry>>> done;
  };
  static Key KeyOf(int64_t rollout_row_id, int64_t device_row_id, bool is_rollback) {
    return {rollout_row_id * 2 + (is_rollback ? 1 : 0), device_row_id};
  }
  // Stores what `row` (MF_DEPLOYMENT_STORE_COLUMNS) says unless the entry is newer. REQUIRES: mu_ held.
  void ApplyRowLocked(const db::Row& row);
  void PutLocked(const Key& key, int64_t id, v1::DeploymentStep step, const std::string& previous_version,
                 int64_t updated_micros);
  uint32_t InternLocked(const std::string& version);
  DeploymentEntry EntryOf(const Entry& e) const;  // REQUIRES: mu_ held (shared)

  void RunSync();
  Status LoadAll();
  Expected<int64_t> ApplyChangesSince(int64_t since_micros);
  void RunCreator();
  Status WriteCreations(std::vector<std::unique_ptr<PendingCreation>>& batch);

  db::Pool& pool_;
  const DeploymentStoreOptions options_;

  mutable std::shared_mutex mu_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
  // Rollouts from this row id on are held whole (the loads read all their deployments; newer
  // rollouts start empty and are seen through write-through and polling).
  std::atomic<int64_t> held_from_{std::numeric_limits<int64_t>::max()};
  std::vector<std::string> versions_;                // interned previous versions
  std::unordered_map<std::string, uint32_t> version_index_;
  std::atomic<bool> loaded_{false};
  std::atomic<uint64_t> creations_{0}, creation_batches_{0};

  std::atomic<bool> stop_{false};
  std::atomic<bool> refresh_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread sync_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<std::unique_ptr<PendingCreation>> queue_;
  std::array<std::thread, 2> creators_;
};

}  // namespace modelfleet::fleet
