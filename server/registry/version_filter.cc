#include "registry/version_filter.h"

#include "util/filter_lexer.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

namespace modelfleet::registry {

std::string_view FilterOpSql(FilterOp op) {
  switch (op) {
    case FilterOp::kEq: return "=";
    case FilterOp::kNe: return "<>";
    case FilterOp::kLt: return "<";
    case FilterOp::kLe: return "<=";
    case FilterOp::kGt: return ">";
    case FilterOp::kGe: return ">=";
  }
  return "=";
}

namespace {

class FilterParser : private FilterLexer {
 public:
  explicit FilterParser(std::string_view input) : FilterLexer(input, "filter") {}

  Expected<std::vector<FilterTerm>> Parse() {
    std::vector<FilterTerm> terms;
    SkipSpace();
    if (AtEnd()) return terms;
    while (true) {
      SkipSpace();
      if (terms.size() == kMaxFilterTerms) {
        return Error("has more than " + std::to_string(kMaxFilterTerms) + " terms; the next one starts");
      }
      MF_ASSIGN_OR_RETURN(FilterTerm term, ParseTerm());
      terms.push_back(std::move(term));
      SkipSpace();
      if (AtEnd()) return terms;
      if (!EqualsIgnoreCase(Word(), "AND")) {
        return Error("expected AND or the end of the filter");
      }
    }
  }

 private:
  Expected<FilterOp> ParseOp() {
    SkipSpace();
    auto take = [&](std::string_view s, FilterOp op) -> std::optional<FilterOp> {
      if (in_.substr(pos_, s.size()) == s) {
        pos_ += s.size();
        return op;
      }
      return std::nullopt;
    };
    for (auto [s, op] : {std::pair{"!=", FilterOp::kNe}, {"<=", FilterOp::kLe}, {">=", FilterOp::kGe},
                         {"=", FilterOp::kEq}, {"<", FilterOp::kLt}, {">", FilterOp::kGt}}) {
      if (auto r = take(s, op)) return *r;
    }
    return Error("expected an operator (=, !=, <, <=, >, >=)");
  }

  Expected<double> ParseNumber() {
    SkipSpace();
    size_t start = pos_;
    while (!AtEnd() && (std::isdigit(static_cast<unsigned char>(in_[pos_])) || in_[pos_] == '.' ||
                        in_[pos_] == '-' || in_[pos_] == '+' || in_[pos_] == 'e' || in_[pos_] == 'E')) {
      ++pos_;
    }
    double v = 0;
    auto r = std::from_chars(in_.data() + start, in_.data() + pos_, v);
    if (start == pos_ || r.ec != std::errc() || r.ptr != in_.data() + pos_ || !std::isfinite(v)) {
      pos_ = start;
      return Error("expected a number");
    }
    return v;
  }

  Expected<FilterTerm> ParseTerm() {
    SkipSpace();
    size_t start = pos_;
    std::string field(Word());
    if (field.empty()) return Error("expected a field (metrics.<key>, labels.<key>, alias, format, version, state)");
    FilterTerm term{};
    auto keyed = [&](std::string_view prefix, FilterTerm::Field f) -> bool {
      if (!field.starts_with(prefix)) return false;
      term.field = f;
      term.key = field.substr(prefix.size());
      return true;
    };
    if (keyed("metrics.", FilterTerm::Field::kMetric) || keyed("labels.", FilterTerm::Field::kLabel)) {
      if (term.key.empty() || term.key.size() > 64) {
        pos_ = start;
        return Error("expected a key of 1 to 64 characters after '" + field + "'");
      }
    } else if (field == "alias") {
      term.field = FilterTerm::Field::kAlias;
    } else if (field == "format") {
      term.field = FilterTerm::Field::kFormat;
    } else if (field == "version") {
      term.field = FilterTerm::Field::kVersion;
    } else if (field == "state") {
      term.field = FilterTerm::Field::kState;
    } else {
      pos_ = start;
      return Error("unknown field '" + field + "'");
    }
    MF_ASSIGN_OR_RETURN(term.op, ParseOp());
    if (term.field == FilterTerm::Field::kMetric) {
      MF_ASSIGN_OR_RETURN(term.number, ParseNumber());
      return term;
    }
    if (term.op != FilterOp::kEq && term.op != FilterOp::kNe) {
      return Error("'" + field + "' can only be compared with = or !=");
    }
    if (term.field == FilterTerm::Field::kState) {
      SkipSpace();
      bool quoted = !AtEnd() && in_[pos_] == '"';
      std::string value;
      if (quoted) {
        MF_ASSIGN_OR_RETURN(value, QuotedString("a double-quoted string"));
      } else {
        value = std::string(Word());
      }
      if (value != "READY" && value != "ARCHIVED") return Error("state must be READY or ARCHIVED");
      term.text = value;
      return term;
    }
    MF_ASSIGN_OR_RETURN(term.text, QuotedString("a double-quoted string"));
    return term;
  }

};

}  // namespace

Expected<std::vector<FilterTerm>> ParseVersionFilter(std::string_view filter) {
  if (filter.size() > kMaxFilterBytes) {
    return Fail(InvalidArgument("filter", "is longer than " + std::to_string(kMaxFilterBytes) + " bytes"));
  }
  return FilterParser(filter).Parse();
}

}  // namespace modelfleet::registry
