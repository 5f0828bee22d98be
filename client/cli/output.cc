#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <charconv>
#include <ctime>
#include <iomanip>
#include <sstream>

namespace modelfleet::cli {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width(headers_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  };
  measure(headers_);
  for (const auto& r : rows_) measure(r);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  };
  print(headers_);
  for (const auto& r : rows_) print(r);
  out.flush();
}

void PrintKeyValues(std::ostream& out, const KeyValues& kv) {
  size_t width = 0;
  for (const auto& [k, v] : kv) width = std::max(width, k.size());
  for (const auto& [k, v] : kv) out << k << ":" << std::string(width - k.size() + 2, ' ') << v << "\n";
  out.flush();
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

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << v << " " << units[u];
  return out.str();
}

std::string FormatDouble(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
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
