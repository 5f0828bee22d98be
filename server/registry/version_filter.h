// The ListVersions filter language, parsed into terms (no SQL here; the store compiles terms
// into SQL with bound parameters).
//
//   filter := term { AND term }            (AND in any case; empty filter = no terms)
//   term   := metrics.<key> op number
//           | labels.<key> (= | !=) "string"
//           | alias (= | !=) "string"
//           | format (= | !=) "string"
//           | version (= | !=) "string"
//           | state (= | !=) (READY | ARCHIVED)
//   op     := = | != | < | <= | > | >=
//   key    := [A-Za-z0-9._-]{1,64}
//   string := double-quoted; \" and \\ are the only escapes
// Errors: INVALID_ARGUMENT with field "filter", saying what was expected at which column.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::registry {

enum class FilterOp { kEq, kNe, kLt, kLe, kGt, kGe };
std::string_view FilterOpSql(FilterOp op);

struct FilterTerm {
  enum class Field { kMetric, kLabel, kAlias, kFormat, kVersion, kState };
  Field field;
  std::string key;      // metric or label key
  FilterOp op;
  std::string text;     // string operand (labels, alias, format, version, state)
  double number = 0;    // numeric operand (metrics)
};

inline constexpr size_t kMaxFilterBytes = 4096;
inline constexpr size_t kMaxFilterTerms = 32;

Expected<std::vector<FilterTerm>> ParseVersionFilter(std::string_view filter);

}  // namespace modelfleet::registry
