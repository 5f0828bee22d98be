// Numbers and text as the `modelfleet` CLI shows them to people: every number in its human
// output (tables, "key: value" pages, progress lines, the rollout view) goes through these
// functions, so all of them round and name units the same way. `-o json` never does: it prints
// the API's exact values.
//
// Rounding: kSignificantDigits significant digits. A trailing zero is shown only where the value
// was rounded, so the digits shown are exact or say how far they are rounded:
//   0.9716666 -> "0.972"   0.95 -> "0.95"   0.9501 -> "0.950"   0.9995 -> "1.00"   2 -> "2"
// From 1000 up, whole numbers instead ("1234", "123457"); below 0.0001 or from 1e15 up,
// scientific ("1.5e-07", "1.23e+15"). NaN -> "NaN", infinities -> "inf" and "-inf", -0 -> "0".
//
// Thread-safe (pure functions).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace modelfleet::cli {

inline constexpr int kSignificantDigits = 3;

std::string FormatNumber(double v);
std::string FormatMilliseconds(double ms);  // "0.085 ms"
std::string FormatSeconds(double s);        // "1.2 s"
// Binary units: "512 B", "41.1 KiB", "4 MiB", up to EiB; a value that would round to 1024 of a
// unit takes the next one ("1.00 MiB", not "1024 KiB").
std::string FormatBytes(double bytes);
std::string FormatPercent(double percent);  // 12.5 -> "12.5%" (the argument is in percent)

// A metric, in the unit its name says. The name is split into words at '_', '.' and '-':
// a word "ms" -> milliseconds ("latency_p50_ms_int8"), "bytes" -> bytes ("size_bytes_int8"),
// "seconds" or "s" -> seconds, "percent" or "pct" -> percent; anything else a plain number
// ("accuracy", "heldout_frames").
std::string FormatMetric(std::string_view name, double v);

// ---- text width
// Columns a UTF-8 string takes on a terminal: one per code point (no East Asian wide forms,
// no combining marks; the CLI's own text is ASCII, names and reasons from users may not be).
size_t DisplayWidth(std::string_view utf8);
// `utf8` cut to at most `width` columns at a code point boundary, ending in "…" when cut.
// REQUIRES: width >= 1.
std::string Ellipsize(std::string_view utf8, size_t width);

}  // namespace modelfleet::cli
