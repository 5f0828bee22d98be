// How the `modelfleet` CLI prints results on stdout.
//
// Two formats, chosen with -o/--output (or MODELFLEET_OUTPUT / the config file):
//   table  for people: aligned columns for lists, "key: value" lines for one object; numbers
//          rounded and with units (format.h). On a terminal a table is fitted to its width
//          (Settings::table_width, TableWidth below), long cells cut with "…"; piped, or with
//          --wide, nothing is ever cut;
//   json   for scripts: exactly one JSON document per command on stdout: an object for a
//          single result, an array of objects for a list (possibly []). The objects are the
//          API messages in protobuf's JSON mapping with the .proto field names
//          (snake_case), enums as names, scalar fields always present (also when 0/empty).
//          `rollouts watch` is the one stream: one RolloutEvent object per line.
// Messages for people (progress, warnings, errors) always go to stderr.
//
// Not thread-safe (writes std::cout).
#pragma once

#include <google/protobuf/map.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/config.h"
#include "cli/format.h"

namespace modelfleet::cli {

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
// Widths are display widths (format.h DisplayWidth), so UTF-8 cells align.
//
// Fitting (max_width > 0): if the lines would be wider than max_width, first headers wider than
// their column's cells are cut (down to the cells), then the widest columns are narrowed, all to
// one common width, down to kMinColumnWidth at the least (narrower columns keep theirs); cells
// and headers longer than their column end in "…". The first column is never cut: it names the
// row (a device id, a version), which people copy into the next command. A table that cannot
// fit even so is printed at those minimum widths, wider than max_width.
class Table {
 public:
  static constexpr size_t kMinColumnWidth = 6;

  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);  // REQUIRES: as many cells as headers
  // max_width 0: never cut.
  void Print(std::ostream& out, size_t max_width = 0) const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<size_t> ColumnWidths(size_t max_width) const;

  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// The width stdout's tables are fitted to: 0 (never cut) with --wide or when stdout is not a
// terminal; else $COLUMNS if it is a positive number, else the terminal's width (TIOCGWINSZ),
// else 80. MODELFLEET_FORCE_TTY=1 treats stdout as a terminal: for tests only (with COLUMNS,
// it gives them a terminal of a known width); it changes nothing else.
size_t TableWidth(bool wide, const EnvLookup& env);
// The rule of TableWidth without the OS: `terminal_columns` 0 when unknown.
size_t ChooseTableWidth(bool wide, bool stdout_is_terminal, const std::optional<std::string>& columns_env,
                        int terminal_columns);

using KeyValues = std::vector<std::pair<std::string, std::string>>;
// "key:  value" lines with the values aligned. A value of several lines continues under its
// first line, aligned with it (see AlignedLines); values are never cut.
void PrintKeyValues(std::ostream& out, const KeyValues& kv);
// One "name  value" line per entry, sorted by name, the values aligned: a value of several
// lines for PrintKeyValues ("metrics", "labels"). "-" when there are none.
std::string AlignedLines(KeyValues entries);
// A map's entries for AlignedLines: numbers through FormatMetric (by name), strings as they are.
KeyValues MetricEntries(const google::protobuf::Map<std::string, double>& metrics);
KeyValues TextEntries(const google::protobuf::Map<std::string, std::string>& map);

// One message as a single-line JSON object (see the header comment for the mapping).
std::string ToJson(const google::protobuf::Message& message);

// Prints one result: as JSON, or as the key/value lines `describe` returns.
void PrintObject(OutputFormat format, const google::protobuf::Message& message,
                 const std::function<KeyValues()>& describe);

// Prints a list: as a JSON array (s.output json), or as a table with `headers` and one `row`
// per item, fitted to s.table_width. An empty list prints "(none)" in table mode, to stderr, so
// stdout stays parseable.
template <typename M>
void PrintList(const Settings& s, const std::vector<M>& items, std::vector<std::string> headers,
               const std::function<std::vector<std::string>(const M&)>& row);

// ---- cell formatting (numbers: format.h)
std::string FormatTime(const google::protobuf::Timestamp& t);  // "2026-01-02 15:04:05Z", "-" if unset
std::string Join(const std::vector<std::string>& parts, const std::string& sep);
std::string OrDash(const std::string& s);
std::string ShortDigest(const std::string& hex);  // first 12 characters

// ---------------------------------------------------------------- implementation
void PrintJsonArray(const std::vector<const google::protobuf::Message*>& items);
void PrintEmptyListNote();

template <typename M>
void PrintList(const Settings& s, const std::vector<M>& items, std::vector<std::string> headers,
               const std::function<std::vector<std::string>(const M&)>& row) {
  if (s.output == OutputFormat::kJson) {
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
  table.Print(std::cout, s.table_width);
}

}  // namespace modelfleet::cli
