// The `modelfleet` CLI's human output, without a server: the one number formatter (rounding,
// units, the edges of double), tables fitted to a width, "key: value" pages with values of
// several lines, and what a device's history says about its newest deployment.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>

#include "cli/client.h"
#include "cli/device_view.h"
#include "cli/format.h"
#include "cli/output.h"
#include "modelfleet/rpc_details.h"

namespace modelfleet::cli {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(FormatNumber, RoundsToThreeSignificantDigits) {
  EXPECT_EQ(FormatNumber(0.9716666666666667), "0.972");
  EXPECT_EQ(FormatNumber(0.16666666666667052), "0.167");
  EXPECT_EQ(FormatNumber(41.099609375), "41.1");
  EXPECT_EQ(FormatNumber(3.14159), "3.14");
  EXPECT_EQ(FormatNumber(0.0851), "0.0851");
}

TEST(FormatNumber, TrailingZerosOnlyWhereTheValueWasRounded) {
  EXPECT_EQ(FormatNumber(0.95), "0.95");  // exact: nothing to say about the next digit
  EXPECT_EQ(FormatNumber(0.085), "0.085");
  EXPECT_EQ(FormatNumber(2), "2");
  EXPECT_EQ(FormatNumber(1.5), "1.5");
  EXPECT_EQ(FormatNumber(0.9501), "0.950");  // rounded: the zero is a digit
  EXPECT_EQ(FormatNumber(2.0004), "2.00");
}

TEST(FormatNumber, RoundingBoundaries) {
  EXPECT_EQ(FormatNumber(0.9995), "1.00");  // rounds up to the next power of ten
  EXPECT_EQ(FormatNumber(0.99949), "0.999");
  EXPECT_EQ(FormatNumber(9.9996), "10.0");  // the digits after rounding, not before
  EXPECT_EQ(FormatNumber(99.96), "100");
  EXPECT_EQ(FormatNumber(999.6), "1000");
  EXPECT_EQ(FormatNumber(0.00099996), "0.00100");
}

TEST(FormatNumber, ZeroAndNegatives) {
  EXPECT_EQ(FormatNumber(0), "0");
  EXPECT_EQ(FormatNumber(-0.0), "0");
  EXPECT_EQ(FormatNumber(-0.9716666), "-0.972");
  EXPECT_EQ(FormatNumber(-0.9995), "-1.00");
  EXPECT_EQ(FormatNumber(-1234.56), "-1235");
  EXPECT_EQ(FormatNumber(-1.5e-7), "-1.5e-07");
}

TEST(FormatNumber, LargeValuesAreWholeNumbersThenScientific) {
  EXPECT_EQ(FormatNumber(1234.56), "1235");
  EXPECT_EQ(FormatNumber(1200), "1200");
  EXPECT_EQ(FormatNumber(123456789), "123456789");
  EXPECT_EQ(FormatNumber(999999999999999.0), "1.00e+15");
  EXPECT_EQ(FormatNumber(1e15), "1e+15");
  EXPECT_EQ(FormatNumber(1.234e20), "1.23e+20");
  EXPECT_EQ(FormatNumber(DBL_MAX), "1.80e+308");
}

TEST(FormatNumber, SmallValuesGoScientificBelowATenThousandth) {
  EXPECT_EQ(FormatNumber(0.0001), "0.0001");
  EXPECT_EQ(FormatNumber(0.00012345), "0.000123");
  EXPECT_EQ(FormatNumber(0.00001234), "1.23e-05");
  EXPECT_EQ(FormatNumber(1.5e-7), "1.5e-07");
  EXPECT_EQ(FormatNumber(DBL_MIN), "2.23e-308");
  EXPECT_EQ(FormatNumber(std::numeric_limits<double>::denorm_min()), "4.94e-324");
}

TEST(FormatNumber, NotANumberAndInfinities) {
  EXPECT_EQ(FormatNumber(kNaN), "NaN");
  EXPECT_EQ(FormatNumber(-kNaN), "NaN");
  EXPECT_EQ(FormatNumber(kInf), "inf");
  EXPECT_EQ(FormatNumber(-kInf), "-inf");
  EXPECT_EQ(FormatMilliseconds(kNaN), "NaN ms");
  EXPECT_EQ(FormatBytes(kInf), "inf B");
  EXPECT_EQ(FormatPercent(-kInf), "-inf%");
}

TEST(FormatUnits, Milliseconds) {
  EXPECT_EQ(FormatMilliseconds(0.085), "0.085 ms");
  EXPECT_EQ(FormatMilliseconds(0.08512), "0.0851 ms");
  EXPECT_EQ(FormatMilliseconds(0), "0 ms");
  EXPECT_EQ(FormatMilliseconds(40), "40 ms");
  EXPECT_EQ(FormatSeconds(0.3123), "0.312 s");
}

TEST(FormatUnits, BinaryBytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1 KiB");
  EXPECT_EQ(FormatBytes(42086), "41.1 KiB");
  EXPECT_EQ(FormatBytes(40 << 10), "40 KiB");
  EXPECT_EQ(FormatBytes(4 << 20), "4 MiB");
  EXPECT_EQ(FormatBytes(3.5 * (1 << 30)), "3.5 GiB");
  // Just under a unit boundary: the next unit, not "1024 KiB".
  EXPECT_EQ(FormatBytes((1 << 20) - 1), "1.00 MiB");
  EXPECT_EQ(FormatBytes((1 << 20) - 600), "1023 KiB");
  EXPECT_EQ(FormatBytes(static_cast<double>(UINT64_MAX)), "16 EiB");
  EXPECT_EQ(FormatBytes(1e30), "867361737988 EiB");  // no unit beyond EiB
  EXPECT_EQ(FormatBytes(-2048), "-2 KiB");
  EXPECT_EQ(FormatBytes(kNaN), "NaN B");
}

TEST(FormatUnits, Percent) {
  EXPECT_EQ(FormatPercent(0), "0%");
  EXPECT_EQ(FormatPercent(12.5), "12.5%");
  EXPECT_EQ(FormatPercent(33.333333), "33.3%");
  EXPECT_EQ(FormatPercent(100), "100%");
  EXPECT_EQ(FormatPercent(99.96), "100%");
}

TEST(FormatMetric, UnitFromTheName) {
  EXPECT_EQ(FormatMetric("accuracy", 0.9716666666666667), "0.972");
  EXPECT_EQ(FormatMetric("accuracy_drop_points", 0.16666666666667052), "0.167");
  EXPECT_EQ(FormatMetric("latency_p50_ms_int8", 0.085), "0.085 ms");
  EXPECT_EQ(FormatMetric("latency_ms", 3.14159), "3.14 ms");
  EXPECT_EQ(FormatMetric("Latency-MS", 3.14159), "3.14 ms");
  EXPECT_EQ(FormatMetric("size_bytes_int8", 42086), "41.1 KiB");
  EXPECT_EQ(FormatMetric("train_seconds", 12.345), "12.3 s");
  EXPECT_EQ(FormatMetric("coverage.percent", 97.26), "97.3%");
  EXPECT_EQ(FormatMetric("heldout_frames", 1200), "1200");
  EXPECT_EQ(FormatMetric("msgs", 2), "2");  // a word "ms", not a substring
  EXPECT_EQ(FormatMetric("", 0.5), "0.5");
}

TEST(TextWidth, CountsCodePointsAndCutsWithAnEllipsis) {
  EXPECT_EQ(DisplayWidth(""), 0u);
  EXPECT_EQ(DisplayWidth("abc"), 3u);
  EXPECT_EQ(DisplayWidth("München"), 7u);
  EXPECT_EQ(DisplayWidth("\u2026"), 1u);
  EXPECT_EQ(Ellipsize("abcdefgh", 5), "abcd\u2026");
  EXPECT_EQ(Ellipsize("abc", 3), "abc");
  EXPECT_EQ(Ellipsize("abc", 5), "abc");
  EXPECT_EQ(Ellipsize("abc", 1), "\u2026");
  EXPECT_EQ(Ellipsize("Münchener", 4), "Mün\u2026");  // never inside a UTF-8 sequence
  EXPECT_EQ(DisplayWidth(Ellipsize("ääääääää", 5)), 5u);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Table WideTable() {
  Table t({"DEVICE ID", "SITE", "RUNNING", "DEPLOYMENT", "LAST SEEN"});
  t.AddRow({"dev-0123456789abcdef", "berlin", "mat-person@1.1.0", "ro-3 FAILED", "2026-01-02 15:04:05Z"});
  t.AddRow({"dev-fedcba9876543210", "München-Süd, building 7, second floor", "mat-person@1.10.0-rc.1+build.5",
            "ro-12 ACTIVATED", "2026-01-02 15:04:06Z"});
  return t;
}

TEST(Table, UnlimitedWidthNeverCuts) {
  std::ostringstream out;
  WideTable().Print(out, 0);
  const auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(out.str().find("\u2026"), std::string::npos);
  EXPECT_NE(lines[2].find("München-Süd, building 7, second floor"), std::string::npos);
  // Aligned by display width: the column after SITE starts at one column in every line.
  const size_t running = DisplayWidth(lines[0].substr(0, lines[0].find("RUNNING")));
  EXPECT_EQ(DisplayWidth(lines[2].substr(0, lines[2].find("mat-person"))), running);
  EXPECT_EQ(DisplayWidth(lines[1].substr(0, lines[1].find("mat-person"))), running);
}

TEST(Table, FitsAWideEnoughWidthUncut) {
  std::ostringstream unlimited, fitted;
  WideTable().Print(unlimited, 0);
  WideTable().Print(fitted, 500);
  EXPECT_EQ(fitted.str(), unlimited.str());
}

TEST(Table, NarrowsTheWidestColumnsFirstAndKeepsTheFirstWhole) {
  for (size_t width : {100u, 80u, 70u}) {
    std::ostringstream out;
    WideTable().Print(out, width);
    const auto lines = Lines(out.str());
    ASSERT_EQ(lines.size(), 3u);
    for (const auto& line : lines) EXPECT_LE(DisplayWidth(line), width) << width << "\n" << out.str();
    EXPECT_EQ(lines[1].rfind("dev-0123456789abcdef  ", 0), 0u) << out.str();  // identifiers stay whole
    EXPECT_EQ(lines[2].rfind("dev-fedcba9876543210  ", 0), 0u) << out.str();
    EXPECT_NE(lines[2].find("München"), std::string::npos) << out.str();
    EXPECT_NE(lines[2].find("\u2026"), std::string::npos) << out.str();
    EXPECT_NE(lines[1].find("berlin"), std::string::npos) << out.str();  // narrow cells are left alone
    if (width >= 80) {
      EXPECT_NE(lines[1].find("ro-3 FAILED"), std::string::npos) << out.str();
    }
  }
  // The line is used up to the width, not cut shorter than it needs.
  std::ostringstream out;
  WideTable().Print(out, 100);
  size_t longest = 0;
  for (const auto& line : Lines(out.str())) longest = std::max(longest, DisplayWidth(line));
  EXPECT_GE(longest, 98u) << out.str();
}

TEST(Table, CutsHeadersWiderThanTheirCellsFirst) {
  Table t({"VERSION", "LATENCY_P50_MS_INT8", "CREATED"});
  t.AddRow({"1.0.0", "0.085 ms", "2026-01-02 15:04:05Z"});
  std::ostringstream out;
  t.Print(out, 45);
  const auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "VERSION  LATENCY_P50_M…  CREATED");
  EXPECT_EQ(lines[1], "1.0.0    0.085 ms        2026-01-02 15:04:05Z");
}

TEST(Table, TooNarrowPrintsAtTheMinimumColumnWidth) {
  std::ostringstream out;
  WideTable().Print(out, 20);
  const auto lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1].rfind("dev-0123456789abcdef  berlin  mat-p\u2026  ro-3 \u2026  2026-\u2026", 0), 0u)
      << out.str();
}

TEST(Table, TableWidthRule) {
  EXPECT_EQ(ChooseTableWidth(false, false, "100", 120), 0u);  // piped: never cut
  EXPECT_EQ(ChooseTableWidth(true, true, "100", 120), 0u);    // --wide
  EXPECT_EQ(ChooseTableWidth(false, true, "100", 120), 100u);
  EXPECT_EQ(ChooseTableWidth(false, true, std::nullopt, 120), 120u);
  EXPECT_EQ(ChooseTableWidth(false, true, "0", 120), 120u);
  EXPECT_EQ(ChooseTableWidth(false, true, "wide", 120), 120u);
  EXPECT_EQ(ChooseTableWidth(false, true, "80x", 0), 80u);
  EXPECT_EQ(ChooseTableWidth(false, true, std::nullopt, 0), 80u);
}

TEST(KeyValues, OneEntryPerLineSortedAndAligned) {
  EXPECT_EQ(AlignedLines({}), "-");
  EXPECT_EQ(AlignedLines({{"size_bytes_int8", "41.1 KiB"}, {"accuracy", "0.972"}}),
            "accuracy         0.972\nsize_bytes_int8  41.1 KiB");
  std::ostringstream out;
  PrintKeyValues(out, {{"version", "1.1.0"}, {"metrics", "a  1\nbb 2"}, {"created", "x"}});
  EXPECT_EQ(out.str(),
            "version:  1.1.0\n"
            "metrics:  a  1\n"
            "          bb 2\n"
            "created:  x\n");
}

TEST(KeyValues, MapsBecomeEntries) {
  google::protobuf::Map<std::string, double> metrics;
  metrics["latency_p50_ms_int8"] = 0.085;
  metrics["accuracy"] = 0.9716666666666667;
  EXPECT_EQ(AlignedLines(MetricEntries(metrics)),
            "accuracy             0.972\nlatency_p50_ms_int8  0.085 ms");
  google::protobuf::Map<std::string, std::string> labels;
  labels["hw"] = "rev3";
  labels["dataset"] = "synthetic";
  EXPECT_EQ(AlignedLines(TextEntries(labels)), "dataset  synthetic\nhw       rev3");
}

TEST(DeploymentLabel, NamesTheRolloutElseTheDeployment) {
  v1::Device d;
  EXPECT_EQ(DeploymentLabel(d), "-");
  d.set_current_deployment_id("dep-12");
  d.set_current_deployment_step(v1::DEPLOYMENT_STEP_FAILED);
  EXPECT_EQ(DeploymentLabel(d), "dep-12 FAILED");  // a server that does not send the rollout
  d.set_current_rollout_id("ro-3");
  EXPECT_EQ(DeploymentLabel(d), "ro-3 FAILED");
  EXPECT_TRUE(IsFailedStep(v1::DEPLOYMENT_STEP_TIMED_OUT));
  EXPECT_FALSE(IsFailedStep(v1::DEPLOYMENT_STEP_ACTIVATED));
}

// The CLI reads the field of an INVALID_ARGUMENT from its google.rpc.BadRequest detail.
TEST(FromGrpc, ReadsTheFieldOfABadRequestDetail) {
  Settings settings;
  const grpc::Status bad(grpc::StatusCode::INVALID_ARGUMENT, "filter: unknown operator '~' at column 18",
                         EncodeBadRequestStatus(3, "filter: unknown operator", {"filter", "unknown operator"}));
  const Status s = FromGrpc(bad, settings);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.field(), "filter");
  EXPECT_EQ(s.message(), "filter: unknown operator '~' at column 18");
  // Without a detail (an older server) there is no field, and nothing else changes.
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x"), settings).field(), "");
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x", "\xff garbage"), settings).field(), "");
}

}  // namespace
}  // namespace modelfleet::cli
