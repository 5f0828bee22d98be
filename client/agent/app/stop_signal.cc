#include "agent/app/stop_signal.h"

namespace modelfleet::agent::app {

void StopSignal::Request() {
  {
    // Set under the lock: a sleeper between checking the flag and waiting would otherwise miss
    // this notify and sleep out its whole interval.
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void StopSignal::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stop_.load(); });
}

}  // namespace modelfleet::agent::app
