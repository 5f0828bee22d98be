// The loop that keeps an in-memory cache in step with a table that every replica writes:
// a full load at start and every `reload_every`, and every `poll_interval` the rows changed
// since the previous successful poll (a watermark on the database's clock, so a poll that fails
// leaves a gap the next one covers). The watermark is taken before the first load, so nothing
// changed while loading is missed.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "modelfleet/status.h"

namespace modelfleet::util {

struct CacheSync {
  std::string what;  // "token cache", for the logs
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds reload_every{300000};
  // Applies the changes at or after `since_micros` (the database clock, microseconds since the
  // epoch) and returns the clock of this poll; with since_micros == 0 only reads the clock.
  std::function<Expected<int64_t>(int64_t since_micros)> apply_changes_since;
  std::function<Status()> load_all;
  // Optional: when set and it returns true (checked when `wake` is notified), the next poll
  // runs at once instead of at the end of the interval. It should clear its own flag.
  std::function<bool()> poll_now;
};

// Runs `sync` until `stop` is set; sleeps on `wake` (with `mu`), which the owner notifies when
// it sets `stop`.
inline void RunCacheSync(const CacheSync& sync, const std::atomic<bool>& stop, std::mutex& mu,
                         std::condition_variable& wake) {
  int64_t watermark = 0;
  auto next_load = std::chrono::steady_clock::now();
  while (!stop) {
    if (watermark == 0) {
      auto clock = sync.apply_changes_since(0);
      if (clock) watermark = *clock;
    }
    if (watermark != 0 && std::chrono::steady_clock::now() >= next_load) {
      Status loaded = sync.load_all();
      if (loaded.ok()) {
        next_load = std::chrono::steady_clock::now() + sync.reload_every;
      } else {
        spdlog::warn("loading the {} failed (will retry): {}", sync.what, loaded.ToString());
      }
    }
    {
      std::unique_lock lock(mu);
      wake.wait_for(lock, sync.poll_interval, [&] { return stop.load() || (sync.poll_now && sync.poll_now()); });
    }
    if (stop) break;
    if (watermark != 0) {
      auto clock = sync.apply_changes_since(watermark);
      if (clock) {
        watermark = *clock;
      } else {
        spdlog::warn("polling changes for the {} failed (will retry): {}", sync.what, clock.error().ToString());
      }
    }
  }
}

}  // namespace modelfleet::util
