#include "cli/output.h"

#include <google/protobuf/util/json_util.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "modelfleet/numbers.h"

namespace modelfleet::cli {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

namespace {

// Widths for columns that must take at most `available` together: each its `limit` capped at
// the widest common cap that fits, never less than its `base`; what the cap leaves over goes,
// one column each, to the capped columns from the left. nullopt if even the bases do not fit.
std::optional<std::vector<size_t>> FillUnder(const std::vector<size_t>& base,
                                             const std::vector<size_t>& limit, size_t available) {
  auto width_at = [&](size_t i, size_t cap) { return std::max(base[i], std::min(limit[i], cap)); };
  auto used_at = [&](size_t cap) {
    size_t used = 0;
    for (size_t i = 0; i < base.size(); ++i) used += width_at(i, cap);
    return used;
  };
  if (used_at(0) > available) return std::nullopt;
  size_t cap = *std::max_element(limit.begin(), limit.end());
  while (cap > 0 && used_at(cap) > available) --cap;
  size_t spare = available - used_at(cap);
  std::vector<size_t> width(base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    width[i] = width_at(i, cap);
    if (spare > 0 && width[i] < limit[i]) {
      ++width[i];
      --spare;
    }
  }
  return width;
}

}  // namespace

std::vector<size_t> Table::ColumnWidths(size_t max_width) const {
  std::vector<size_t> cells(headers_.size(), 0), natural(headers_.size(), 0);
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size(); ++i) cells[i] = std::max(cells[i], DisplayWidth(r[i]));
  }
  for (size_t i = 0; i < headers_.size(); ++i) natural[i] = std::max(cells[i], DisplayWidth(headers_[i]));
  const size_t n = natural.size();
  if (max_width == 0 || n < 2) return natural;
  const size_t gaps = 2 * (n - 1);
  size_t total = gaps;
  for (size_t w : natural) total += w;
  if (total <= max_width) return natural;

  // Columns 1.. share what the first column and the gaps leave.
  const size_t available = max_width > gaps + natural[0] ? max_width - gaps - natural[0] : 0;
  std::vector<size_t> floor(n - 1), content(n - 1), full(natural.begin() + 1, natural.end());
  for (size_t i = 1; i < n; ++i) {
    floor[i - 1] = std::min(natural[i], kMinColumnWidth);
    content[i - 1] = std::max(cells[i], floor[i - 1]);
  }
  // First headers wider than their cells ("LATENCY_P50_MS_INT8" over "0.085 ms"), then cells,
  // the widest first; at worst every column at its floor, over the edge.
  auto fitted = FillUnder(content, full, available);
  if (!fitted) fitted = FillUnder(floor, content, available);
  std::vector<size_t> width = {natural[0]};
  const std::vector<size_t>& rest = fitted ? *fitted : floor;
  width.insert(width.end(), rest.begin(), rest.end());
  return width;
}

void Table::Print(std::ostream& out, size_t max_width) const {
  const std::vector<size_t> width = ColumnWidths(max_width);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string cell = Ellipsize(row[i], std::max<size_t>(width[i], 1));
      line += cell;
      if (i + 1 < row.size()) line += std::string(width[i] - DisplayWidth(cell) + 2, ' ');
    }
    out << line << "\n";
  };
  print(headers_);
  for (const auto& r : rows_) print(r);
  out.flush();
}

size_t ChooseTableWidth(bool wide, bool stdout_is_terminal, const std::optional<std::string>& columns_env,
                        int terminal_columns) {
  if (wide || !stdout_is_terminal) return 0;
  if (columns_env) {
    const std::optional<size_t> columns = ParseNumber<size_t>(*columns_env);
    if (columns && *columns > 0) return *columns;
  }
  if (terminal_columns > 0) return static_cast<size_t>(terminal_columns);
  return 80;
}

size_t TableWidth(bool wide, const EnvLookup& env) {
  const bool terminal = ::isatty(STDOUT_FILENO) == 1 || env("MODELFLEET_FORCE_TTY") == "1";
  winsize size{};
  const int columns = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 ? size.ws_col : 0;
  return ChooseTableWidth(wide, terminal, env("COLUMNS"), columns);
}

void PrintKeyValues(std::ostream& out, const KeyValues& kv) {
  size_t width = 0;
  for (const auto& [k, v] : kv) width = std::max(width, DisplayWidth(k));
  const std::string indent(width + 3, ' ');
  for (const auto& [k, v] : kv) {
    out << k << ":" << std::string(width - DisplayWidth(k) + 2, ' ');
    size_t start = 0;
    for (size_t nl; (nl = v.find('\n', start)) != std::string::npos; start = nl + 1) {
      out << v.substr(start, nl - start) << "\n" << indent;
    }
    out << v.substr(start) << "\n";
  }
  out.flush();
}

std::string AlignedLines(KeyValues entries) {
  if (entries.empty()) return "-";
  std::sort(entries.begin(), entries.end());
  size_t width = 0;
  for (const auto& [k, v] : entries) width = std::max(width, DisplayWidth(k));
  std::string out;
  for (const auto& [k, v] : entries) {
    if (!out.empty()) out += "\n";
    out += k + std::string(width - DisplayWidth(k) + 2, ' ') + v;
  }
  return out;
}

KeyValues MetricEntries(const google::protobuf::Map<std::string, double>& metrics) {
  KeyValues out;
  for (const auto& [name, value] : metrics) out.emplace_back(name, FormatMetric(name, value));
  return out;
}

KeyValues TextEntries(const google::protobuf::Map<std::string, std::string>& map) {
  KeyValues out;
  for (const auto& [name, value] : map) out.emplace_back(name, value);
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

void PrintObject(OutputFormat format, const google::protobuf::Message& message,
                 const std::function<KeyValues()>& describe) {
  if (format == OutputFormat::kJson) {
    std::cout << ToJson(message) << std::endl;
  } else {
    PrintKeyValues(std::cout, describe());
  }
}

void PrintJsonArray(const std::vector<const google::protobuf::Message*>& items) {
  if (items.empty()) {
    std::cout << "[]" << std::endl;
    return;
  }
  std::cout << "[\n";
  for (size_t i = 0; i < items.size(); ++i) {
    std::cout << "  " << ToJson(*items[i]) << (i + 1 < items.size() ? ",\n" : "\n");
  }
  std::cout << "]" << std::endl;
}

void PrintEmptyListNote() { std::cerr << "(none)" << std::endl; }

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  std::time_t secs = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string ShortDigest(const std::string& hex) { return hex.size() > 12 ? hex.substr(0, 12) : OrDash(hex); }

}  // namespace modelfleet::cli
