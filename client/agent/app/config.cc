#include "agent/app/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "modelfleet/numbers.h"

namespace modelfleet::agent::app {
namespace {

std::string Trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

Status Bad(const std::string& key, const std::string& msg) { return InvalidArgument(key, msg); }

template <typename T>
Status ParseUnsigned(const std::string& key, const std::string& v, T& out, T min, T max) {
  const std::optional<uint64_t> parsed = ParseNumber<uint64_t>(v);
  const uint64_t x = parsed.value_or(0);
  if (!parsed || x < static_cast<uint64_t>(min) || x > static_cast<uint64_t>(max)) {
    return Bad(key, "'" + v + "' is not an integer in [" + std::to_string(min) + ", " +
                        std::to_string(max) + "]");
  }
  out = static_cast<T>(x);
  return Status::Ok();
}

Status ParseDouble(const std::string& key, const std::string& v, double& out, double min, double max) {
  const std::optional<double> parsed = ParseNumber<double>(v);
  const double x = parsed.value_or(0);
  if (!parsed || x < min || x > max) {
    std::ostringstream os;
    os << "'" << v << "' is not a number in [" << min << ", " << max << "]";
    return Bad(key, os.str());
  }
  out = x;
  return Status::Ok();
}

Status ParseBool(const std::string& key, const std::string& v, bool& out) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") {
    out = true;
  } else if (v == "false" || v == "0" || v == "no" || v == "off") {
    out = false;
  } else {
    return Bad(key, "'" + v + "' is not a boolean (true/false)");
  }
  return Status::Ok();
}

Status ParseDurationKey(const std::string& key, const std::string& v, std::chrono::milliseconds& out) {
  auto d = ParseDuration(v);
  if (!d || d->count() <= 0) return Bad(key, "'" + v + "' is not a positive duration (e.g. 30s, 500ms)");
  out = *d;
  return Status::Ok();
}

}  // namespace

const std::vector<std::string>& ConfigKeys() {
  static const std::vector<std::string> keys = {
      "server", "tls_ca", "insecure", "enrollment_token", "state_dir", "publisher_key", "sensor",
      "synthetic_schedule", "synthetic_seed", "serial_baud", "frame_rate_hz", "check_in_interval",
      "backoff_initial", "backoff_max", "rpc_timeout", "hardware_id", "site", "hardware_revision",
      "firmware_version", "sensor_rows", "sensor_cols", "label", "num_threads",
      "presence_min_confidence", "presence_hold_frames", "presence_nobody_after",
      "disk_reserve_bytes", "download_chunk_bytes", "download_rate_limit", "log_level", "rollback_window"};
  return keys;
}

Expected<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  const std::string t = Trim(text);
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i == 0 || i > 12) return Fail(InvalidArgument("duration", "'" + t + "' is not a duration"));
  const int64_t n = ParseNumber<int64_t>(std::string_view(t).substr(0, i)).value_or(0);  // <= 12 digits
  const std::string unit = t.substr(i);
  if (unit.empty() || unit == "s") return std::chrono::milliseconds(n * 1000);
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "m") return std::chrono::milliseconds(n * 60000);
  if (unit == "h") return std::chrono::milliseconds(n * 3600000);
  return Fail(InvalidArgument("duration", "'" + t + "' has an unknown unit (ms, s, m, h)"));
}

Status ApplyConfigValue(AgentConfig& c, const std::string& key, const std::string& raw) {
  const std::string v = Trim(raw);
  std::chrono::milliseconds d{};
  if (key == "server") {
    c.server = v;
  } else if (key == "tls_ca") {
    c.tls_ca = v;
  } else if (key == "insecure") {
    return ParseBool(key, v, c.insecure);
  } else if (key == "enrollment_token") {
    c.enrollment_token = v;
  } else if (key == "state_dir") {
    if (v.empty()) return Bad(key, "must not be empty");
    c.state_dir = v;
  } else if (key == "publisher_key") {
    if (v.empty()) return Bad(key, "must name a PEM file");
    c.publisher_keys.push_back(v);
  } else if (key == "sensor") {
    if (v != "synthetic" && v.rfind("replay:", 0) != 0 && v.rfind("serial:", 0) != 0) {
      return Bad(key, "'" + v + "' is not synthetic, replay:<path> or serial:<path>");
    }
    if ((v.rfind("replay:", 0) == 0 || v.rfind("serial:", 0) == 0) && v.size() <= 7) {
      return Bad(key, "'" + v + "' names no path");
    }
    c.sensor = v;
  } else if (key == "synthetic_schedule") {
    c.synthetic_schedule = v;
  } else if (key == "synthetic_seed") {
    return ParseUnsigned<uint64_t>(key, v, c.synthetic_seed, 0, UINT64_MAX);
  } else if (key == "serial_baud") {
    return ParseUnsigned<int>(key, v, c.serial_baud, 1200, 4000000);
  } else if (key == "frame_rate_hz") {
    return ParseDouble(key, v, c.frame_rate_hz, 0.01, 1000);
  } else if (key == "check_in_interval") {
    MF_RETURN_IF_ERROR(ParseDurationKey(key, v, d));
    c.check_in_interval = std::chrono::duration_cast<std::chrono::seconds>(d);
    if (c.check_in_interval.count() < 1) return Bad(key, "must be at least 1s");
  } else if (key == "backoff_initial") {
    return ParseDurationKey(key, v, c.backoff_initial);
  } else if (key == "backoff_max") {
    return ParseDurationKey(key, v, c.backoff_max);
  } else if (key == "rpc_timeout") {
    MF_RETURN_IF_ERROR(ParseDurationKey(key, v, d));
    c.rpc_timeout = std::chrono::duration_cast<std::chrono::seconds>(d);
    if (c.rpc_timeout.count() < 1) return Bad(key, "must be at least 1s");
  } else if (key == "hardware_id") {
    c.hardware_id = v;
  } else if (key == "site") {
    c.site = v;
  } else if (key == "hardware_revision") {
    c.hardware_revision = v;
  } else if (key == "firmware_version") {
    c.firmware_version = v;
  } else if (key == "sensor_rows") {
    return ParseUnsigned<uint32_t>(key, v, c.sensor_rows, 4, 255);
  } else if (key == "sensor_cols") {
    return ParseUnsigned<uint32_t>(key, v, c.sensor_cols, 4, 255);
  } else if (key == "label") {
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0) return Bad(key, "'" + v + "' is not key=value");
    c.labels[Trim(v.substr(0, eq))] = Trim(v.substr(eq + 1));
  } else if (key == "num_threads") {
    return ParseUnsigned<int>(key, v, c.num_threads, 1, 256);
  } else if (key == "presence_min_confidence") {
    return ParseDouble(key, v, c.presence_min_confidence, 0, 1);
  } else if (key == "presence_hold_frames") {
    return ParseUnsigned<int>(key, v, c.presence_hold_frames, 1, 100000);
  } else if (key == "presence_nobody_after") {
    return ParseDurationKey(key, v, c.presence_nobody_after);
  } else if (key == "disk_reserve_bytes") {
    return ParseUnsigned<uint64_t>(key, v, c.disk_reserve_bytes, 0, UINT64_MAX);
  } else if (key == "download_chunk_bytes") {
    return ParseUnsigned<uint64_t>(key, v, c.download_chunk_bytes, 0, 1ull << 32);
  } else if (key == "download_rate_limit") {
    return ParseUnsigned<uint64_t>(key, v, c.download_rate_limit, 0, UINT64_MAX);
  } else if (key == "rollback_window") {
    return ParseUnsigned<int>(key, v, c.rollback_window, 0, 1000000);
  } else if (key == "log_level") {
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error"};
    if (!levels.count(v)) return Bad(key, "'" + v + "' is not trace, debug, info, warn or error");
    c.log_level = v;
  } else {
    return Bad(key, "unknown key");
  }
  return Status::Ok();
}

Status ParseConfigText(AgentConfig& config, const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = Trim(line);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument(Trim(line), origin + ":" + std::to_string(n) + ": expected `key = value`");
    }
    const std::string key = Trim(line.substr(0, eq));
    Status s = ApplyConfigValue(config, key, line.substr(eq + 1));
    if (!s.ok()) return Status(s.code(), origin + ":" + std::to_string(n) + ": " + s.message()).WithField(key);
  }
  return Status::Ok();
}

Status ValidateConfig(AgentConfig& c) {
  if (c.server.empty()) return InvalidArgument("server", "is required (host:port)");
  if (!c.insecure && c.tls_ca.empty()) {
    return InvalidArgument("tls_ca", "is required unless insecure = true");
  }
  if (c.publisher_keys.empty()) {
    return InvalidArgument("publisher_key", "at least one pinned publisher key (PEM path) is required");
  }
  if (c.backoff_max < c.backoff_initial) {
    return InvalidArgument("backoff_max", "must not be below backoff_initial");
  }
  if (c.hardware_id.empty()) {
    std::ifstream mid("/etc/machine-id");
    std::getline(mid, c.hardware_id);
    c.hardware_id = Trim(c.hardware_id);
    if (c.hardware_id.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      c.hardware_id = host;
    }
    if (c.hardware_id.empty()) return InvalidArgument("hardware_id", "is required (no machine id)");
  }
  return Status::Ok();
}

}  // namespace modelfleet::agent::app
