// Unit tests of modelfleet-agent's app layer: the per-version telemetry sent with each check-in
// (nearest-rank latency percentiles, class histogram, mean confidence, errors, one window per
// model version, a fresh window after every Take(), Restore() after a failed check-in, the
// reservoir bound), and the parser of the MODELFLEET_AGENT_PAUSE_AT test hook.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "agent/app/telemetry.h"
#include "agent/app/test_hooks.h"

namespace modelfleet::agent::app {
namespace {

using update::UpdateState;

const Telemetry::Window* Find(const std::vector<Telemetry::Window>& windows, const std::string& version) {
  for (const auto& w : windows) {
    if (w.version == version) return &w;
  }
  return nullptr;
}

TEST(Telemetry, NearestRankPercentilesOfKnownSamples) {
  Telemetry t;
  // 1..200 ms in a shuffled order: nearest rank over 200 samples gives p50 = 100 (rank 100),
  // p95 = 190 (rank 190), p99 = 198 (rank 198).
  std::vector<double> samples;
  for (int i = 1; i <= 200; ++i) samples.push_back(i);
  std::shuffle(samples.begin(), samples.end(), std::mt19937(7));
  for (double ms : samples) t.RecordInference("mat", "1.0.0", ms, "empty", 0.5);
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 1u);
  const v1::VersionTelemetry p = Telemetry::ToProto(windows[0], std::chrono::system_clock::now());
  EXPECT_EQ(p.inference_count(), 200u);
  EXPECT_DOUBLE_EQ(p.latency().p50_ms(), 100);
  EXPECT_DOUBLE_EQ(p.latency().p95_ms(), 190);
  EXPECT_DOUBLE_EQ(p.latency().p99_ms(), 198);
}

TEST(Telemetry, SmallWindowsUseTheNearestRankNotAnInterpolation) {
  Telemetry t;
  for (double ms : {4.0, 1.0, 3.0, 2.0}) t.RecordInference("mat", "1.0.0", ms, "empty", 1);
  const auto p = Telemetry::ToProto(t.Take()[0], std::chrono::system_clock::now());
  EXPECT_DOUBLE_EQ(p.latency().p50_ms(), 2);  // rank ceil(0.5 * 4) = 2
  EXPECT_DOUBLE_EQ(p.latency().p95_ms(), 4);  // rank ceil(3.8) = 4
  EXPECT_DOUBLE_EQ(p.latency().p99_ms(), 4);

  t.RecordInference("mat", "1.0.0", 7.5, "empty", 1);  // a single sample is every percentile
  const auto one = Telemetry::ToProto(t.Take()[0], std::chrono::system_clock::now());
  EXPECT_DOUBLE_EQ(one.latency().p50_ms(), 7.5);
  EXPECT_DOUBLE_EQ(one.latency().p99_ms(), 7.5);
}

TEST(Telemetry, HistogramMeanConfidenceAndErrorsPerVersion) {
  Telemetry t;
  t.RecordInference("mat", "1.0.0", 1, "empty", 0.9);
  t.RecordInference("mat", "1.0.0", 1, "sitting", 0.6);
  t.RecordInference("mat", "1.0.0", 1, "sitting", 0.3);
  t.RecordError("mat", "1.0.0");
  t.RecordInference("mat", "1.1.0", 5, "lying_full", 0.8);
  t.RecordError("mat", "1.1.0");
  t.RecordError("mat", "1.1.0");
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 2u);
  const auto end = std::chrono::system_clock::now();
  const auto* w10 = Find(windows, "1.0.0");
  const auto* w11 = Find(windows, "1.1.0");
  ASSERT_TRUE(w10 && w11);
  const auto p10 = Telemetry::ToProto(*w10, end);
  EXPECT_EQ(p10.model(), "mat");
  EXPECT_EQ(p10.inference_count(), 4u);  // the failed one counts as an inference too
  EXPECT_EQ(p10.error_count(), 1u);
  EXPECT_EQ(p10.class_histogram().size(), 2u);
  EXPECT_EQ(p10.class_histogram().at("empty"), 1u);
  EXPECT_EQ(p10.class_histogram().at("sitting"), 2u);
  EXPECT_NEAR(p10.mean_confidence(), 0.6, 1e-12);  // (0.9 + 0.6 + 0.3) / 3
  EXPECT_LE(p10.window_start().seconds(), p10.window_end().seconds());
  const auto p11 = Telemetry::ToProto(*w11, end);
  EXPECT_EQ(p11.inference_count(), 3u);
  EXPECT_EQ(p11.error_count(), 2u);
  EXPECT_EQ(p11.class_histogram().at("lying_full"), 1u);
  EXPECT_NEAR(p11.mean_confidence(), 0.8, 1e-12);
  EXPECT_DOUBLE_EQ(p11.latency().p95_ms(), 5);
}

// Regression: a version whose every inference failed reported error_count > inference_count;
// the server refused each check-in carrying it, and the agent put the window back every time,
// so it never checked in again (agent_refusal_e2e_test's local rollback found it).
TEST(Telemetry, ErrorCountNeverExceedsInferenceCount) {
  Telemetry t;
  for (int i = 0; i < 5; ++i) t.RecordError("mat", "1.1.0");
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 1u);
  const auto p = Telemetry::ToProto(windows[0], std::chrono::system_clock::now());
  EXPECT_EQ(p.error_count(), 5u);
  EXPECT_EQ(p.inference_count(), 5u);
  EXPECT_EQ(p.mean_confidence(), 0.0);
  EXPECT_TRUE(p.class_histogram().empty());
  EXPECT_DOUBLE_EQ(p.latency().p99_ms(), 0);
}

TEST(Telemetry, EachCheckInGetsAFreshWindow) {
  Telemetry t;
  for (int i = 0; i < 10; ++i) t.RecordInference("mat", "1.0.0", 100, "sitting", 0.9);
  ASSERT_EQ(t.Take().size(), 1u);
  EXPECT_TRUE(t.Take().empty());  // nothing since: no window at all
  // The next window knows nothing of the previous one's samples.
  t.RecordInference("mat", "1.0.0", 2, "empty", 0.1);
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 1u);
  const auto p = Telemetry::ToProto(windows[0], std::chrono::system_clock::now());
  EXPECT_EQ(p.inference_count(), 1u);
  EXPECT_DOUBLE_EQ(p.latency().p99_ms(), 2);
  EXPECT_EQ(p.class_histogram().count("sitting"), 0u);
  EXPECT_NEAR(p.mean_confidence(), 0.1, 1e-12);
}

TEST(Telemetry, RestoreAfterAFailedCheckInMergesIntoTheNextWindow) {
  Telemetry t;
  for (double ms : {1.0, 2.0, 3.0}) t.RecordInference("mat", "1.0.0", ms, "empty", 0.5);
  t.RecordError("mat", "1.0.0");
  auto unsent = t.Take();
  for (double ms : {10.0, 20.0}) t.RecordInference("mat", "1.0.0", ms, "sitting", 1.0);
  t.Restore(std::move(unsent));
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 1u);
  const auto p = Telemetry::ToProto(windows[0], std::chrono::system_clock::now());
  EXPECT_EQ(p.inference_count(), 6u);
  EXPECT_EQ(p.error_count(), 1u);
  EXPECT_EQ(p.class_histogram().at("empty"), 3u);
  EXPECT_EQ(p.class_histogram().at("sitting"), 2u);
  EXPECT_NEAR(p.mean_confidence(), (0.5 * 3 + 2.0) / 5, 1e-12);
  EXPECT_DOUBLE_EQ(p.latency().p50_ms(), 3);  // of 1, 2, 3, 10, 20
  EXPECT_DOUBLE_EQ(p.latency().p99_ms(), 20);
}

TEST(Telemetry, ReservoirBoundsTheSamplesButCountsEveryInference) {
  Telemetry t;
  const size_t n = 3 * Telemetry::kMaxSamples;
  for (size_t i = 0; i < n; ++i) {
    t.RecordInference("mat", "1.0.0", static_cast<double>(i % 100) + 1, "empty", 1);  // uniform 1..100
  }
  const auto windows = t.Take();
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].latencies_ms.size(), Telemetry::kMaxSamples);
  EXPECT_EQ(windows[0].seen_latencies, n);
  const auto p = Telemetry::ToProto(windows[0], std::chrono::system_clock::now());
  EXPECT_EQ(p.inference_count(), n);
  // A uniform sample of a uniform distribution: the percentiles stay near their true values.
  EXPECT_NEAR(p.latency().p50_ms(), 50, 5);
  EXPECT_NEAR(p.latency().p95_ms(), 95, 3);
  EXPECT_GE(p.latency().p99_ms(), 97);
}

TEST(PauseAtHook, ParsesStatesAndDownloadOffsets) {
  auto v = ParsePauseAt("Verifying");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->state, UpdateState::kVerifying);
  EXPECT_EQ(v->min_bytes, 0u);
  EXPECT_TRUE(PauseAtMatches(*v, UpdateState::kVerifying, 0));
  EXPECT_FALSE(PauseAtMatches(*v, UpdateState::kInstalling, 0));

  auto d = ParsePauseAt("Downloading@4096");
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->state, UpdateState::kDownloading);
  EXPECT_EQ(d->min_bytes, 4096u);
  EXPECT_FALSE(PauseAtMatches(*d, UpdateState::kDownloading, 4095));
  EXPECT_TRUE(PauseAtMatches(*d, UpdateState::kDownloading, 4096));
  EXPECT_TRUE(PauseAtMatches(*d, UpdateState::kDownloading, 5000));
  EXPECT_FALSE(PauseAtMatches(*d, UpdateState::kVerifying, 5000));

  for (const char* ok : {"Downloading", "Installing", "SelfTesting", "Activated", "Failed", "RolledBack"}) {
    EXPECT_TRUE(ParsePauseAt(ok).has_value()) << ok;
  }
}

TEST(PauseAtHook, RejectsWhatItCannotHonour) {
  for (const char* bad : {"", "Idle", "verifying", "Downloading@", "Downloading@x", "Downloading@-1",
                          "Downloading@12kB", "Verifying@10", "Nowhere"}) {
    auto v = ParsePauseAt(bad);
    ASSERT_FALSE(v.has_value()) << bad;
    EXPECT_EQ(v.error().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(v.error().field(), kPauseAtEnvironmentVariable) << bad;
    EXPECT_NE(v.error().message().find(std::string("'") + bad + "'"), std::string::npos)
        << v.error().message();
  }
}

TEST(PauseAtHook, ReadsTheEnvironment) {
  ::unsetenv(kPauseAtEnvironmentVariable);
  auto none = PauseAtFromEnvironment();
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  ::setenv(kPauseAtEnvironmentVariable, "SelfTesting", 1);
  auto set = PauseAtFromEnvironment();
  ASSERT_TRUE(set.has_value() && set->has_value());
  EXPECT_EQ((*set)->state, UpdateState::kSelfTesting);
  ::setenv(kPauseAtEnvironmentVariable, "Sleeping", 1);
  EXPECT_FALSE(PauseAtFromEnvironment().has_value());
  ::unsetenv(kPauseAtEnvironmentVariable);
}

}  // namespace
}  // namespace modelfleet::agent::app
