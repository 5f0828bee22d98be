// EventNotifier: wakes the readers that wait for new events (WatchEvents, the HTTP event
// stream) as soon as an event commits, without each of them polling the database.
//
// One thread per process LISTENs on kEventChannel over a dedicated connection (db::Listener)
// and keeps the newest event id it heard of; waiters block on a condition variable until that
// id passes theirs. A notification can only be missed while the listening connection is down:
// after every (re)connect, and every `poll_interval` while idle, the thread also reads the
// newest id from the database, so a missed wake-up costs at most that long, never an event
// (readers always read the log itself, see EventLog::List).
//
// Thread-safe. Stop() ends every wait at once (the server calls it when it starts draining, so
// streams end instead of holding the shutdown).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "events/event_log.h"

namespace modelfleet::events {

class EventNotifier {
 public:
  // `conninfo`: the database of `log`, for the listening connection (held for good, so it is
  // not one of the pool's).
  EventNotifier(EventLog& log, std::string conninfo,
                std::chrono::milliseconds poll_interval = std::chrono::seconds(5));
  ~EventNotifier();  // Stop()

  void Start();
  // Ends every wait (WaitForNewerThan returns false) and the listening thread. Idempotent.
  void Stop();
  bool stopped() const { return stopped_.load(); }

  // Blocks until an event with id > after_id is known to exist (true), or until `deadline`
  // or Stop() (false). Returns at once when one already is.
  bool WaitForNewerThan(int64_t after_id, std::chrono::steady_clock::time_point deadline);

  // The newest event id heard of so far.
  int64_t newest() const { return newest_.load(); }

 private:
  void Run();
  void Heard(int64_t id);

  EventLog& log_;
  const std::string conninfo_;
  const std::chrono::milliseconds poll_interval_;
  std::atomic<int64_t> newest_{0};
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::condition_variable changed_;
  std::thread thread_;
};

// Sends the events after `after_id` that match and `role` may read to `sink`, then each new
// one as it commits, in id order, with no gaps but those of the filter and the role. For
// server streams (WatchEvents; SSE). Returns what `sink` returned when it fails (a client
// gone), CANCELLED once `cancelled()` is true (checked at least every 250 ms), UNAVAILABLE when
// the notifier stops (server shutdown: resume from the last id elsewhere), or the log's error.
// after_id < 0 starts at the newest event (only what is recorded from now on).
using EventSink = std::function<Status(const v1::Event&)>;
Status FollowEvents(EventLog& log, EventNotifier& notifier, int64_t after_id, const EventFilter& filter,
                    v1::Role role, const EventSink& sink, const std::function<bool()>& cancelled);

}  // namespace modelfleet::events
