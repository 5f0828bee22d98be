#include "events/event_log.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>

#include "events/event_types.h"
#include "modelfleet/json.h"
#include "modelfleet/validation.h"
#include "util/time.h"

namespace modelfleet::events {

namespace {

constexpr int kMaxFilterTypes = 64;
constexpr int64_t kPruneBatch = 5000;

bool IsLowerWord(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

bool IsKnownFamily(std::string_view family) {
  return std::any_of(std::begin(kEventTypes), std::end(kEventTypes),
                     [&](const EventTypeInfo& info) { return FamilyOf(info.type) == family; });
}

}  // namespace

// ------------------------------------------------------------------------------- Payload

Payload& Payload::Raw(std::string_view key, std::string_view json) {
  if (body_.size() > 1) body_ += ",";
  body_ += JsonString(key);
  body_ += ":";
  body_ += json;
  return *this;
}

Payload& Payload::Str(std::string_view key, std::string_view value) { return Raw(key, JsonString(value)); }
Payload& Payload::Int(std::string_view key, int64_t value) { return Raw(key, std::to_string(value)); }
Payload& Payload::Num(std::string_view key, double value) {
  return Raw(key, std::isfinite(value) ? JsonNumber(value) : "null");
}
Payload& Payload::Bool(std::string_view key, bool value) { return Raw(key, value ? "true" : "false"); }
Payload& Payload::StrList(std::string_view key, const std::vector<std::string>& values) {
  std::string list = "[";
  for (const std::string& v : values) {
    if (list.size() > 1) list += ",";
    list += JsonString(v);
  }
  return Raw(key, list + "]");
}

// ------------------------------------------------------------------------------- writing

Expected<int64_t> AppendEvent(db::Tx& tx, const NewEvent& event) {
  if (!IsKnownType(event.type)) {
    return Fail(Internal("event type '" + std::string(event.type) + "' is not in kEventTypes"));
  }
  // The counter row stays locked until commit: ids in commit order, no gaps (event_log.h).
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
      "WITH seq AS (UPDATE event_sequence SET last_id = last_id + 1 RETURNING last_id), "
      "ins AS (INSERT INTO events (id, type, actor, subject_kind, subject_id, payload) "
      "SELECT last_id, $1, $2, $3, $4, $5::jsonb FROM seq RETURNING id) "
      "SELECT id, pg_notify($6, id::text) FROM ins",
      {std::string(event.type), event.actor, event.subject_kind, event.subject_id, event.payload.Json(),
       std::string(kEventChannel)}));
  if (rows.empty()) return Fail(Internal("event_sequence has no row (migration 0006 not applied?)"));
  return rows[0].Int(0);
}

// ------------------------------------------------------------------------------- reading

Status ValidateFilter(const EventFilter& filter, const std::string& field) {
  if (filter.types.size() > kMaxFilterTypes) {
    return InvalidArgument(field + ".types", "has more than " + std::to_string(kMaxFilterTypes) + " entries");
  }
  for (size_t i = 0; i < filter.types.size(); ++i) {
    const std::string& type = filter.types[i];
    const std::string f = field + ".types[" + std::to_string(i) + "]";
    if (type.ends_with(".*")) {
      const std::string_view family = std::string_view(type).substr(0, type.size() - 2);
      if (!IsLowerWord(family) || !IsKnownFamily(family)) {
        return InvalidArgument(f, "'" + type.substr(0, 64) + "' is not a known event family (e.g. rollout.*)");
      }
    } else if (!IsKnownType(type)) {
      return InvalidArgument(f, "'" + type.substr(0, 64) + "' is not a known event type (e.g. rollout.paused)");
    }
  }
  if (!filter.subject_kind.empty() && !IsLowerWord(filter.subject_kind)) {
    return InvalidArgument(field + ".subject_kind", "must be lower-case letters and '_' (e.g. rollout)");
  }
  if (!filter.subject_id.empty()) {
    if (filter.subject_kind.empty()) return InvalidArgument(field + ".subject_id", "needs subject_kind");
    MF_RETURN_IF_ERROR(ValidateText(filter.subject_id, 256, field + ".subject_id"));
  }
  return Status::Ok();
}

EventFilter FilterFromProto(const v1::EventFilter& filter) {
  EventFilter out;
  out.types.assign(filter.types().begin(), filter.types().end());
  out.subject_kind = filter.subject_kind();
  out.subject_id = filter.subject_id();
  return out;
}

Expected<EventPage> EventLog::List(int64_t after_id, const EventFilter& filter, v1::Role role, int limit) {
  MF_RETURN_IF_ERROR(ValidateFilter(filter, "filter"));
  if (limit < 1 || limit > kMaxPageSize) {
    return Fail(InvalidArgument("page_size", "must be between 1 and " + std::to_string(kMaxPageSize)));
  }
  // Validated above: every item is letters, '_' and one '.', safe in a text[] literal.
  std::vector<std::string_view> exact, families;
  for (const std::string& type : filter.types) {
    if (type.ends_with(".*")) {
      families.push_back(std::string_view(type).substr(0, type.size() - 2));
    } else {
      exact.push_back(type);
    }
  }
  const std::vector<std::string> visible = FamiliesVisibleTo(role);
  const std::vector<std::string_view> visible_views(visible.begin(), visible.end());
  EventPage page;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    // The head first, then the events up to it: every id up to the head had committed when the
    // head was read (ids are in commit order), so the second statement sees all of them.
    MF_ASSIGN_OR_RETURN(auto head, tx.Exec("SELECT last_id FROM event_sequence"));
    const int64_t head_id = head.empty() ? 0 : head[0].Int(0);
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, type, " MF_EPOCH_MICROS("occurred_at") ", actor, subject_kind, subject_id, payload::text "
        "FROM events WHERE id > $1 AND id <= $2 AND split_part(type, '.', 1) = ANY($3::text[]) "
        "AND ((cardinality($4::text[]) = 0 AND cardinality($5::text[]) = 0) OR type = ANY($4::text[]) "
        "OR split_part(type, '.', 1) = ANY($5::text[])) "
        "AND ($6 = '' OR subject_kind = $6) AND ($7 = '' OR subject_id = $7) ORDER BY id LIMIT $8",
        {after_id, head_id, db::TextArrayLiteral(visible_views), db::TextArrayLiteral(exact),
         db::TextArrayLiteral(families), filter.subject_kind, filter.subject_id, static_cast<int64_t>(limit)}));
    for (const auto& row : rows) {
      v1::Event& e = page.events.emplace_back();
      e.set_id(row.Int(0));
      e.set_type(row.Str(1));
      SetTimestamp(row.OptInt(2), e.mutable_time());
      e.set_actor(row.Str(3));
      e.set_subject_kind(row.Str(4));
      e.set_subject_id(row.Str(5));
      if (!google::protobuf::util::JsonStringToMessage(row.Str(6), e.mutable_payload()).ok()) {
        return Internal("event " + row.Str(0) + " has a payload that is not a JSON object");
      }
    }
    page.next_after_id = static_cast<int>(rows.size()) == limit ? page.events.back().id() : std::max(after_id, head_id);
    return Status::Ok();
  }));
  return page;
}

Expected<int64_t> EventLog::Head() {
  int64_t head_id = 0;
  MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto head, tx.Exec("SELECT last_id FROM event_sequence"));
    head_id = head.empty() ? 0 : head[0].Int(0);
    return Status::Ok();
  }));
  return head_id;
}

Expected<int64_t> EventLog::Prune(std::chrono::seconds age) {
  int64_t deleted = 0;
  while (true) {
    int64_t batch = 0;
    MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE occurred_at < now() - make_interval(secs => $1) "
          "ORDER BY id LIMIT $2)",
          {static_cast<int64_t>(age.count()), kPruneBatch}));
      batch = static_cast<int64_t>(rows.affected_rows());
      return Status::Ok();
    }));
    deleted += batch;
    if (batch < kPruneBatch) return deleted;
  }
}

}  // namespace modelfleet::events
