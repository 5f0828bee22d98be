#include "fleet/rollout_cache.h"

#include <spdlog/spdlog.h>

#include "fleet/rollout_manager.h"
#include "fleet/rollout_state.h"

namespace modelfleet::fleet {

RolloutCache::RolloutCache(db::Pool& pool, std::chrono::milliseconds refresh_interval)
    : pool_(pool), refresh_interval_(refresh_interval) {
  poller_ = std::thread([this] { RunPoller(); });
}

RolloutCache::~RolloutCache() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (poller_.joinable()) poller_.join();
}

Status RolloutCache::Reload() {
  auto snapshot = std::make_shared<RolloutSnapshot>();
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT r.id, r.state, m.name, v.version, v.manifest, r.target, r.cohort_cutoff, r.deployment_timeout_seconds "
        "FROM rollouts r JOIN models m ON m.id = r.model_id JOIN model_versions v ON v.id = r.version_id "
        "WHERE r.state <> $1 ORDER BY r.id DESC LIMIT 200",
        {std::string(RolloutStateName(v1::ROLLOUT_STATE_QUEUED))}));
    snapshot->rollouts.clear();
    for (const auto& row : rows) {
      RolloutView view;
      view.row_id = row.Int(0);
      view.rollout_id = RolloutManager::RolloutId(view.row_id);
      // Parsed here, once per reload, not on every check-in.
      view.state = RolloutStateFromName(row.Str(1)).value_or(v1::ROLLOUT_STATE_UNSPECIFIED);
      view.model = row.Str(2);
      view.version = row.Str(3);
      if (!view.manifest.ParseFromString(row.Bytea(4))) return Internal("corrupt manifest in " + view.rollout_id);
      auto selector = DeviceSelector::Parse(row.Str(5), SelectorKind::kRolloutTarget, "target");
      if (!selector) return selector.error().Annotate("target of " + view.rollout_id);
      view.target = std::move(*selector);
      view.cutoff = row.Double(6);
      view.timeout_seconds = static_cast<uint32_t>(row.Int(7));
      snapshot->rollouts.push_back(std::move(view));
    }
    return Status::Ok();
  }));
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
  reloads_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

RolloutCache::Stats RolloutCache::GetStats() {
  std::lock_guard lock(mu_);
  return {snapshot_ ? snapshot_->rollouts.size() : 0, reloads_.load(std::memory_order_relaxed)};
}

std::shared_ptr<const RolloutSnapshot> RolloutCache::CurrentIfFresh() {
  if (dirty_.load()) return nullptr;
  std::lock_guard lock(mu_);
  return snapshot_;
}

Expected<std::shared_ptr<const RolloutSnapshot>> RolloutCache::Current() {
  bool loaded = false;
  {
    std::lock_guard lock(mu_);
    loaded = snapshot_ != nullptr;
  }
  if (dirty_.load() || !loaded) {
    // Every check-in that sees the rollouts changed (or none loaded yet) waits for the reload:
    // going on with the old snapshot meanwhile would hand out new assignments of a rollout this
    // replica has just paused, aborted or rolled back.
    std::lock_guard load(load_mu_);
    bool reload = dirty_.exchange(false);  // before reading: a change during the read marks it again
    {
      std::lock_guard lock(mu_);
      reload = reload || snapshot_ == nullptr;
    }
    if (reload) {
      Status s = Reload();
      if (!s.ok()) {
        dirty_ = true;
        return Fail(s);
      }
    }
  }
  std::lock_guard lock(mu_);
  if (!snapshot_) return Fail(Unavailable("rollouts not loaded yet"));
  return snapshot_;
}

void RolloutCache::RunPoller() {
  std::string last_fingerprint;
  while (!stop_) {
    {
      std::unique_lock lock(wake_mu_);
      if (wake_.wait_for(lock, refresh_interval_, [&] { return stop_.load(); })) break;
    }
    // Cheap change detection: reload only when the rollouts table moved.
    Status polled = pool_.Read([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT coalesce(max(updated_at)::text, '') || ':' || count(*) FROM rollouts"));
      std::string fingerprint = rows[0].Str(0);
      if (fingerprint != last_fingerprint) {
        last_fingerprint = fingerprint;
        dirty_ = true;
      }
      return Status::Ok();
    });
    if (!polled.ok()) spdlog::warn("polling rollouts failed: {}", polled.ToString());
  }
}

}  // namespace modelfleet::fleet
