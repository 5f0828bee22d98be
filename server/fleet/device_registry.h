// DeviceRegistry: admission of devices into the fleet and what admins see of them.
//
// A device enrolls with a fleet enrollment token (created by an admin, optionally limited in
// uses and time, stored hashed) and its hardware id; it receives its own credential, an API
// token of role `device` whose id is recorded on the device row. That credential is the only
// way a device is identified afterwards (never a device id in a request), so a device can
// only act as itself. Rejecting or decommissioning a device revokes its credential.
//
// Admission states: PREAUTHORIZED (an admin listed the hardware id before it enrolled),
// PENDING (enrolled with a token that does not auto-accept), ACCEPTED, REJECTED,
// DECOMMISSIONED. Only ACCEPTED devices receive assignments.
//
// Thread-safe.
#pragma once

#include <functional>
#include <string>

#include "auth/principal.h"
#include "auth/token_store.h"
#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/registry.pb.h"

namespace modelfleet::fleet {

class DeviceRegistry {
 public:
  DeviceRegistry(db::Pool& pool, auth::TokenStore& tokens) : pool_(pool), tokens_(tokens) {}

  // Called with a device's row id after a transaction that enrolled it, preauthorized it or
  // changed its admission or credential committed (the server points it at the check-in's
  // device cache, which re-reads that one device). Set before serving.
  void SetDeviceListener(std::function<void(int64_t device_row_id)> listener) { device_changed_ = std::move(listener); }

  // INVALID_ARGUMENT (name, max_uses, ttl_seconds).
  Expected<v1::CreateEnrollmentTokenResponse> CreateEnrollmentToken(const v1::CreateEnrollmentTokenRequest& request,
                                                                    const auth::Principal& caller);
  Expected<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens();
  // NOT_FOUND.
  Expected<v1::EnrollmentToken> RevokeEnrollmentToken(const v1::RevokeEnrollmentTokenRequest& request);

  // UNAUTHENTICATED (enrollment token unknown, revoked, expired or used up),
  // PERMISSION_DENIED (the hardware id was rejected or decommissioned), INVALID_ARGUMENT.
  // Enrolling an enrolled hardware id again rotates its credential.
  Expected<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);

  // Creates a PREAUTHORIZED device (or accepts a PENDING one with that hardware id).
  Expected<v1::Device> Preauthorize(const v1::PreauthorizeDeviceRequest& request, const auth::Principal& caller);
  // ACCEPTED, REJECTED or DECOMMISSIONED. NOT_FOUND; FAILED_PRECONDITION (a decommissioned
  // device cannot come back; it must enroll as new hardware).
  Expected<v1::Device> SetAdmission(const v1::SetDeviceAdmissionRequest& request, const auth::Principal& caller);
  Expected<v1::Device> Get(const v1::GetDeviceRequest& request);
  // Filter: fleet.proto's device selector (kDeviceFilter); ordered by enrollment; keyset paged.
  Expected<v1::ListDevicesResponse> List(const v1::ListDevicesRequest& request);
  Expected<v1::ListDeviceHistoryResponse> History(const v1::ListDeviceHistoryRequest& request);

  // What a device credential may download: a version it has been assigned (a deployment of
  // this device, to or back to that model version, that is under way or activated), named by
  // version (not alias). PERMISSION_DENIED otherwise (naming the version, not revealing
  // whether it exists); UNAVAILABLE.
  Status AuthorizeDownload(const auth::Principal& device, const v1::VersionRef& ref);

  // Validation shared with check-ins that update attributes.
  static Status ValidateAttributes(const v1::DeviceAttributes& attributes, const std::string& field);

 private:
  void NotifyDeviceChanged(int64_t device_row_id) const {
    if (device_changed_) device_changed_(device_row_id);
  }

  db::Pool& pool_;
  auth::TokenStore& tokens_;
  std::function<void(int64_t)> device_changed_;
};

// Columns and row conversion shared by everything that reads devices (alias `d`).
extern const char* const kDeviceColumns;
v1::Device DeviceFromRow(const db::Row& row);
// Appends a device_events row.
Status RecordDeviceEvent(db::Tx& tx, int64_t device_row_id, const std::string& kind, const std::string& detail);

}  // namespace modelfleet::fleet
