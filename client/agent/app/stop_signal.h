// StopSignal: the agent's stop request, and the waits it cuts short. Every loop of the agent
// polls requested() and sleeps with SleepFor, so a stop is noticed within one short step.
//
// Thread safety: all methods may be called from any thread (Request from the signal thread).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace modelfleet::agent::app {

class StopSignal {
 public:
  // Idempotent; wakes every SleepFor.
  void Request();
  bool requested() const { return stop_.load(); }

  // Waits `d`, or less when a stop is requested.
  void SleepFor(std::chrono::milliseconds d);

  // The flag itself, for code that polls one (the update flow's downloads: Updater::set_stop).
  const std::atomic<bool>* flag() const { return &stop_; }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace modelfleet::agent::app
