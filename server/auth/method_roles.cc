#include "auth/method_roles.h"

#include <algorithm>
#include <map>
#include <string>

namespace modelfleet::auth {

namespace {

constexpr v1::Role kAdmin = v1::ROLE_ADMIN;
constexpr v1::Role kPublisher = v1::ROLE_PUBLISHER;
constexpr v1::Role kViewer = v1::ROLE_VIEWER;
constexpr v1::Role kDevice = v1::ROLE_DEVICE;

const std::map<std::string, std::vector<v1::Role>, std::less<>>& Table() {
  static const auto* table = new std::map<std::string, std::vector<v1::Role>, std::less<>>{
      // RegistryService
      {"/modelfleet.v1.RegistryService/CreateModel", {kAdmin, kPublisher}},
      {"/modelfleet.v1.RegistryService/GetModel", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.RegistryService/ListModels", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.RegistryService/ArchiveModel", {kAdmin}},
      {"/modelfleet.v1.RegistryService/PushVersion", {kAdmin, kPublisher}},
      {"/modelfleet.v1.RegistryService/GetVersion", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.RegistryService/ListVersions", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.RegistryService/ArchiveVersion", {kAdmin}},
      {"/modelfleet.v1.RegistryService/PurgeVersion", {kAdmin}},
      {"/modelfleet.v1.RegistryService/SetAlias", {kAdmin, kPublisher}},
      {"/modelfleet.v1.RegistryService/DeleteAlias", {kAdmin, kPublisher}},
      {"/modelfleet.v1.RegistryService/ResolveAlias", {kAdmin, kPublisher, kViewer, kDevice}},
      {"/modelfleet.v1.RegistryService/ListAliasHistory", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.RegistryService/Download", {kAdmin, kPublisher, kViewer, kDevice}},
      // AdminService
      {"/modelfleet.v1.AdminService/CreateToken", {kAdmin}},
      {"/modelfleet.v1.AdminService/ListTokens", {kAdmin}},
      {"/modelfleet.v1.AdminService/RevokeToken", {kAdmin}},
      {"/modelfleet.v1.AdminService/WhoAmI", {kAdmin, kPublisher, kViewer, kDevice}},
      {"/modelfleet.v1.AdminService/AddPublisherKey", {kAdmin}},
      {"/modelfleet.v1.AdminService/ListPublisherKeys", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.AdminService/RevokePublisherKey", {kAdmin}},
      // DeviceService (Enroll needs no bearer token: it presents an enrollment token)
      {"/modelfleet.v1.DeviceService/CheckIn", {kDevice}},
      {"/modelfleet.v1.DeviceService/ReportDeployment", {kDevice}},
      // FleetService
      {"/modelfleet.v1.FleetService/CreateEnrollmentToken", {kAdmin}},
      {"/modelfleet.v1.FleetService/ListEnrollmentTokens", {kAdmin}},
      {"/modelfleet.v1.FleetService/RevokeEnrollmentToken", {kAdmin}},
      {"/modelfleet.v1.FleetService/PreauthorizeDevice", {kAdmin}},
      {"/modelfleet.v1.FleetService/SetDeviceAdmission", {kAdmin}},
      {"/modelfleet.v1.FleetService/GetDevice", {kAdmin, kViewer}},
      {"/modelfleet.v1.FleetService/ListDevices", {kAdmin, kViewer}},
      {"/modelfleet.v1.FleetService/ListDeviceHistory", {kAdmin, kViewer}},
      // Publishers pass this table; the handler admits them only with --allow-publisher-rollouts.
      {"/modelfleet.v1.FleetService/CreateRollout", {kAdmin, kPublisher}},
      {"/modelfleet.v1.FleetService/GetRollout", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.FleetService/ListRollouts", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.FleetService/WatchRollout", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.FleetService/PauseRollout", {kAdmin}},
      {"/modelfleet.v1.FleetService/ResumeRollout", {kAdmin}},
      {"/modelfleet.v1.FleetService/ApproveStage", {kAdmin}},
      {"/modelfleet.v1.FleetService/AbortRollout", {kAdmin}},
      {"/modelfleet.v1.FleetService/RollbackRollout", {kAdmin}},
      {"/modelfleet.v1.FleetService/RetryFailed", {kAdmin}},
      // EventService: each role sees only the event types it may read (events/event_types.h).
      {"/modelfleet.v1.EventService/ListEvents", {kAdmin, kPublisher, kViewer}},
      {"/modelfleet.v1.EventService/WatchEvents", {kAdmin, kPublisher, kViewer}},
      // WebhookService: secrets and receivers of every event type, admins only.
      {"/modelfleet.v1.WebhookService/CreateWebhook", {kAdmin}},
      {"/modelfleet.v1.WebhookService/ListWebhooks", {kAdmin}},
      {"/modelfleet.v1.WebhookService/DeleteWebhook", {kAdmin}},
      {"/modelfleet.v1.WebhookService/TestWebhook", {kAdmin}},
      {"/modelfleet.v1.WebhookService/ListDeliveries", {kAdmin}},
      {"/modelfleet.v1.WebhookService/ReplayDeliveries", {kAdmin}},
      // HTTP routes the HTTP server authorises itself (the JSON API's procedures are the RPCs
      // above; the artifact downloads are Download).
      {"GET /metrics", {kAdmin, kViewer}},
  };
  return *table;
}

}  // namespace

std::vector<v1::Role> AllowedRoles(std::string_view method) {
  auto it = Table().find(method);
  return it == Table().end() ? std::vector<v1::Role>{} : it->second;
}

Status AuthorizeMethod(const Principal& principal, std::string_view method) {
  auto roles = AllowedRoles(method);
  if (std::find(roles.begin(), roles.end(), principal.role) != roles.end()) return Status::Ok();
  return PermissionDenied("role '" + RoleName(principal.role) + "' may not call " +
                          std::string(method));
}

std::string RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_ADMIN: return "admin";
    case v1::ROLE_PUBLISHER: return "publisher";
    case v1::ROLE_DEVICE: return "device";
    case v1::ROLE_VIEWER: return "viewer";
    default: return "unspecified";
  }
}

std::optional<v1::Role> ParseRole(std::string_view name) {
  for (v1::Role r : {kAdmin, kPublisher, kDevice, kViewer}) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

}  // namespace modelfleet::auth
