// Probation: the watch over the first inferences of a freshly activated model, which decides a
// local rollback. The inference thread counts every inference of the model on probation
// (Count); the update flow asks for the verdict while Activated (Verdict, wired to
// UpdaterOptions::probation). The model fails as soon as more than half of rollback_window
// inferences were bad (failed, or slower than the manifest's self_test latency budget); it
// passes once rollback_window inferences were counted without that.
//
// Thread safety: thread-safe (one mutex guards the watch).
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "agent/update/updater.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::agent::app {

class Probation {
 public:
  // rollback_window <= 0: probation is off, Watch watches nothing and every verdict is kPassed.
  explicit Probation(int rollback_window) : window_(rollback_window) {}

  bool enabled() const { return window_ > 0; }

  // Starts watching `manifest`'s model, replacing any earlier watch (clears it when off).
  void Watch(const v1::Manifest& manifest);
  // Ends any watch: the model that became active needs no probation.
  void Clear();

  // One inference of the model with `digest`; ignored unless that model is being watched.
  void Count(const std::string& digest, bool bad);

  // kPending while undecided. kFailed (the reason says how many of how many were bad) or kPassed
  // once decided; deciding ends the watch. kPassed when nothing is watched.
  update::ProbationVerdict Verdict();

 private:
  struct Watched {
    std::string digest;
    double budget_ms = 0;
    int seen = 0, bad = 0;
  };

  const int window_;
  std::mutex mu_;
  std::optional<Watched> watched_;
};

}  // namespace modelfleet::agent::app
