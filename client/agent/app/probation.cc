#include "agent/app/probation.h"

#include <spdlog/spdlog.h>

namespace modelfleet::agent::app {

void Probation::Watch(const v1::Manifest& manifest) {
  std::lock_guard lock(mu_);
  if (window_ > 0) {
    watched_ = Watched{manifest.digest(), manifest.self_test().latency_budget_ms(), 0, 0};
  } else {
    watched_.reset();
  }
}

void Probation::Clear() {
  std::lock_guard lock(mu_);
  watched_.reset();
}

void Probation::Count(const std::string& digest, bool bad) {
  std::lock_guard lock(mu_);
  if (!watched_ || watched_->digest != digest) return;
  ++watched_->seen;
  if (bad) ++watched_->bad;
}

update::ProbationVerdict Probation::Verdict() {
  using Kind = update::ProbationVerdict::Kind;
  std::lock_guard lock(mu_);
  if (!watched_ || window_ <= 0) return {Kind::kPassed, ""};
  if (watched_->bad * 2 > window_) {
    const std::string reason = std::to_string(watched_->bad) + " of the first " +
                               std::to_string(watched_->seen) +
                               " inferences failed or exceeded the latency budget of " +
                               std::to_string(watched_->budget_ms) + " ms";
    watched_.reset();
    return {Kind::kFailed, reason};
  }
  if (watched_->seen < window_) return {Kind::kPending, ""};
  spdlog::info("probation of {} passed ({} of {} inferences bad)", watched_->digest, watched_->bad,
               watched_->seen);
  watched_.reset();
  return {Kind::kPassed, ""};
}

}  // namespace modelfleet::agent::app
