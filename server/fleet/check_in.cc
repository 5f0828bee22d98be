#include "fleet/check_in.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>
#include <random>

#include "fleet/check_in_decision.h"
#include "modelfleet/crypto.h"
#include "fleet/deployment_state.h"
#include "fleet/device_registry.h"
#include "fleet/rollout_manager.h"
#include "fleet/rollout_state.h"
#include "events/event_log.h"
#include "modelfleet/json.h"
#include "modelfleet/validation.h"
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

}  // namespace

CheckInService::CheckInService(db::Pool& pool, CheckInOptions options)
    : pool_(pool),
      options_(options),
      write_behind_(pool, {.flush_interval = options.flush_interval, .status_refresh = options.status_refresh}),
      devices_(pool, {.ttl = options.device_cache_ttl,
                      .poll_interval = options.device_poll_interval,
                      .on_loaded =
                          [this](const StoredDeviceStatus& stored) {
                            write_behind_.KnowWritten(stored.row_id,
                                                      {.model = stored.model,
                                                       .version = stored.version,
                                                       .digest = stored.digest,
                                                       .agent_state = stored.agent_state},
                                                      stored.last_seen);
                          }}),
      rollouts_(pool, options.refresh_interval),
      deployments_(pool, {.poll_interval = options.device_poll_interval}) {}

// Members stop in reverse order: deployments (failing queued creations), rollouts, devices,
// then the write-behind flushes once more.
CheckInService::~CheckInService() = default;

void CheckInService::RolloutsChanged() { rollouts_.Invalidate(); }
void CheckInService::DeploymentsChanged() { deployments_.Refresh(); }
void CheckInService::DeviceChanged(int64_t device_row_id) { devices_.DeviceChanged(device_row_id); }

CheckInService::CacheStats CheckInService::Stats() {
  const DeviceCache::Stats devices = devices_.GetStats();
  const DeploymentStore::Stats deployments = deployments_.GetStats();
  return {devices.hits, devices.misses, devices.miss_reads, devices.devices, devices.preloaded,
          deployments.deployments, deployments.loaded, deployment_reads_.load(), telemetry_rejected_.load(),
          write_behind_.GetStats(), rollouts_.GetStats(), check_ins_without_blocking_.load(),
          check_ins_may_block_.load()};
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

std::optional<v1::Manifest> CheckInService::CachedManifestOf(const std::string& model, const std::string& version) {
  std::lock_guard lock(manifests_mu_);
  if (auto it = manifests_.find(model + "@" + version); it != manifests_.end()) return it->second;
  return std::nullopt;
}

Expected<v1::Manifest> CheckInService::ManifestOf(const std::string& model, const std::string& version) {
  if (auto cached = CachedManifestOf(model, version)) return *cached;
  v1::Manifest manifest;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status { return ReadManifest(tx, model, version, &manifest); }));
  std::lock_guard lock(manifests_mu_);
  manifests_[model + "@" + version] = manifest;
  return manifest;
}

Expected<v1::CheckInResponse> CheckInService::CheckIn(const auth::Principal& principal,
                                                      const v1::CheckInRequest& request) {
  return *CheckIn(principal, request, /*may_block=*/true);
}

std::optional<Expected<v1::CheckInResponse>> CheckInService::CheckInWithoutBlocking(const auth::Principal& principal,
                                                                                    const v1::CheckInRequest& request) {
  return CheckIn(principal, request, /*may_block=*/false);
}

std::optional<Expected<v1::CheckInResponse>> CheckInService::CheckIn(const auth::Principal& principal,
                                                                     const v1::CheckInRequest& request, bool may_block) {
  // Until the "no side effect yet" line below, a path that would wait on the database returns
  // nullopt when !may_block.
  MF_RETURN_IF_ERROR(ValidateCheckIn(request));
  std::optional<CachedDevice> cached = devices_.Find(principal.token_id);
  const bool in_memory = cached.has_value();
  if (!cached && !may_block) return std::nullopt;
  if (!cached) {
    auto looked_up = devices_.Lookup(principal.token_id);
    if (!looked_up) return Fail(looked_up.error());
    cached = std::move(*looked_up);
  }
  CachedDevice& device = *cached;
  const bool new_attributes =
      request.has_attributes() && request.attributes().SerializeAsString() != device.attributes.SerializeAsString();
  if (new_attributes && !may_block) return std::nullopt;
  std::shared_ptr<const RolloutSnapshot> snapshot;
  std::vector<const RolloutView*> holding;
  std::optional<Expected<v1::CheckInResponse>> decided;
  const bool accepted = device.admission == "ACCEPTED";
  if (accepted && !new_attributes) {
    snapshot = rollouts_.CurrentIfFresh();
    if (!snapshot && !may_block) return std::nullopt;
    if (snapshot) {
      holding = RolloutsHolding(device.device_id, device.attributes, *snapshot);
      decided = Decide(device, request, holding, may_block);
      if (!decided) return std::nullopt;  // it needs the database; nothing was done
    }
  }
  // No side effect before this line on a path that returned nullopt.
  if (in_memory) devices_.CountHit();
  (may_block ? check_ins_may_block_ : check_ins_without_blocking_).fetch_add(1, std::memory_order_relaxed);
  if (new_attributes) {
    MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
      const auto& a = request.attributes();
      return StatusOf(tx.Exec(
          "UPDATE devices SET site = $2, hardware_revision = $3, firmware_version = $4, sensor_rows = $5, "
          "sensor_cols = $6, labels = $7::jsonb, attributes = $8::bytea WHERE id = $1",
          {device.row_id, a.site(), a.hardware_revision(), a.firmware_version(), static_cast<int64_t>(a.sensor_rows()),
           static_cast<int64_t>(a.sensor_cols()), JsonStringObject(a.labels()), db::Bytes{a.SerializeAsString()}}));
    }));
    device.attributes = request.attributes();
    devices_.AttributesWritten(principal.token_id, request.attributes());
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
  v1::DeviceAdmission admission = v1::DEVICE_ADMISSION_PENDING;
  v1::DeviceAdmission_Parse("DEVICE_ADMISSION_" + device.admission, &admission);
  if (!accepted) {
    Enqueue(device, request, telemetry, {});
    v1::CheckInResponse response;
    response.set_keep_current(true);
    response.set_next_check_in_seconds(SpreadInterval(options_.check_in_interval_seconds));
    response.set_admission(admission);
    return response;
  }
  if (!snapshot) {  // a reload is due (or the attributes just changed): may block from here on
    auto current = rollouts_.Current();
    if (!current) {
      Enqueue(device, request, telemetry, {});  // what it reported still counts
      return Fail(current.error());
    }
    snapshot = std::move(*current);
    holding = RolloutsHolding(device.device_id, device.attributes, *snapshot);
    decided = Decide(device, request, holding, /*may_block=*/true);
  }
  Enqueue(device, request, telemetry, holding);
  if (!*decided) return Fail(decided->error());
  v1::CheckInResponse response = std::move(**decided);
  response.set_next_check_in_seconds(SpreadInterval(options_.check_in_interval_seconds));
  response.set_admission(admission);
  return response;
}

std::optional<Expected<v1::CheckInResponse>> CheckInService::Decide(const CachedDevice& device,
                                                                    const v1::CheckInRequest& request,
                                                                    const std::vector<const RolloutView*>& holding,
                                                                    bool may_block) {
  using Action = CheckInDecision::Action;
  // Rows read from the database for rollouts the store cannot answer for (kReadDeployment).
  std::map<std::pair<int64_t, bool>, std::optional<DeploymentEntry>> read;
  std::vector<int64_t> settled;
  const DeploymentLookup lookup = [&](int64_t rollout_row_id, bool is_rollback, DeploymentEntry* entry) {
    if (auto it = read.find({rollout_row_id, is_rollback}); it != read.end()) {
      if (!it->second) return DeploymentStore::Known::kNo;
      *entry = *it->second;
      return DeploymentStore::Known::kYes;
    }
    return deployments_.Find(rollout_row_id, device.row_id, is_rollback, entry);
  };
  // Each pass either answers or learns something (a row read or created, a rollout settled),
  // so this ends; the bound is a guard against a bug, not a limit a fleet reaches.
  for (int pass = 0; pass < 16; ++pass) {
    CheckInDecision d = DecideCheckIn(request, holding, lookup, settled);
    const RolloutView* r = d.rollout;
    const bool needs_database =
        d.action == Action::kReadDeployment || d.action == Action::kCreateForward ||
        d.action == Action::kCreateRollback || d.action == Action::kLookUpUnderWay ||
        (d.action == Action::kAssign && d.is_rollback && !CachedManifestOf(r->model, d.download_version));
    if (needs_database && !may_block) return std::nullopt;
    switch (d.action) {
      case Action::kKeep: {
        v1::CheckInResponse keep;
        keep.set_keep_current(true);
        return keep;
      }
      case Action::kReadDeployment: {
        deployment_reads_.fetch_add(1, std::memory_order_relaxed);
        read[{r->row_id, false}] = std::nullopt;
        read[{r->row_id, true}] = std::nullopt;
        MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
          MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
              "SELECT id, step, previous_version, is_rollback FROM deployments WHERE rollout_id = $1 AND device_id = $2",
              {r->row_id, device.row_id}));
          for (const auto& row : rows) {
            read[{r->row_id, row.Bool(3)}] = DeploymentEntry{row.Int(0), StepFromName(row.Str(1)), row.Str(2)};
          }
          return Status::Ok();
        }));
        continue;
      }
      case Action::kCreateForward: {
        MF_ASSIGN_OR_RETURN(auto created, deployments_.CreateForward({.rollout_row_id = r->row_id,
                                                                      .device_row_id = device.row_id,
                                                                      .target_version = r->version,
                                                                      .previous_model = d.previous_model,
                                                                      .previous_version = d.previous_version,
                                                                      .event_detail = r->rollout_id + ": " + r->model +
                                                                                      "@" + r->version}));
        if (!created) {
          settled.push_back(r->row_id);  // the rollout no longer assigns new devices
        } else {
          read[{r->row_id, false}] = created;
        }
        continue;
      }
      case Action::kCreateRollback: {
        MF_ASSIGN_OR_RETURN(DeploymentEntry created,
                            deployments_.CreateRollback(r->row_id, device.row_id, r->model, d.download_version,
                                                        d.previous_version));
        read[{r->row_id, true}] = created;
        continue;
      }
      case Action::kAssign: {
        v1::CheckInResponse response;
        v1::Assignment& assignment = *response.mutable_assignment();
        if (d.is_rollback) {
          MF_ASSIGN_OR_RETURN(*assignment.mutable_manifest(), ManifestOf(r->model, d.download_version));
          assignment.set_is_rollback(true);
        } else {
          *assignment.mutable_manifest() = r->manifest;
        }
        assignment.set_deployment_id(DeploymentId(d.deployment_id));
        assignment.set_download_version(d.download_version);
        assignment.set_rollout_id(r->rollout_id);
        assignment.set_download_model(r->model);
        assignment.set_timeout_seconds(r->timeout_seconds);
        return response;
      }
      case Action::kLookUpUnderWay: {
        MF_ASSIGN_OR_RETURN(std::optional<v1::Assignment> under_way, AssignmentUnderWay(device));
        v1::CheckInResponse response;
        if (under_way) {
          *response.mutable_assignment() = std::move(*under_way);
        } else {
          response.set_keep_current(true);
        }
        return response;
      }
    }
  }
  return Fail(Internal("the check-in decision did not settle for device " + device.device_id));
}

Expected<std::optional<v1::Assignment>> CheckInService::AssignmentUnderWay(const CachedDevice& device) {
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
  MF_ASSIGN_OR_RETURN(CachedDevice device, devices_.Lookup(principal.token_id));
  std::string sources = "{";
  for (auto s : LegalSources(report.step(), TransitionBy::kDevice)) sources += std::string(StepName(s)) + ",";
  sources.back() = '}';
  int64_t rollout_row_id = 0, updated_micros = 0;
  bool is_rollback = false;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto updated, tx.Exec(
        "UPDATE deployments SET step = $3, bytes_done = greatest(bytes_done, $4), reason = $5, updated_at = now() "
        "WHERE id = $1 AND device_id = $2 AND step = ANY($6::text[]) "
        "RETURNING rollout_id, is_rollback, " MF_EPOCH_MICROS("updated_at"),
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
    rollout_row_id = updated[0].Int(0);
    is_rollback = updated[0].Bool(1);
    updated_micros = updated[0].Int(2);
    if (IsTerminal(report.step())) {
      MF_RETURN_IF_ERROR(RecordDeviceEvent(tx, device.row_id, "deployment",
                                           report.deployment_id() + " " + std::string(StepName(report.step())) +
                                               (report.reason().empty() ? "" : ": " + report.reason())));
    }
    // Failures only: a report of progress or success (the bulk of the reports) writes no event.
    if (!IsFailure(report.step())) return Status::Ok();
    return StatusOf(events::AppendEvent(tx, {"deployment.failed", principal.Actor(), "device", device.device_id,
                                             events::Payload()
                                                 .Str("deployment_id", report.deployment_id())
                                                 .Str("rollout_id", RolloutManager::RolloutId(rollout_row_id))
                                                 .Bool("is_rollback", is_rollback)
                                                 .Str("step", StepName(report.step()))
                                                 .Str("reason", report.reason())}));
  }));
  deployments_.Reported(rollout_row_id, device.row_id, is_rollback, report.step(), updated_micros);
  return Status::Ok();
}

void CheckInService::Enqueue(const CachedDevice& device, const v1::CheckInRequest& request,
                             const google::protobuf::RepeatedPtrField<v1::VersionTelemetry>& telemetry,
                             const std::vector<const RolloutView*>& holding) {
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
  std::vector<std::pair<std::string, int64_t>> arms;
  arms.reserve(holding.size());
  for (const RolloutView* r : holding) arms.emplace_back(r->model, r->row_id);
  write_behind_.Record(device.row_id, device.device_id, std::move(status), telemetry, arms);
}

Status CheckInService::Flush() { return write_behind_.Flush(); }

}  // namespace modelfleet::fleet
