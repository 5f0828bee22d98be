// ParseVersionFilter (server/registry/version_filter.h): the ListVersions filter language.
//
// Expected terms follow from the grammar in the header. For errors the header promises
// INVALID_ARGUMENT with field "filter", "saying what was expected at which column"; columns are
// 1-based. For each error the test works out by hand where the offending token is and accepts
// a column that points at that token or just past it (a parser may report either where the
// token starts or where it noticed the problem), never one outside it.
#include "registry/version_filter.h"

#include <gtest/gtest.h>

#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace modelfleet::registry {
namespace {

using Field = FilterTerm::Field;

std::vector<FilterTerm> MustParse(std::string_view filter) {
  auto terms = ParseVersionFilter(filter);
  EXPECT_TRUE(terms.has_value()) << "'" << filter << "': " << terms.error().ToString();
  return terms.value_or(std::vector<FilterTerm>{});
}

Status ParseError(std::string_view filter) {
  auto terms = ParseVersionFilter(filter);
  if (terms.has_value()) {
    return Status(StatusCode::kOk, "parsed into " + std::to_string(terms->size()) + " terms");
  }
  return terms.error();
}

// The column a message names ("... at column 12"), if any.
std::optional<int> ColumnIn(const std::string& message) {
  std::smatch m;
  static const std::regex kColumn("column ([0-9]+)");
  if (!std::regex_search(message, m, kColumn)) return std::nullopt;
  return std::stoi(m[1].str());
}

// INVALID_ARGUMENT, field "filter", the message contains `mentions`, and names a column in
// [first_column, last_column].
::testing::AssertionResult IsFilterError(std::string_view filter, const std::string& mentions,
                                         int first_column, int last_column) {
  Status s = ParseError(filter);
  if (s.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure()
           << "'" << filter << "': expected INVALID_ARGUMENT, got " << s.ToString();
  }
  if (s.field() != "filter") {
    return ::testing::AssertionFailure()
           << "'" << filter << "': field is '" << s.field() << "', not 'filter'";
  }
  if (s.message().find(mentions) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "'" << filter << "': message '" << s.message() << "' does not mention '" << mentions
           << "'";
  }
  std::optional<int> column = ColumnIn(s.message());
  if (!column) {
    return ::testing::AssertionFailure()
           << "'" << filter << "': message '" << s.message() << "' names no column";
  }
  if (*column < first_column || *column > last_column) {
    return ::testing::AssertionFailure()
           << "'" << filter << "': message '" << s.message() << "' names column " << *column
           << ", expected " << first_column << ".." << last_column;
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Valid filters

TEST(ParseVersionFilter, EmptyOrBlankFilterHasNoTerms) {
  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("   \t\n ").empty());
}

TEST(ParseVersionFilter, MetricTermWithEveryOperator) {
  struct Case {
    const char* filter;
    FilterOp op;
  };
  const Case cases[] = {
      {"metrics.accuracy = 0.9", FilterOp::kEq},  {"metrics.accuracy != 0.9", FilterOp::kNe},
      {"metrics.accuracy < 0.9", FilterOp::kLt},  {"metrics.accuracy <= 0.9", FilterOp::kLe},
      {"metrics.accuracy > 0.9", FilterOp::kGt},  {"metrics.accuracy >= 0.9", FilterOp::kGe},
  };
  for (const Case& c : cases) {
    auto terms = MustParse(c.filter);
    ASSERT_EQ(terms.size(), 1u) << c.filter;
    EXPECT_EQ(terms[0].field, Field::kMetric) << c.filter;
    EXPECT_EQ(terms[0].key, "accuracy") << c.filter;
    EXPECT_EQ(terms[0].op, c.op) << c.filter;
    EXPECT_EQ(terms[0].number, 0.9) << c.filter;
  }
}

TEST(ParseVersionFilter, OperatorsWithoutSurroundingSpace) {
  // Two-character operators must not be read as their one-character prefix.
  struct Case {
    const char* filter;
    FilterOp op;
  };
  const Case cases[] = {
      {"metrics.a=1", FilterOp::kEq}, {"metrics.a!=1", FilterOp::kNe}, {"metrics.a<1", FilterOp::kLt},
      {"metrics.a<=1", FilterOp::kLe}, {"metrics.a>1", FilterOp::kGt}, {"metrics.a>=1", FilterOp::kGe},
  };
  for (const Case& c : cases) {
    auto terms = MustParse(c.filter);
    ASSERT_EQ(terms.size(), 1u) << c.filter;
    EXPECT_EQ(terms[0].key, "a") << c.filter;
    EXPECT_EQ(terms[0].op, c.op) << c.filter;
    EXPECT_EQ(terms[0].number, 1.0) << c.filter;
  }
}

TEST(ParseVersionFilter, NumbersInDecimalAndExponentForm) {
  struct Case {
    const char* text;
    double value;
  };
  const Case cases[] = {{"0", 0.0},      {"42", 42.0},      {"-1.5", -1.5},  {"3.25", 3.25},
                        {"1e-3", 0.001}, {"2.5E2", 250.0},  {".5", 0.5},     {"-0.125", -0.125}};
  for (const Case& c : cases) {
    auto terms = MustParse(std::string("metrics.latency_ms < ") + c.text);
    ASSERT_EQ(terms.size(), 1u) << c.text;
    EXPECT_EQ(terms[0].number, c.value) << c.text;
  }
}

TEST(ParseVersionFilter, MetricKeysMayContainDotsDashesAndUnderscores) {
  auto terms = MustParse("metrics.top-1.acc_v2 >= 0.5");
  ASSERT_EQ(terms.size(), 1u);
  EXPECT_EQ(terms[0].key, "top-1.acc_v2");

  const std::string key64(64, 'k');
  auto longest = MustParse("metrics." + key64 + " > 0");
  ASSERT_EQ(longest.size(), 1u);
  EXPECT_EQ(longest[0].key, key64);
}

TEST(ParseVersionFilter, StringTermsForEveryStringField) {
  struct Case {
    const char* filter;
    Field field;
    const char* key;
    FilterOp op;
    const char* text;
  };
  const Case cases[] = {
      {R"(labels.hw = "rev3")", Field::kLabel, "hw", FilterOp::kEq, "rev3"},
      {R"(labels.hw != "rev3")", Field::kLabel, "hw", FilterOp::kNe, "rev3"},
      {R"(alias = "prod")", Field::kAlias, "", FilterOp::kEq, "prod"},
      {R"(alias != "canary")", Field::kAlias, "", FilterOp::kNe, "canary"},
      {R"(format = "torchscript-int8")", Field::kFormat, "", FilterOp::kEq, "torchscript-int8"},
      {R"(format != "onnx")", Field::kFormat, "", FilterOp::kNe, "onnx"},
      {R"(version = "1.2.3-rc.1+b5")", Field::kVersion, "", FilterOp::kEq, "1.2.3-rc.1+b5"},
      {R"(version != "1.0.0")", Field::kVersion, "", FilterOp::kNe, "1.0.0"},
      {R"(labels.note = "")", Field::kLabel, "note", FilterOp::kEq, ""},
      {R"(labels.note = "a AND b = 3")", Field::kLabel, "note", FilterOp::kEq, "a AND b = 3"},
  };
  for (const Case& c : cases) {
    auto terms = MustParse(c.filter);
    ASSERT_EQ(terms.size(), 1u) << c.filter;
    EXPECT_EQ(terms[0].field, c.field) << c.filter;
    EXPECT_EQ(terms[0].key, c.key) << c.filter;
    EXPECT_EQ(terms[0].op, c.op) << c.filter;
    EXPECT_EQ(terms[0].text, c.text) << c.filter;
  }
}

TEST(ParseVersionFilter, StateReadyOrArchived) {
  auto ready = MustParse("state = READY");
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].field, Field::kState);
  EXPECT_EQ(ready[0].op, FilterOp::kEq);
  EXPECT_EQ(ready[0].text, "READY");

  auto archived = MustParse("state != ARCHIVED");
  ASSERT_EQ(archived.size(), 1u);
  EXPECT_EQ(archived[0].field, Field::kState);
  EXPECT_EQ(archived[0].op, FilterOp::kNe);
  EXPECT_EQ(archived[0].text, "ARCHIVED");
}

TEST(ParseVersionFilter, StringEscapesAreOnlyQuoteAndBackslash) {
  // The filter text is: labels.note = "say \"hi\" \\ ok"
  auto terms = MustParse(R"(labels.note = "say \"hi\" \\ ok")");
  ASSERT_EQ(terms.size(), 1u);
  EXPECT_EQ(terms[0].text, R"(say "hi" \ ok)");

  // A string that is just an escaped backslash, followed by another term.
  auto two = MustParse(R"(labels.path = "\\" AND alias = "\"")");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].text, "\\");
  EXPECT_EQ(two[1].text, "\"");
}

TEST(ParseVersionFilter, AndIsCaseInsensitiveAndTermsKeepTheirOrder) {
  for (const char* conj : {"AND", "and", "And", "aNd"}) {
    const std::string filter = std::string("metrics.acc >= 0.9 ") + conj + R"( labels.hw = "rev3" )" +
                               conj + " state = READY";
    auto terms = MustParse(filter);
    ASSERT_EQ(terms.size(), 3u) << filter;
    EXPECT_EQ(terms[0].field, Field::kMetric);
    EXPECT_EQ(terms[1].field, Field::kLabel);
    EXPECT_EQ(terms[2].field, Field::kState);
  }
}

TEST(ParseVersionFilter, WhitespaceIsFlexible) {
  auto terms = MustParse("\t metrics.a>=1\n AND\tlabels.b=\"x y\"  AND alias  =  \"prod\"\n");
  ASSERT_EQ(terms.size(), 3u);
  EXPECT_EQ(terms[0].key, "a");
  EXPECT_EQ(terms[0].op, FilterOp::kGe);
  EXPECT_EQ(terms[0].number, 1.0);
  EXPECT_EQ(terms[1].key, "b");
  EXPECT_EQ(terms[1].text, "x y");  // spaces inside a string are kept
  EXPECT_EQ(terms[2].field, Field::kAlias);
  EXPECT_EQ(terms[2].text, "prod");
}

TEST(ParseVersionFilter, ExactlyTheLimitsAreAccepted) {
  // 32 terms.
  std::string filter = "metrics.m0 > 0";
  for (int i = 1; i < static_cast<int>(kMaxFilterTerms); ++i) {
    filter += " AND metrics.m" + std::to_string(i) + " > " + std::to_string(i);
  }
  auto terms = MustParse(filter);
  ASSERT_EQ(terms.size(), kMaxFilterTerms);
  EXPECT_EQ(terms.back().key, "m31");
  EXPECT_EQ(terms.back().number, 31.0);

  // 4096 bytes: `labels.x = "` is 12 bytes, the closing quote 1, so 4083 bytes of value.
  const std::string longest = R"(labels.x = ")" + std::string(kMaxFilterBytes - 13, 'v') + "\"";
  ASSERT_EQ(longest.size(), kMaxFilterBytes);
  auto one = MustParse(longest);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].text.size(), kMaxFilterBytes - 13);
}

TEST(FilterOpSql, UsesStandardSqlComparisonOperators) {
  // SQL's inequality operator is "<>" (ISO SQL; "!=" is only an extension).
  EXPECT_EQ(FilterOpSql(FilterOp::kEq), "=");
  EXPECT_EQ(FilterOpSql(FilterOp::kNe), "<>");
  EXPECT_EQ(FilterOpSql(FilterOp::kLt), "<");
  EXPECT_EQ(FilterOpSql(FilterOp::kLe), "<=");
  EXPECT_EQ(FilterOpSql(FilterOp::kGt), ">");
  EXPECT_EQ(FilterOpSql(FilterOp::kGe), ">=");
}

// ---------------------------------------------------------------------------------------------
// Errors. Column arithmetic is written next to each case.

TEST(ParseVersionFilterErrors, UnknownField) {
  // "foo" occupies columns 1-3.
  EXPECT_TRUE(IsFilterError("foo = 1", "foo", 1, 4));
  // "state = READY AND " is 18 characters, so "bogus" occupies columns 19-23.
  EXPECT_TRUE(IsFilterError("state = READY AND bogus = 1", "bogus", 19, 24));
  // Field names are lowercase in the grammar; "metrics" needs ".<key>".
  EXPECT_TRUE(IsFilterError("STATE = READY", "STATE", 1, 6));
  EXPECT_TRUE(IsFilterError("metrics = 1", "metrics", 1, 8));
  EXPECT_TRUE(IsFilterError("name = \"x\"", "name", 1, 5));
}

TEST(ParseVersionFilterErrors, MissingOrEmptyKey) {
  // "metrics." is columns 1-8; the missing key would start at column 9.
  EXPECT_TRUE(IsFilterError("metrics. > 1", "metrics.", 1, 9));
  EXPECT_TRUE(IsFilterError("labels. = \"x\"", "labels.", 1, 8));
  // A 65-character key: "metrics." + 65 = 73 characters, columns 1-73.
  EXPECT_TRUE(IsFilterError("metrics." + std::string(65, 'k') + " > 1", "key", 1, 74));
}

TEST(ParseVersionFilterErrors, MissingOperator) {
  // "metrics.acc" is columns 1-11, a space at 12, the operator was expected at column 13.
  EXPECT_TRUE(IsFilterError("metrics.acc 0.9", "operator", 12, 13));
  // "alias" columns 1-5, space, the string at 7.
  EXPECT_TRUE(IsFilterError(R"(alias "prod")", "operator", 6, 7));
  // Nothing at all after the field: expected at column 6 (end of input).
  EXPECT_TRUE(IsFilterError("state", "operator", 6, 6));
}

TEST(ParseVersionFilterErrors, UnterminatedString) {
  // `labels.hw = "rev3` : the quote is at column 13, the input ends after column 17.
  EXPECT_TRUE(IsFilterError(R"(labels.hw = "rev3)", "unterminated", 13, 18));
  // An escaped quote does not close the string: `alias = "a\"` (quote at column 9, ends at 12).
  EXPECT_TRUE(IsFilterError(R"(alias = "a\")", "unterminated", 9, 13));
}

TEST(ParseVersionFilterErrors, UnquotedOrBadlyEscapedString) {
  // `labels.hw = rev3`: the string was expected at column 13.
  EXPECT_TRUE(IsFilterError("labels.hw = rev3", "double-quoted", 13, 13));
  // `labels.hw = "a\nb"` with a literal backslash-n: '\' at column 15, 'n' at 16.
  EXPECT_TRUE(IsFilterError(R"(labels.hw = "a\nb")", "escape", 15, 17));
  // Single quotes are not string delimiters.
  EXPECT_TRUE(IsFilterError("format = 'onnx'", "double-quoted", 10, 10));
}

TEST(ParseVersionFilterErrors, MetricNeedsAFiniteNumber) {
  // `metrics.acc > high`: "high" starts at column 15.
  EXPECT_TRUE(IsFilterError("metrics.acc > high", "number", 15, 19));
  EXPECT_TRUE(IsFilterError(R"(metrics.acc > "0.9")", "number", 15, 20));
  EXPECT_TRUE(IsFilterError("metrics.acc >", "number", 14, 14));
  // "1-2" and "1e" are not numbers; 1e999 overflows a double; "inf"/"nan" are not finite.
  EXPECT_TRUE(IsFilterError("metrics.acc > 1-2", "number", 15, 18));
  EXPECT_TRUE(IsFilterError("metrics.acc > 1e", "number", 15, 17));
  EXPECT_TRUE(IsFilterError("metrics.acc > 1e999", "number", 15, 20));
  EXPECT_TRUE(IsFilterError("metrics.acc > inf", "number", 15, 18));
  EXPECT_TRUE(IsFilterError("metrics.acc > nan", "number", 15, 18));
}

TEST(ParseVersionFilterErrors, OrderingOperatorsOnlyForMetrics) {
  // `labels.hw < "rev3"`: the operator is column 11; the string starts at 13.
  EXPECT_TRUE(IsFilterError(R"(labels.hw < "rev3")", "labels.hw", 11, 12));
  EXPECT_TRUE(IsFilterError(R"(labels.hw >= "rev3")", "labels.hw", 11, 13));
  // `alias > "a"`: '>' at column 7.
  EXPECT_TRUE(IsFilterError(R"(alias > "a")", "alias", 7, 8));
  // `format <= "x"`: "<=" at columns 8-9.
  EXPECT_TRUE(IsFilterError(R"(format <= "x")", "format", 8, 10));
  // `version >= "1.0.0"`: ">=" at columns 9-10.
  EXPECT_TRUE(IsFilterError(R"(version >= "1.0.0")", "version", 9, 11));
  // `state < READY`: '<' at column 7.
  EXPECT_TRUE(IsFilterError("state < READY", "state", 7, 8));
}

TEST(ParseVersionFilterErrors, StateMustBeReadyOrArchived) {
  // `state = ready`: the value is columns 9-13 (READY is upper case in the grammar).
  EXPECT_TRUE(IsFilterError("state = ready", "READY", 9, 14));
  // `state = DELETED`: columns 9-15.
  EXPECT_TRUE(IsFilterError("state = DELETED", "READY", 9, 16));
  // `state = VERSION_STATE_READY`: columns 9-27.
  EXPECT_TRUE(IsFilterError("state = VERSION_STATE_READY", "READY", 9, 28));
  // Nothing after the operator: column 8 is the end of input.
  EXPECT_TRUE(IsFilterError("state =", "READY", 8, 8));
}

TEST(ParseVersionFilterErrors, TermsMustBeJoinedByAnd) {
  // "state = READY " is 14 characters; the second "state" is columns 15-19.
  EXPECT_TRUE(IsFilterError("state = READY state = ARCHIVED", "AND", 15, 20));
  // "OR" is not part of the language: columns 15-16.
  EXPECT_TRUE(IsFilterError("state = READY OR state = ARCHIVED", "AND", 15, 17));
  // A trailing AND needs another term: "state = READY AND" is 17 characters.
  EXPECT_TRUE(IsFilterError("state = READY AND", "field", 18, 18));
  // "ANDY" is not AND: columns 15-18.
  EXPECT_TRUE(IsFilterError("state = READY ANDY alias = \"x\"", "AND", 15, 19));
  // A leading AND is read where a field is expected: unknown field 'AND' at columns 1-3.
  EXPECT_TRUE(IsFilterError("AND state = READY", "AND", 1, 4));
}

TEST(ParseVersionFilterErrors, TooManyTerms) {
  std::string filter = "metrics.m0 > 0";
  for (int i = 1; i <= static_cast<int>(kMaxFilterTerms); ++i) {
    filter += " AND metrics.m" + std::to_string(i) + " > 0";
  }
  Status s = ParseError(filter);  // 33 terms
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(s.field(), "filter");
  EXPECT_NE(s.message().find(std::to_string(kMaxFilterTerms)), std::string::npos) << s.message();
}

// Regression: server/registry/version_filter.cc, FilterParser::Parse, the `terms.size() >
// kMaxFilterTerms` branch returns "filter: has more than 32 terms" without a column, although
// version_filter.h says errors say "at which column"; every other syntax error does. The
// natural column is the start of the 33rd term.
TEST(ParseVersionFilterErrors, TooManyTermsNamesTheColumnOfTheFirstExtraTerm) {
  // Term i (i >= 1) is preceded by " AND "; "metrics.m0 > 0" is 14 characters and each of
  // " AND metrics.mI > 0" for I = 1..9 is 19, for I = 10..31 is 20. The 33rd term (I = 32)
  // starts after 14 + 9 * 19 + 22 * 20 + 5 = 630 characters, i.e. at column 631.
  std::string filter = "metrics.m0 > 0";
  for (int i = 1; i <= static_cast<int>(kMaxFilterTerms); ++i) {
    filter += " AND metrics.m" + std::to_string(i) + " > 0";
  }
  EXPECT_TRUE(IsFilterError(filter, "32", 631, 631 + 14));
}

TEST(ParseVersionFilterErrors, TooLong) {
  // One byte over the limit, otherwise valid (see ExactlyTheLimitsAreAccepted).
  const std::string filter = R"(labels.x = ")" + std::string(kMaxFilterBytes - 12, 'v') + "\"";
  ASSERT_EQ(filter.size(), kMaxFilterBytes + 1);
  Status s = ParseError(filter);
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(s.field(), "filter");
  EXPECT_NE(s.message().find(std::to_string(kMaxFilterBytes)), std::string::npos) << s.message();
}

}  // namespace
}  // namespace modelfleet::registry
