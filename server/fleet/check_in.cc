#include "fleet/check_in.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>
#include <random>

#include "fleet/cohort.h"
#include "fleet/deployment_state.h"
#include "fleet/device_registry.h"
#include "fleet/rollout_manager.h"
#include "fleet/rollout_state.h"
#include "modelfleet/json.h"
#include "modelfleet/validation.h"
#include "util/cache_sync.h"
#include "util/time.h"

namespace modelfleet::fleet {

namespace {

constexpr int kMaxRunning = 8;
constexpr int kMaxTelemetry = 16;

// Bounds of what one telemetry entry may say (it covers the time since the previous
// check-in, or since the agent last reached a server): a year of 20 Hz sensing fits easily,
// and sums of many entries stay far inside the database's bigint and float8.
constexpr uint64_t kMaxInferencesPerEntry = 1'000'000'000;
constexpr double kMaxLatencyMs = 3'600'000;  // an hour

Status ValidateCheckIn(const v1::CheckInRequest& r) {
  if (r.running_size() > kMaxRunning) return InvalidArgument("running", "has more than 8 entries");
  for (int i = 0; i < r.running_size(); ++i) {
    const auto& m = r.running(i);
    const std::string f = "running[" + std::to_string(i) + "]";
    MF_RETURN_IF_ERROR(ValidateModelName(m.model(), f + ".model"));
    MF_RETURN_IF_ERROR(ValidateSemVer(m.version(), f + ".version"));
    if (!m.digest().empty() && !IsSha256Hex(m.digest())) {
      return InvalidArgument(f + ".digest", "must be 64 lowercase hex characters");
    }
  }
  if (r.telemetry_size() > kMaxTelemetry) return InvalidArgument("telemetry", "has more than 16 entries");
  if (r.has_attributes()) MF_RETURN_IF_ERROR(DeviceRegistry::ValidateAttributes(r.attributes(), "attributes"));
  return Status::Ok();
}

Status ValidateTelemetry(const v1::VersionTelemetry& t, const std::string& f) {
  MF_RETURN_IF_ERROR(ValidateModelName(t.model(), f + ".model"));
  MF_RETURN_IF_ERROR(ValidateSemVer(t.version(), f + ".version"));
  if (t.inference_count() > kMaxInferencesPerEntry) {
    return InvalidArgument(f + ".inference_count", "is more than " + std::to_string(kMaxInferencesPerEntry));
  }
  if (t.error_count() > t.inference_count()) return InvalidArgument(f + ".error_count", "exceeds inference_count");
  const std::pair<const char*, double> latencies[] = {
      {".latency.p50_ms", t.latency().p50_ms()}, {".latency.p95_ms", t.latency().p95_ms()}, {".latency.p99_ms", t.latency().p99_ms()}};
  for (const auto& [name, v] : latencies) {
    if (!std::isfinite(v) || v < 0 || v > kMaxLatencyMs) {
      return InvalidArgument(f + name, "must be a finite number of milliseconds from 0 to 3600000");
    }
  }
  if (!std::isfinite(t.mean_confidence()) || t.mean_confidence() < 0 || t.mean_confidence() > 1) {
    return InvalidArgument(f + ".mean_confidence", "must be a finite number from 0 to 1");
  }
  if (t.class_histogram_size() > 64) return InvalidArgument(f + ".class_histogram", "has more than 64 classes");
  uint64_t classified = 0;
  for (const auto& [k, v] : t.class_histogram()) {
    MF_RETURN_IF_ERROR(ValidateText(k, 128, f + ".class_histogram key"));
    if (v > t.inference_count() - classified) {
      return InvalidArgument(f + ".class_histogram[" + k + "]", "counts more inferences than inference_count");
    }
    classified += v;
  }
  return Status::Ok();
}

uint32_t SpreadInterval(uint32_t base) {
  thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.75, 1.25);
  return std::max<uint32_t>(1, static_cast<uint32_t>(base * jitter(rng)));
}

const v1::RunningModel* RunningOf(const v1::CheckInRequest& request, const std::string& model) {
  for (const auto& m : request.running()) {
    if (m.model() == model) return &m;
  }
  return nullptr;
}

}  // namespace

CheckInService::CheckInService(db::Pool& pool, CheckInOptions options)
    : pool_(pool),
      options_(options),
      write_behind_(pool, {.flush_interval = options.flush_interval, .status_refresh = options.status_refresh}) {
  background_ = std::thread([this] { RunBackground(); });
  device_sync_ = std::thread([this] { RunDeviceSync(); });
  creator_ = std::thread([this] { RunCreator(); });
}

CheckInService::~CheckInService() {
  stop_ = true;
  wake_.notify_all();
  if (background_.joinable()) background_.join();
  if (device_sync_.joinable()) device_sync_.join();
  { std::lock_guard lock(creations_mu_); }  // the creator is waiting, or will see stop_
  creations_cv_.notify_all();
  if (creator_.joinable()) creator_.join();
  // write_behind_ flushes once more as it is destroyed.
}

void CheckInService::InvalidateRollouts() { snapshot_dirty_ = true; }

void CheckInService::InvalidateDevices() {
  std::unique_lock lock(devices_mu_);
  devices_.clear();
}

Status CheckInService::ReloadSnapshot() {
  auto snapshot = std::make_shared<Snapshot>();
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT r.id, r.state, m.name, v.version, v.manifest, r.target, r.cohort_cutoff, r.deployment_timeout_seconds, "
        "r.updated_at::text FROM rollouts r JOIN models m ON m.id = r.model_id JOIN model_versions v ON v.id = r.version_id "
        "WHERE r.state <> $1 ORDER BY r.id DESC LIMIT 200",
        {std::string(RolloutStateName(v1::ROLLOUT_STATE_QUEUED))}));
    for (const auto& row : rows) {
      RolloutView view;
      view.row_id = row.Int(0);
      view.rollout_id = RolloutManager::RolloutId(view.row_id);
      // Parsed here, once per reload, not on every check-in.
      view.state = RolloutStateFromName(row.Str(1)).value_or(v1::ROLLOUT_STATE_UNSPECIFIED);
      view.model = row.Str(2);
      view.version = row.Str(3);
      if (!view.manifest.ParseFromString(row.Bytea(4))) return Internal("corrupt manifest in " + view.rollout_id);
      auto selector = DeviceSelector::Parse(row.Str(5), SelectorKind::kRolloutTarget, "target");
      if (!selector) return selector.error().Annotate("target of " + view.rollout_id);
      view.target = std::move(*selector);
      view.cutoff = row.Double(6);
      view.timeout_seconds = static_cast<uint32_t>(row.Int(7));
      snapshot->fingerprint += std::to_string(view.row_id) + row.Str(1) + row.Str(8) + ";";
      snapshot->rollouts.push_back(std::move(view));
    }
    return Status::Ok();
  }));
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(snapshot);
  return Status::Ok();
}

Expected<std::shared_ptr<const CheckInService::Snapshot>> CheckInService::CurrentSnapshot() {
  bool loaded = false;
  {
    std::lock_guard lock(snapshot_mu_);
    loaded = snapshot_ != nullptr;
  }
  if (snapshot_dirty_.load() || !loaded) {
    // Every check-in that sees the rollouts changed (or none loaded yet) waits for the reload:
    // going on with the old snapshot meanwhile would hand out new assignments of a rollout this
    // replica has just paused, aborted or rolled back.
    std::lock_guard load(snapshot_load_mu_);
    bool reload = snapshot_dirty_.exchange(false);  // before reading: a change during the read marks it again
    {
      std::lock_guard lock(snapshot_mu_);
      reload = reload || snapshot_ == nullptr;
    }
    if (reload) {
      Status s = ReloadSnapshot();
      if (!s.ok()) {
        snapshot_dirty_ = true;
        return Fail(s);
      }
    }
  }
  std::lock_guard lock(snapshot_mu_);
  if (!snapshot_) return Fail(Unavailable("rollouts not loaded yet"));
  return snapshot_;
}

Expected<CheckInService::DeviceInfo> CheckInService::LookupDevice(const auth::Principal& device) {
  {
    std::shared_lock lock(devices_mu_);
    auto it = devices_.find(device.token_id);
    if (it != devices_.end() && std::chrono::steady_clock::now() - it->second.fetched < options_.device_cache_ttl) {
      device_hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second;
    }
  }
  device_misses_.fetch_add(1, std::memory_order_relaxed);
  DeviceInfo info;
  MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, device_id, admission, attributes FROM devices WHERE token_id = $1", {device.token_id}));
    if (rows.empty()) return PermissionDenied("this credential belongs to no device");
    info.row_id = rows[0].Int(0);
    info.device_id = rows[0].Str(1);
    info.admission = rows[0].Str(2);
    info.attributes.ParseFromString(rows[0].Bytea(3));
    return Status::Ok();
  }));
  info.fetched = std::chrono::steady_clock::now();
  // Pending devices are looked up every time, so an acceptance on any replica counts at once.
  // (Rejection and decommissioning revoke the credential, which the token cache drops.)
  if (info.admission != "ACCEPTED") return info;
  std::unique_lock lock(devices_mu_);
  if (devices_.size() > 2'000'000) devices_.clear();  // bound memory
  devices_[device.token_id] = info;
  return info;
}

// The columns CacheDeviceRow reads, in its order.
#define MF_DEVICE_CACHE_COLUMNS "id, device_id, admission, attributes, token_id"

void CheckInService::CacheDeviceRow(const db::Row& row, std::chrono::steady_clock::time_point now) {
  if (row.IsNull(4)) return;  // no credential: cannot check in
  const int64_t token_id = row.Int(4);
  if (row.Str(2) != "ACCEPTED") {
    devices_.erase(token_id);  // pending devices are looked up on every check-in
    return;
  }
  DeviceInfo& info = devices_[token_id];
  info.row_id = row.Int(0);
  info.device_id = row.Str(1);
  info.admission = row.Str(2);
  info.attributes.ParseFromString(row.Bytea(3));
  info.fetched = now;
}

Status CheckInService::LoadAllDevices() {
  constexpr int64_t kPage = 10'000;
  const auto started = std::chrono::steady_clock::now();
  size_t loaded = 0;
  int64_t after = 0;
  for (bool more = true; more && !stop_;) {
    MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "SELECT " MF_DEVICE_CACHE_COLUMNS " FROM devices WHERE id > $1 AND admission = 'ACCEPTED' "
          "AND token_id IS NOT NULL ORDER BY id LIMIT $2",
          {after, kPage}));
      more = static_cast<int64_t>(rows.size()) == kPage;
      const auto now = std::chrono::steady_clock::now();
      std::unique_lock lock(devices_mu_);
      if (devices_.size() > 2'000'000) devices_.clear();  // bound memory
      for (const auto& row : rows) {
        CacheDeviceRow(row, now);
        after = row.Int(0);
      }
      loaded += rows.size();
      return Status::Ok();
    }));
  }
  if (stop_) return Status::Ok();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  spdlog::log(devices_preloaded_ ? spdlog::level::debug : spdlog::level::info,
              "device cache: loaded {} accepted devices in {} ms", loaded, ms.count());
  devices_preloaded_ = true;
  return Status::Ok();
}

Expected<int64_t> CheckInService::ApplyDeviceChangesSince(int64_t since_micros) {
  // changed_at is stamped while the changing transaction runs, so one that commits after this
  // poll may carry an earlier stamp: re-read a margin of a few seconds.
  constexpr int64_t kLateCommitMarginMicros = 5'000'000;
  int64_t clock = 0;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto now, tx.Exec("SELECT " MF_EPOCH_MICROS("clock_timestamp()")));
    clock = now[0].Int(0);
    if (since_micros == 0) return Status::Ok();
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT " MF_DEVICE_CACHE_COLUMNS " FROM devices WHERE changed_at >= to_timestamp($1::float8 / 1e6)",
        {static_cast<double>(since_micros - kLateCommitMarginMicros)}));
    const auto fetched = std::chrono::steady_clock::now();
    std::unique_lock lock(devices_mu_);
    for (const auto& row : rows) CacheDeviceRow(row, fetched);
    return Status::Ok();
  }));
  return clock;
}

void CheckInService::RunDeviceSync() {
  util::CacheSync sync;
  sync.what = "device cache";
  sync.poll_interval = options_.device_poll_interval;
  sync.reload_every = std::max<std::chrono::milliseconds>(options_.device_cache_ttl / 2, options_.device_poll_interval);
  sync.apply_changes_since = [this](int64_t since) { return ApplyDeviceChangesSince(since); };
  sync.load_all = [this] { return LoadAllDevices(); };
  util::RunCacheSync(sync, stop_, wake_mu_, wake_);
}

Expected<std::optional<CheckInService::DeploymentRow>> CheckInService::CreateDeployment(
    std::unique_ptr<Creation> creation) {
  auto result = creation->done.get_future();
  {
    std::lock_guard lock(creations_mu_);
    if (stop_) return Fail(Unavailable("the server is shutting down"));
    creations_.push_back(std::move(creation));
  }
  creations_cv_.notify_one();
  return result.get();
}

void CheckInService::RunCreator() {
  constexpr size_t kMaxBatch = 256;
  for (;;) {
    std::vector<std::unique_ptr<Creation>> batch;
    {
      std::unique_lock lock(creations_mu_);
      creations_cv_.wait(lock, [&] { return stop_.load() || !creations_.empty(); });
      if (creations_.empty()) return;  // stopping, nothing left
      const size_t n = std::min(kMaxBatch, creations_.size());
      batch.assign(std::make_move_iterator(creations_.begin()), std::make_move_iterator(creations_.begin() + n));
      creations_.erase(creations_.begin(), creations_.begin() + n);
    }
    Status written = WriteCreations(batch);
    if (!written.ok()) {
      for (auto& c : batch) c->done.set_value(Fail(written));
    }
  }
}

Status CheckInService::WriteCreations(std::vector<std::unique_ptr<Creation>>& batch) {
  std::string rollout_ids = "[";
  for (const auto& c : batch) {
    if (rollout_ids.size() > 1) rollout_ids += ",";
    rollout_ids += std::to_string(c->rollout_row_id);
  }
  rollout_ids += "]";
  std::map<std::pair<int64_t, int64_t>, DeploymentRow> created;  // by (rollout, device)
  std::set<int64_t> live;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    created.clear();
    live.clear();
    // The snapshot may lag behind a pause, abort or rollback (made on another replica, or
    // while it reloads): check the rollouts themselves. FOR SHARE orders this against
    // RolloutManager::Transition, so a rollback either sees these deployments (and cancels
    // them) or happens first (and this sees it).
    MF_ASSIGN_OR_RETURN(auto states, tx.Exec(
        "SELECT id FROM rollouts WHERE id IN (SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)) "
        "AND state = ANY($2::text[]) FOR SHARE",
        {rollout_ids, RolloutStatesSqlArray(RolloutStatesWhere(AssignsNewDevices))}));
    for (const auto& row : states) live.insert(row.Int(0));
    std::set<std::pair<int64_t, int64_t>> seen;  // one row per (rollout, device): ON CONFLICT touches a row once
    std::string json = "[";
    for (const auto& c : batch) {
      if (!live.count(c->rollout_row_id) || !seen.insert({c->rollout_row_id, c->device_row_id}).second) continue;
      if (json.size() > 1) json += ",";
      json += "{\"rollout\":" + std::to_string(c->rollout_row_id) + ",\"device\":" + std::to_string(c->device_row_id) +
              ",\"target\":" + JsonString(c->target_version) + ",\"pmodel\":" + JsonString(c->previous_model) +
              ",\"pversion\":" + JsonString(c->previous_version) + ",\"event\":" + JsonString(c->event_detail) + "}";
    }
    json += "]";
    if (seen.empty()) return Status::Ok();
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "INSERT INTO deployments (rollout_id, device_id, target_version, previous_model, previous_version, step) "
        "SELECT v.rollout, v.device, v.target, v.pmodel, v.pversion, 'ASSIGNED' FROM jsonb_to_recordset($1::jsonb) "
        "AS v(rollout bigint, device bigint, target text, pmodel text, pversion text) "
        "ON CONFLICT (rollout_id, device_id, is_rollback) DO UPDATE SET rollout_id = EXCLUDED.rollout_id "
        "RETURNING id, step, rollout_id, device_id",
        {json}));
    for (const auto& row : rows) created[{row.Int(2), row.Int(3)}] = DeploymentRow{row.Int(0), row.Str(1), {}};
    return StatusOf(tx.Exec(
        "INSERT INTO device_events (device_id, kind, detail) SELECT v.device, 'assigned', v.event "
        "FROM jsonb_to_recordset($1::jsonb) AS v(device bigint, event text)",
        {json}));
  }));
  for (auto& c : batch) {
    auto it = created.find({c->rollout_row_id, c->device_row_id});
    if (it == created.end()) {
      c->done.set_value(std::optional<DeploymentRow>());
    } else {
      c->done.set_value(std::optional<DeploymentRow>(it->second));
    }
  }
  return Status::Ok();
}

CheckInService::CacheStats CheckInService::Stats() {
  std::shared_lock lock(devices_mu_);
  return {device_hits_.load(), device_misses_.load(), devices_.size(), devices_preloaded_.load(),
          telemetry_rejected_.load(), write_behind_.GetStats()};
}

namespace {
Status ReadManifest(db::Tx& tx, const std::string& model, const std::string& version, v1::Manifest* manifest) {
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
      "SELECT v.manifest FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.name = $1 AND v.version = $2",
      {model, version}));
  if (rows.empty()) return NotFound("version " + model + "@" + version + " no longer exists");
  manifest->ParseFromString(rows[0].Bytea(0));
  return Status::Ok();
}
}  // namespace

Expected<v1::Manifest> CheckInService::ManifestOf(const std::string& model, const std::string& version) {
  const std::string key = model + "@" + version;
  {
    std::lock_guard lock(manifests_mu_);
    if (auto it = manifests_.find(key); it != manifests_.end()) return it->second;
  }
  v1::Manifest manifest;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status { return ReadManifest(tx, model, version, &manifest); }));
  std::lock_guard lock(manifests_mu_);
  manifests_[key] = manifest;
  return manifest;
}

Expected<v1::CheckInResponse> CheckInService::CheckIn(const auth::Principal& principal,
                                                      const v1::CheckInRequest& request) {
  MF_RETURN_IF_ERROR(ValidateCheckIn(request));
  MF_ASSIGN_OR_RETURN(DeviceInfo device, LookupDevice(principal));
  if (request.has_attributes() && request.attributes().SerializeAsString() != device.attributes.SerializeAsString()) {
    MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
      const auto& a = request.attributes();
      return StatusOf(tx.Exec(
          "UPDATE devices SET site = $2, hardware_revision = $3, firmware_version = $4, sensor_rows = $5, "
          "sensor_cols = $6, labels = $7::jsonb, attributes = $8::bytea WHERE id = $1",
          {device.row_id, a.site(), a.hardware_revision(), a.firmware_version(), static_cast<int64_t>(a.sensor_rows()),
           static_cast<int64_t>(a.sensor_cols()), JsonStringObject(a.labels()), db::Bytes{a.SerializeAsString()}}));
    }));
    device.attributes = request.attributes();
    std::unique_lock lock(devices_mu_);
    devices_[principal.token_id].attributes = request.attributes();
  }
  // Bad telemetry entries are dropped here (see the header); the rest of the check-in counts.
  google::protobuf::RepeatedPtrField<v1::VersionTelemetry> telemetry;
  for (int i = 0; i < request.telemetry_size(); ++i) {
    Status valid = ValidateTelemetry(request.telemetry(i), "telemetry[" + std::to_string(i) + "]");
    if (valid.ok()) {
      *telemetry.Add() = request.telemetry(i);
      continue;
    }
    telemetry_rejected_.fetch_add(1, std::memory_order_relaxed);
    const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now().time_since_epoch()).count();
    int64_t last = last_rejection_log_.load(std::memory_order_relaxed);
    if (now_s != last && last_rejection_log_.compare_exchange_strong(last, now_s)) {
      spdlog::warn("dropped telemetry of device {} (total dropped: {}): {}", device.device_id,
                   telemetry_rejected_.load(), valid.ToString());
    }
  }
  Enqueue(device, request, telemetry);

  v1::CheckInResponse response;
  response.set_next_check_in_seconds(SpreadInterval(options_.check_in_interval_seconds));
  v1::DeviceAdmission admission = v1::DEVICE_ADMISSION_PENDING;
  v1::DeviceAdmission_Parse("DEVICE_ADMISSION_" + device.admission, &admission);
  response.set_admission(admission);
  if (device.admission != "ACCEPTED") {
    response.set_keep_current(true);
    return response;
  }
  MF_ASSIGN_OR_RETURN(auto snapshot, CurrentSnapshot());
  MF_ASSIGN_OR_RETURN(v1::CheckInResponse decided, Decide(device, request, *snapshot));
  decided.set_next_check_in_seconds(response.next_check_in_seconds());
  decided.set_admission(admission);
  return decided;
}

Expected<v1::CheckInResponse> CheckInService::Decide(const DeviceInfo& device, const v1::CheckInRequest& request,
                                                     const Snapshot& snapshot) {
  v1::CheckInResponse keep;
  keep.set_keep_current(true);
  // The newest rollout whose cohort holds the device decides, one per model.
  std::set<std::string> decided_models;
  for (const RolloutView& r : snapshot.rollouts) {
    if (decided_models.count(r.model)) continue;
    if (!r.target.Matches(device.attributes)) continue;
    if (CohortBucket(device.device_id, r.rollout_id) >= r.cutoff) continue;
    decided_models.insert(r.model);
    if (r.state == v1::ROLLOUT_STATE_ABORTED) continue;  // devices stay where they are
    const v1::RunningModel* running = RunningOf(request, r.model);
    const bool rollback = r.state == v1::ROLLOUT_STATE_ROLLED_BACK;
    // Only devices still running the rolled-back version have anything to do (and only they
    // cost a database round trip).
    if (rollback && (!running || running->version() != r.version)) continue;

    if (!rollback && running && running->version() == r.version &&
        (running->digest().empty() || running->digest() == r.manifest.digest())) {
      continue;  // already runs it
    }
    // From here on the device is being deployed: its deployment rows decide. One autocommit
    // read finds them; only creating one takes a (short) write transaction.
    std::optional<DeploymentRow> forward, backward;
    MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "SELECT id, step, previous_version, is_rollback FROM deployments WHERE rollout_id = $1 AND device_id = $2",
          {r.row_id, device.row_id}));
      for (const auto& row : rows) {
        (row.Bool(3) ? backward : forward) = DeploymentRow{row.Int(0), row.Str(1), row.Str(2)};
      }
      return Status::Ok();
    }));
    v1::Assignment assignment;
    if (rollback) {
      if (!forward || forward->previous_version.empty()) continue;  // nothing to go back to
      const std::string& previous = forward->previous_version;
      if (running && running->version() == previous) continue;  // already back
      if (!backward) {
        MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
          MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
              "INSERT INTO deployments (rollout_id, device_id, is_rollback, target_version, previous_model, "
              "previous_version, step) VALUES ($1, $2, TRUE, $3, $4, $5, 'ASSIGNED') "
              "ON CONFLICT (rollout_id, device_id, is_rollback) DO UPDATE SET rollout_id = EXCLUDED.rollout_id "
              "RETURNING id, step",
              {r.row_id, device.row_id, previous, r.model, running ? running->version() : std::string()}));
          backward = DeploymentRow{rows[0].Int(0), rows[0].Str(1), {}};
          return Status::Ok();
        }));
      }
      if (IsTerminal(StepFromName(backward->step))) continue;
      MF_ASSIGN_OR_RETURN(*assignment.mutable_manifest(), ManifestOf(r.model, previous));
      assignment.set_deployment_id(DeploymentId(backward->id));
      assignment.set_is_rollback(true);
      assignment.set_download_version(previous);
    } else {
      if (!forward) {
        if (!AssignsNewDevices(r.state)) continue;  // paused: no new devices
        auto creation = std::make_unique<Creation>();
        creation->rollout_row_id = r.row_id;
        creation->device_row_id = device.row_id;
        creation->target_version = r.version;
        creation->previous_model = running ? r.model : std::string();
        creation->previous_version = running ? running->version() : std::string();
        creation->event_detail = r.rollout_id + ": " + r.model + "@" + r.version;
        MF_ASSIGN_OR_RETURN(forward, CreateDeployment(std::move(creation)));
        if (!forward) continue;  // the rollout is no longer running
      }
      if (IsTerminal(StepFromName(forward->step))) continue;  // failed, timed out, ...
      *assignment.mutable_manifest() = r.manifest;
      assignment.set_deployment_id(DeploymentId(forward->id));
      assignment.set_download_version(r.version);
    }
    assignment.set_rollout_id(r.rollout_id);
    assignment.set_download_model(r.model);
    assignment.set_timeout_seconds(r.timeout_seconds);
    v1::CheckInResponse response;
    *response.mutable_assignment() = std::move(assignment);
    return response;
  }
  // A device that says it is applying an assignment, which this replica's snapshot does not
  // (yet) give it (the snapshot may lag a stage change made on another replica by up to a
  // refresh): its deployment row decides, so replicas never disagree about an assignment under
  // way. Rare, so one read is affordable.
  switch (request.agent_state()) {
    case v1::AGENT_STATE_DOWNLOADING:
    case v1::AGENT_STATE_VERIFYING:
    case v1::AGENT_STATE_INSTALLING:
    case v1::AGENT_STATE_SELF_TESTING: {
      MF_ASSIGN_OR_RETURN(std::optional<v1::Assignment> under_way, AssignmentUnderWay(device));
      if (under_way) {
        v1::CheckInResponse response;
        *response.mutable_assignment() = std::move(*under_way);
        return response;
      }
      break;
    }
    default:
      break;
  }
  return keep;
}

Expected<std::optional<v1::Assignment>> CheckInService::AssignmentUnderWay(const DeviceInfo& device) {
  std::optional<v1::Assignment> assignment;
  std::string model, version;
  MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT dep.id, dep.is_rollback, dep.target_version, m.name, r.id, r.deployment_timeout_seconds "
        "FROM deployments dep JOIN rollouts r ON r.id = dep.rollout_id JOIN models m ON m.id = r.model_id "
        "WHERE dep.device_id = $1 AND dep.step IN " MF_IN_PROGRESS_STEPS_SQL " AND r.state <> $2 "
        "ORDER BY dep.id DESC LIMIT 1",
        {device.row_id, std::string(RolloutStateName(v1::ROLLOUT_STATE_ABORTED))}));
    if (rows.empty()) return Status::Ok();
    assignment.emplace();
    assignment->set_deployment_id(DeploymentId(rows[0].Int(0)));
    assignment->set_is_rollback(rows[0].Bool(1));
    version = rows[0].Str(2);
    model = rows[0].Str(3);
    assignment->set_rollout_id(RolloutManager::RolloutId(rows[0].Int(4)));
    assignment->set_timeout_seconds(static_cast<uint32_t>(rows[0].Int(5)));
    return Status::Ok();
  }));
  if (!assignment) return assignment;
  MF_ASSIGN_OR_RETURN(*assignment->mutable_manifest(), ManifestOf(model, version));
  assignment->set_download_model(model);
  assignment->set_download_version(version);
  return assignment;
}

Status CheckInService::ReportDeployment(const auth::Principal& principal, const v1::DeploymentReport& report) {
  MF_ASSIGN_OR_RETURN(int64_t id, ParseDeploymentId(report.deployment_id(), "deployment_id"));
  if (report.step() == v1::DEPLOYMENT_STEP_UNSPECIFIED) return InvalidArgument("step", "is required");
  if (!v1::DeploymentStep_IsValid(report.step())) {
    return InvalidArgument("step", std::to_string(report.step()) + " is not a deployment step this server knows");
  }
  // Stored as bigint: a uint64 past its range would wrap to a negative count.
  if (report.bytes_done() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return InvalidArgument("bytes_done", "is out of range");
  }
  if (report.step() == v1::DEPLOYMENT_STEP_TIMED_OUT || report.step() == v1::DEPLOYMENT_STEP_CANCELLED ||
      report.step() == v1::DEPLOYMENT_STEP_ASSIGNED) {
    return InvalidArgument("step", "is set by the server, not reported by devices");
  }
  MF_RETURN_IF_ERROR(ValidateText(report.reason(), 2048, "reason"));
  MF_ASSIGN_OR_RETURN(DeviceInfo device, LookupDevice(principal));
  std::string sources = "{";
  for (auto s : LegalSources(report.step(), TransitionBy::kDevice)) sources += std::string(StepName(s)) + ",";
  sources.back() = '}';
  return pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto updated, tx.Exec(
        "UPDATE deployments SET step = $3, bytes_done = greatest(bytes_done, $4), reason = $5, updated_at = now() "
        "WHERE id = $1 AND device_id = $2 AND step = ANY($6::text[]) RETURNING rollout_id",
        {id, device.row_id, std::string(StepName(report.step())), static_cast<int64_t>(report.bytes_done()),
         report.reason(), sources}));
    if (updated.empty()) {
      MF_ASSIGN_OR_RETURN(auto current, tx.Exec("SELECT step FROM deployments WHERE id = $1 AND device_id = $2",
                                                {id, device.row_id}));
      if (current.empty()) {
        return NotFound("deployment " + report.deployment_id() + " is not a deployment of this device").WithField("deployment_id");
      }
      return FailedPrecondition("deployment " + report.deployment_id() + " cannot go from " + current[0].Str(0) + " to " +
                                std::string(StepName(report.step())));
    }
    if (IsTerminal(report.step())) {
      MF_RETURN_IF_ERROR(RecordDeviceEvent(tx, device.row_id, "deployment",
                                           report.deployment_id() + " " + std::string(StepName(report.step())) +
                                               (report.reason().empty() ? "" : ": " + report.reason())));
    }
    return Status::Ok();
  });
}

void CheckInService::Enqueue(const DeviceInfo& device, const v1::CheckInRequest& request,
                             const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry) {
  WriteBehind::DeviceStatus status;
  if (!request.running().empty()) {
    status.model = request.running(0).model();
    status.version = request.running(0).version();
    status.digest = request.running(0).digest();
  }
  // A state this server does not know (a newer agent) is kept as UNKNOWN, never refused.
  status.agent_state = v1::AgentState_IsValid(request.agent_state())
                           ? v1::AgentState_Name(request.agent_state()).substr(std::string_view("AGENT_STATE_").size())
                           : "UNKNOWN";
  write_behind_.Record(device.row_id, device.device_id, std::move(status), telemetry);
}

Status CheckInService::Flush() { return write_behind_.Flush(); }

void CheckInService::RunBackground() {
  auto last_refresh = std::chrono::steady_clock::now();
  std::string last_fingerprint;
  while (!stop_) {
    {
      std::unique_lock lock(wake_mu_);
      wake_.wait_for(lock, options_.refresh_interval, [&] { return stop_.load(); });
    }
    if (stop_) break;
    if (std::chrono::steady_clock::now() - last_refresh >= options_.refresh_interval) {
      last_refresh = std::chrono::steady_clock::now();
      // Cheap change detection: reload the snapshot only when the rollouts table moved.
      Status polled = pool_.Read([&](db::Tx& tx) -> Status {
        MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT coalesce(max(updated_at)::text, '') || ':' || count(*) FROM rollouts"));
        std::string fingerprint = rows[0].Str(0);
        if (fingerprint != last_fingerprint) {
          last_fingerprint = fingerprint;
          snapshot_dirty_ = true;
        }
        return Status::Ok();
      });
      if (!polled.ok()) spdlog::warn("polling rollouts failed: {}", polled.ToString());
    }
  }
}

}  // namespace modelfleet::fleet
