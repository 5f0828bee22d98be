// How the `modelfleet` CLI prints results on stdout.
//
// Two formats, chosen with -o/--output (or MODELFLEET_OUTPUT / the config file):
//   table  for people: aligned columns for lists, "key: value" lines for one object;
//   json   for scripts: exactly one JSON document per command on stdout: an object for a
//          single result, an array of objects for a list (possibly []). The objects are the
//          API messages in protobuf's JSON mapping with the .proto field names
//          (snake_case), enums as names, scalar fields always present (also when 0/empty).
//          `rollouts watch` is the one stream: one RolloutEvent object per line.
// Messages for people (progress, warnings, errors) always go to stderr.
//
// Not thread-safe (writes std::cout).
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cli/config.h"

namespace modelfleet::cli {

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);  // REQUIRES: as many cells as headers
  void Print(std::ostream& out) const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

using KeyValues = std::vector<std::pair<std::string, std::string>>;
// "key:  value" lines with the values aligned.
void PrintKeyValues(std::ostream& out, const KeyValues& kv);

// One message as a single-line JSON object (see the header comment for the mapping).
std::string ToJson(const google::protobuf::Message& message);

// Prints one result: as JSON, or as the key/value lines `describe` returns.
void PrintObject(OutputFormat format, const google::protobuf::Message& message,
                 const std::function<KeyValues()>& describe);

// Prints a list: as a JSON array, or as a table with `headers` and one `row` per item.
// An empty list prints "(none)" in table mode, to stderr, so stdout stays parseable.
template <typename M>
void PrintList(OutputFormat format, const std::vector<M>& items, std::vector<std::string> headers,
               const std::function<std::vector<std::string>(const M&)>& row);

// ---- cell formatting
std::string FormatTime(const google::protobuf::Timestamp& t);  // "2026-01-02 15:04:05Z", "-" if unset
std::string FormatBytes(uint64_t bytes);                       // "512 B", "3.0 MiB"
std::string FormatDouble(double v);                            // shortest round-trip form
std::string Join(const std::vector<std::string>& parts, const std::string& sep);
template <typename Container>
std::string JoinMap(const Container& map, const std::string& kv_sep = "=", const std::string& sep = ", ");
std::string OrDash(const std::string& s);
std::string ShortDigest(const std::string& hex);  // first 12 characters

// ---------------------------------------------------------------- implementation
void PrintJsonArray(const std::vector<const google::protobuf::Message*>& items);
void PrintEmptyListNote();

template <typename M>
void PrintList(OutputFormat format, const std::vector<M>& items, std::vector<std::string> headers,
               const std::function<std::vector<std::string>(const M&)>& row) {
  if (format == OutputFormat::kJson) {
    std::vector<const google::protobuf::Message*> ptrs;
    for (const auto& m : items) ptrs.push_back(&m);
    PrintJsonArray(ptrs);
    return;
  }
  if (items.empty()) {
    PrintEmptyListNote();
    return;
  }
  Table table(std::move(headers));
  for (const auto& m : items) table.AddRow(row(m));
  table.Print(std::cout);
}

template <typename Container>
std::string JoinMap(const Container& map, const std::string& kv_sep, const std::string& sep) {
  std::vector<std::pair<std::string, std::string>> sorted;
  for (const auto& [k, v] : map) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(v)>>) {
      sorted.emplace_back(k, FormatDouble(static_cast<double>(v)));
    } else {
      sorted.emplace_back(k, v);
    }
  }
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (const auto& [k, v] : sorted) {
    if (!out.empty()) out += sep;
    out += k + kv_sep + v;
  }
  return out.empty() ? "-" : out;
}

}  // namespace modelfleet::cli
