// The metrics registry (server/metrics/metrics.h): the text exposition format byte for byte,
// escaping, histogram buckets, scrape-time collectors, increments from many threads, and
// Prometheus' own checker (promtool) on a populated registry.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "promtool.h"

namespace modelfleet::metrics {
namespace {

TEST(MetricsTest, RendersEachKindInTheTextFormat) {
  Registry registry;
  auto& calls = registry.AddCounter("modelfleet_test_calls_total", "Calls handled.", {"method", "code"});
  calls.WithLabels({"Get", "OK"}).Increment(3);
  calls.WithLabels({"Get", "NOT_FOUND"}).Increment();
  registry.AddGauge("modelfleet_test_queue_depth", "Items waiting.").Get().Set(2.5);
  auto& latency = registry.AddHistogram("modelfleet_test_latency_seconds", "Time taken.", {"method"}, {0.1, 1});
  Histogram& get = latency.WithLabels({"Get"});
  get.Observe(0.05);
  get.Observe(0.1);  // a value equal to a bound is in that bucket
  get.Observe(0.5);
  get.Observe(7);

  const std::string text = registry.Render();
  const std::string expected =
      "# HELP modelfleet_test_calls_total Calls handled.\n"
      "# TYPE modelfleet_test_calls_total counter\n"
      "modelfleet_test_calls_total{method=\"Get\",code=\"NOT_FOUND\"} 1\n"
      "modelfleet_test_calls_total{method=\"Get\",code=\"OK\"} 3\n"
      "# HELP modelfleet_test_queue_depth Items waiting.\n"
      "# TYPE modelfleet_test_queue_depth gauge\n"
      "modelfleet_test_queue_depth 2.5\n"
      "# HELP modelfleet_test_latency_seconds Time taken.\n"
      "# TYPE modelfleet_test_latency_seconds histogram\n"
      "modelfleet_test_latency_seconds_bucket{method=\"Get\",le=\"0.1\"} 2\n"
      "modelfleet_test_latency_seconds_bucket{method=\"Get\",le=\"1\"} 3\n"
      "modelfleet_test_latency_seconds_bucket{method=\"Get\",le=\"+Inf\"} 4\n"
      "modelfleet_test_latency_seconds_sum{method=\"Get\"} 7.65\n"
      "modelfleet_test_latency_seconds_count{method=\"Get\"} 4\n";
  EXPECT_NE(text.find(expected), std::string::npos) << text;
}

TEST(MetricsTest, AHistogramWithoutLabelsPutsLeAlone) {
  Registry registry;
  registry.AddHistogram("modelfleet_test_size_bytes", "Sizes.", {}, {1024}).Get().Observe(10);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("modelfleet_test_size_bytes_bucket{le=\"1024\"} 1\n"
                      "modelfleet_test_size_bytes_bucket{le=\"+Inf\"} 1\n"
                      "modelfleet_test_size_bytes_sum 10\n"
                      "modelfleet_test_size_bytes_count 1\n"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  Registry registry;
  registry.AddGauge("modelfleet_test_odd", "Back\\slash and\nnewline; \"quotes\" stay.", {"name"})
      .WithLabels({"a\\b \"c\"\nd"})
      .Set(1);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("# HELP modelfleet_test_odd Back\\\\slash and\\nnewline; \"quotes\" stay.\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("modelfleet_test_odd{name=\"a\\\\b \\\"c\\\"\\nd\"} 1\n"), std::string::npos) << text;
  EXPECT_TRUE(testing::CheckWithPromtool(text).ok) << testing::CheckWithPromtool(text).output;
}

TEST(MetricsTest, FormatsValuesAsPrometheusParsesThem) {
  auto format = [](double v) {
    std::string out;
    AppendValue(out, v);
    return out;
  };
  EXPECT_EQ(format(0), "0");
  EXPECT_EQ(format(-3), "-3");
  EXPECT_EQ(format(1e15), "1000000000000000");
  EXPECT_EQ(format(0.005), "0.005");
  EXPECT_EQ(format(1e300), "1e+300");
  EXPECT_EQ(format(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format(std::nan("")), "NaN");
}

TEST(MetricsTest, ValidatesNames) {
  EXPECT_TRUE(IsValidMetricName("modelfleet_grpc_server_handled_total"));
  EXPECT_TRUE(IsValidMetricName("ns:rule_name"));
  EXPECT_FALSE(IsValidMetricName("9lives"));
  EXPECT_FALSE(IsValidMetricName("with-dash"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_TRUE(IsValidLabelName("rollout_id"));
  EXPECT_FALSE(IsValidLabelName("__reserved"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
}

TEST(MetricsTest, RegisteringTheSameFamilyAgainReturnsIt) {
  Registry registry;
  auto& first = registry.AddCounter("modelfleet_test_events_total", "Events.", {"kind"});
  auto& again = registry.AddCounter("modelfleet_test_events_total", "Events.", {"kind"});
  EXPECT_EQ(&first, &again);
  EXPECT_EQ(&first.WithLabels({"x"}), &again.WithLabels({"x"})) << "one child per label values";
}

TEST(MetricsDeathTest, ContractViolationsAbortNamingTheProblem) {
  EXPECT_DEATH({ Registry().AddCounter("modelfleet_test_events", "No suffix."); }, "must end in _total");
  EXPECT_DEATH({ Registry().AddGauge("bad-name", "x"); }, "invalid metric name");
  EXPECT_DEATH({ Registry().AddHistogram("modelfleet_test_seconds", "x", {"le"}, {1}); }, "may not use label le");
  EXPECT_DEATH({ Registry().AddHistogram("modelfleet_test_seconds", "x", {}, {2, 1}); }, "ascending");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("modelfleet_test_x_total", "x", {"a"}).WithLabels({"1", "2"});
      },
      "has 1 label");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("modelfleet_test_x", "x");
        r.AddGauge("modelfleet_test_x", "different help");
      },
      "registered twice");
}

TEST(MetricsTest, CollectorSamplesOfOneNameFormOneFamily) {
  Registry registry;
  auto first = registry.AddCollector([](CollectorOutput& out) {
    out.Gauge("modelfleet_test_devices", "Devices by state.", 5, {{"state", "ACCEPTED"}});
  });
  auto second = registry.AddCollector([](CollectorOutput& out) {
    out.Gauge("modelfleet_test_devices", "Devices by state.", 2, {{"state", "PENDING"}});
    out.Counter("modelfleet_test_reads_total", "Reads.", 10);
  });
  std::string text = registry.Render();
  EXPECT_NE(text.find("# HELP modelfleet_test_devices Devices by state.\n"
                      "# TYPE modelfleet_test_devices gauge\n"
                      "modelfleet_test_devices{state=\"ACCEPTED\"} 5\n"
                      "modelfleet_test_devices{state=\"PENDING\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE modelfleet_test_reads_total counter\nmodelfleet_test_reads_total 10\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("# TYPE modelfleet_test_devices gauge", text.find("# TYPE modelfleet_test_devices gauge") + 1),
            std::string::npos)
      << "TYPE once per family";

  second.Reset();
  text = registry.Render();
  EXPECT_EQ(text.find("PENDING"), std::string::npos) << "a removed collector no longer runs";
  EXPECT_NE(text.find("ACCEPTED"), std::string::npos);
}

TEST(MetricsTest, InvalidCollectedSamplesAreDroppedAndCounted) {
  Registry registry;
  registry.AddGauge("modelfleet_test_registered", "A family.").Get().Set(1);
  auto collector = registry.AddCollector([](CollectorOutput& out) {
    out.Counter("modelfleet_test_no_suffix", "x", 1);                     // counter without _total
    out.Gauge("bad name", "x", 1);                                         // invalid name
    out.Gauge("modelfleet_test_registered", "x", 2);                       // a registered family's name
    out.Gauge("modelfleet_test_ok", "x", 1, {{"__bad", "x"}});             // reserved label name
    out.Gauge("modelfleet_test_ok", "Fine.", 3);                           // kept
    out.Counter("modelfleet_test_ok", "x", 4);                             // other type than the first
  });
  const std::string text = registry.Render();
  EXPECT_NE(text.find("modelfleet_metrics_dropped_samples_total 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("modelfleet_test_ok 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("modelfleet_test_registered 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("modelfleet_test_registered 2"), std::string::npos) << text;
  EXPECT_TRUE(testing::CheckWithPromtool(text).ok) << testing::CheckWithPromtool(text).output;
}

TEST(MetricsTest, IncrementsFromManyThreadsAreAllCounted) {
  Registry registry;
  Counter& counter = registry.AddCounter("modelfleet_test_hits_total", "Hits.").Get();
  Gauge& gauge = registry.AddGauge("modelfleet_test_level", "Level.").Get();
  Histogram& histogram = registry.AddHistogram("modelfleet_test_wait_seconds", "Waits.", {}, {0.5}).Get();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        gauge.Add(1);
        histogram.Observe((i + t) % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrapes while the threads count: every snapshot is consistent in itself.
  for (int scrape = 0; scrape < 20; ++scrape) {
    const Histogram::Snapshot s = histogram.Read();
    EXPECT_LE(s.cumulative[0], s.cumulative[1]);
    (void)registry.Render();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.Value(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(gauge.Value(), double{kThreads} * kPerThread);
  const Histogram::Snapshot s = histogram.Read();
  EXPECT_EQ(s.cumulative.back(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.cumulative[0], uint64_t{kThreads} * kPerThread / 2);
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kPerThread / 2 * 0.25 + kThreads * kPerThread / 2 * 1.0);
}

// The check below is only worth something if the helper reports what promtool refuses.
TEST(MetricsTest, ThePromtoolCheckFailsOnLintAndSyntax) {
  EXPECT_FALSE(testing::CheckWithPromtool("# TYPE foo counter\nfoo 1\n").ok) << "a counter without _total";
  EXPECT_FALSE(testing::CheckWithPromtool("foo{a=\"unterminated} 1\n").ok);
  EXPECT_TRUE(testing::CheckWithPromtool("# HELP foo_total x\n# TYPE foo_total counter\nfoo_total 1\n").ok);
}

TEST(MetricsTest, PromtoolAcceptsAPopulatedRegistry) {
  Registry registry;
  auto& handled = registry.AddCounter("modelfleet_test_handled_total", "Calls by method and code.",
                                      {"service", "method", "code"});
  auto& seconds = registry.AddHistogram("modelfleet_test_handling_seconds", "Handling time.", {"service", "method"},
                                        LatencySecondsBuckets());
  for (const char* method : {"CheckIn", "Enroll", "ListDevices"}) {
    handled.WithLabels({"modelfleet.v1.DeviceService", method, "OK"}).Increment(7);
    seconds.WithLabels({"modelfleet.v1.DeviceService", method}).Observe(0.0031);
  }
  handled.WithLabels({"modelfleet.v1.DeviceService", "CheckIn", "UNAVAILABLE"}).Increment();
  registry.AddGauge("modelfleet_test_pool_in_use_connections", "In use.").Get().Set(3);
  registry.AddHistogram("modelfleet_test_empty_seconds", "Never observed.", {"method"}, {1});  // no child: HELP/TYPE only
  auto collector = registry.AddCollector([](CollectorOutput& out) {
    out.Gauge("modelfleet_test_rollout_gate_value", "Gate values.", 0.012,
              {{"rollout_id", "ro-12"}, {"gate", "error_ratio"}});
    out.Gauge("modelfleet_test_rollout_gate_value", "Gate values.", std::nan(""),
              {{"rollout_id", "ro-13"}, {"gate", "error_ratio"}});
    out.Counter("modelfleet_test_read_bytes_total", "Bytes read.", 1e12);
    out.Gauge("modelfleet_test_oldest_pending_age_seconds", "Age.", 0.25);
  });
  const std::string text = registry.Render();
  const testing::PromtoolVerdict verdict = testing::CheckWithPromtool(text);
  EXPECT_TRUE(verdict.ok) << verdict.output << "\n" << text;
}

}  // namespace
}  // namespace modelfleet::metrics
