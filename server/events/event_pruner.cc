#include "events/event_pruner.h"

#include <spdlog/spdlog.h>

namespace modelfleet::events {

void EventPruner::Start() { thread_ = std::thread([this] { Run(); }); }

void EventPruner::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EventPruner::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    auto deleted = log_.Prune(retention_);
    if (!deleted) {
      spdlog::warn("pruning events older than {} s: {}", retention_.count(), deleted.error().ToString());
    } else if (*deleted > 0) {
      spdlog::info("pruned {} event(s) older than {} s", *deleted, retention_.count());
    }
    lock.lock();
    wake_.wait_for(lock, interval_, [&] { return stop_; });
  }
}

}  // namespace modelfleet::events
