// DeviceSelector (server/fleet/device_selector.h): the rollout target / ListDevices filter
// language. Parsing (every field, operator, alias, value form), errors (INVALID_ARGUMENT with the
// caller's field, naming the column), in-memory matching (a table of selector x device ->
// expected), and the SQL shape (text, bound parameters, no value in the SQL text).
//
// Error columns are 1-based; for each error the test works out by hand where the offending
// token is and accepts a column pointing at that token (start to end), never one outside it.
#include "fleet/device_selector.h"

#include <gtest/gtest.h>

#include <optional>
#include <regex>
#include <string>
#include <variant>
#include <vector>

namespace modelfleet::fleet {
namespace {

using Field = DeviceSelector::Field;
using Op = DeviceSelector::Op;
using Strings = std::vector<std::string>;

DeviceSelector MustParse(std::string_view text, SelectorKind kind = SelectorKind::kDeviceFilter) {
  auto s = DeviceSelector::Parse(text, kind, kind == SelectorKind::kDeviceFilter ? "filter" : "target");
  EXPECT_TRUE(s.has_value()) << "'" << text << "': " << s.error().ToString();
  if (!s.has_value()) return *DeviceSelector::Parse("*", kind, "x");
  return std::move(*s);
}

// The single term of a one-term selector.
DeviceSelector::Term OnlyTerm(std::string_view text, SelectorKind kind = SelectorKind::kDeviceFilter) {
  DeviceSelector s = MustParse(text, kind);
  EXPECT_EQ(s.terms().size(), 1u) << text;
  if (s.terms().size() != 1) return DeviceSelector::Term{};
  return s.terms()[0];
}

std::optional<int> ColumnIn(const std::string& message) {
  std::smatch m;
  static const std::regex kColumn("column ([0-9]+)");
  if (!std::regex_search(message, m, kColumn)) return std::nullopt;
  return std::stoi(m[1].str());
}

// INVALID_ARGUMENT, field `field` (and the message starts with it), the message contains
// `mentions`, and (if first_column > 0) names a column in [first_column, last_column].
::testing::AssertionResult IsSelectorError(std::string_view text, SelectorKind kind,
                                           const std::string& field, const std::string& mentions,
                                           int first_column = 0, int last_column = 0) {
  auto parsed = DeviceSelector::Parse(text, kind, field);
  if (parsed.has_value()) {
    return ::testing::AssertionFailure() << "'" << text << "': parsed into "
                                         << parsed->terms().size() << " terms";
  }
  const Status& s = parsed.error();
  if (s.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "'" << text << "': expected INVALID_ARGUMENT, got "
                                         << s.ToString();
  }
  if (s.field() != field || !s.message().starts_with(field + ": ")) {
    return ::testing::AssertionFailure() << "'" << text << "': field '" << s.field()
                                         << "', message '" << s.message() << "', expected field '"
                                         << field << "'";
  }
  if (s.message().find(mentions) == std::string::npos) {
    return ::testing::AssertionFailure() << "'" << text << "': message '" << s.message()
                                         << "' does not mention '" << mentions << "'";
  }
  if (first_column > 0) {
    std::optional<int> column = ColumnIn(s.message());
    if (!column) {
      return ::testing::AssertionFailure() << "'" << text << "': message '" << s.message()
                                           << "' names no column";
    }
    if (*column < first_column || *column > last_column) {
      return ::testing::AssertionFailure() << "'" << text << "': message '" << s.message()
                                           << "' names column " << *column << ", expected "
                                           << first_column << ".." << last_column;
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsFilterError(std::string_view text, const std::string& mentions,
                                         int first_column = 0, int last_column = 0) {
  return IsSelectorError(text, SelectorKind::kDeviceFilter, "filter", mentions, first_column,
                         last_column);
}
::testing::AssertionResult IsTargetError(std::string_view text, const std::string& mentions,
                                         int first_column = 0, int last_column = 0) {
  return IsSelectorError(text, SelectorKind::kRolloutTarget, "target", mentions, first_column,
                         last_column);
}

v1::DeviceAttributes Device(std::string site, std::string hw, std::string fw, uint32_t rows,
                            uint32_t cols, std::vector<std::pair<std::string, std::string>> labels) {
  v1::DeviceAttributes a;
  a.set_site(site);
  a.set_hardware_revision(hw);
  a.set_firmware_version(fw);
  a.set_sensor_rows(rows);
  a.set_sensor_cols(cols);
  for (auto& [k, v] : labels) (*a.mutable_labels())[k] = v;
  return a;
}

// ---------------------------------------------------------------------------------------------
// "*"

TEST(DeviceSelectorParse, StarMatchesEverything) {
  for (const char* text : {"*", "  *\t\n"}) {
    for (SelectorKind kind : {SelectorKind::kRolloutTarget, SelectorKind::kDeviceFilter}) {
      DeviceSelector s = MustParse(text, kind);
      EXPECT_TRUE(s.MatchesEverything()) << text;
      EXPECT_TRUE(s.terms().empty()) << text;
      EXPECT_EQ(s.text(), text);
      EXPECT_TRUE(s.Matches(v1::DeviceAttributes()));
      EXPECT_TRUE(s.Matches(Device("x", "9", "0.1", 1, 2, {{"a", "b"}})));
      std::vector<db::Param> params = {int64_t{7}};
      EXPECT_EQ(s.ToSql(params), "TRUE");
      EXPECT_EQ(params.size(), 1u);
    }
  }
  EXPECT_FALSE(MustParse("site = \"*\"").MatchesEverything());
}

TEST(DeviceSelectorParse, DefaultConstructedMatchesNothing) {
  DeviceSelector s;
  EXPECT_FALSE(s.MatchesEverything());
  EXPECT_FALSE(s.Matches(v1::DeviceAttributes()));
  std::vector<db::Param> params;
  EXPECT_EQ(s.ToSql(params), "FALSE");
  EXPECT_TRUE(params.empty());
  EXPECT_EQ(s.text(), "");
}

TEST(DeviceSelectorParse, TextIsKeptAsGiven) {
  DeviceSelector s = MustParse("  site = \"a\"  and sensor_rows>1 ");
  EXPECT_EQ(s.text(), "  site = \"a\"  and sensor_rows>1 ");
  EXPECT_EQ(s.terms().size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Fields and operators

TEST(DeviceSelectorParse, StringFieldsWithEqualsAndNotEquals) {
  struct Case {
    const char* text;
    Field field;
    Op op;
    const char* value;
  };
  const Case cases[] = {
      {"site = \"berlin\"", Field::kSite, Op::kEq, "berlin"},
      {"site != \"berlin\"", Field::kSite, Op::kNe, "berlin"},
      {"site=\"berlin\"", Field::kSite, Op::kEq, "berlin"},
      {"site!=\"\"", Field::kSite, Op::kNe, ""},
      {"hardware_revision = \"rev-2\"", Field::kHardwareRevision, Op::kEq, "rev-2"},
      {"hardware_revision != \"2\"", Field::kHardwareRevision, Op::kNe, "2"},
      {"firmware_version = \"1.0.3\"", Field::kFirmwareVersion, Op::kEq, "1.0.3"},
      {"firmware_version != \"1.0\"", Field::kFirmwareVersion, Op::kNe, "1.0"},
  };
  for (const Case& c : cases) {
    for (SelectorKind kind : {SelectorKind::kRolloutTarget, SelectorKind::kDeviceFilter}) {
      DeviceSelector::Term t = OnlyTerm(c.text, kind);
      EXPECT_EQ(t.field, c.field) << c.text;
      EXPECT_EQ(t.op, c.op) << c.text;
      EXPECT_EQ(t.values, Strings{c.value}) << c.text;
    }
  }
}

TEST(DeviceSelectorParse, Aliases) {
  DeviceSelector::Term a = OnlyTerm("hw_rev = \"2\"", SelectorKind::kRolloutTarget);
  EXPECT_EQ(a.field, Field::kHardwareRevision);
  EXPECT_EQ(a.values, Strings{"2"});
  DeviceSelector::Term b = OnlyTerm("firmware != \"1.0\"", SelectorKind::kRolloutTarget);
  EXPECT_EQ(b.field, Field::kFirmwareVersion);
  EXPECT_EQ(b.op, Op::kNe);
  EXPECT_EQ(b.values, Strings{"1.0"});
  // Field names are case-sensitive.
  EXPECT_TRUE(IsTargetError("SITE = \"a\"", "unknown field 'SITE'", 1, 4));
  EXPECT_TRUE(IsTargetError("HW_REV = \"a\"", "unknown field 'HW_REV'", 1, 6));
}

TEST(DeviceSelectorParse, InAndNotInLists) {
  DeviceSelector::Term t = OnlyTerm("site in (\"berlin\", \"paris\",\"rome\")");
  EXPECT_EQ(t.field, Field::kSite);
  EXPECT_EQ(t.op, Op::kIn);
  EXPECT_EQ(t.values, (Strings{"berlin", "paris", "rome"}));

  t = OnlyTerm("firmware not in ( \"1.0\" )");
  EXPECT_EQ(t.field, Field::kFirmwareVersion);
  EXPECT_EQ(t.op, Op::kNotIn);
  EXPECT_EQ(t.values, Strings{"1.0"});

  t = OnlyTerm("site IN(\"a\")");
  EXPECT_EQ(t.op, Op::kIn);
  t = OnlyTerm("site Not In (\"a\",\"b\")");
  EXPECT_EQ(t.op, Op::kNotIn);
  EXPECT_EQ(t.values, (Strings{"a", "b"}));
  t = OnlyTerm("labels.room not\tin (\"a\")");
  EXPECT_EQ(t.field, Field::kLabel);
  EXPECT_EQ(t.key, "room");
  EXPECT_EQ(t.op, Op::kNotIn);
}

TEST(DeviceSelectorParse, HardwareRevisionTakesBareIntegersAsStrings) {
  DeviceSelector::Term t = OnlyTerm("hw_rev in (2, \"3\", 04)", SelectorKind::kRolloutTarget);
  EXPECT_EQ(t.values, (Strings{"2", "3", "04"}));
  t = OnlyTerm("hardware_revision = 12", SelectorKind::kRolloutTarget);
  EXPECT_EQ(t.op, Op::kEq);
  EXPECT_EQ(t.values, Strings{"12"});
  t = OnlyTerm("hw_rev!=7");
  EXPECT_EQ(t.op, Op::kNe);
  EXPECT_EQ(t.values, Strings{"7"});
  // Only hardware_revision: other string fields need quotes.
  EXPECT_TRUE(IsTargetError("site = 5", "double-quoted string", 8, 8));
  EXPECT_TRUE(IsTargetError("firmware in (1)", "double-quoted string", 14, 14));
  EXPECT_TRUE(IsTargetError("labels.rev = 2", "double-quoted string", 14, 14));
  // A bare value must be all digits.
  EXPECT_TRUE(IsTargetError("hw_rev = 2b", "double-quoted string or an integer", 10, 11));
  EXPECT_TRUE(IsTargetError("hw_rev = -2", "double-quoted string or an integer", 10, 11));
  EXPECT_TRUE(IsTargetError("hw_rev in (2, x)", "double-quoted string or an integer", 15, 15));
}

TEST(DeviceSelectorParse, Labels) {
  DeviceSelector::Term t = OnlyTerm("labels.room = \"a\"", SelectorKind::kRolloutTarget);
  EXPECT_EQ(t.field, Field::kLabel);
  EXPECT_EQ(t.key, "room");
  EXPECT_EQ(t.op, Op::kEq);
  EXPECT_EQ(t.values, Strings{"a"});
  t = OnlyTerm("labels.Zone-1.sub_key != \"x\"", SelectorKind::kRolloutTarget);
  EXPECT_EQ(t.key, "Zone-1.sub_key");
  EXPECT_EQ(t.op, Op::kNe);
  const std::string key64(64, 'k');
  t = OnlyTerm("labels." + key64 + " = \"v\"");
  EXPECT_EQ(t.key, key64);
  EXPECT_TRUE(IsTargetError("labels." + std::string(65, 'k') + " = \"v\"", "1 to 64 characters", 1, 72));
  EXPECT_TRUE(IsTargetError("labels. = \"v\"", "1 to 64 characters", 1, 7));
  EXPECT_TRUE(IsTargetError("labels.a/b = \"v\"", "expected an operator", 9, 9));
  EXPECT_TRUE(IsTargetError("labels.room < \"v\"", "can only be compared with =, !=, in or not in", 13, 13));
}

TEST(DeviceSelectorParse, NumericFieldsWithEveryOperator) {
  struct Case {
    const char* op_text;
    Op op;
  };
  const Case cases[] = {{"=", Op::kEq}, {"!=", Op::kNe}, {"<", Op::kLt},
                        {"<=", Op::kLe}, {">", Op::kGt}, {">=", Op::kGe}};
  for (const char* field : {"sensor_rows", "sensor_cols"}) {
    for (const Case& c : cases) {
      for (const char* space : {" ", ""}) {
        std::string text = std::string(field) + space + c.op_text + space + "16";
        DeviceSelector::Term t = OnlyTerm(text, SelectorKind::kRolloutTarget);
        EXPECT_EQ(t.field, std::string(field) == "sensor_rows" ? Field::kSensorRows : Field::kSensorCols) << text;
        EXPECT_EQ(t.op, c.op) << text;
        EXPECT_EQ(t.number, 16) << text;
      }
    }
  }
  EXPECT_EQ(OnlyTerm("sensor_rows > -1").number, -1);
  EXPECT_EQ(OnlyTerm("sensor_cols = 0").number, 0);
  EXPECT_EQ(OnlyTerm("sensor_cols < 9223372036854775807").number, INT64_MAX);
}

TEST(DeviceSelectorParse, FilterOnlyFields) {
  DeviceSelector::Term t = OnlyTerm("admission = ACCEPTED");
  EXPECT_EQ(t.field, Field::kAdmission);
  EXPECT_EQ(t.op, Op::kEq);
  EXPECT_EQ(t.values, Strings{"ACCEPTED"});
  t = OnlyTerm("admission != \"pending\"");  // quoted, any case; stored upper case
  EXPECT_EQ(t.op, Op::kNe);
  EXPECT_EQ(t.values, Strings{"PENDING"});
  t = OnlyTerm("admission in (PREAUTHORIZED, \"REJECTED\", decommissioned)");
  EXPECT_EQ(t.op, Op::kIn);
  EXPECT_EQ(t.values, (Strings{"PREAUTHORIZED", "REJECTED", "DECOMMISSIONED"}));
  t = OnlyTerm("admission not in (ACCEPTED)");
  EXPECT_EQ(t.op, Op::kNotIn);

  t = OnlyTerm("deployment_step = FAILED");
  EXPECT_EQ(t.field, Field::kDeploymentStep);
  EXPECT_EQ(t.values, Strings{"FAILED"});
  t = OnlyTerm("deployment_step in (ASSIGNED, DOWNLOADING, VERIFYING, INSTALLING, SELF_TESTING, "
               "ACTIVATED, \"failed\", ROLLED_BACK, TIMED_OUT, CANCELLED)");
  EXPECT_EQ(t.op, Op::kIn);
  EXPECT_EQ(t.values, (Strings{"ASSIGNED", "DOWNLOADING", "VERIFYING", "INSTALLING", "SELF_TESTING",
                               "ACTIVATED", "FAILED", "ROLLED_BACK", "TIMED_OUT", "CANCELLED"}));
  t = OnlyTerm("deployment_step != ACTIVATED");
  EXPECT_EQ(t.op, Op::kNe);

  t = OnlyTerm("running = \"mat-pose@1.2.0-rc.1+b5\"");
  EXPECT_EQ(t.field, Field::kRunning);
  EXPECT_EQ(t.op, Op::kEq);
  EXPECT_EQ(t.values, (Strings{"mat-pose", "1.2.0-rc.1+b5"}));
  t = OnlyTerm("running != \"m@1\"");
  EXPECT_EQ(t.op, Op::kNe);

  struct Case {
    const char* op_text;
    Op op;
  };
  for (const Case& c : {Case{"<", Op::kLt}, Case{"<=", Op::kLe}, Case{">", Op::kGt}, Case{">=", Op::kGe}}) {
    t = OnlyTerm(std::string("offline_for ") + c.op_text + " 3600");
    EXPECT_EQ(t.field, Field::kOfflineFor);
    EXPECT_EQ(t.op, c.op);
    EXPECT_EQ(t.number, 3600);
  }
  EXPECT_EQ(OnlyTerm("offline_for > 0").number, 0);
  EXPECT_EQ(OnlyTerm("offline_for >= 3153600000").number, kMaxOfflineForSeconds);
}

TEST(DeviceSelectorParse, TermsJoinedByAndInAnyCase) {
  DeviceSelector s = MustParse(
      "site = \"a\" AND hw_rev = 2 and firmware != \"1\" And labels.k in (\"x\") aNd sensor_rows >= 4 "
      "AND sensor_cols<8",
      SelectorKind::kRolloutTarget);
  ASSERT_EQ(s.terms().size(), 6u);
  EXPECT_EQ(s.terms()[0].field, Field::kSite);
  EXPECT_EQ(s.terms()[1].field, Field::kHardwareRevision);
  EXPECT_EQ(s.terms()[2].field, Field::kFirmwareVersion);
  EXPECT_EQ(s.terms()[3].field, Field::kLabel);
  EXPECT_EQ(s.terms()[4].field, Field::kSensorRows);
  EXPECT_EQ(s.terms()[5].field, Field::kSensorCols);
  EXPECT_EQ(s.terms()[5].op, Op::kLt);
  EXPECT_EQ(s.terms()[5].number, 8);
  // Tabs and newlines are whitespace too.
  EXPECT_EQ(MustParse("site=\"a\"\n\tAND\tsite!=\"b\"").terms().size(), 2u);
}

TEST(DeviceSelectorParse, StringEscapes) {
  DeviceSelector::Term t = OnlyTerm(R"(site = "a\"b\\c")");
  EXPECT_EQ(t.values, Strings{"a\"b\\c"});
  t = OnlyTerm(R"(labels.note in ("\\", "\"", "AND site = \"x\""))");
  EXPECT_EQ(t.values, (Strings{"\\", "\"", "AND site = \"x\""}));
  // UTF-8 and the other characters are literal.
  t = OnlyTerm("site = \"M\xc3\xbcnchen (Nord), 'A'\"");
  EXPECT_EQ(t.values, Strings{"M\xc3\xbcnchen (Nord), 'A'"});
  EXPECT_TRUE(IsFilterError(R"(site = "a\nb")", "bad escape", 9, 11));
  EXPECT_TRUE(IsFilterError(R"(site = "a\)", "bad escape", 9, 11));
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(DeviceSelectorErrors, EmptyOrBlank) {
  for (const char* text : {"", "   ", " \t\n "}) {
    EXPECT_TRUE(IsTargetError(text, "is empty; use \"*\" for every device"));
    EXPECT_TRUE(IsFilterError(text, "is empty; use \"*\" for every device"));
  }
}

TEST(DeviceSelectorErrors, CallerChoosesTheField) {
  auto s = DeviceSelector::Parse("color = \"red\"", SelectorKind::kDeviceFilter, "request.filter");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().field(), "request.filter");
  EXPECT_EQ(s.error().message().rfind("request.filter: unknown field 'color'", 0), 0u) << s.error().message();
}

TEST(DeviceSelectorErrors, UnknownField) {
  EXPECT_TRUE(IsTargetError("color = \"red\"", "unknown field 'color'", 1, 5));
  EXPECT_TRUE(IsFilterError("site = \"a\" AND colour = \"red\"", "unknown field 'colour'", 16, 21));
  // The message lists what is allowed.
  EXPECT_TRUE(IsTargetError("color = \"red\"", "site, hardware_revision"));
  EXPECT_TRUE(IsFilterError("color = \"red\"", "deployment_step"));
  EXPECT_TRUE(IsFilterError("metrics.acc > 1", "unknown field 'metrics.acc'", 1, 11));
}

TEST(DeviceSelectorErrors, FilterOnlyFieldsInATarget) {
  EXPECT_TRUE(IsTargetError("admission = ACCEPTED", "'admission' is only allowed in ListDevices filters", 1, 9));
  EXPECT_TRUE(IsTargetError("offline_for > 10", "'offline_for' is only allowed in ListDevices filters", 1, 11));
  EXPECT_TRUE(IsTargetError("running = \"m@1\"", "'running' is only allowed in ListDevices filters", 1, 7));
  EXPECT_TRUE(IsTargetError("deployment_step = FAILED", "'deployment_step' is only allowed", 1, 15));
  EXPECT_TRUE(IsTargetError("site = \"a\" AND admission = ACCEPTED", "'admission' is only allowed", 16, 24));
}

TEST(DeviceSelectorErrors, BadOperator) {
  EXPECT_TRUE(IsFilterError("site ~ \"a\"", "expected an operator", 6, 6));
  EXPECT_TRUE(IsFilterError("site", "expected an operator", 5, 5));
  EXPECT_TRUE(IsFilterError("site == \"a\"", "double-quoted string", 7, 7));
  EXPECT_TRUE(IsFilterError("site < \"a\"", "'site' can only be compared with =, !=, in or not in", 6, 6));
  EXPECT_TRUE(IsFilterError("hw_rev >= 2", "can only be compared with =, !=, in or not in", 8, 9));
  EXPECT_TRUE(IsFilterError("admission > ACCEPTED", "can only be compared with =, !=, in or not in", 11, 11));
  EXPECT_TRUE(IsFilterError("site not (\"a\")", "expected IN after NOT", 10, 10));
  EXPECT_TRUE(IsFilterError("site like \"a\"", "expected an operator", 6, 9));
  EXPECT_TRUE(IsFilterError("sensor_rows in (1, 2)", "not a list", 13, 14));
  EXPECT_TRUE(IsFilterError("sensor_cols not in (1)", "not a list", 13, 18));
  EXPECT_TRUE(IsFilterError("offline_for = 10", "'offline_for' can only be compared with <, <=, > or >=", 13, 13));
  EXPECT_TRUE(IsFilterError("offline_for != 10", "'offline_for' can only be compared with <", 13, 14));
  EXPECT_TRUE(IsFilterError("running in (\"m@1\")", "'running' can only be compared with = or !=", 9, 10));
}

TEST(DeviceSelectorErrors, BadNumbers) {
  EXPECT_TRUE(IsTargetError("sensor_rows = abc", "'sensor_rows' expects an integer", 15, 17));
  EXPECT_TRUE(IsTargetError("sensor_rows = 1.5", "'sensor_rows' expects an integer", 15, 17));
  EXPECT_TRUE(IsTargetError("sensor_cols > 16x", "'sensor_cols' expects an integer", 15, 17));
  EXPECT_TRUE(IsTargetError("sensor_cols > \"16\"", "'sensor_cols' expects an integer", 15, 18));
  EXPECT_TRUE(IsTargetError("sensor_cols >", "'sensor_cols' expects an integer", 14, 14));
  EXPECT_TRUE(IsTargetError("sensor_rows = 9223372036854775808", "expects an integer", 15, 33));
  EXPECT_TRUE(IsTargetError("sensor_rows = 1e3", "expects an integer", 15, 17));
  EXPECT_TRUE(IsFilterError("offline_for > -1", "'offline_for' expects seconds from 0 to 3153600000", 15, 16));
  EXPECT_TRUE(IsFilterError("offline_for > 3153600001", "expects seconds from 0", 15, 24));
  EXPECT_TRUE(IsFilterError("offline_for > 1h", "'offline_for' expects an integer", 15, 16));
}

TEST(DeviceSelectorErrors, BadEnumValues) {
  EXPECT_TRUE(IsFilterError("admission = ACCEPTD", "'admission' expects one of PREAUTHORIZED, PENDING", 13, 19));
  EXPECT_TRUE(IsFilterError("admission = \"\"", "'admission' expects one of", 13, 14));
  EXPECT_TRUE(IsFilterError("admission = 2", "'admission' expects one of", 13, 13));
  EXPECT_TRUE(IsFilterError("admission in (ACCEPTED, UNSPECIFIED)", "expects one of", 25, 35));
  EXPECT_TRUE(IsFilterError("deployment_step = DONE", "'deployment_step' expects one of ASSIGNED", 19, 22));
  EXPECT_TRUE(IsFilterError("deployment_step = DEPLOYMENT_STEP_FAILED", "expects one of", 19, 40));
}

TEST(DeviceSelectorErrors, BadRunningValue) {
  EXPECT_TRUE(IsFilterError("running = \"model\"", "'running' expects \"model@version\"", 11, 17));
  EXPECT_TRUE(IsFilterError("running = \"@1.0\"", "\"model@version\"", 11, 16));
  EXPECT_TRUE(IsFilterError("running = \"m@\"", "\"model@version\"", 11, 14));
  EXPECT_TRUE(IsFilterError("running = \"a@b@c\"", "\"model@version\"", 11, 17));
  EXPECT_TRUE(IsFilterError("running = m@1", "double-quoted \"model@version\"", 11, 11));
}

TEST(DeviceSelectorErrors, Strings) {
  EXPECT_TRUE(IsFilterError("site = \"abc", "unterminated string", 8, 11));
  EXPECT_TRUE(IsFilterError("site = \"abc\\\"", "unterminated string", 8, 13));
  EXPECT_TRUE(IsFilterError("site in (\"a\", \"b)", "unterminated string", 15, 17));
  EXPECT_TRUE(IsFilterError("site = abc", "expected a double-quoted string for 'site'", 8, 10));
  EXPECT_TRUE(IsFilterError("site =", "double-quoted string", 7, 7));
}

TEST(DeviceSelectorErrors, Lists) {
  EXPECT_TRUE(IsFilterError("site in \"a\"", "expected '(' after in", 9, 9));
  EXPECT_TRUE(IsFilterError("site in", "expected '(' after in", 8, 8));
  EXPECT_TRUE(IsFilterError("site in (\"a\", \"b\"", "missing closing parenthesis", 18, 18));
  EXPECT_TRUE(IsFilterError("site in (\"a\",", "double-quoted string", 14, 14));
  EXPECT_TRUE(IsFilterError("site in (\"a\" \"b\")", "expected ',' or ')'", 14, 14));
  EXPECT_TRUE(IsFilterError("site in (\"a\",)", "double-quoted string", 14, 14));
  EXPECT_TRUE(IsFilterError("site in ()", "expected at least one value", 9, 10));
  EXPECT_TRUE(IsFilterError("site not in (   )", "expected at least one value", 13, 17));
  EXPECT_TRUE(IsFilterError("admission in ()", "expected at least one value", 14, 15));
}

TEST(DeviceSelectorErrors, Structure) {
  EXPECT_TRUE(IsFilterError("site = \"a\" OR site = \"b\"", "expected AND or the end of the filter", 12, 13));
  EXPECT_TRUE(IsTargetError("site = \"a\" site = \"b\"", "expected AND or the end of the target", 12, 15));
  EXPECT_TRUE(IsFilterError("site = \"a\" AND", "expected a field", 15, 15));
  EXPECT_TRUE(IsFilterError("site = \"a\" AND AND site = \"b\"", "unknown field 'AND'", 16, 18));
  EXPECT_TRUE(IsFilterError("site = \"a\" ANDsite = \"b\"", "expected AND", 12, 18));
  EXPECT_TRUE(IsFilterError("site = \"a\")", "expected AND", 11, 11));
  EXPECT_TRUE(IsFilterError("* AND site = \"a\"", "'*' must be the whole filter", 1, 1));
  EXPECT_TRUE(IsTargetError("site = \"a\" AND *", "'*' must be the whole target", 16, 16));
  EXPECT_TRUE(IsTargetError("**", "'*' must be the whole target", 1, 1));
  EXPECT_TRUE(IsTargetError("(site = \"a\")", "expected a field", 1, 1));
}

TEST(DeviceSelectorErrors, TooManyTerms) {
  std::string text = "sensor_rows > 0";
  for (int i = 1; i < 32; ++i) text += " AND sensor_rows > " + std::to_string(i);
  EXPECT_EQ(MustParse(text, SelectorKind::kRolloutTarget).terms().size(), 32u);
  const int next = static_cast<int>(text.size()) + 6;  // after " AND "
  text += " AND site = \"x\"";
  EXPECT_TRUE(IsTargetError(text, "has more than 32 terms", next, next));
}

TEST(DeviceSelectorErrors, TooManyListValues) {
  std::string values = "\"v0\"";
  for (int i = 1; i < 64; ++i) values += ", \"v" + std::to_string(i) + "\"";
  DeviceSelector s = MustParse("site in (" + values + ")");
  ASSERT_EQ(s.terms().size(), 1u);
  EXPECT_EQ(s.terms()[0].values.size(), 64u);
  EXPECT_EQ(s.terms()[0].values[63], "v63");
  std::string text = "site not in (" + values + ", ";
  const int next = static_cast<int>(text.size()) + 1;
  text += "\"v64\")";
  EXPECT_TRUE(IsFilterError(text, "has more than 64 values", next, next));
}

TEST(DeviceSelectorErrors, TooLong) {
  // Exactly 4096 bytes parse.
  std::string text = "site = \"";
  text += std::string(kMaxSelectorBytes - text.size() - 1, 'a') + "\"";
  ASSERT_EQ(text.size(), 4096u);
  EXPECT_EQ(OnlyTerm(text).values[0].size(), 4096u - 9);
  std::string longer = "site = \"" + std::string(kMaxSelectorBytes - 8, 'a') + "\"";
  ASSERT_EQ(longer.size(), 4097u);
  EXPECT_TRUE(IsTargetError(longer, "is longer than 4096 bytes"));
  // Whitespace counts too.
  EXPECT_TRUE(IsTargetError(std::string(4096, ' ') + "*", "is longer than 4096 bytes"));
}

TEST(DeviceSelectorErrors, NulAndInvalidUtf8) {
  EXPECT_TRUE(IsFilterError(std::string_view("site = \"a\0b\"", 12), "NUL", 10, 10));
  EXPECT_TRUE(IsFilterError("site = \"a\xff\"", "not valid UTF-8"));
  EXPECT_TRUE(IsFilterError("site = \"\xc3\"", "not valid UTF-8"));
}

// ---------------------------------------------------------------------------------------------
// Matches: one table of selector x device -> expected. The SQL side (ToSql) is checked against
// PostgreSQL with the same semantics in the integration tests.

TEST(DeviceSelectorMatches, Table) {
  const v1::DeviceAttributes berlin =
      Device("berlin", "2", "1.0.3", 16, 32, {{"room", "a"}, {"floor", "3"}, {"quote", "x\"y"}});
  const v1::DeviceAttributes paris = Device("paris", "3", "1.1", 8, 8, {{"room", "b"}});
  const v1::DeviceAttributes blank;  // every attribute at its default, no labels

  struct Case {
    const char* selector;
    const v1::DeviceAttributes* device;
    bool expected;
  };
  const Case cases[] = {
      {"*", &blank, true},
      // site
      {"site = \"berlin\"", &berlin, true},
      {"site = \"berlin\"", &paris, false},
      {"site = \"Berlin\"", &berlin, false},  // case-sensitive values
      {"site = \"berlin \"", &berlin, false},
      {"site != \"berlin\"", &berlin, false},
      {"site != \"berlin\"", &paris, true},
      {"site = \"\"", &blank, true},
      {"site != \"\"", &blank, false},
      {"site in (\"paris\", \"berlin\")", &berlin, true},
      {"site in (\"paris\", \"rome\")", &berlin, false},
      {"site not in (\"paris\", \"rome\")", &berlin, true},
      {"site not in (\"paris\", \"berlin\")", &berlin, false},
      // hardware_revision / hw_rev, bare integers as strings
      {"hardware_revision = \"2\"", &berlin, true},
      {"hw_rev = 2", &berlin, true},
      {"hw_rev = 02", &berlin, false},
      {"hw_rev != 2", &paris, true},
      {"hw_rev in (2, 3)", &paris, true},
      {"hw_rev in (4, 5)", &paris, false},
      {"hw_rev not in (2)", &paris, true},
      {"hw_rev not in (2, \"3\")", &paris, false},
      // firmware_version / firmware
      {"firmware_version = \"1.0.3\"", &berlin, true},
      {"firmware = \"1.0\"", &berlin, false},
      {"firmware != \"1.0\"", &berlin, true},
      {"firmware in (\"1.1\")", &paris, true},
      {"firmware not in (\"1.1\")", &paris, false},
      // labels, with missing labels: = and in never match, != and not in always match
      {"labels.room = \"a\"", &berlin, true},
      {"labels.room = \"a\"", &paris, false},
      {"labels.room = \"a\"", &blank, false},
      {"labels.room = \"\"", &blank, false},
      {"labels.room != \"a\"", &berlin, false},
      {"labels.room != \"a\"", &paris, true},
      {"labels.room != \"a\"", &blank, true},
      {"labels.room != \"\"", &blank, true},
      {"labels.room in (\"a\", \"b\")", &paris, true},
      {"labels.room in (\"a\", \"b\")", &blank, false},
      {"labels.room not in (\"a\", \"b\")", &paris, false},
      {"labels.room not in (\"a\")", &paris, true},
      {"labels.room not in (\"a\", \"b\")", &blank, true},
      {"labels.floor = \"3\"", &berlin, true},
      {"labels.floor = \"3\"", &paris, false},
      {"labels.quote = \"x\\\"y\"", &berlin, true},
      {"labels.Room = \"a\"", &berlin, false},  // keys are case-sensitive
      // numeric
      {"sensor_rows = 16", &berlin, true},
      {"sensor_rows = 16", &paris, false},
      {"sensor_rows != 16", &paris, true},
      {"sensor_rows < 16", &berlin, false},
      {"sensor_rows < 16", &paris, true},
      {"sensor_rows <= 16", &berlin, true},
      {"sensor_rows > 8", &berlin, true},
      {"sensor_rows > 8", &paris, false},
      {"sensor_rows >= 8", &paris, true},
      {"sensor_cols = 32", &berlin, true},
      {"sensor_cols < 32", &berlin, false},
      {"sensor_cols > -1", &blank, true},
      {"sensor_cols = 0", &blank, true},
      {"sensor_cols < 9223372036854775807", &berlin, true},
      {"sensor_rows > 4294967295", &berlin, false},
      // conjunctions
      {"site = \"berlin\" AND sensor_rows = 16", &berlin, true},
      {"site = \"berlin\" and sensor_rows = 8", &berlin, false},
      {"site = \"paris\" AND sensor_rows = 16", &berlin, false},
      {"site in (\"berlin\", \"paris\") AND labels.room != \"a\" AND hw_rev in (2, 3)", &paris, true},
      {"site in (\"berlin\", \"paris\") AND labels.room != \"a\" AND hw_rev in (2, 3)", &berlin, false},
      {"labels.room != \"zz\" AND labels.floor != \"zz\" AND site = \"\"", &blank, true},
  };
  for (const Case& c : cases) {
    DeviceSelector s = MustParse(c.selector, SelectorKind::kRolloutTarget);
    EXPECT_EQ(s.Matches(*c.device), c.expected)
        << c.selector << " on " << c.device->ShortDebugString();
    // The same selector parsed as a filter matches the same way.
    EXPECT_EQ(MustParse(c.selector, SelectorKind::kDeviceFilter).Matches(*c.device), c.expected)
        << c.selector;
  }
}

TEST(DeviceSelectorMatches, FilterOnlyTermsNeverMatchInMemory) {
  const v1::DeviceAttributes d = Device("berlin", "2", "1.0", 16, 16, {});
  for (const char* text : {"admission = ACCEPTED", "admission != ACCEPTED", "offline_for > 0",
                           "offline_for < 100", "running = \"m@1\"", "running != \"m@1\"",
                           "deployment_step != FAILED", "site = \"berlin\" AND admission = ACCEPTED"}) {
    EXPECT_FALSE(MustParse(text).Matches(d)) << text;
  }
  EXPECT_TRUE(MustParse("site = \"berlin\"").Matches(d));
}

// ---------------------------------------------------------------------------------------------
// ToSql

// Parameters as "s:text" / "i:number" / "null" / "other", for comparison and readable failures.
std::vector<std::string> Show(const std::vector<db::Param>& params) {
  std::vector<std::string> out;
  for (const db::Param& p : params) {
    if (const auto* s = std::get_if<std::string>(&p)) {
      out.push_back("s:" + *s);
    } else if (const auto* i = std::get_if<int64_t>(&p)) {
      out.push_back("i:" + std::to_string(*i));
    } else if (std::holds_alternative<std::nullptr_t>(p)) {
      out.push_back("null");
    } else {
      out.push_back("other");
    }
  }
  return out;
}

std::string Sql(std::string_view text, std::vector<db::Param>& params) {
  return MustParse(text).ToSql(params);
}

TEST(DeviceSelectorToSql, AttributeFields) {
  struct Case {
    const char* selector;
    const char* sql;
    std::vector<db::Param> params;
  };
  const Case cases[] = {
      {"site = \"berlin\"", "(d.site = $1)", {std::string("berlin")}},
      {"site != \"berlin\"", "(d.site <> $1)", {std::string("berlin")}},
      {"site in (\"a\", \"b\")", "(d.site IN ($1, $2))", {std::string("a"), std::string("b")}},
      {"site not in (\"a\")", "(d.site NOT IN ($1))", {std::string("a")}},
      {"hw_rev in (2, \"3\")", "(d.hardware_revision IN ($1, $2))", {std::string("2"), std::string("3")}},
      {"hardware_revision != 2", "(d.hardware_revision <> $1)", {std::string("2")}},
      {"firmware = \"1.0\"", "(d.firmware_version = $1)", {std::string("1.0")}},
      {"firmware_version not in (\"1.0\", \"1.1\")", "(d.firmware_version NOT IN ($1, $2))",
       {std::string("1.0"), std::string("1.1")}},
      {"sensor_rows = 16", "(d.sensor_rows = $1::bigint)", {int64_t{16}}},
      {"sensor_rows != 16", "(d.sensor_rows <> $1::bigint)", {int64_t{16}}},
      {"sensor_cols < -3", "(d.sensor_cols < $1::bigint)", {int64_t{-3}}},
      {"sensor_cols <= 3", "(d.sensor_cols <= $1::bigint)", {int64_t{3}}},
      {"sensor_rows > 3", "(d.sensor_rows > $1::bigint)", {int64_t{3}}},
      {"sensor_rows >= 3", "(d.sensor_rows >= $1::bigint)", {int64_t{3}}},
      {"labels.room = \"a\"", "(COALESCE(d.labels->>$1 = $2, FALSE))", {std::string("room"), std::string("a")}},
      {"labels.room != \"a\"", "(d.labels->>$1 IS DISTINCT FROM $2)", {std::string("room"), std::string("a")}},
      {"labels.room in (\"a\", \"b\")", "(COALESCE(d.labels->>$1 IN ($2, $3), FALSE))",
       {std::string("room"), std::string("a"), std::string("b")}},
      {"labels.room not in (\"a\")", "(COALESCE(d.labels->>$1 NOT IN ($2), TRUE))",
       {std::string("room"), std::string("a")}},
  };
  for (const Case& c : cases) {
    std::vector<db::Param> params;
    EXPECT_EQ(Sql(c.selector, params), c.sql) << c.selector;
    EXPECT_EQ(Show(params), Show(c.params)) << c.selector;
  }
}

TEST(DeviceSelectorToSql, FilterOnlyFields) {
  const std::string latest =
      "(SELECT dep.step FROM deployments dep WHERE dep.device_id = d.id ORDER BY dep.id DESC LIMIT 1)";
  struct Case {
    std::string selector;
    std::string sql;
    std::vector<db::Param> params;
  };
  const Case cases[] = {
      {"admission = accepted", "(d.admission = $1)", {std::string("ACCEPTED")}},
      {"admission != \"PENDING\"", "(d.admission <> $1)", {std::string("PENDING")}},
      {"admission in (PREAUTHORIZED, PENDING)", "(d.admission IN ($1, $2))",
       {std::string("PREAUTHORIZED"), std::string("PENDING")}},
      {"admission not in (REJECTED)", "(d.admission NOT IN ($1))", {std::string("REJECTED")}},
      {"offline_for > 3600",
       "((d.last_seen IS NULL OR d.last_seen < now() - make_interval(secs => $1)))", {int64_t{3600}}},
      {"offline_for >= 60",
       "((d.last_seen IS NULL OR d.last_seen <= now() - make_interval(secs => $1)))", {int64_t{60}}},
      {"offline_for < 60",
       "((d.last_seen IS NOT NULL AND d.last_seen > now() - make_interval(secs => $1)))", {int64_t{60}}},
      {"offline_for <= 60",
       "((d.last_seen IS NOT NULL AND d.last_seen >= now() - make_interval(secs => $1)))", {int64_t{60}}},
      {"running = \"pose@1.0.0\"", "((d.running_model = $1 AND d.running_version = $2))",
       {std::string("pose"), std::string("1.0.0")}},
      {"running != \"pose@1.0.0\"", "(NOT (d.running_model = $1 AND d.running_version = $2))",
       {std::string("pose"), std::string("1.0.0")}},
      {"deployment_step = failed", "(COALESCE(" + latest + " = $1, FALSE))", {std::string("FAILED")}},
      {"deployment_step != FAILED", "(" + latest + " IS DISTINCT FROM $1)", {std::string("FAILED")}},
      {"deployment_step in (TIMED_OUT, ROLLED_BACK)", "(COALESCE(" + latest + " IN ($1, $2), FALSE))",
       {std::string("TIMED_OUT"), std::string("ROLLED_BACK")}},
      {"deployment_step not in (ACTIVATED)", "(COALESCE(" + latest + " NOT IN ($1), TRUE))",
       {std::string("ACTIVATED")}},
  };
  for (const Case& c : cases) {
    std::vector<db::Param> params;
    EXPECT_EQ(Sql(c.selector, params), c.sql) << c.selector;
    EXPECT_EQ(Show(params), Show(c.params)) << c.selector;
  }
}

TEST(DeviceSelectorToSql, TermsAreJoinedWithAndAndNumberingContinues) {
  std::vector<db::Param> params = {std::string("earlier"), int64_t{5}};
  std::string sql = Sql("site = \"a\" and labels.k != \"v\" AND sensor_rows > 2 AND running = \"m@1\"", params);
  EXPECT_EQ(sql,
            "(d.site = $3 AND d.labels->>$4 IS DISTINCT FROM $5 AND d.sensor_rows > $6::bigint AND "
            "(d.running_model = $7 AND d.running_version = $8))");
  const std::vector<db::Param> expected = {std::string("earlier"), int64_t{5}, std::string("a"),
                                           std::string("k"), std::string("v"), int64_t{2},
                                           std::string("m"), std::string("1")};
  EXPECT_EQ(Show(params), Show(expected));
  // Calling again appends again, numbering after what is there.
  std::vector<db::Param> more(9, nullptr);
  EXPECT_EQ(MustParse("site = \"x\"").ToSql(more), "(d.site = $10)");
  EXPECT_EQ(more.size(), 10u);
}

TEST(DeviceSelectorToSql, NoValueEverAppearsInTheSqlText) {
  const char* hostile = R"(x' OR '1'='1"; DROP TABLE devices; --)";
  std::string escaped;
  for (char c : std::string_view(hostile)) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  std::vector<db::Param> params;
  std::string sql = Sql("labels.owner = \"" + escaped + "\" AND site in (\"" + escaped +
                            "\", \"q'uote\") AND labels.a-b.c != \"" + escaped + "\"",
                        params);
  EXPECT_EQ(sql.find('\''), std::string::npos) << sql;
  EXPECT_EQ(sql.find("DROP"), std::string::npos) << sql;
  EXPECT_EQ(sql.find("owner"), std::string::npos) << sql;  // label keys are parameters too
  EXPECT_EQ(sql.find("a-b.c"), std::string::npos) << sql;
  EXPECT_EQ(sql.find("q'uote"), std::string::npos) << sql;
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(Show(params)[0], "s:" + std::string("owner"));
  EXPECT_EQ(Show(params)[1], "s:" + std::string(hostile));
  EXPECT_EQ(Show(params)[2], "s:" + std::string(hostile));
  EXPECT_EQ(Show(params)[3], "s:" + std::string("q'uote"));
  EXPECT_EQ(Show(params)[4], "s:" + std::string("a-b.c"));
  EXPECT_EQ(Show(params)[5], "s:" + std::string(hostile));
  // Every placeholder is used, $1..$6, and no other.
  for (int i = 1; i <= 6; ++i) {
    const std::string ph = "$" + std::to_string(i);
    size_t at = sql.find(ph);
    ASSERT_NE(at, std::string::npos) << ph;
    EXPECT_FALSE(at + ph.size() < sql.size() && std::isdigit(static_cast<unsigned char>(sql[at + ph.size()])));
  }
  EXPECT_EQ(sql.find("$7"), std::string::npos);
}

TEST(DeviceSelectorToSql, OneParameterPerListValue) {
  std::string values = "\"v0\"";
  for (int i = 1; i < 64; ++i) values += ", \"v" + std::to_string(i) + "\"";
  const std::string text = "labels.k in (" + values + ") AND site not in (" + values + ")";
  std::vector<db::Param> params;
  std::string sql = Sql(text, params);
  ASSERT_EQ(params.size(), 1u + 2u * 64u);
  EXPECT_EQ(Show(params)[0], "s:k");
  EXPECT_EQ(Show(params)[64], "s:v63");
  EXPECT_EQ(Show(params)[65], "s:v0");
  EXPECT_NE(sql.find("$129)"), std::string::npos);
  EXPECT_EQ(sql.find("$130"), std::string::npos);
}

}  // namespace
}  // namespace modelfleet::fleet
