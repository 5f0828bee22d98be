#include "fleet/device_selector.h"

#include "util/filter_lexer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>
#include <utility>

#include "modelfleet/validation.h"

namespace modelfleet::fleet {

namespace {

using Field = DeviceSelector::Field;
using Op = DeviceSelector::Op;
using Term = DeviceSelector::Term;

constexpr std::array<std::string_view, 5> kAdmissions = {"PREAUTHORIZED", "PENDING", "ACCEPTED",
                                                         "REJECTED", "DECOMMISSIONED"};
constexpr std::array<std::string_view, 10> kSteps = {
    "ASSIGNED",  "DOWNLOADING", "VERIFYING",   "INSTALLING", "SELF_TESTING",
    "ACTIVATED", "FAILED",      "ROLLED_BACK", "TIMED_OUT",  "CANCELLED"};

constexpr std::string_view kFieldList =
    "site, hardware_revision, hw_rev, firmware_version, firmware, labels.<key>, sensor_rows, "
    "sensor_cols";
constexpr std::string_view kFilterOnlyFieldList = "admission, offline_for, running, deployment_step";

bool IsFilterOnly(Field f) {
  return f == Field::kAdmission || f == Field::kOfflineFor || f == Field::kRunning ||
         f == Field::kDeploymentStep;
}
bool IsNumeric(Field f) {
  return f == Field::kSensorRows || f == Field::kSensorCols || f == Field::kOfflineFor;
}


std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string JoinNames(const auto& names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

class SelectorParser : private FilterLexer {
 public:
  SelectorParser(std::string_view input, SelectorKind kind, const std::string& field)
      : FilterLexer(input, field), kind_(kind) {}

  Expected<std::vector<Term>> Parse() {
    std::vector<Term> terms;
    while (true) {
      SkipSpace();
      if (terms.size() == kMaxSelectorTerms) {
        return Error("has more than " + std::to_string(kMaxSelectorTerms) +
                     " terms; the next one starts");
      }
      MF_ASSIGN_OR_RETURN(Term term, ParseTerm());
      terms.push_back(std::move(term));
      SkipSpace();
      if (AtEnd()) return terms;
      size_t start = pos_;
      std::string_view word = Word();
      if (!EqualsIgnoreCase(word, "AND")) {
        pos_ = start;
        return Error("expected AND or the end of the " + field_);
      }
    }
  }

 private:
  // = != < <= > >= in, not in. Leaves pos_ at the operator on failure.
  Expected<Op> ParseOp(std::string_view name) {
    SkipSpace();
    size_t start = pos_;
    if (!AtEnd() && IsWordChar(in_[pos_])) {
      std::string_view w = Word();
      if (EqualsIgnoreCase(w, "in")) return Op::kIn;
      if (EqualsIgnoreCase(w, "not")) {
        size_t in_start = (SkipSpace(), pos_);
        if (EqualsIgnoreCase(Word(), "in")) return Op::kNotIn;
        pos_ = in_start;
        return Error("expected IN after NOT for '" + std::string(name) + "'");
      }
      pos_ = start;
    } else {
      for (auto [s, op] : {std::pair{"!=", Op::kNe}, {"<=", Op::kLe}, {">=", Op::kGe},
                           {"=", Op::kEq}, {"<", Op::kLt}, {">", Op::kGt}}) {
        std::string_view sv(s);
        if (in_.substr(pos_, sv.size()) == sv) {
          pos_ += sv.size();
          return op;
        }
      }
    }
    return Error("expected an operator (=, !=, <, <=, >, >=, in, not in) after '" + std::string(name) + "'");
  }

  // -?[0-9]+ not followed by a word character, fitting in int64.
  Expected<int64_t> ParseInteger(std::string_view name) {
    SkipSpace();
    size_t start = pos_;
    while (!AtEnd() && IsWordChar(in_[pos_])) ++pos_;
    int64_t v = 0;
    auto r = std::from_chars(in_.data() + start, in_.data() + pos_, v);
    if (start == pos_ || r.ec != std::errc() || r.ptr != in_.data() + pos_) {
      pos_ = start;
      return Error("'" + std::string(name) + "' expects an integer");
    }
    return v;
  }

  // A value of a string field: a quoted string, or (bare_integer) a bare [0-9]+, or (names) a
  // bare or quoted name from `names`, returned upper case.
  Expected<std::string> ParseValue(const Term& term, std::string_view name) {
    SkipSpace();
    size_t start = pos_;
    if (term.field == Field::kAdmission || term.field == Field::kDeploymentStep) {
      std::string value;
      if (!AtEnd() && in_[pos_] == '"') {
        MF_ASSIGN_OR_RETURN(value, QuotedString("a name"));
      } else {
        value = std::string(Word());
      }
      value = Upper(value);
      bool known = term.field == Field::kAdmission
                       ? std::find(kAdmissions.begin(), kAdmissions.end(), value) != kAdmissions.end()
                       : std::find(kSteps.begin(), kSteps.end(), value) != kSteps.end();
      if (!known) {
        pos_ = start;
        return Error("'" + std::string(name) + "' expects one of " +
                     (term.field == Field::kAdmission ? JoinNames(kAdmissions) : JoinNames(kSteps)));
      }
      return value;
    }
    if (term.field == Field::kHardwareRevision && !AtEnd() && in_[pos_] != '"') {
      std::string_view w = Word();
      if (w.empty() || !std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        pos_ = start;
        return Error("'" + std::string(name) + "' expects a double-quoted string or an integer");
      }
      return std::string(w);
    }
    return QuotedString("a double-quoted string for '" + std::string(name) + "'");
  }

  Expected<Term> ParseTerm() {
    SkipSpace();
    size_t start = pos_;
    std::string_view name = Word();
    if (name.empty()) {
      if (!AtEnd() && in_[pos_] == '*') {
        return Error("'*' must be the whole " + field_ + "; expected a field");
      }
      return Error("expected a field (" + std::string(kFieldList) + ")");
    }
    Term term{};
    if (name.starts_with("labels.")) {
      term.field = Field::kLabel;
      term.key = std::string(name.substr(7));
      if (term.key.empty() || term.key.size() > 64) {
        pos_ = start;
        return Error("expected a key of 1 to 64 characters [A-Za-z0-9._-] after 'labels.'");
      }
    } else if (name == "site") {
      term.field = Field::kSite;
    } else if (name == "hardware_revision" || name == "hw_rev") {
      term.field = Field::kHardwareRevision;
    } else if (name == "firmware_version" || name == "firmware") {
      term.field = Field::kFirmwareVersion;
    } else if (name == "sensor_rows") {
      term.field = Field::kSensorRows;
    } else if (name == "sensor_cols") {
      term.field = Field::kSensorCols;
    } else if (name == "admission") {
      term.field = Field::kAdmission;
    } else if (name == "offline_for") {
      term.field = Field::kOfflineFor;
    } else if (name == "running") {
      term.field = Field::kRunning;
    } else if (name == "deployment_step") {
      term.field = Field::kDeploymentStep;
    } else {
      pos_ = start;
      std::string expected(kFieldList);
      if (kind_ == SelectorKind::kDeviceFilter) expected += ", " + std::string(kFilterOnlyFieldList);
      return Error("unknown field '" + std::string(name) + "' (expected " + expected + ")");
    }
    if (IsFilterOnly(term.field) && kind_ != SelectorKind::kDeviceFilter) {
      pos_ = start;
      return Error("'" + std::string(name) +
                   "' is only allowed in ListDevices filters, not in rollout targets");
    }

    size_t op_start = (SkipSpace(), pos_);
    MF_ASSIGN_OR_RETURN(term.op, ParseOp(name));

    if (IsNumeric(term.field)) {
      if (term.op == Op::kIn || term.op == Op::kNotIn) {
        pos_ = op_start;
        return Error("'" + std::string(name) + "' expects an operator (=, !=, <, <=, >, >=), not a list");
      }
      if (term.field == Field::kOfflineFor && (term.op == Op::kEq || term.op == Op::kNe)) {
        pos_ = op_start;
        return Error("'offline_for' can only be compared with <, <=, > or >=");
      }
      size_t number_start = (SkipSpace(), pos_);
      MF_ASSIGN_OR_RETURN(term.number, ParseInteger(name));
      if (term.field == Field::kOfflineFor && (term.number < 0 || term.number > kMaxOfflineForSeconds)) {
        pos_ = number_start;
        return Error("'offline_for' expects seconds from 0 to " + std::to_string(kMaxOfflineForSeconds));
      }
      return term;
    }

    if (term.op != Op::kEq && term.op != Op::kNe && term.op != Op::kIn && term.op != Op::kNotIn) {
      pos_ = op_start;
      return Error("'" + std::string(name) + "' can only be compared with =, !=, in or not in");
    }

    if (term.field == Field::kRunning) {
      if (term.op != Op::kEq && term.op != Op::kNe) {
        pos_ = op_start;
        return Error("'running' can only be compared with = or !=");
      }
      size_t value_start = (SkipSpace(), pos_);
      MF_ASSIGN_OR_RETURN(std::string value, QuotedString("a double-quoted \"model@version\" for 'running'"));
      size_t at = value.find('@');
      if (at == std::string::npos || at == 0 || at + 1 == value.size() ||
          value.find('@', at + 1) != std::string::npos) {
        pos_ = value_start;
        return Error("'running' expects \"model@version\"");
      }
      term.values = {value.substr(0, at), value.substr(at + 1)};
      return term;
    }

    if (term.op == Op::kEq || term.op == Op::kNe) {
      MF_ASSIGN_OR_RETURN(std::string value, ParseValue(term, name));
      term.values.push_back(std::move(value));
      return term;
    }

    // in-list
    SkipSpace();
    if (AtEnd() || in_[pos_] != '(') return Error("expected '(' after in");
    ++pos_;
    SkipSpace();
    if (!AtEnd() && in_[pos_] == ')') return Error("expected at least one value in the list");
    while (true) {
      SkipSpace();
      if (term.values.size() == kMaxSelectorListValues) {
        return Error("has more than " + std::to_string(kMaxSelectorListValues) +
                     " values in a list; the next one starts");
      }
      MF_ASSIGN_OR_RETURN(std::string value, ParseValue(term, name));
      term.values.push_back(std::move(value));
      SkipSpace();
      if (AtEnd()) return Error("expected ',' or ')' (missing closing parenthesis)");
      if (in_[pos_] == ')') {
        ++pos_;
        return term;
      }
      if (in_[pos_] != ',') return Error("expected ',' or ')' in the list");
      ++pos_;
    }
  }

  SelectorKind kind_;
};

bool Contains(const std::vector<std::string>& values, const std::string& v) {
  for (const std::string& x : values) {
    if (x == v) return true;
  }
  return false;
}

// = != in, not in on a value the device has.
bool MatchString(const Term& t, const std::string& v) {
  switch (t.op) {
    case Op::kEq: return v == t.values[0];
    case Op::kNe: return v != t.values[0];
    case Op::kIn: return Contains(t.values, v);
    case Op::kNotIn: return !Contains(t.values, v);
    default: return false;
  }
}

bool MatchNumber(Op op, int64_t v, int64_t n) {
  switch (op) {
    case Op::kEq: return v == n;
    case Op::kNe: return v != n;
    case Op::kLt: return v < n;
    case Op::kLe: return v <= n;
    case Op::kGt: return v > n;
    case Op::kGe: return v >= n;
    default: return false;
  }
}

bool MatchTerm(const Term& t, const v1::DeviceAttributes& a) {
  switch (t.field) {
    case Field::kSite: return MatchString(t, a.site());
    case Field::kHardwareRevision: return MatchString(t, a.hardware_revision());
    case Field::kFirmwareVersion: return MatchString(t, a.firmware_version());
    case Field::kSensorRows: return MatchNumber(t.op, a.sensor_rows(), t.number);
    case Field::kSensorCols: return MatchNumber(t.op, a.sensor_cols(), t.number);
    case Field::kLabel: {
      auto it = a.labels().find(t.key);
      if (it == a.labels().end()) return t.op == Op::kNe || t.op == Op::kNotIn;
      return MatchString(t, it->second);
    }
    case Field::kAdmission:
    case Field::kOfflineFor:
    case Field::kRunning:
    case Field::kDeploymentStep:
      return false;  // not decidable from attributes
  }
  return false;
}

std::string_view OpSql(Op op) {
  switch (op) {
    case Op::kEq: return "=";
    case Op::kNe: return "<>";
    case Op::kLt: return "<";
    case Op::kLe: return "<=";
    case Op::kGt: return ">";
    case Op::kGe: return ">=";
    case Op::kIn: return "IN";
    case Op::kNotIn: return "NOT IN";
  }
  return "=";
}

class SqlBuilder {
 public:
  explicit SqlBuilder(std::vector<db::Param>& params) : params_(params) {}

  std::string Bind(db::Param p) {
    params_.push_back(std::move(p));
    return "$" + std::to_string(params_.size());
  }
  // "($1, $2, ...)"
  std::string BindList(const std::vector<std::string>& values) {
    std::string out = "(";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out += ", ";
      out += Bind(values[i]);
    }
    return out + ")";
  }

  // A comparison of `lhs`, which is never NULL.
  std::string Plain(const std::string& lhs, const Term& t) {
    if (t.op == Op::kIn || t.op == Op::kNotIn) return lhs + " " + std::string(OpSql(t.op)) + " " + BindList(t.values);
    return lhs + " " + std::string(OpSql(t.op)) + " " + Bind(t.values[0]);
  }
  // A comparison of `lhs`, which is NULL when the device has no value: = and in are FALSE,
  // != and not in TRUE then.
  std::string Nullable(const std::string& lhs, const Term& t) {
    switch (t.op) {
      case Op::kEq: return "COALESCE(" + lhs + " = " + Bind(t.values[0]) + ", FALSE)";
      case Op::kNe: return lhs + " IS DISTINCT FROM " + Bind(t.values[0]);
      case Op::kIn: return "COALESCE(" + lhs + " IN " + BindList(t.values) + ", FALSE)";
      case Op::kNotIn: return "COALESCE(" + lhs + " NOT IN " + BindList(t.values) + ", TRUE)";
      default: return "FALSE";
    }
  }

  std::string TermSql(const Term& t) {
    switch (t.field) {
      case Field::kSite: return Plain("d.site", t);
      case Field::kHardwareRevision: return Plain("d.hardware_revision", t);
      case Field::kFirmwareVersion: return Plain("d.firmware_version", t);
      case Field::kAdmission: return Plain("d.admission", t);
      case Field::kSensorRows:
        return "d.sensor_rows " + std::string(OpSql(t.op)) + " " + Bind(t.number) + "::bigint";
      case Field::kSensorCols:
        return "d.sensor_cols " + std::string(OpSql(t.op)) + " " + Bind(t.number) + "::bigint";
      case Field::kLabel: {
        std::string key = Bind(t.key);
        return Nullable("d.labels->>" + key, t);
      }
      case Field::kDeploymentStep:
        return Nullable(
            "(SELECT dep.step FROM deployments dep WHERE dep.device_id = d.id ORDER BY dep.id DESC LIMIT 1)", t);
      case Field::kRunning: {
        std::string model = Bind(t.values[0]);
        std::string version = Bind(t.values[1]);
        std::string eq = "d.running_model = " + model + " AND d.running_version = " + version;
        return t.op == Op::kEq ? "(" + eq + ")" : "NOT (" + eq + ")";
      }
      case Field::kOfflineFor: {
        std::string cutoff = "now() - make_interval(secs => " + Bind(t.number) + ")";
        switch (t.op) {
          case Op::kGt: return "(d.last_seen IS NULL OR d.last_seen < " + cutoff + ")";
          case Op::kGe: return "(d.last_seen IS NULL OR d.last_seen <= " + cutoff + ")";
          case Op::kLt: return "(d.last_seen IS NOT NULL AND d.last_seen > " + cutoff + ")";
          case Op::kLe: return "(d.last_seen IS NOT NULL AND d.last_seen >= " + cutoff + ")";
          default: return "FALSE";
        }
      }
    }
    return "FALSE";
  }

 private:
  std::vector<db::Param>& params_;
};

}  // namespace

Expected<DeviceSelector> DeviceSelector::Parse(std::string_view text, SelectorKind kind,
                                               const std::string& field) {
  if (text.size() > kMaxSelectorBytes) {
    return Fail(InvalidArgument(field, "is longer than " + std::to_string(kMaxSelectorBytes) + " bytes"));
  }
  if (text.find('\0') != std::string_view::npos) {
    return Fail(InvalidArgument(field, "contains a NUL byte at column " +
                                           std::to_string(text.find('\0') + 1)));
  }
  if (!IsValidUtf8(text)) return Fail(InvalidArgument(field, "is not valid UTF-8"));
  size_t first = 0;
  while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first]))) ++first;
  if (first == text.size()) return Fail(InvalidArgument(field, "is empty; use \"*\" for every device"));

  DeviceSelector s;
  s.text_ = std::string(text);
  size_t last = text.size();
  while (std::isspace(static_cast<unsigned char>(text[last - 1]))) --last;
  if (text.substr(first, last - first) == "*") {
    s.everything_ = true;
    return s;
  }
  MF_ASSIGN_OR_RETURN(s.terms_, SelectorParser(text, kind, field).Parse());
  return s;
}

bool DeviceSelector::Matches(const v1::DeviceAttributes& attributes) const {
  if (everything_) return true;
  if (terms_.empty()) return false;  // default-constructed
  for (const Term& t : terms_) {
    if (!MatchTerm(t, attributes)) return false;
  }
  return true;
}

std::string DeviceSelector::ToSql(std::vector<db::Param>& params) const {
  if (everything_) return "TRUE";
  if (terms_.empty()) return "FALSE";  // default-constructed
  SqlBuilder b(params);
  std::string sql = "(";
  for (size_t i = 0; i < terms_.size(); ++i) {
    if (i > 0) sql += " AND ";
    sql += b.TermSql(terms_[i]);
  }
  return sql + ")";
}

}  // namespace modelfleet::fleet
