// Backoff: the waits between attempts while the server is away. The first wait is about
// `initial`, each next one about twice the last, at most `max`; the actual wait is drawn
// uniformly from [b/2, b] (jitter, so a fleet that lost its server does not come back in step).
// Reset() after a success starts over at `initial`.
//
// Thread safety: not thread-safe. The agent has one, used by the check-in thread for both
// enrollment and check-ins (one server, one backoff).
#pragma once

#include <chrono>
#include <random>

namespace modelfleet::agent::app {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max);

  // Grows the backoff and returns the jittered wait for this attempt.
  std::chrono::milliseconds Next();
  void Reset() { backoff_ = {}; }

 private:
  const std::chrono::milliseconds initial_, max_;
  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace modelfleet::agent::app
