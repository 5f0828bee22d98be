// The event types of the outbox, in one list, and which roles may read them.
//
// A type is "<family>.<what happened>". The family decides who may read an event
// (MayRead): not the subject kind, because one subject has events of different sensitivity
// (a rollout's state changes are for its publishers, the devices whose deployments timed out
// in it are not).
//
//   family          roles that may read            subject (kind/id)
//   model           admin, publisher, viewer       model/<name>
//   version         admin, publisher, viewer       model/<name>          payload.version
//   alias           admin, publisher, viewer       model/<name>          payload.alias
//   rollout         admin, publisher, viewer       rollout/ro-<n>
//   device          admin, viewer                  device/dev-<hex>
//   deployment      admin, viewer                  device/... (failed), rollout/... (timed_out)
//   publisher_key   admin                          publisher_key/<key id>
//   token           admin                          token/<id>
//   webhook         admin                          webhook/<id>
// The device role reads nothing.
//
// A pushed version is READY from its first commit (the registry verifies the bytes before the
// row exists), so version.pushed is also the moment it became READY; there is no separate
// "version.ready". Device credentials created and revoked by enrollment and admission are
// part of device.* events, not token.* ones.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/v1/admin.pb.h"

namespace modelfleet::events {

struct EventTypeInfo {
  std::string_view type;
  std::string_view written_when;
};

// Every type the server writes. Readers may filter on any of them (or a family, "rollout.*").
inline constexpr EventTypeInfo kEventTypes[] = {
    {"model.created", "a model is created (payload: task)"},
    {"model.archived", "a model is archived (first time only)"},
    {"version.pushed", "a version is pushed and READY (payload: version, digest, size_bytes, format)"},
    {"version.archived", "a READY version is archived (payload: version)"},
    {"version.purged", "an archived version is deleted (payload: version, blob_deleted)"},
    {"alias.moved", "an alias is created or moved (payload: alias, from_version, to_version, reason)"},
    {"alias.deleted", "an alias is deleted (payload: alias, from_version, reason)"},
    {"rollout.created", "a rollout is created (payload: model, version, target, state, stages)"},
    {"rollout.dequeued", "a queued rollout no longer conflicts and starts or waits for approval"},
    {"rollout.stage_advanced", "the controller moved the rollout to its next stage"},
    {"rollout.waiting_approval", "a stage passed and the next one waits for an admin's approval"},
    {"rollout.approved", "an admin approved the next stage"},
    {"rollout.gate_verdict", "a stage's gates were judged: failed (pause/rollback) or passed (advance)"},
    {"rollout.paused", "paused by an admin or by a failed gate (actor gate:stage-<n>)"},
    {"rollout.resumed", "an admin resumed the rollout"},
    {"rollout.aborted", "an admin aborted the rollout"},
    {"rollout.rolled_back", "rolled back by an admin or by a failed gate with auto_rollback"},
    {"rollout.completed", "the last stage passed"},
    {"rollout.retried", "an admin assigned the failed deployments again (payload: count)"},
    {"device.enrolled", "a device enrolled or re-enrolled (payload: hardware_id, admission, re_enrolled)"},
    {"device.preauthorized", "an admin preauthorized a hardware id"},
    {"device.accepted", "an admin accepted a device (payload: from_admission, reason)"},
    {"device.rejected", "an admin rejected a device"},
    {"device.decommissioned", "an admin decommissioned a device"},
    {"deployment.failed", "a device reported a failed deployment step (payload: deployment_id, rollout_id, step, reason)"},
    {"deployment.timed_out", "the controller timed out deployments: one event per rollout and tick "
                             "(payload: count, device_ids (at most 100))"},
    {"publisher_key.added", "a publisher key is trusted"},
    {"publisher_key.revoked", "a publisher key is revoked (first time only)"},
    {"token.created", "an API token is created (payload: name, role)"},
    {"token.revoked", "an API token is revoked (first time only)"},
    {"webhook.created", "an admin subscribed a webhook (payload: url, event_types)"},
    {"webhook.removed", "an admin removed a webhook (payload: url)"},
};

// "rollout" of "rollout.paused"; the whole string if it has no dot.
std::string_view FamilyOf(std::string_view type);

// Whether a caller of `role` may read events of `type`. The one visibility rule: every reader
// (ListEvents, WatchEvents, the HTTP event stream) applies it.
bool MayRead(v1::Role role, std::string_view type);

// The families `role` may read (empty for the device role), for filtering in SQL.
std::vector<std::string> FamiliesVisibleTo(v1::Role role);

// Whether `type` is one of kEventTypes.
bool IsKnownType(std::string_view type);

}  // namespace modelfleet::events
