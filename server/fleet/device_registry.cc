#include "fleet/device_registry.h"

#include <algorithm>
#include <cctype>

#include "events/event_log.h"
#include "fleet/deployment_state.h"
#include "fleet/device_selector.h"
#include "fleet/rollout_manager.h"
#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/validation.h"
#include "util/page_token.h"
#include "util/time.h"

namespace modelfleet::fleet {

namespace {

constexpr int kDefaultPageSize = 100;
constexpr std::string_view kEnrollmentPrefix = "mfe_";

const char* const kEnrollmentColumns =
    "id, name, max_uses, uses, auto_accept, created_by, " MF_EPOCH_MICROS("created_at") ", " MF_EPOCH_MICROS(
        "expires_at") ", " MF_EPOCH_MICROS("revoked_at");

v1::EnrollmentToken EnrollmentTokenFromRow(const db::Row& row) {
  v1::EnrollmentToken t;
  t.set_id(row.Int(0));
  t.set_name(row.Str(1));
  t.set_max_uses(static_cast<uint32_t>(row.Int(2)));
  t.set_uses(static_cast<uint32_t>(row.Int(3)));
  t.set_auto_accept(row.Bool(4));
  t.set_created_by(row.Str(5));
  SetTimestamp(row.OptInt(6), t.mutable_create_time());
  if (!row.IsNull(7)) SetTimestamp(row.OptInt(7), t.mutable_expire_time());
  if (!row.IsNull(8)) SetTimestamp(row.OptInt(8), t.mutable_revoke_time());
  return t;
}

std::string AdmissionName(v1::DeviceAdmission a) {
  return v1::DeviceAdmission_Name(a).substr(std::string_view("DEVICE_ADMISSION_").size());
}

v1::DeviceAdmission AdmissionFromName(const std::string& name) {
  if (name == "PREAUTHORIZED") return v1::DEVICE_ADMISSION_PENDING;  // not enrolled yet: shown as pending
  v1::DeviceAdmission a = v1::DEVICE_ADMISSION_UNSPECIFIED;
  v1::DeviceAdmission_Parse("DEVICE_ADMISSION_" + name, &a);
  return a;
}

std::vector<db::Param> AttributeParams(const v1::DeviceAttributes& a) {
  return {a.site(), a.hardware_revision(), a.firmware_version(), static_cast<int64_t>(a.sensor_rows()),
          static_cast<int64_t>(a.sensor_cols()), JsonStringObject(a.labels()), db::Bytes{a.SerializeAsString()}};
}

std::string NewDeviceId() { return "dev-" + HexEncode(RandomBytes(8)); }

}  // namespace

const char* const kDeviceColumns =
    "d.id, d.device_id, d.hardware_id, d.admission, d.attributes, d.running_model, d.running_version, "
    "d.running_digest, d.agent_state, " MF_EPOCH_MICROS("d.last_seen") ", "
    "(SELECT dp.id FROM deployments dp WHERE dp.device_id = d.id ORDER BY dp.id DESC LIMIT 1), "
    "(SELECT dp.step FROM deployments dp WHERE dp.device_id = d.id ORDER BY dp.id DESC LIMIT 1), "
    "(SELECT dp.rollout_id FROM deployments dp WHERE dp.device_id = d.id ORDER BY dp.id DESC LIMIT 1), "
    "(SELECT dp.reason FROM deployments dp WHERE dp.device_id = d.id ORDER BY dp.id DESC LIMIT 1)";

v1::Device DeviceFromRow(const db::Row& row) {
  v1::Device d;
  d.set_device_id(row.Str(1));
  d.set_hardware_id(row.Str(2));
  d.set_admission(AdmissionFromName(row.Str(3)));
  d.mutable_attributes()->ParseFromString(row.Bytea(4));
  if (!row.Str(5).empty()) {
    auto* running = d.add_running();
    running->set_model(row.Str(5));
    running->set_version(row.Str(6));
    running->set_digest(row.Str(7));
  }
  v1::AgentState state = v1::AGENT_STATE_UNSPECIFIED;
  v1::AgentState_Parse("AGENT_STATE_" + row.Str(8), &state);
  d.set_agent_state(state);
  if (!row.IsNull(9)) SetTimestamp(row.OptInt(9), d.mutable_last_seen());
  if (!row.IsNull(10)) {
    d.set_current_deployment_id(DeploymentId(row.Int(10)));
    d.set_current_deployment_step(StepFromName(row.Str(11)));
    d.set_current_rollout_id(RolloutManager::RolloutId(row.Int(12)));
    d.set_current_deployment_reason(row.Str(13));
  }
  return d;
}

Status DeviceRegistry::AuthorizeDownload(const auth::Principal& device, const v1::VersionRef& ref) {
  if (ref.selector_case() != v1::VersionRef::kVersion) {
    return PermissionDenied("devices download the version they were assigned, by version, not by alias");
  }
  const std::string what = ref.model() + "@" + ref.version();
  bool assigned = false;
  MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT 1 FROM deployments dep JOIN devices d ON d.id = dep.device_id JOIN rollouts r ON r.id = dep.rollout_id "
        "JOIN models m ON m.id = r.model_id WHERE d.token_id = $1 AND m.name = $2 AND dep.target_version = $3 "
        "AND (dep.step IN " MF_IN_PROGRESS_STEPS_SQL " OR dep.step = 'ACTIVATED') LIMIT 1",
        {device.token_id, ref.model(), ref.version()}));
    assigned = !rows.empty();
    return Status::Ok();
  }));
  if (!assigned) return PermissionDenied("this device has no deployment of " + what);
  return Status::Ok();
}

Status RecordDeviceEvent(db::Tx& tx, int64_t device_row_id, const std::string& kind, const std::string& detail) {
  return StatusOf(tx.Exec("INSERT INTO device_events (device_id, kind, detail) VALUES ($1, $2, $3)",
                          {device_row_id, kind, detail}));
}

Status DeviceRegistry::ValidateAttributes(const v1::DeviceAttributes& a, const std::string& field) {
  MF_RETURN_IF_ERROR(ValidateText(a.site(), 128, field + ".site"));
  MF_RETURN_IF_ERROR(ValidateText(a.hardware_revision(), 64, field + ".hardware_revision"));
  MF_RETURN_IF_ERROR(ValidateText(a.firmware_version(), 64, field + ".firmware_version"));
  if (a.sensor_rows() > 4096 || a.sensor_cols() > 4096) {
    return InvalidArgument(field + ".sensor_rows", "sensor grid dimensions must be at most 4096");
  }
  if (a.labels_size() > 64) return InvalidArgument(field + ".labels", "has more than 64 entries");
  for (const auto& [k, v] : a.labels()) {
    MF_RETURN_IF_ERROR(ValidateIdentifier(k, field + ".labels key"));
    MF_RETURN_IF_ERROR(ValidateText(v, 256, field + ".labels." + k));
  }
  return Status::Ok();
}

Expected<v1::CreateEnrollmentTokenResponse> DeviceRegistry::CreateEnrollmentToken(
    const v1::CreateEnrollmentTokenRequest& request, const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.name(), "name"));
  if (request.max_uses() > 10'000'000) return Fail(InvalidArgument("max_uses", "must be at most 10000000"));
  if (request.ttl_seconds() < 0 || request.ttl_seconds() > 10LL * 365 * 24 * 3600) {
    return Fail(InvalidArgument("ttl_seconds", "must be between 0 (never expires) and 10 years"));
  }
  std::string secret = std::string(kEnrollmentPrefix) + HexEncode(RandomBytes(32));
  v1::CreateEnrollmentTokenResponse response;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "INSERT INTO enrollment_tokens (name, token_hash, max_uses, auto_accept, created_by, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::bigint > 0 THEN now() + make_interval(secs => $6::bigint) END) "
        "RETURNING id",
        {request.name(), Sha256Hex(secret), static_cast<int64_t>(request.max_uses()), request.auto_accept(),
         caller.Actor(), static_cast<int64_t>(request.ttl_seconds())}));
    response.set_id(rows[0].Int(0));
    return Status::Ok();
  }));
  response.set_token(secret);
  return response;
}

Expected<v1::ListEnrollmentTokensResponse> DeviceRegistry::ListEnrollmentTokens() {
  v1::ListEnrollmentTokensResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(std::string("SELECT ") + kEnrollmentColumns +
                                           " FROM enrollment_tokens ORDER BY id"));
    for (const auto& row : rows) *response.add_tokens() = EnrollmentTokenFromRow(row);
    return Status::Ok();
  }));
  return response;
}

Expected<v1::EnrollmentToken> DeviceRegistry::RevokeEnrollmentToken(const v1::RevokeEnrollmentTokenRequest& request) {
  v1::EnrollmentToken token;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        std::string("UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING ") +
            kEnrollmentColumns,
        {request.id()}));
    if (rows.empty()) return NotFound("enrollment token " + std::to_string(request.id()) + " does not exist");
    token = EnrollmentTokenFromRow(rows[0]);
    return Status::Ok();
  }));
  return token;
}

Expected<v1::EnrollResponse> DeviceRegistry::Enroll(const v1::EnrollRequest& request) {
  if (request.enrollment_token().empty()) {
    return Fail(Unauthenticated("enrollment_token is required"));
  }
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.hardware_id(), "hardware_id"));
  MF_RETURN_IF_ERROR(ValidateAttributes(request.attributes(), "attributes"));
  v1::EnrollResponse response;
  int64_t row_id = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto tokens, tx.Exec(
        "UPDATE enrollment_tokens SET uses = uses + 1 WHERE token_hash = $1 AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now()) AND (max_uses = 0 OR uses < max_uses) "
        "RETURNING auto_accept, name",
        {Sha256Hex(request.enrollment_token())}));
    if (tokens.empty()) return Unauthenticated("enrollment token is unknown, revoked, expired or used up");
    const bool auto_accept = tokens[0].Bool(0);
    const std::string enrolled_by = "enrollment-token:" + tokens[0].Str(1);

    MF_ASSIGN_OR_RETURN(auto existing, tx.Exec(
        "SELECT id, device_id, admission, token_id FROM devices WHERE hardware_id = $1 FOR UPDATE",
        {request.hardware_id()}));
    std::string device_id, admission;
    if (existing.empty()) {
      device_id = NewDeviceId();
      admission = auto_accept ? "ACCEPTED" : "PENDING";
      std::vector<db::Param> params{device_id, request.hardware_id(), admission, enrolled_by};
      for (auto& p : AttributeParams(request.attributes())) params.push_back(std::move(p));
      MF_ASSIGN_OR_RETURN(auto inserted, tx.Exec(
          "INSERT INTO devices (device_id, hardware_id, admission, enrolled_by, site, hardware_revision, "
          "firmware_version, sensor_rows, sensor_cols, labels, attributes) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::bytea) RETURNING id",
          params));
      row_id = inserted[0].Int(0);
    } else {
      row_id = existing[0].Int(0);
      device_id = existing[0].Str(1);
      admission = existing[0].Str(2);
      if (admission == "REJECTED" || admission == "DECOMMISSIONED") {
        return PermissionDenied("hardware id '" + request.hardware_id() + "' is " + admission);
      }
      if (admission == "PREAUTHORIZED") admission = "ACCEPTED";
      if (admission == "PENDING" && auto_accept) admission = "ACCEPTED";
      if (auto old = existing[0].OptInt(3)) MF_RETURN_IF_ERROR(tokens_.RevokeWithin(tx, *old));
      std::vector<db::Param> params{row_id, admission};
      for (auto& p : AttributeParams(request.attributes())) params.push_back(std::move(p));
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
          "UPDATE devices SET admission = $2, site = $3, hardware_revision = $4, firmware_version = $5, "
          "sensor_rows = $6, sensor_cols = $7, labels = $8::jsonb, attributes = $9::bytea WHERE id = $1",
          params)));
    }
    v1::CreateTokenRequest credential;
    credential.set_name(device_id);
    credential.set_role(v1::ROLE_DEVICE);
    MF_ASSIGN_OR_RETURN(auto created, tokens_.CreateWithin(tx, credential, enrolled_by));
    MF_RETURN_IF_ERROR(StatusOf(
        tx.Exec("UPDATE devices SET token_id = $2 WHERE id = $1", {row_id, created.token().id()})));
    MF_RETURN_IF_ERROR(RecordDeviceEvent(tx, row_id, existing.empty() ? "enrolled" : "re-enrolled",
                                         "admission " + admission + " via " + enrolled_by));
    response.set_device_id(device_id);
    response.set_device_token(created.secret());
    response.set_admission(AdmissionFromName(admission));
    return StatusOf(events::AppendEvent(tx, {"device.enrolled", enrolled_by, "device", device_id,
                                             events::Payload()
                                                 .Str("hardware_id", request.hardware_id())
                                                 .Str("admission", admission)
                                                 .Bool("re_enrolled", !existing.empty())}));
  }));
  NotifyDeviceChanged(row_id);
  return response;
}

Expected<v1::Device> DeviceRegistry::Preauthorize(const v1::PreauthorizeDeviceRequest& request,
                                                  const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.hardware_id(), "hardware_id"));
  MF_RETURN_IF_ERROR(ValidateAttributes(request.attributes(), "attributes"));
  v1::Device device;
  int64_t changed = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    std::vector<db::Param> params{NewDeviceId(), request.hardware_id(), caller.Actor()};
    for (auto& p : AttributeParams(request.attributes())) params.push_back(std::move(p));
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "INSERT INTO devices (device_id, hardware_id, admission, enrolled_by, site, hardware_revision, "
        "firmware_version, sensor_rows, sensor_cols, labels, attributes) "
        "VALUES ($1, $2, 'PREAUTHORIZED', $3, $4, $5, $6, $7, $8, $9::jsonb, $10::bytea) "
        "ON CONFLICT (hardware_id) DO UPDATE SET admission = CASE WHEN devices.admission = 'PENDING' "
        "THEN 'ACCEPTED' ELSE devices.admission END RETURNING id, admission",
        params));
    MF_RETURN_IF_ERROR(RecordDeviceEvent(tx, rows[0].Int(0), "preauthorized", "by " + caller.Actor()));
    MF_ASSIGN_OR_RETURN(auto loaded, tx.Exec(std::string("SELECT ") + kDeviceColumns + " FROM devices d WHERE d.id = $1",
                                             {rows[0].Int(0)}));
    device = DeviceFromRow(loaded[0]);
    changed = rows[0].Int(0);
    return StatusOf(events::AppendEvent(tx, {"device.preauthorized", caller.Actor(), "device", device.device_id(),
                                             events::Payload()
                                                 .Str("hardware_id", request.hardware_id())
                                                 .Str("admission", rows[0].Str(1))}));
  }));
  NotifyDeviceChanged(changed);
  return device;
}

Expected<v1::Device> DeviceRegistry::SetAdmission(const v1::SetDeviceAdmissionRequest& request,
                                                  const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.device_id(), "device_id"));
  MF_RETURN_IF_ERROR(ValidateText(request.reason(), 1024, "reason"));
  if (request.admission() != v1::DEVICE_ADMISSION_ACCEPTED && request.admission() != v1::DEVICE_ADMISSION_REJECTED &&
      request.admission() != v1::DEVICE_ADMISSION_DECOMMISSIONED) {
    return Fail(InvalidArgument("admission", "must be ACCEPTED, REJECTED or DECOMMISSIONED"));
  }
  const std::string target = AdmissionName(request.admission());
  v1::Device device;
  int64_t changed = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT id, admission, token_id FROM devices WHERE device_id = $1 FOR UPDATE",
                                           {request.device_id()}));
    if (rows.empty()) return NotFound("device '" + request.device_id() + "' does not exist");
    const int64_t id = rows[0].Int(0);
    if (rows[0].Str(1) == "DECOMMISSIONED" && target != "DECOMMISSIONED") {
      return FailedPrecondition("device '" + request.device_id() + "' is decommissioned; it must enroll as new hardware");
    }
    if (target != "ACCEPTED") {
      if (auto token = rows[0].OptInt(2)) MF_RETURN_IF_ERROR(tokens_.RevokeWithin(tx, *token));
      // Its unfinished deployments will never finish.
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
          "UPDATE deployments SET step = 'CANCELLED', reason = $2, updated_at = now() WHERE device_id = $1 "
          "AND step IN " MF_IN_PROGRESS_STEPS_SQL,
          {id, "device " + target})));
    }
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
        "UPDATE devices SET admission = $2, token_id = CASE WHEN $2 = 'ACCEPTED' THEN token_id END WHERE id = $1",
        {id, target})));
    MF_RETURN_IF_ERROR(RecordDeviceEvent(tx, id, "admission",
                                         rows[0].Str(1) + " -> " + target + " by " + caller.Actor() +
                                             (request.reason().empty() ? "" : ": " + request.reason())));
    MF_ASSIGN_OR_RETURN(auto loaded, tx.Exec(std::string("SELECT ") + kDeviceColumns + " FROM devices d WHERE d.id = $1", {id}));
    device = DeviceFromRow(loaded[0]);
    changed = id;
    if (rows[0].Str(1) == target) return Status::Ok();  // no change: no event
    std::string type = "device." + target;
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
    return StatusOf(events::AppendEvent(tx, {type, caller.Actor(), "device", request.device_id(),
                                             events::Payload()
                                                 .Str("from_admission", rows[0].Str(1))
                                                 .Str("reason", request.reason())}));
  }));
  NotifyDeviceChanged(changed);
  return device;
}

Expected<v1::Device> DeviceRegistry::Get(const v1::GetDeviceRequest& request) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.device_id(), "device_id"));
  v1::Device device;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(std::string("SELECT ") + kDeviceColumns +
                                           " FROM devices d WHERE d.device_id = $1",
                                           {request.device_id()}));
    if (rows.empty()) return NotFound("device '" + request.device_id() + "' does not exist");
    device = DeviceFromRow(rows[0]);
    return Status::Ok();
  }));
  return device;
}

Expected<v1::ListDevicesResponse> DeviceRegistry::List(const v1::ListDevicesRequest& request) {
  MF_ASSIGN_OR_RETURN(int page_size, CheckedPageSize(request.page_size(), kDefaultPageSize));
  std::string filter = request.filter().empty() ? "*" : request.filter();
  MF_ASSIGN_OR_RETURN(auto selector, DeviceSelector::Parse(filter, SelectorKind::kDeviceFilter, "filter"));
  std::string fingerprint = Sha256Hex(filter).substr(0, 16);
  int64_t after = 0;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(std::string last, DecodePageToken(request.page_token(), "devices", fingerprint));
    MF_ASSIGN_OR_RETURN(after, PageTokenId(last));
  }
  std::vector<db::Param> params{after};
  std::string where = selector.ToSql(params);
  params.push_back(static_cast<int64_t>(page_size) + 1);
  std::string sql = std::string("SELECT ") + kDeviceColumns + " FROM devices d WHERE d.id > $1 AND (" + where +
                    ") ORDER BY d.id LIMIT $" + std::to_string(params.size());
  v1::ListDevicesResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(sql, params));
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      *response.add_devices() = DeviceFromRow(rows[i]);
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(EncodePageToken("devices", fingerprint, rows[static_cast<size_t>(page_size) - 1].Str(0)));
    }
    return Status::Ok();
  }));
  return response;
}

Expected<v1::ListDeviceHistoryResponse> DeviceRegistry::History(const v1::ListDeviceHistoryRequest& request) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.device_id(), "device_id"));
  MF_ASSIGN_OR_RETURN(int page_size, CheckedPageSize(request.page_size(), kDefaultPageSize));
  const std::string& fingerprint = request.device_id();
  int64_t after = 0;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(std::string last, DecodePageToken(request.page_token(), "history", fingerprint));
    MF_ASSIGN_OR_RETURN(after, PageTokenId(last));
  }
  v1::ListDeviceHistoryResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto device, tx.Exec("SELECT id FROM devices WHERE device_id = $1", {request.device_id()}));
    if (device.empty()) return NotFound("device '" + request.device_id() + "' does not exist");
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, " MF_EPOCH_MICROS("at") ", kind, detail FROM device_events WHERE device_id = $1 AND id > $2 "
        "ORDER BY id LIMIT $3",
        {device[0].Int(0), after, static_cast<int64_t>(page_size) + 1}));
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      auto* e = response.add_events();
      SetTimestamp(rows[i].OptInt(1), e->mutable_time());
      e->set_kind(rows[i].Str(2));
      e->set_detail(rows[i].Str(3));
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(EncodePageToken("history", fingerprint, rows[static_cast<size_t>(page_size) - 1].Str(0)));
    }
    return Status::Ok();
  }));
  return response;
}

}  // namespace modelfleet::fleet
