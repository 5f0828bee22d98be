#include "agent/app/backoff.h"

#include <algorithm>
#include <cstdint>

namespace modelfleet::agent::app {

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
    : initial_(initial), max_(max) {}

std::chrono::milliseconds Backoff::Next() {
  backoff_ = backoff_.count() == 0 ? initial_ : std::min(max_, backoff_ * 2);
  // Jitter: uniformly in [backoff/2, backoff].
  std::uniform_int_distribution<int64_t> dist(backoff_.count() / 2, backoff_.count());
  return std::chrono::milliseconds(dist(rng_));
}

}  // namespace modelfleet::agent::app
