#include "cli/format.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace modelfleet::cli {

namespace {

// Drops the fraction's trailing zeros (and a bare '.') of a fixed or scientific number.
std::string StripTrailingZeros(std::string text) {
  const size_t dot = text.find('.');
  if (dot == std::string::npos) return text;
  const size_t exp = text.find('e');
  std::string mantissa = text.substr(0, exp), exponent = exp == std::string::npos ? "" : text.substr(exp);
  while (mantissa.back() == '0') mantissa.pop_back();
  if (mantissa.back() == '.') mantissa.pop_back();
  return mantissa + exponent;
}

}  // namespace

std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0) return "0";  // also -0
  char buf[64];
  // Rounded to the significant digits first: the exponent *after* rounding picks the form, so
  // 999.6 is "1000" and 9.9996 is "10.0", never "10.00".
  std::snprintf(buf, sizeof buf, "%.*e", kSignificantDigits - 1, v);
  const int exponent = std::atoi(std::strchr(buf, 'e') + 1);
  std::string text;
  if (exponent >= 15 || exponent < -4) {
    text = buf;
  } else if (exponent >= kSignificantDigits) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    text = buf;
  } else {
    // Same decimal position as the %e rounding above, so both round alike.
    std::snprintf(buf, sizeof buf, "%.*f", kSignificantDigits - 1 - exponent, v);
    text = buf;
  }
  // Trailing zeros carry information only if the value was rounded.
  if (std::strtod(text.c_str(), nullptr) == v) text = StripTrailingZeros(std::move(text));
  return text;
}

std::string FormatMilliseconds(double ms) { return FormatNumber(ms) + " ms"; }

std::string FormatSeconds(double s) { return FormatNumber(s) + " s"; }

std::string FormatBytes(double bytes) {
  if (!std::isfinite(bytes)) return FormatNumber(bytes) + " B";
  if (bytes < 0) return "-" + FormatBytes(-bytes);
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  constexpr size_t kLast = sizeof kUnits / sizeof kUnits[0] - 1;
  size_t unit = 0;
  // 1023.5 and up would print as "1024": the next unit reads better.
  while (bytes >= 1023.5 && unit < kLast) {
    bytes /= 1024;
    ++unit;
  }
  return FormatNumber(bytes) + " " + kUnits[unit];
}

std::string FormatPercent(double percent) { return FormatNumber(percent) + "%"; }

std::string FormatMetric(std::string_view name, double v) {
  std::string word;
  bool ms = false, bytes = false, seconds = false, percent = false;
  auto take = [&] {
    ms |= word == "ms";
    bytes |= word == "bytes";
    seconds |= word == "seconds" || word == "s";
    percent |= word == "percent" || word == "pct";
    word.clear();
  };
  for (char c : name) {
    if (c == '_' || c == '.' || c == '-') {
      take();
    } else {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  take();
  if (ms) return FormatMilliseconds(v);
  if (bytes) return FormatBytes(v);
  if (seconds) return FormatSeconds(v);
  if (percent) return FormatPercent(v);
  return FormatNumber(v);
}

size_t DisplayWidth(std::string_view utf8) {
  size_t width = 0;
  for (char c : utf8) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // not a continuation byte
  return width;
}

std::string Ellipsize(std::string_view utf8, size_t width) {
  if (DisplayWidth(utf8) <= width) return std::string(utf8);
  // width - 1 code points, then the ellipsis.
  size_t kept = 0, end = 0;
  for (; end < utf8.size(); ++end) {
    if ((static_cast<unsigned char>(utf8[end]) & 0xC0) == 0x80) continue;
    if (kept == width - 1) break;
    ++kept;
  }
  return std::string(utf8.substr(0, end)) + "\u2026";
}

}  // namespace modelfleet::cli
