#include "webhooks/webhook_dispatcher.h"

#include <spdlog/spdlog.h>

namespace modelfleet::webhooks {

WebhookDispatcher::WebhookDispatcher(db::Pool& pool, Webhooks& webhooks, events::EventLog& log,
                                     events::EventNotifier* notifier, DispatcherOptions options)
    : pool_(pool), webhooks_(webhooks), log_(log), notifier_(notifier), options_(options) {}

WebhookDispatcher::~WebhookDispatcher() { Stop(); }

void WebhookDispatcher::Start() {
  leader_thread_ = std::thread([this] { Lead(); });
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { Work(); });
}

void WebhookDispatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  if (leader_thread_.joinable()) leader_thread_.join();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

void WebhookDispatcher::Lead() {
  auto sleep = [&](std::chrono::milliseconds how_long) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, how_long, [&] { return stop_.load(); });
  };
  while (!stop_) {
    Status s = pool_.WithSession([&](db::Session& session) -> Status {
      MF_ASSIGN_OR_RETURN(auto locked, session.ExecAutocommit("SELECT pg_try_advisory_lock($1)",
                                                              {kWebhookDispatcherLockKey}));
      if (!locked[0].Bool(0)) return Status::Ok();  // another replica dispatches
      leader_ = true;
      spdlog::info("webhook dispatcher: this replica dispatches");
      while (!stop_) {
        MF_RETURN_IF_ERROR(StatusOf(session.ExecAutocommit("SELECT 1")));  // still holding the lock?
        // The head first: an event committing during the pass is newer and wakes the wait.
        auto head = log_.Head();
        Status pass = head ? Pass() : head.error();
        if (!pass.ok()) spdlog::warn("webhook dispatcher: {}", pass.ToString());
        const auto deadline = std::chrono::steady_clock::now() + options_.poll_interval;
        if (notifier_ != nullptr && head && !notifier_->stopped()) {
          notifier_->WaitForNewerThan(*head, deadline);
        } else {
          sleep(options_.poll_interval);
        }
      }
      return Status::Ok();
    });
    if (leader_) spdlog::info("webhook dispatcher: leadership released ({})", s.ToString());
    leader_ = false;
    if (!s.ok()) spdlog::warn("webhook dispatcher: {}", s.ToString());
    sleep(options_.poll_interval);
  }
}

Status WebhookDispatcher::Pass() {
  if (const auto now = std::chrono::steady_clock::now(); now - last_prune_ >= options_.prune_interval) {
    last_prune_ = now;
    auto pruned = webhooks_.PruneDelivered(options_.delivered_retention);
    if (!pruned) spdlog::warn("webhook dispatcher: pruning delivered rows: {}", pruned.error().ToString());
  }
  MF_RETURN_IF_ERROR(StatusOf(webhooks_.AdvanceCursors(log_)));
  MF_ASSIGN_OR_RETURN(auto due, webhooks_.WebhooksDue());
  for (int64_t id : due) Enqueue(id);
  return Status::Ok();
}

void WebhookDispatcher::Enqueue(int64_t webhook_id) {
  {
    std::lock_guard lock(mu_);
    if (!claimed_.insert(webhook_id).second) return;  // queued or with a worker already
    queue_.push_back(webhook_id);
  }
  changed_.notify_all();
}

void WebhookDispatcher::Work() {
  while (true) {
    int64_t webhook_id = 0;
    {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [&] { return stop_.load() || !queue_.empty(); });
      if (stop_) return;
      webhook_id = queue_.front();
      queue_.pop_front();
    }
    for (int sent = 0; sent < options_.max_deliveries_per_turn && !stop_; ++sent) {
      auto outcome = webhooks_.SendNextDue(webhook_id);
      if (!outcome) {
        spdlog::warn("webhook {}: {}", webhook_id, outcome.error().ToString());
        break;
      }
      if (*outcome == SendOutcome::kNothingDue || *outcome == SendOutcome::kRetrying) break;
    }
    std::lock_guard lock(mu_);
    claimed_.erase(webhook_id);  // the leader's next pass hands it out again if more is due
  }
}

}  // namespace modelfleet::webhooks
