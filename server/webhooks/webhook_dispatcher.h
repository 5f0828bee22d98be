// WebhookDispatcher: turns new events into webhook deliveries and sends them.
//
// Leadership: one replica dispatches at a time. The leader thread holds a session-level
// PostgreSQL advisory lock (kWebhookDispatcherLockKey) on a pooled connection of its own, as the
// rollout controller does; when the replica dies its connection closes, the lock goes, and
// another replica's dispatcher takes over at its next attempt (every poll_interval). A lost
// lock can at worst send an attempt twice (the cursor and outcome updates are conditional),
// which at-least-once delivery allows.
//
// While leading, the thread loops: move every webhook's cursor (Webhooks::AdvanceCursors),
// hand each webhook whose oldest pending delivery is due to the worker pool, then sleep until
// an event newer than the last one seen commits (EventNotifier) or poll_interval passes (retry
// times come due). Each webhook is with at most one worker at a time, which sends its due
// deliveries in event-id order; so a slow or dead receiver holds one worker for at most
// `timeout` per attempt, never the others or the cores (which only append events).
//
// Delivered rows are deleted after delivered_retention (the server passes the event retention);
// dead and pending ones stay until delivered, replayed or their webhook is removed.
//
// Restarts: deliveries, attempts and next attempt times are rows (migrations/0007), and a row
// becomes DELIVERED only after a 2xx, so a crash between POST and UPDATE re-sends that event
// (receivers deduplicate by Modelfleet-Event-Id).
//
// Thread-safe. Stop() waits for the attempts in flight (each bounded by the timeout).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "db/pool.h"
#include "events/event_log.h"
#include "events/event_notifier.h"
#include "webhooks/webhooks.h"

namespace modelfleet::webhooks {

inline constexpr int64_t kWebhookDispatcherLockKey = 0x6d66776562686f6f;  // "mfwebhoo"

struct DispatcherOptions {
  int workers = 4;                               // receivers served at once
  std::chrono::milliseconds poll_interval{500};  // retries come due; leadership retried
  int max_deliveries_per_turn = 20;              // then the webhook goes to the back of the queue
  // Delivered rows older than this are deleted, checked every prune_interval while leading.
  std::chrono::seconds delivered_retention{std::chrono::hours(720)};
  std::chrono::seconds prune_interval{std::chrono::minutes(10)};
};

class WebhookDispatcher {
 public:
  // `notifier` may be null (then new events are noticed within poll_interval). Everything
  // passed in must outlive the dispatcher.
  WebhookDispatcher(db::Pool& pool, Webhooks& webhooks, events::EventLog& log,
                    events::EventNotifier* notifier, DispatcherOptions options = {});
  ~WebhookDispatcher();  // Stop()

  void Start();
  // Ends leadership and the workers; returns once no attempt is in flight. Idempotent.
  void Stop();

  bool is_leader() const { return leader_.load(); }

 private:
  void Lead();
  void Work();
  // One pass of the leader: cursors, then due webhooks to the queue.
  Status Pass();
  void Enqueue(int64_t webhook_id);

  db::Pool& pool_;
  Webhooks& webhooks_;
  events::EventLog& log_;
  events::EventNotifier* notifier_;
  const DispatcherOptions options_;

  std::atomic<bool> stop_{false};
  std::atomic<bool> leader_{false};
  std::mutex mu_;
  std::condition_variable changed_;  // stop_, queue_
  std::deque<int64_t> queue_;        // webhooks with due deliveries, under mu_
  std::set<int64_t> claimed_;        // queued or being sent, under mu_: one worker per webhook
  std::chrono::steady_clock::time_point last_prune_;  // leader thread only
  std::thread leader_thread_;
  std::vector<std::thread> workers_;
};

}  // namespace modelfleet::webhooks
