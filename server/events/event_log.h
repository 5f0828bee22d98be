// The events outbox: writing an event inside the transaction of the change it describes, and
// reading the log back.
//
// Ordering, the promise readers rely on: event ids grow in commit order without gaps (the
// single counter row of migrations/0006_events.sql, locked by the writer until it commits).
// So a reader that has seen every event up to id n and asks for "after n" misses nothing,
// whatever order concurrent writers committed in, and resuming a stream is just remembering
// the last id. Retention (Prune) deletes the oldest events; a reader that was away longer than
// the retention gets the oldest event kept next.
//
// Live readers: AppendEvent also calls pg_notify(kEventChannel, id) in the same transaction,
// so EventNotifier (event_notifier.h) wakes its waiters when the change commits.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/admin.pb.h"
#include "modelfleet/v1/events.pb.h"

namespace modelfleet::events {

// The LISTEN/NOTIFY channel; the payload is the new event's id.
inline constexpr char kEventChannel[] = "modelfleet_events";

// A JSON object built key by key, for an event's payload. Keys are written in call order;
// a key set twice appears twice (do not).
class Payload {
 public:
  Payload& Str(std::string_view key, std::string_view value);
  Payload& Int(std::string_view key, int64_t value);
  Payload& Num(std::string_view key, double value);  // non-finite values are written as null
  Payload& Bool(std::string_view key, bool value);
  Payload& StrList(std::string_view key, const std::vector<std::string>& values);
  std::string Json() const { return body_ + "}"; }

 private:
  Payload& Raw(std::string_view key, std::string_view json);
  std::string body_ = "{";
};

struct NewEvent {
  std::string_view type;     // one of kEventTypes (event_types.h)
  std::string actor;         // a principal's Actor(), "controller", "gate:stage-<n>"
  std::string subject_kind;  // "model", "rollout", "device", "publisher_key", "token"
  std::string subject_id;
  Payload payload;
};

// Records `event` in `tx`, to commit or roll back with the change it describes, and notifies
// kEventChannel at commit. Returns the event's id.
// REQUIRES: called after every other statement of the transaction that takes row locks (only
// other AppendEvent calls may follow). The event holds the counter row until commit, so a
// later statement waiting for a row lock would make every other event writer wait behind it,
// and one waiting on a lock held by an event writer would deadlock.
// Errors: INTERNAL for a type not in kEventTypes (a programming error), and the transaction's
// errors.
Expected<int64_t> AppendEvent(db::Tx& tx, const NewEvent& event);

// What a reader asks for. Types are exact ("rollout.paused") or whole families ("rollout.*").
struct EventFilter {
  std::vector<std::string> types;
  std::string subject_kind;
  std::string subject_id;  // only with subject_kind
};

// INVALID_ARGUMENT naming `field` (".types[i]", ".subject_kind", ".subject_id") when a type is
// neither known nor "<known family>.*", or the subject is malformed.
Status ValidateFilter(const EventFilter& filter, const std::string& field);
EventFilter FilterFromProto(const v1::EventFilter& filter);

struct EventPage {
  std::vector<v1::Event> events;  // oldest first
  // Pass as after_id next time: past every event examined, including those the filter or the
  // role left out (the last event returned when the page is full, else the newest event id).
  int64_t next_after_id = 0;
};

// Reading and pruning the log. Thread-safe; holds no state of its own besides the pool.
class EventLog {
 public:
  static constexpr int kMaxPageSize = 1000;

  explicit EventLog(db::Pool& pool) : pool_(pool) {}

  // The events with id > after_id that match `filter` and that `role` may read (MayRead),
  // oldest first, at most `limit` (1..kMaxPageSize). Never skips an event that commits later:
  // see the ordering note at the top. Errors: INVALID_ARGUMENT (filter, limit), UNAVAILABLE.
  Expected<EventPage> List(int64_t after_id, const EventFilter& filter, v1::Role role, int limit);

  // The newest event's id (0 when none was ever written). UNAVAILABLE.
  Expected<int64_t> Head();

  // Deletes the events older than `age` (by occurred_at), in batches so no statement runs
  // long. Returns how many were deleted. UNAVAILABLE.
  Expected<int64_t> Prune(std::chrono::seconds age);

 private:
  db::Pool& pool_;
};

}  // namespace modelfleet::events
