// The one parser for numbers that arrive as text (flags, config files, page tokens, ids, test
// hooks): the whole text must be the number, in the C locale, with nothing around it.
// std::from_chars underneath: no exceptions, no locale, no silent truncation ("12abc", "",
// " 1", "1e400" and out-of-range values are all refused). Thread-safe.
#pragma once

#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace modelfleet {

// The value of `text` if all of it is one number of type T (an integer type, or double:
// decimal or exponent form, finite only); nullopt otherwise.
template <typename T>
std::optional<T> ParseNumber(std::string_view text) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  T value{};
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return std::nullopt;
  }
  return value;
}

}  // namespace modelfleet
