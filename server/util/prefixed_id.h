// Public ids of database rows: a short prefix and the row's number ("ro-12", "dep-7"), so an
// id says what it names and a rollout id is never taken for a deployment id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "modelfleet/numbers.h"
#include "modelfleet/status.h"

namespace modelfleet::util {

// "ro-" + 12 -> "ro-12".
inline std::string FormatPrefixedId(std::string_view prefix, int64_t row_id) {
  return std::string(prefix) + std::to_string(row_id);
}

// The row number of `id` ("<prefix><positive decimal>", no sign, no leading zeros' tricks
// beyond what ParseNumber accepts). INVALID_ARGUMENT naming `field` and `what` otherwise.
inline Expected<int64_t> ParsePrefixedId(std::string_view id, std::string_view prefix, std::string_view field,
                                         std::string_view what) {
  auto invalid = [&] {
    return Fail(InvalidArgument(std::string(field), "'" + std::string(id.substr(0, 64)) + "' is not a " +
                                                        std::string(what) + " id (" + std::string(prefix) +
                                                        "<number>)"));
  };
  if (!id.starts_with(prefix)) return invalid();
  const std::string_view digits = id.substr(prefix.size());
  if (digits.empty() || digits.size() > 19 || digits.front() < '1' || digits.front() > '9') return invalid();
  const std::optional<int64_t> value = ParseNumber<int64_t>(digits);
  if (!value || *value <= 0) return invalid();
  return *value;
}

}  // namespace modelfleet::util
