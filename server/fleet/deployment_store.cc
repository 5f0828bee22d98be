#include "fleet/deployment_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "fleet/deployment_state.h"
#include "fleet/rollout_state.h"
#include "modelfleet/json.h"
#include "util/cache_sync.h"
#include "util/time.h"

namespace modelfleet::fleet {

namespace {
// The columns ApplyRowLocked reads, in its order.
#define MF_DEPLOYMENT_STORE_COLUMNS \
  "id, rollout_id, device_id, is_rollback, step, previous_version, " MF_EPOCH_MICROS("updated_at")
}  // namespace

DeploymentStore::DeploymentStore(db::Pool& pool, DeploymentStoreOptions options) : pool_(pool), options_(options) {
  versions_.push_back("");
  version_index_[""] = 0;
  sync_ = std::thread([this] { RunSync(); });
  for (auto& creator : creators_) creator = std::thread([this] { RunCreator(); });
}

DeploymentStore::~DeploymentStore() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (sync_.joinable()) sync_.join();
  { std::lock_guard lock(queue_mu_); }  // the creator is waiting, or will see stop_
  queue_cv_.notify_all();
  for (auto& creator : creators_) creator.join();
}

uint32_t DeploymentStore::InternLocked(const std::string& version) {
  auto [it, inserted] = version_index_.try_emplace(version, static_cast<uint32_t>(versions_.size()));
  if (inserted) versions_.push_back(version);
  return it->second;
}

void DeploymentStore::PutLocked(const Key& key, int64_t id, v1::DeploymentStep step,
                                const std::string& previous_version, int64_t updated_micros) {
  Entry& e = entries_[key];
  if (e.id != 0 && e.updated_micros > updated_micros) return;  // ours is newer
  e.id = id;
  e.step = step;
  e.updated_micros = updated_micros;
  e.previous_version = InternLocked(previous_version);
}

void DeploymentStore::ApplyRowLocked(const db::Row& row) {
  PutLocked(KeyOf(row.Int(1), row.Int(2), row.Bool(3)), row.Int(0), StepFromName(row.Str(4)), row.Str(5), row.Int(6));
}

DeploymentEntry DeploymentStore::EntryOf(const Entry& e) const { return {e.id, e.step, versions_[e.previous_version]}; }

DeploymentStore::Known DeploymentStore::Find(int64_t rollout_row_id, int64_t device_row_id, bool is_rollback,
                                             DeploymentEntry* entry) const {
  std::shared_lock lock(mu_);
  auto it = entries_.find(KeyOf(rollout_row_id, device_row_id, is_rollback));
  if (it != entries_.end()) {
    *entry = EntryOf(it->second);
    return Known::kYes;
  }
  return rollout_row_id >= held_from_.load() ? Known::kNo : Known::kUnknown;
}

void DeploymentStore::Reported(int64_t rollout_row_id, int64_t device_row_id, bool is_rollback,
                               v1::DeploymentStep step, int64_t updated_micros) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(KeyOf(rollout_row_id, device_row_id, is_rollback));
  if (it == entries_.end()) return;  // not held: the next poll brings it
  if (it->second.updated_micros > updated_micros) return;
  it->second.step = step;
  it->second.updated_micros = updated_micros;
}

void DeploymentStore::Refresh() {
  {
    std::lock_guard lock(wake_mu_);
    refresh_ = true;
  }
  wake_.notify_all();
}

Expected<DeploymentEntry> DeploymentStore::CreateRollback(int64_t rollout_row_id, int64_t device_row_id,
                                                          const std::string& model, const std::string& previous_version,
                                                          const std::string& running_version) {
  std::optional<db::Row> row;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "INSERT INTO deployments (rollout_id, device_id, is_rollback, target_version, previous_model, "
        "previous_version, step) VALUES ($1, $2, TRUE, $3, $4, $5, 'ASSIGNED') "
        "ON CONFLICT (rollout_id, device_id, is_rollback) DO UPDATE SET rollout_id = EXCLUDED.rollout_id "
        "RETURNING " MF_DEPLOYMENT_STORE_COLUMNS,
        {rollout_row_id, device_row_id, previous_version, model, running_version}));
    row = rows[0];
    return Status::Ok();
  }));
  std::unique_lock lock(mu_);
  ApplyRowLocked(*row);
  return DeploymentEntry{row->Int(0), StepFromName(row->Str(4)), row->Str(5)};
}

Expected<std::optional<DeploymentEntry>> DeploymentStore::CreateForward(ForwardCreation creation) {
  auto pending = std::make_unique<PendingCreation>();
  pending->creation = std::move(creation);
  auto result = pending->done.get_future();
  {
    std::lock_guard lock(queue_mu_);
    if (stop_) return Fail(Unavailable("the server is shutting down"));
    queue_.push_back(std::move(pending));
  }
  queue_cv_.notify_one();
  return result.get();
}

void DeploymentStore::RunCreator() {
  constexpr size_t kMaxBatch = 256;
  for (;;) {
    std::vector<std::unique_ptr<PendingCreation>> batch;
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stop_.load() || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      const size_t n = std::min(kMaxBatch, queue_.size());
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
      queue_.erase(queue_.begin(), queue_.begin() + n);
    }
    Status written = WriteCreations(batch);
    if (!written.ok()) {
      for (auto& c : batch) c->done.set_value(Fail(written));
    }
  }
}

Status DeploymentStore::WriteCreations(std::vector<std::unique_ptr<PendingCreation>>& batch) {
  creation_batches_.fetch_add(1, std::memory_order_relaxed);
  // In (rollout, device) order, so two creators' transactions take their row locks in the same
  // order and never deadlock; one row per (rollout, device): ON CONFLICT touches a row once.
  std::vector<const ForwardCreation*> rows;
  for (const auto& p : batch) rows.push_back(&p->creation);
  std::sort(rows.begin(), rows.end(), [](const ForwardCreation* a, const ForwardCreation* b) {
    return std::pair(a->rollout_row_id, a->device_row_id) < std::pair(b->rollout_row_id, b->device_row_id);
  });
  rows.erase(std::unique(rows.begin(), rows.end(),
                         [](const ForwardCreation* a, const ForwardCreation* b) {
                           return a->rollout_row_id == b->rollout_row_id && a->device_row_id == b->device_row_id;
                         }),
             rows.end());
  std::string rollout_ids = "{";
  std::string json = "[";
  for (const ForwardCreation* c : rows) {
    rollout_ids += std::to_string(c->rollout_row_id) + ",";
    if (json.size() > 1) json += ",";
    json += "{\"rollout\":" + std::to_string(c->rollout_row_id) + ",\"device\":" + std::to_string(c->device_row_id) +
            ",\"target\":" + JsonString(c->target_version) + ",\"pmodel\":" + JsonString(c->previous_model) +
            ",\"pversion\":" + JsonString(c->previous_version) + ",\"event\":" + JsonString(c->event_detail) + "}";
  }
  rollout_ids.back() = '}';
  json += "]";
  std::map<std::pair<int64_t, int64_t>, db::Row> created;  // by (rollout, device)
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    created.clear();
    // One statement. The caller's snapshot may lag behind a pause, abort or rollback (made on
    // another replica, or while it reloads): `live` checks the rollouts themselves. FOR SHARE
    // orders this against RolloutManager::Transition, so a rollback either sees these
    // deployments (and cancels them) or happens first (and nothing is created here).
    MF_ASSIGN_OR_RETURN(auto inserted, tx.Exec(
        "WITH live AS (SELECT id FROM rollouts WHERE id = ANY($2::bigint[]) AND state = ANY($3::text[]) FOR SHARE), "
        "wanted AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(rollout bigint, device bigint, target text, "
        "pmodel text, pversion text, event text) WHERE v.rollout IN (SELECT id FROM live)), "
        "events AS (INSERT INTO device_events (device_id, kind, detail) SELECT device, 'assigned', event FROM wanted) "
        "INSERT INTO deployments (rollout_id, device_id, target_version, previous_model, previous_version, step) "
        "SELECT rollout, device, target, pmodel, pversion, 'ASSIGNED' FROM wanted "
        "ON CONFLICT (rollout_id, device_id, is_rollback) DO UPDATE SET rollout_id = EXCLUDED.rollout_id "
        "RETURNING " MF_DEPLOYMENT_STORE_COLUMNS,
        {json, rollout_ids, RolloutStatesSqlArray(RolloutStatesWhere(AssignsNewDevices))}));
    for (const auto& row : inserted) created[{row.Int(1), row.Int(2)}] = row;
    return Status::Ok();
  }));
  {
    std::unique_lock lock(mu_);
    for (const auto& [key, row] : created) ApplyRowLocked(row);
  }
  creations_.fetch_add(created.size(), std::memory_order_relaxed);
  for (auto& p : batch) {
    auto it = created.find({p->creation.rollout_row_id, p->creation.device_row_id});
    if (it == created.end()) {
      p->done.set_value(std::optional<DeploymentEntry>());
    } else {
      const db::Row& row = it->second;
      p->done.set_value(std::optional<DeploymentEntry>(DeploymentEntry{row.Int(0), StepFromName(row.Str(4)), row.Str(5)}));
    }
  }
  return Status::Ok();
}

Status DeploymentStore::LoadAll() {
  constexpr int64_t kPage = 50'000;
  const auto started = std::chrono::steady_clock::now();
  int64_t held_from = 0;
  MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT coalesce(min(id), 0) FROM (SELECT id FROM rollouts ORDER BY id DESC LIMIT 200) AS newest"));
    held_from = rows[0].Int(0);
    return Status::Ok();
  }));
  size_t loaded = 0;
  int64_t after = 0;
  for (bool more = true; more && !stop_;) {
    MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "SELECT " MF_DEPLOYMENT_STORE_COLUMNS " FROM deployments WHERE id > $1 AND rollout_id >= $2 "
          "ORDER BY id LIMIT $3",
          {after, held_from, kPage}));
      more = static_cast<int64_t>(rows.size()) == kPage;
      std::unique_lock lock(mu_);
      for (const auto& row : rows) {
        ApplyRowLocked(row);
        after = row.Int(0);
      }
      loaded += rows.size();
      return Status::Ok();
    }));
  }
  if (stop_) return Status::Ok();
  held_from_ = held_from;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  spdlog::log(loaded_ ? spdlog::level::debug : spdlog::level::info, "deployment store: loaded {} deployments in {} ms",
              loaded, ms.count());
  loaded_ = true;
  return Status::Ok();
}

Expected<int64_t> DeploymentStore::ApplyChangesSince(int64_t since_micros) {
  // updated_at is stamped while the changing transaction runs, so one that commits after this
  // poll may carry an earlier stamp: re-read a margin. Deployment writes are short
  // transactions; the margin is smaller than the device cache's because a rollout changes
  // many rows a second and each poll re-reads the margin's worth.
  constexpr int64_t kLateCommitMarginMicros = 2'000'000;
  int64_t clock = 0;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto now, tx.Exec("SELECT " MF_EPOCH_MICROS("clock_timestamp()")));
    clock = now[0].Int(0);
    if (since_micros == 0) return Status::Ok();
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT " MF_DEPLOYMENT_STORE_COLUMNS " FROM deployments WHERE updated_at >= to_timestamp($1::float8 / 1e6)",
        {static_cast<double>(since_micros - kLateCommitMarginMicros)}));
    std::unique_lock lock(mu_);
    for (const auto& row : rows) ApplyRowLocked(row);
    return Status::Ok();
  }));
  return clock;
}

void DeploymentStore::RunSync() {
  util::CacheSync sync;
  sync.what = "deployment store";
  sync.poll_interval = options_.poll_interval;
  sync.reload_every = options_.reload_every;
  sync.apply_changes_since = [this](int64_t since) { return ApplyChangesSince(since); };
  sync.load_all = [this] { return LoadAll(); };
  sync.poll_now = [this] { return refresh_.exchange(false); };
  util::RunCacheSync(sync, stop_, wake_mu_, wake_);
}

DeploymentStore::Stats DeploymentStore::GetStats() const {
  std::shared_lock lock(mu_);
  return {entries_.size(), loaded_.load(), creations_.load(), creation_batches_.load()};
}

}  // namespace modelfleet::fleet
