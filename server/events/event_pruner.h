// EventPruner: applies the events' retention. A thread that deletes the events older than
// `retention` once at start and then every `interval`. Every replica may run one: deleting
// what another replica already deleted is a no-op.
//
// Thread-safe; Stop() (or the destructor) ends the thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "events/event_log.h"

namespace modelfleet::events {

class EventPruner {
 public:
  EventPruner(EventLog& log, std::chrono::seconds retention, std::chrono::seconds interval = std::chrono::minutes(10))
      : log_(log), retention_(retention), interval_(interval) {}
  ~EventPruner() { Stop(); }

  void Start();
  void Stop();

 private:
  void Run();

  EventLog& log_;
  const std::chrono::seconds retention_;
  const std::chrono::seconds interval_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // under mu_
  std::thread thread_;
};

}  // namespace modelfleet::events
