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

struct StatusRow {
  int64_t row_id;
  std::string device_id, json;
};
struct TelemetryRow {
  std::tuple<int64_t, std::string, std::string> key;  // device row, model, version
  std::string device_id, json;
};

std::string JsonArray(auto rows) {
  std::string out = "[";
  for (const auto& r : rows) {
    if (out.size() > 1) out += ",";
    out += r.json;
  }
  return out + "]";
}

}  // namespace

void WriteBehind::PendingTelemetry::MergeFrom(const PendingTelemetry& other) {
  inferences += other.inferences;
  errors += other.errors;
  p95_weighted += other.p95_weighted;
  confidence_sum += other.confidence_sum;
  for (const auto& [k, v] : other.histogram) histogram[k] += v;
  first_queued = std::min(first_queued, other.first_queued);
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
    spdlog::error("final flush of check-in state failed, {} statuses and {} telemetry entries are lost: {}",
                  left.pending_statuses, left.pending_telemetry, s.ToString());
  }
}

void WriteBehind::Record(int64_t device_row_id, const std::string& device_id, DeviceStatus status,
                         const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry) {
  const auto now = Clock::now();
  std::string fingerprint = status.model + "@" + status.version + "#" + status.digest + "/" + status.agent_state;
  std::lock_guard lock(mu_);
  // What a device runs is written when it changes; an unchanged status only refreshes
  // last_seen every status_refresh, so a quiet fleet does not rewrite every row each minute.
  auto& written = last_status_[device_row_id];
  if (written.first != fingerprint || now - written.second >= options_.status_refresh) {
    written = {std::move(fingerprint), now};
    statuses_[device_row_id] = PendingStatus{device_row_id, device_id, std::move(status)};
  }
  for (const auto& t : telemetry) {
    PendingTelemetry sample;
    sample.device_id = device_id;
    sample.inferences = t.inference_count();
    sample.errors = t.error_count();
    sample.p95_weighted = t.latency().p95_ms() * static_cast<double>(t.inference_count());
    sample.confidence_sum = t.mean_confidence() * static_cast<double>(t.inference_count());
    for (const auto& [k, v] : t.class_histogram()) sample.histogram[k] += v;
    sample.first_queued = ++sequence_;
    auto [it, inserted] = telemetry_.try_emplace({device_row_id, t.model(), t.version()}, std::move(sample));
    if (!inserted) it->second.MergeFrom(sample);
  }
  BoundTelemetryLocked();
}

void WriteBehind::BoundTelemetryLocked() {
  if (telemetry_.size() <= options_.max_pending_telemetry) return;
  // Rare (writes have been failing for a while): drop the oldest tenth beyond the bound in one
  // pass rather than one entry per Record.
  const size_t excess = telemetry_.size() - options_.max_pending_telemetry;
  const size_t drop = std::min(telemetry_.size(), excess + options_.max_pending_telemetry / 10);
  std::vector<std::pair<uint64_t, TelemetryKey>> by_age;
  by_age.reserve(telemetry_.size());
  for (const auto& [key, t] : telemetry_) by_age.emplace_back(t.first_queued, key);
  std::nth_element(by_age.begin(), by_age.begin() + static_cast<ptrdiff_t>(drop - 1), by_age.end());
  for (size_t i = 0; i < drop; ++i) telemetry_.erase(by_age[i].second);
  telemetry_dropped_ += drop;
  spdlog::warn("write-behind holds more than {} telemetry entries while writes fail: dropped the {} oldest",
               options_.max_pending_telemetry, drop);
}

Status WriteBehind::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  std::unordered_map<int64_t, PendingStatus> statuses;
  std::map<TelemetryKey, PendingTelemetry> telemetry;
  {
    std::lock_guard lock(mu_);
    statuses.swap(statuses_);
    telemetry.swap(telemetry_);
  }
  if (statuses.empty() && telemetry.empty()) return Status::Ok();

  std::vector<StatusRow> status_rows;
  status_rows.reserve(statuses.size());
  for (const auto& [id, p] : statuses) {
    const DeviceStatus& s = p.status;
    status_rows.push_back({id, p.device_id,
                           "{\"id\":" + std::to_string(id) + ",\"model\":" + JsonString(s.model) +
                               ",\"version\":" + JsonString(s.version) + ",\"digest\":" + JsonString(s.digest) +
                               ",\"state\":" + JsonString(s.agent_state) + "}"});
  }
  std::vector<TelemetryRow> telemetry_rows;
  telemetry_rows.reserve(telemetry.size());
  for (const auto& [key, t] : telemetry) {
    const auto& [device_row, model, version] = key;
    telemetry_rows.push_back({key, t.device_id,
                              "{\"device_id\":" + std::to_string(device_row) + ",\"model\":" + JsonString(model) +
                                  ",\"version\":" + JsonString(version) + ",\"inferences\":" +
                                  std::to_string(t.inferences) + ",\"errors\":" + std::to_string(t.errors) +
                                  ",\"p95w\":" + JsonNumber(t.p95_weighted) + ",\"conf\":" +
                                  JsonNumber(t.confidence_sum) + ",\"hist\":" + JsonNumberObject(t.histogram) + "}"});
  }

  auto drop = [this](const std::string& what, const std::string& json, const Status& why) {
    rows_dropped_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("dropped {} that the database refuses ({}); values: {}", what, why.ToString(), json);
  };
  std::vector<StatusRow> statuses_left;
  Status s = WriteIsolatingPoison<StatusRow>(
      status_rows,
      [&](std::span<const StatusRow> rows) {
        return pool_.Write([&](db::Tx& tx) -> Status {
          return StatusOf(tx.Exec(
              "UPDATE devices d SET last_seen = now(), running_model = v.model, running_version = v.version, "
              "running_digest = v.digest, agent_state = v.state FROM jsonb_to_recordset($1::jsonb) AS "
              "v(id bigint, model text, version text, digest text, state text) WHERE d.id = v.id",
              {JsonArray(rows)}));
        });
      },
      [&](const StatusRow& row, const Status& why) { drop("the status of device " + row.device_id, row.json, why); },
      statuses_left);
  std::vector<TelemetryRow> telemetry_left;
  if (s.ok()) {
    s = WriteIsolatingPoison<TelemetryRow>(
        telemetry_rows,
        [&](std::span<const TelemetryRow> rows) {
          return pool_.Write([&](db::Tx& tx) -> Status {
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
                "class_histogram = (SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb) FROM (SELECT key, "
                "sum(value::bigint) AS total FROM (SELECT * FROM jsonb_each_text(vt.class_histogram) UNION ALL "
                "SELECT * FROM jsonb_each_text(EXCLUDED.class_histogram)) AS both_sides GROUP BY key) AS merged), "
                "updated_at = now()",
                {JsonArray(rows)}));
          });
        },
        [&](const TelemetryRow& row, const Status& why) {
          drop("the telemetry of device " + row.device_id + " for " + std::get<1>(row.key) + "@" +
                   std::get<2>(row.key), row.json, why);
        },
        telemetry_left);
  } else {
    telemetry_left = std::move(telemetry_rows);
  }
  if (s.ok()) return s;

  // Put back what was not written, merging with what arrived meanwhile (a newer status wins).
  flush_failures_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  for (const StatusRow& row : statuses_left) statuses_.try_emplace(row.row_id, std::move(statuses[row.row_id]));
  for (const TelemetryRow& row : telemetry_left) {
    PendingTelemetry& unwritten = telemetry[row.key];
    auto [slot, inserted] = telemetry_.try_emplace(row.key, unwritten);
    if (!inserted) slot->second.MergeFrom(unwritten);
  }
  BoundTelemetryLocked();
  return s;
}

WriteBehind::Stats WriteBehind::GetStats() {
  Stats stats;
  stats.rows_dropped = rows_dropped_.load();
  stats.telemetry_dropped = telemetry_dropped_.load();
  stats.flush_failures = flush_failures_.load();
  std::lock_guard lock(mu_);
  stats.pending_statuses = statuses_.size();
  stats.pending_telemetry = telemetry_.size();
  return stats;
}

void WriteBehind::Run() {
  auto wait = options_.flush_interval;
  uint64_t failed_in_a_row = 0;
  while (true) {
    {
      std::unique_lock lock(wake_mu_);
      if (wake_.wait_for(lock, wait, [&] { return stop_.load(); })) return;
    }
    Status s = Flush();
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
