#include "fleet/write_behind.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <span>
#include <vector>

#include "modelfleet/json.h"

namespace modelfleet::fleet {

namespace {

using Clock = std::chrono::steady_clock;

// Errors that come from the rows themselves (SQLSTATE classes 22 and 23, see db/pool.h): the
// same rows would fail again, so they are isolated rather than retried.
bool IsDataError(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kFailedPrecondition ||
         s.code() == StatusCode::kAlreadyExists;
}

// Writes `rows` with `write`; a data error splits them in halves until each offending row
// stands alone, and `drop` is called for it. Rows not written because of a transient error go
// to `unwritten` (after the first transient error nothing more is tried); returns that error.
template <typename Row>
Status WriteIsolatingPoison(std::span<Row> rows, const std::function<Status(std::span<const Row>)>& write,
                            const std::function<void(const Row&, const Status&)>& drop, std::vector<Row>& unwritten) {
  if (rows.empty()) return Status::Ok();
  Status s = write(rows);
  if (s.ok()) return s;
  if (!IsDataError(s)) {
    std::move(rows.begin(), rows.end(), std::back_inserter(unwritten));
    return s;
  }
  if (rows.size() == 1) {
    drop(rows[0], s);
    return Status::Ok();
  }
  const size_t half = rows.size() / 2;
  Status first = WriteIsolatingPoison(rows.first(half), write, drop, unwritten);
  if (!first.ok()) {
    std::move(rows.begin() + static_cast<ptrdiff_t>(half), rows.end(), std::back_inserter(unwritten));
    return first;
  }
  return WriteIsolatingPoison(rows.subspan(half), write, drop, unwritten);
}

uint64_t Fingerprint(const WriteBehind::DeviceStatus& s) {
  uint64_t h = std::hash<std::string>{}(s.model + '\n' + s.version + '\n' + s.digest + '\n' + s.agent_state);
  return h == 0 ? 1 : h;  // 0 means "nothing known"
}

struct StatusRow {
  int64_t row_id;
  std::string device_id, json;
};
struct WindowRow {
  std::tuple<std::string, std::string, int64_t, int64_t> key;
  std::string json;
};

std::string JsonArray(auto rows) {
  std::string out = "[";
  for (const auto& r : rows) {
    if (out.size() > 1) out += ",";
    out += r.json;
  }
  return out + "]";
}

// Adds two {"class": count} objects key by key (a replica adding to what others wrote).
constexpr const char* kMergeHistogramsSql =
    "(SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb) FROM (SELECT key, sum(value::bigint) AS total FROM "
    "(SELECT * FROM jsonb_each_text(%1$s) UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.class_histogram)) AS "
    "both_sides GROUP BY key) AS merged)";

std::string MergeHistograms(const std::string& existing) {
  std::string sql = kMergeHistogramsSql;
  sql.replace(sql.find("%1$s"), 4, existing);
  return sql;
}

}  // namespace

void WriteBehind::WindowSums::MergeFrom(const WindowSums& other) {
  inferences += other.inferences;
  errors += other.errors;
  reports += other.reports;
  p95_weighted += other.p95_weighted;
  confidence_sum += other.confidence_sum;
  for (const auto& [k, v] : other.histogram) histogram[k] += v;
}

WriteBehind::WriteBehind(db::Pool& pool, WriteBehindOptions options) : pool_(pool), options_(options) {
  writer_ = std::thread([this] { Run(); });
}

WriteBehind::~WriteBehind() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  Status s = Flush();
  if (!s.ok()) {
    Stats left = GetStats();
    spdlog::error("final flush of check-in state failed, {} statuses, {} per-device telemetry entries and {} "
                  "telemetry windows are lost: {}",
                  left.pending_statuses, left.pending_telemetry, left.pending_windows, s.ToString());
  }
}

int64_t WriteBehind::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
}

WriteBehind::Series* WriteBehind::AcquireSeriesLocked(const std::string& model, const std::string& version) {
  auto [it, inserted] = series_.try_emplace(model + '\n' + version);
  if (inserted) {
    it->second = std::make_unique<Series>();
    it->second->model = model;
    it->second->version = version;
  }
  ++it->second->refs;
  return it->second.get();
}

void WriteBehind::ReleaseSeriesLocked(Series* series) {
  if (--series->refs == 0) series_.erase(series->model + '\n' + series->version);
}

void WriteBehind::Record(int64_t device_row_id, const std::string& device_id, DeviceStatus status,
                         const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry,
                         const std::vector<std::pair<std::string, int64_t>>& rollout_of_model) {
  const int64_t now_ms = NowMs();
  const int64_t width = std::max<int64_t>(1, options_.telemetry_window.count());
  const int64_t epoch_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t window_start = epoch_s - ((epoch_s % width) + width) % width;
  const uint64_t fingerprint = Fingerprint(status);
  const int64_t refresh_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.status_refresh).count();
  records_.fetch_add(1, std::memory_order_relaxed);

  std::lock_guard lock(mu_);
  DeviceState& device = devices_[device_row_id];
  // What a device runs is written when it changes; an unchanged status only refreshes
  // last_seen every status_refresh. The device's telemetry goes with its status.
  if (device.status_fingerprint != fingerprint || now_ms - device.status_at_ms >= refresh_ms) {
    device.status_fingerprint = fingerprint;
    device.status_at_ms = now_ms;
    statuses_[device_row_id] = PendingStatus{device_id, std::move(status)};
    telemetry_due_.insert(device_row_id);
  }
  for (const auto& t : telemetry) {
    int64_t arm = 0;
    for (const auto& [model, rollout] : rollout_of_model) {
      if (model == t.model()) {
        arm = rollout;
        break;
      }
    }
    const double inferences = static_cast<double>(t.inference_count());
    WindowSums& window = windows_[WindowKey{t.model(), t.version(), arm, window_start}];
    window.inferences += t.inference_count();
    window.errors += t.error_count();
    window.reports += 1;
    window.p95_weighted += t.latency().p95_ms() * inferences;
    window.confidence_sum += t.mean_confidence() * inferences;
    for (const auto& [k, v] : t.class_histogram()) window.histogram[k] += v;

    DeviceSums* sums = nullptr;
    for (DeviceSums& s : device.telemetry) {
      if (s.series->model == t.model() && s.series->version == t.version()) {
        sums = &s;
        break;
      }
    }
    if (sums == nullptr) {
      if (device.telemetry.empty()) device.telemetry_since = ++sequence_;
      device.telemetry.emplace_back().series = AcquireSeriesLocked(t.model(), t.version());
      sums = &device.telemetry.back();
      ++pending_telemetry_;
    }
    sums->inferences += t.inference_count();
    sums->errors += t.error_count();
    sums->p95_weighted += t.latency().p95_ms() * inferences;
    sums->confidence_sum += t.mean_confidence() * inferences;
    Series& series = *sums->series;
    for (const auto& [k, v] : t.class_histogram()) {
      auto id = series.class_ids.find(k);
      if (id == series.class_ids.end()) {
        if (series.classes.size() >= kMaxClassesPerSeries) continue;  // in the windows only
        id = series.class_ids.emplace(k, static_cast<uint32_t>(series.classes.size())).first;
        series.classes.push_back(k);
      }
      auto slot = std::find_if(sums->histogram.begin(), sums->histogram.end(),
                               [&](const auto& entry) { return entry.first == id->second; });
      if (slot == sums->histogram.end()) {
        sums->histogram.emplace_back(id->second, v);
      } else {
        slot->second += v;
      }
    }
  }
  BoundMemoryLocked();
}

void WriteBehind::KnowWritten(int64_t device_row_id, const DeviceStatus& status,
                              std::chrono::system_clock::time_point last_seen) {
  const auto age = std::max(std::chrono::system_clock::duration::zero(), std::chrono::system_clock::now() - last_seen);
  const int64_t at_ms = NowMs() - std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
  const uint64_t fingerprint = Fingerprint(status);
  std::lock_guard lock(mu_);
  DeviceState& device = devices_[device_row_id];
  if (device.status_fingerprint != 0 && device.status_at_ms >= at_ms) return;  // knows newer
  device.status_fingerprint = fingerprint;
  device.status_at_ms = at_ms;
}

void WriteBehind::TakeTelemetryLocked(int64_t device_row, DeviceState& state, std::vector<TelemetryRow>& out) {
  for (DeviceSums& sums : state.telemetry) {
    TelemetryRow row;
    row.device_row = device_row;
    row.model = sums.series->model;
    row.version = sums.series->version;
    row.inferences = sums.inferences;
    row.errors = sums.errors;
    row.p95_weighted = sums.p95_weighted;
    row.confidence_sum = sums.confidence_sum;
    row.since = state.telemetry_since;
    row.histogram.reserve(sums.histogram.size());
    for (const auto& [id, count] : sums.histogram) row.histogram.emplace_back(sums.series->classes[id], count);
    ReleaseSeriesLocked(sums.series);
    out.push_back(std::move(row));
  }
  pending_telemetry_ -= state.telemetry.size();
  std::vector<DeviceSums>().swap(state.telemetry);  // an idle device keeps no allocation
}

void WriteBehind::MergeTelemetryLocked(DeviceState& into, const TelemetryRow& row) {
  DeviceSums* sums = nullptr;
  for (DeviceSums& s : into.telemetry) {
    if (s.series->model == row.model && s.series->version == row.version) {
      sums = &s;
      break;
    }
  }
  if (sums == nullptr) {
    into.telemetry_since = into.telemetry.empty() ? row.since : std::min(into.telemetry_since, row.since);
    into.telemetry.emplace_back().series = AcquireSeriesLocked(row.model, row.version);
    sums = &into.telemetry.back();
    ++pending_telemetry_;
  } else {
    into.telemetry_since = std::min(into.telemetry_since, row.since);
  }
  sums->inferences += row.inferences;
  sums->errors += row.errors;
  sums->p95_weighted += row.p95_weighted;
  sums->confidence_sum += row.confidence_sum;
  Series& series = *sums->series;
  for (const auto& [name, count] : row.histogram) {
    auto id = series.class_ids.find(name);
    if (id == series.class_ids.end()) {
      if (series.classes.size() >= kMaxClassesPerSeries) continue;
      id = series.class_ids.emplace(name, static_cast<uint32_t>(series.classes.size())).first;
      series.classes.push_back(name);
    }
    auto slot = std::find_if(sums->histogram.begin(), sums->histogram.end(),
                             [&](const auto& entry) { return entry.first == id->second; });
    if (slot == sums->histogram.end()) {
      sums->histogram.emplace_back(id->second, count);
    } else {
      slot->second += count;
    }
  }
}

void WriteBehind::BoundMemoryLocked() {
  if (pending_telemetry_ > options_.max_pending_telemetry) {
    // Rare (writes have been failing for a while, or far more devices than expected): drop
    // the devices whose telemetry waits longest, a tenth beyond the bound in one pass rather
    // than one entry per Record. Their windows are kept.
    const size_t target = pending_telemetry_ - options_.max_pending_telemetry + options_.max_pending_telemetry / 10;
    std::vector<std::pair<uint64_t, int64_t>> by_age;
    for (const auto& [id, device] : devices_) {
      if (!device.telemetry.empty()) by_age.emplace_back(device.telemetry_since, id);
    }
    std::sort(by_age.begin(), by_age.end());
    size_t dropped = 0;
    for (const auto& [since, id] : by_age) {
      if (dropped >= target) break;
      DeviceState& device = devices_[id];
      for (DeviceSums& sums : device.telemetry) ReleaseSeriesLocked(sums.series);
      dropped += device.telemetry.size();
      pending_telemetry_ -= device.telemetry.size();
      std::vector<DeviceSums>().swap(device.telemetry);
    }
    telemetry_dropped_ += dropped;
    spdlog::warn("write-behind holds more than {} per-device telemetry entries: dropped the {} waiting longest",
                 options_.max_pending_telemetry, dropped);
  }
  if (windows_.size() > options_.max_pending_windows) {
    const size_t target = windows_.size() - options_.max_pending_windows + options_.max_pending_windows / 10;
    std::vector<std::pair<int64_t, WindowKey>> by_age;
    by_age.reserve(windows_.size());
    for (const auto& [key, w] : windows_) by_age.emplace_back(std::get<3>(key), key);
    const size_t drop = std::min(target, by_age.size());
    std::nth_element(by_age.begin(), by_age.begin() + static_cast<ptrdiff_t>(drop - 1), by_age.end());
    for (size_t i = 0; i < drop; ++i) windows_.erase(by_age[i].second);
    windows_dropped_ += drop;
    spdlog::warn("write-behind holds more than {} telemetry windows while writes fail: dropped the {} oldest",
                 options_.max_pending_windows, drop);
  }
}

Status WriteBehind::Flush() { return FlushScope(Scope::kEverything); }

Status WriteBehind::FlushScope(Scope scope) {
  std::lock_guard flush_lock(flush_mu_);
  const int64_t started_ms = NowMs();  // whatever is queued after this waits for the next flush
  std::unordered_map<int64_t, PendingStatus> statuses;
  std::map<WindowKey, WindowSums> windows;
  std::vector<TelemetryRow> telemetry_rows;
  {
    std::lock_guard lock(mu_);
    statuses.swap(statuses_);
    windows.swap(windows_);
    std::unordered_set<int64_t> due;
    due.swap(telemetry_due_);
    if (scope == Scope::kDue) {
      for (int64_t id : due) {
        auto it = devices_.find(id);
        if (it != devices_.end() && !it->second.telemetry.empty()) TakeTelemetryLocked(id, it->second, telemetry_rows);
      }
    } else {
      const int64_t idle_before =
          NowMs() - std::chrono::duration_cast<std::chrono::milliseconds>(options_.status_refresh).count();
      for (auto& [id, device] : devices_) {
        if (device.telemetry.empty()) continue;
        if (scope == Scope::kEverything || due.contains(id) || device.status_at_ms <= idle_before) {
          TakeTelemetryLocked(id, device, telemetry_rows);
        }
      }
    }
  }
  if (statuses.empty() && windows.empty() && telemetry_rows.empty()) {
    last_clean_flush_start_ms_.store(started_ms, std::memory_order_relaxed);
    return Status::Ok();
  }

  std::vector<WindowRow> window_rows;
  window_rows.reserve(windows.size());
  for (const auto& [key, w] : windows) {  // in key order on every replica: no lock-order deadlocks
    const auto& [model, version, arm, start] = key;
    window_rows.push_back(
        {key, "{\"model\":" + JsonString(model) + ",\"version\":" + JsonString(version) + ",\"arm\":" +
                  std::to_string(arm) + ",\"start\":" + std::to_string(start) + ",\"inferences\":" +
                  std::to_string(w.inferences) + ",\"errors\":" + std::to_string(w.errors) + ",\"reports\":" +
                  std::to_string(w.reports) + ",\"p95w\":" + JsonNumber(w.p95_weighted) + ",\"conf\":" +
                  JsonNumber(w.confidence_sum) + ",\"hist\":" + JsonNumberObject(w.histogram) + "}"});
  }
  std::vector<StatusRow> status_rows;
  status_rows.reserve(statuses.size());
  for (const auto& [id, p] : statuses) {
    const DeviceStatus& s = p.status;
    status_rows.push_back({id, p.device_id,
                           "{\"id\":" + std::to_string(id) + ",\"model\":" + JsonString(s.model) +
                               ",\"version\":" + JsonString(s.version) + ",\"digest\":" + JsonString(s.digest) +
                               ",\"state\":" + JsonString(s.agent_state) + "}"});
  }
  std::sort(status_rows.begin(), status_rows.end(), [](const auto& a, const auto& b) { return a.row_id < b.row_id; });
  std::sort(telemetry_rows.begin(), telemetry_rows.end(), [](const TelemetryRow& a, const TelemetryRow& b) {
    return std::tie(a.device_row, a.model, a.version) < std::tie(b.device_row, b.model, b.version);
  });
  for (TelemetryRow& t : telemetry_rows) {
    t.json = "{\"device_id\":" + std::to_string(t.device_row) + ",\"model\":" + JsonString(t.model) +
             ",\"version\":" + JsonString(t.version) + ",\"inferences\":" + std::to_string(t.inferences) +
             ",\"errors\":" + std::to_string(t.errors) + ",\"p95w\":" + JsonNumber(t.p95_weighted) +
             ",\"conf\":" + JsonNumber(t.confidence_sum) + ",\"hist\":" + JsonNumberObject(t.histogram) + "}";
  }

  auto drop = [this](const std::string& what, const std::string& json, const Status& why) {
    rows_dropped_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("dropped {} that the database refuses ({}); values: {}", what, why.ToString(), json);
  };
  std::vector<WindowRow> windows_left;
  Status s = WriteIsolatingPoison<WindowRow>(
      window_rows,
      [&](std::span<const WindowRow> rows) {
        Status written = pool_.Write([&](db::Tx& tx) -> Status {
          return StatusOf(tx.Exec(
              "INSERT INTO telemetry_windows AS w (model, version, rollout_id, window_start, inference_count, "
              "error_count, p95_weighted_ms, confidence_sum, class_histogram, reports) SELECT v.model, v.version, "
              "v.arm, to_timestamp(v.start), v.inferences, v.errors, v.p95w, v.conf, v.hist, v.reports FROM "
              "jsonb_to_recordset($1::jsonb) AS v(model text, version text, arm bigint, start bigint, inferences "
              "bigint, errors bigint, p95w float8, conf float8, hist jsonb, reports bigint) "
              "ON CONFLICT (rollout_id, model, version, window_start) DO UPDATE SET "
              "inference_count = w.inference_count + EXCLUDED.inference_count, "
              "error_count = w.error_count + EXCLUDED.error_count, "
              "p95_weighted_ms = w.p95_weighted_ms + EXCLUDED.p95_weighted_ms, "
              "confidence_sum = w.confidence_sum + EXCLUDED.confidence_sum, "
              "class_histogram = " + MergeHistograms("w.class_histogram") + ", "
              "reports = w.reports + EXCLUDED.reports, updated_at = now()",
              {JsonArray(rows)}));
        });
        if (written.ok()) windows_written_.fetch_add(rows.size(), std::memory_order_relaxed);
        return written;
      },
      [&](const WindowRow& row, const Status& why) {
        const auto& [model, version, arm, start] = row.key;
        drop("the telemetry window of " + model + "@" + version + " (rollout arm " + std::to_string(arm) +
                 ", starting " + std::to_string(start) + " s after the epoch)",
             row.json, why);
      },
      windows_left);
  std::vector<StatusRow> statuses_left;
  if (s.ok()) {
    s = WriteIsolatingPoison<StatusRow>(
        status_rows,
        [&](std::span<const StatusRow> rows) {
          Status written = pool_.Write([&](db::Tx& tx) -> Status {
            return StatusOf(tx.Exec(
                "UPDATE devices d SET last_seen = now(), running_model = v.model, running_version = v.version, "
                "running_digest = v.digest, agent_state = v.state FROM jsonb_to_recordset($1::jsonb) AS "
                "v(id bigint, model text, version text, digest text, state text) WHERE d.id = v.id",
                {JsonArray(rows)}));
          });
          if (written.ok()) statuses_written_.fetch_add(rows.size(), std::memory_order_relaxed);
          return written;
        },
        [&](const StatusRow& row, const Status& why) { drop("the status of device " + row.device_id, row.json, why); },
        statuses_left);
  } else {
    statuses_left = std::move(status_rows);
  }
  std::vector<TelemetryRow> telemetry_left;
  if (s.ok()) {
    s = WriteIsolatingPoison<TelemetryRow>(
        telemetry_rows,
        [&](std::span<const TelemetryRow> rows) {
          Status written = pool_.Write([&](db::Tx& tx) -> Status {
            return StatusOf(tx.Exec(
                "INSERT INTO version_telemetry AS vt (device_id, model, version, inference_count, error_count, "
                "p95_weighted_ms, class_histogram, confidence_sum) SELECT v.device_id, v.model, v.version, "
                "v.inferences, v.errors, v.p95w, v.hist, v.conf FROM jsonb_to_recordset($1::jsonb) AS "
                "v(device_id bigint, model text, version text, inferences bigint, errors bigint, p95w float8, "
                "hist jsonb, conf float8) "
                "ON CONFLICT (device_id, model, version) DO UPDATE SET "
                "inference_count = vt.inference_count + EXCLUDED.inference_count, "
                "error_count = vt.error_count + EXCLUDED.error_count, "
                "p95_weighted_ms = vt.p95_weighted_ms + EXCLUDED.p95_weighted_ms, "
                "confidence_sum = vt.confidence_sum + EXCLUDED.confidence_sum, "
                "class_histogram = " + MergeHistograms("vt.class_histogram") + ", updated_at = now()",
                {JsonArray(rows)}));
          });
          if (written.ok()) telemetry_rows_written_.fetch_add(rows.size(), std::memory_order_relaxed);
          return written;
        },
        [&](const TelemetryRow& row, const Status& why) {
          // Only the status in memory carries the public id; per-device telemetry does not
          // (memory per device), so a dropped row, which is rare, looks it up.
          std::string device_id;
          if (auto it = statuses.find(row.device_row); it != statuses.end()) {
            device_id = it->second.device_id;
          } else {
            (void)pool_.Read([&](db::Tx& tx) -> Status {
              MF_ASSIGN_OR_RETURN(auto found, tx.Exec("SELECT device_id FROM devices WHERE id = $1", {row.device_row}));
              if (!found.empty()) device_id = found[0].Str(0);
              return Status::Ok();
            });
          }
          if (device_id.empty()) device_id = "(row " + std::to_string(row.device_row) + ")";
          drop("the telemetry of device " + device_id + " for " + row.model + "@" + row.version, row.json, why);
        },
        telemetry_left);
  } else {
    telemetry_left = std::move(telemetry_rows);
  }
  if (s.ok()) {
    last_clean_flush_start_ms_.store(started_ms, std::memory_order_relaxed);
    return s;
  }

  // Put back what was not written, merging with what arrived meanwhile (a newer status wins).
  flush_failures_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  for (const WindowRow& row : windows_left) windows_[row.key].MergeFrom(windows[row.key]);
  for (const StatusRow& row : statuses_left) statuses_.try_emplace(row.row_id, std::move(statuses[row.row_id]));
  for (const TelemetryRow& row : telemetry_left) {
    MergeTelemetryLocked(devices_[row.device_row], row);
    telemetry_due_.insert(row.device_row);
  }
  BoundMemoryLocked();
  return s;
}

WriteBehind::Stats WriteBehind::GetStats() {
  Stats stats;
  stats.rows_dropped = rows_dropped_.load();
  stats.telemetry_dropped = telemetry_dropped_.load();
  stats.windows_dropped = windows_dropped_.load();
  stats.flush_failures = flush_failures_.load();
  stats.records = records_.load();
  stats.statuses_written = statuses_written_.load();
  stats.telemetry_rows_written = telemetry_rows_written_.load();
  stats.windows_written = windows_written_.load();
  std::lock_guard lock(mu_);
  stats.pending_statuses = statuses_.size();
  stats.pending_telemetry = pending_telemetry_;
  stats.pending_windows = windows_.size();
  stats.devices_known = devices_.size();
  if (!statuses_.empty() || !windows_.empty()) {
    stats.oldest_due_age =
        std::chrono::milliseconds(std::max<int64_t>(0, NowMs() - last_clean_flush_start_ms_.load(std::memory_order_relaxed)));
  }
  return stats;
}

void WriteBehind::Run() {
  auto wait = options_.flush_interval;
  // Devices that stopped checking in: their telemetry is swept out every status_refresh / 4
  // (a scan of every device, so not every flush).
  const auto sweep_every = std::max<std::chrono::milliseconds>(
      options_.flush_interval, std::chrono::duration_cast<std::chrono::milliseconds>(options_.status_refresh) / 4);
  auto next_sweep = Clock::now() + sweep_every;
  uint64_t failed_in_a_row = 0;
  while (true) {
    {
      std::unique_lock lock(wake_mu_);
      if (wake_.wait_for(lock, wait, [&] { return stop_.load(); })) return;
    }
    Scope scope = Scope::kDue;
    if (Clock::now() >= next_sweep) {
      scope = Scope::kDueAndIdle;
      next_sweep = Clock::now() + sweep_every;
    }
    Status s = FlushScope(scope);
    if (s.ok()) {
      if (failed_in_a_row > 0) spdlog::info("writing check-in state behind works again after {} failed tries", failed_in_a_row);
      failed_in_a_row = 0;
      wait = options_.flush_interval;
      continue;
    }
    if (failed_in_a_row++ == 0) {
      spdlog::warn("writing check-in state behind failed, retrying with backoff up to {} ms: {}",
                   options_.max_backoff.count(), s.ToString());
    }
    wait = std::min(options_.max_backoff, wait * 2);
  }
}

}  // namespace modelfleet::fleet
