// Minimal JSON writing for the few places that hand JSON to PostgreSQL (jsonb columns and
// jsonb_to_recordset batches). Reading JSON is never needed on this side.
#pragma once

#include <charconv>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>

namespace modelfleet {

// A JSON string literal for `s`, quotes included; control characters escaped as \u00XX.
inline std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// A finite double as a JSON number (shortest round-trip form).
inline std::string JsonNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// {"k": "v", ...} from any map-like of string -> string.
template <typename Map>
std::string JsonStringObject(const Map& map) {
  std::string out = "{";
  for (const auto& [k, v] : map) {
    if (out.size() > 1) out += ",";
    out += JsonString(k) + ":" + JsonString(v);
  }
  return out + "}";
}

// {"k": number, ...} from any map-like of string -> arithmetic.
template <typename Map>
std::string JsonNumberObject(const Map& map) {
  std::string out = "{";
  for (const auto& [k, v] : map) {
    if (out.size() > 1) out += ",";
    out += JsonString(k) + ":" + JsonNumber(static_cast<double>(v));
  }
  return out + "}";
}

}  // namespace modelfleet
