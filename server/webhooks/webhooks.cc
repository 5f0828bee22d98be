#include "webhooks/webhooks.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "modelfleet/numbers.h"
#include "util/time.h"

namespace modelfleet::webhooks {

namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& types) {
  std::string out;
  for (const auto& t : types) out += (out.empty() ? "" : ",") + t;
  return out;
}

std::vector<std::string> Split(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < joined.size()) {
    size_t comma = joined.find(',', start);
    if (comma == std::string::npos) comma = joined.size();
    out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

Expected<std::string> EventJson(const v1::Event& event) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(event, &json).ok()) {
    return Fail(Internal("cannot write event " + std::to_string(event.id()) + " as JSON"));
  }
  return json;
}

// The columns of webhookFromRow, in order.
#define MF_WEBHOOK_COLUMNS \
  "w.id, w.url, array_to_string(w.event_types, ','), w.created_by, " MF_EPOCH_MICROS("w.created_at") \
  ", w.cursor_event_id, "                                                                            \
  "(SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'PENDING'), "  \
  "(SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'DEAD')"

v1::Webhook WebhookFromRow(const db::Row& row) {
  v1::Webhook w;
  w.set_id(row.Int(0));
  w.set_url(row.Str(1));
  for (auto& t : Split(row.Str(2))) w.add_event_types(std::move(t));
  w.set_created_by(row.Str(3));
  SetTimestamp(row.OptInt(4), w.mutable_created_at());
  w.set_cursor_event_id(row.Int(5));
  w.set_pending(row.Int(6));
  w.set_dead(row.Int(7));
  return w;
}

Status NoKey() {
  return FailedPrecondition(
      "webhooks need the server's --secret-key-file (32 random bytes, e.g. `openssl rand -hex 32`) "
      "to seal their secrets");
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status ValidateWebhookUrl(const std::string& url, const std::string& field) {
  if (url.empty()) return InvalidArgument(field, "is required");
  if (url.size() > kMaxUrlLength) return InvalidArgument(field, "is longer than 2048 characters");
  for (unsigned char c : url) {
    if (c <= 0x20 || c >= 0x7f)
      return InvalidArgument(field, "may not contain spaces or control or non-ASCII characters");
  }
  std::string lower = url.substr(0, 8);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t authority_start = 0;
  if (lower.starts_with("http://")) {
    authority_start = 7;
  } else if (lower.starts_with("https://")) {
    authority_start = 8;
  } else {
    return InvalidArgument(field, "must start with http:// or https://");
  }
  const size_t authority_end = url.find_first_of("/?#", authority_start);
  const std::string authority =
      url.substr(authority_start,
                 authority_end == std::string::npos ? std::string::npos : authority_end - authority_start);
  // Credentials in a URL end up in logs and listings; the signature authenticates instead.
  if (authority.find('@') != std::string::npos)
    return InvalidArgument(field, "may not contain credentials (user:password@)");
  std::string host = authority, port;
  bool has_port = false;
  if (!host.empty() && host[0] == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string::npos) return InvalidArgument(field, "has an unterminated IPv6 address");
    host = authority.substr(0, close + 1);
    const std::string rest = authority.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') return InvalidArgument(field, "has a malformed host");
    has_port = !rest.empty();
    if (has_port) port = rest.substr(1);
  } else if (const size_t colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    has_port = true;
  }
  if (host.empty() || host == "[]") return InvalidArgument(field, "has no host");
  const std::optional<int> port_number = port.size() <= 5 ? ParseNumber<int>(port) : std::nullopt;
  if (has_port && (!port_number || *port_number < 1 || *port_number > 65535)) {
    return InvalidArgument(field, "has an invalid port");
  }
  if (url.find('#') != std::string::npos) return InvalidArgument(field, "may not have a fragment (#...)");
  return Status::Ok();
}

Webhooks::Webhooks(db::Pool& pool, const SecretBox* box, WebhookSender& sender, WebhookOptions options)
    : pool_(pool), box_(box), sender_(sender), options_(options) {}

Expected<v1::CreateWebhookResponse> Webhooks::Create(const v1::CreateWebhookRequest& request,
                                                     const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateWebhookUrl(request.url()));
  if (static_cast<size_t>(request.event_types_size()) > kMaxEventTypes) {
    return Fail(InvalidArgument("event_types", "at most 64 types"));
  }
  events::EventFilter filter;
  filter.types.assign(request.event_types().begin(), request.event_types().end());
  MF_RETURN_IF_ERROR(events::ValidateFilter(filter, ""));
  if (box_ == nullptr) return Fail(NoKey());
  const std::string secret = SecretBox::GenerateSecret();
  MF_ASSIGN_OR_RETURN(auto sealed, box_->Seal(secret));
  v1::CreateWebhookResponse response;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    // Starts after the newest committed event: an event still being written gets a higher id.
    MF_ASSIGN_OR_RETURN(
        auto rows,
        tx.Exec("INSERT INTO webhooks AS w (url, event_types, secret_nonce, secret_sealed, cursor_event_id, "
                "created_by) "
                "VALUES ($1, string_to_array($2, ','), $3, $4, (SELECT last_id FROM event_sequence), $5) "
                "RETURNING " MF_WEBHOOK_COLUMNS,
                {request.url(), Join(request.event_types()), db::Bytes{sealed.nonce},
                 db::Bytes{sealed.sealed}, caller.Actor()}));
    *response.mutable_webhook() = WebhookFromRow(rows[0]);
    return StatusOf(events::AppendEvent(
        tx, {"webhook.created", caller.Actor(), "webhook", std::to_string(response.webhook().id()),
             events::Payload().Str("url", request.url()).StrList("event_types", filter.types)}));
  }));
  response.set_secret(secret);
  spdlog::info("webhook {} created by {} for {}", response.webhook().id(), caller.Actor(), request.url());
  return response;
}

Expected<v1::ListWebhooksResponse> Webhooks::List() {
  v1::ListWebhooksResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " MF_WEBHOOK_COLUMNS " FROM webhooks w ORDER BY w.id"));
    for (const auto& row : rows) *response.add_webhooks() = WebhookFromRow(row);
    return Status::Ok();
  }));
  return response;
}

Status Webhooks::Delete(int64_t id, const auth::Principal& caller) {
  return pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("DELETE FROM webhooks WHERE id = $1 RETURNING url", {id}));
    if (rows.empty()) return NotFound("webhook " + std::to_string(id) + " does not exist");
    return StatusOf(events::AppendEvent(tx, {"webhook.removed", caller.Actor(), "webhook", std::to_string(id),
                                             events::Payload().Str("url", rows[0].Str(0))}));
  });
}

Expected<v1::TestWebhookResponse> Webhooks::Test(int64_t id, const auth::Principal& caller) {
  if (box_ == nullptr) return Fail(NoKey());
  std::string url;
  SecretBox::Sealed sealed;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows,
                        tx.Exec("SELECT url, secret_nonce, secret_sealed FROM webhooks WHERE id = $1", {id}));
    if (rows.empty()) return NotFound("webhook " + std::to_string(id) + " does not exist");
    url = rows[0].Str(0);
    sealed = {rows[0].Bytea(1), rows[0].Bytea(2)};
    return Status::Ok();
  }));
  MF_ASSIGN_OR_RETURN(auto secret, box_->Open(sealed));
  v1::Event ping;
  ping.set_id(0);
  ping.set_type("webhook.test");
  *ping.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  ping.set_actor(caller.Actor());
  ping.set_subject_kind("webhook");
  ping.set_subject_id(std::to_string(id));
  MF_ASSIGN_OR_RETURN(auto body, EventJson(ping));
  const WebhookResponse answer =
      sender_.Post(SignedRequest(url, secret, 0, std::move(body), UnixNow()), options_.timeout);
  v1::TestWebhookResponse response;
  response.set_delivered(answer.delivered());
  response.set_http_status(answer.http_status);
  response.set_error(answer.error);
  return response;
}

Expected<v1::ListDeliveriesResponse> Webhooks::ListDeliveries(const v1::ListDeliveriesRequest& request) {
  const int limit = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  if (limit < 1 || limit > kMaxPageSize) return Fail(InvalidArgument("page_size", "must be 0..1000"));
  v1::ListDeliveriesResponse response;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto exists, tx.Exec("SELECT 1 FROM webhooks WHERE id = $1", {request.webhook_id()}));
    if (exists.empty())
      return NotFound("webhook " + std::to_string(request.webhook_id()) + " does not exist");
    const std::string state(DeliveryStateName(request.state()));
    MF_ASSIGN_OR_RETURN(
        auto rows,
        tx.Exec(
            "SELECT id, webhook_id, event_id, event_type, state, attempts, " MF_EPOCH_MICROS(
                "next_attempt_at") ", "
                                   "last_http_status, last_error, " MF_EPOCH_MICROS(
                                       "created_at") ", " MF_EPOCH_MICROS("updated_at") " "
                                                                                        "FROM "
                                                                                        "webhook_deliveries "
                                                                                        "WHERE webhook_id = "
                                                                                        "$1 AND ($2 = '' OR "
                                                                                        "state = $2) ORDER "
                                                                                        "BY id DESC LIMIT $3",
            {request.webhook_id(), state, int64_t{limit}}));
    for (const auto& row : rows) {
      v1::WebhookDelivery* d = response.add_deliveries();
      d->set_id(row.Int(0));
      d->set_webhook_id(row.Int(1));
      d->set_event_id(row.Int(2));
      d->set_event_type(row.Str(3));
      d->set_state(DeliveryStateFromName(row.Str(4)));
      d->set_attempts(static_cast<int32_t>(row.Int(5)));
      SetTimestamp(row.OptInt(6), d->mutable_next_attempt_at());
      d->set_last_http_status(static_cast<int32_t>(row.Int(7)));
      d->set_last_error(row.Str(8));
      SetTimestamp(row.OptInt(9), d->mutable_created_at());
      SetTimestamp(row.OptInt(10), d->mutable_updated_at());
    }
    return Status::Ok();
  }));
  return response;
}

Expected<int64_t> Webhooks::Replay(int64_t webhook_id, int64_t delivery_id) {
  int64_t replayed = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto exists, tx.Exec("SELECT 1 FROM webhooks WHERE id = $1", {webhook_id}));
    if (exists.empty()) return NotFound("webhook " + std::to_string(webhook_id) + " does not exist");
    MF_ASSIGN_OR_RETURN(auto rows,
                        tx.Exec("UPDATE webhook_deliveries SET state = $4, attempts = 0, next_attempt_at = "
                                "now(), updated_at = now() "
                                "WHERE webhook_id = $1 AND state = $3 AND ($2 = 0 OR id = $2)",
                                {webhook_id, delivery_id, std::string(SourceOf(DeliveryEvent::kReplayed)),
                                 std::string(TargetOf(DeliveryEvent::kReplayed))}));
    replayed = static_cast<int64_t>(rows.affected_rows());
    if (delivery_id != 0 && replayed == 0) {
      return NotFound("delivery " + std::to_string(delivery_id) + " is not a dead delivery of webhook " +
                      std::to_string(webhook_id));
    }
    return Status::Ok();
  }));
  return replayed;
}

Expected<int64_t> Webhooks::AdvanceCursors(events::EventLog& log, int batch) {
  struct Cursor {
    int64_t id, after;
    events::EventFilter filter;
  };
  std::vector<Cursor> cursors;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(
        auto rows,
        tx.Exec("SELECT id, cursor_event_id, array_to_string(event_types, ',') FROM webhooks ORDER BY id"));
    for (const auto& row : rows) {
      Cursor c{row.Int(0), row.Int(1), {}};
      c.filter.types = Split(row.Str(2));
      cursors.push_back(std::move(c));
    }
    return Status::Ok();
  }));
  int64_t created = 0;
  for (Cursor& c : cursors) {
    for (int round = 0; round < 20; ++round) {
      MF_ASSIGN_OR_RETURN(auto page, log.List(c.after, c.filter, v1::ROLE_ADMIN, batch));
      if (page.next_after_id <= c.after) break;
      std::vector<std::string> bodies;
      for (const auto& event : page.events) {
        MF_ASSIGN_OR_RETURN(auto body, EventJson(event));
        bodies.push_back(std::move(body));
      }
      // The rows and the cursor move together; the cursor check makes a second dispatcher
      // that raced this one (a lost lock) roll back instead of skipping or repeating.
      Status moved = pool_.Write([&](db::Tx& tx) -> Status {
        MF_ASSIGN_OR_RETURN(
            auto updated,
            tx.Exec("UPDATE webhooks SET cursor_event_id = $2 WHERE id = $1 AND cursor_event_id = $3",
                    {c.id, page.next_after_id, c.after}));
        if (updated.affected_rows() == 0)
          return Status(StatusCode::kAborted, "webhook removed or cursor moved");
        for (size_t i = 0; i < page.events.size(); ++i) {
          MF_RETURN_IF_ERROR(
              StatusOf(tx.Exec("INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, body) "
                               "VALUES ($1, $2, $3, $4) "
                               "ON CONFLICT (webhook_id, event_id) DO NOTHING",
                               {c.id, page.events[i].id(), page.events[i].type(), bodies[i]})));
        }
        return Status::Ok();
      });
      if (moved.code() == StatusCode::kAborted) break;
      MF_RETURN_IF_ERROR(moved);
      created += static_cast<int64_t>(page.events.size());
      c.after = page.next_after_id;
      if (static_cast<int>(page.events.size()) < batch) break;
    }
  }
  return created;
}

Expected<std::vector<int64_t>> Webhooks::WebhooksDue() {
  std::vector<int64_t> due;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    // Each webhook's oldest pending delivery decides (ordering: see the header).
    MF_ASSIGN_OR_RETURN(
        auto rows,
        tx.Exec("SELECT w.id FROM webhooks w CROSS JOIN LATERAL (SELECT next_attempt_at FROM "
                "webhook_deliveries d "
                "WHERE d.webhook_id = w.id AND d.state = 'PENDING' ORDER BY d.event_id LIMIT 1) head "
                "WHERE head.next_attempt_at <= now() ORDER BY w.id"));
    for (const auto& row : rows) due.push_back(row.Int(0));
    return Status::Ok();
  }));
  return due;
}

Expected<SendOutcome> Webhooks::SendNextDue(int64_t webhook_id) {
  if (box_ == nullptr) return Fail(NoKey());
  std::optional<db::Row> head;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(
        auto rows,
        tx.Exec(
            "SELECT d.id, d.event_id, d.body, d.attempts, d.next_attempt_at <= now(), w.url, w.secret_nonce, "
            "w.secret_sealed FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.webhook_id = $1 AND d.state = 'PENDING' ORDER BY d.event_id LIMIT 1",
            {webhook_id}));
    if (!rows.empty()) head = rows[0];
    return Status::Ok();
  }));
  if (!head || !head->Bool(4)) return SendOutcome::kNothingDue;
  const int64_t delivery_id = head->Int(0);
  const int attempts = static_cast<int>(head->Int(3)) + 1;
  MF_ASSIGN_OR_RETURN(auto secret, box_->Open({head->Bytea(6), head->Bytea(7)}));
  const WebhookResponse answer = sender_.Post(
      SignedRequest(head->Str(5), secret, head->Int(1), head->Str(2), UnixNow()), options_.timeout);
  SendOutcome outcome = answer.delivered()                        ? SendOutcome::kDelivered
                        : attempts >= options_.retry.max_attempts ? SendOutcome::kDead
                                                                  : SendOutcome::kRetrying;
  const DeliveryEvent event = outcome == SendOutcome::kDelivered ? DeliveryEvent::kAnswered2xx
                              : outcome == SendOutcome::kDead    ? DeliveryEvent::kFailedLastTime
                                                                 : DeliveryEvent::kFailedWillRetry;
  const int64_t delay_ms =
      outcome == SendOutcome::kRetrying ? RetryDelay(options_.retry, attempts, UniformJitter()).count() : 0;
  db::Param status = answer.http_status == 0 ? db::Param(nullptr) : db::Param(int64_t{answer.http_status});
  db::Param error = answer.error.empty() ? db::Param(nullptr) : db::Param(answer.error.substr(0, 500));
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    // Conditional on the attempt count read: a replay or removal meanwhile wins.
    return StatusOf(tx.Exec(
        "UPDATE webhook_deliveries SET state = $3, attempts = $4, last_http_status = $5, last_error = $6, "
        "next_attempt_at = now() + make_interval(secs => $7::bigint / 1000.0), updated_at = now() "
        "WHERE id = $1 AND state = $8 AND attempts = $2",
        {delivery_id, int64_t{attempts - 1}, std::string(TargetOf(event)), int64_t{attempts}, status, error,
         delay_ms, std::string(SourceOf(event))}));
  }));
  (outcome == SendOutcome::kDelivered ? delivered_ : outcome == SendOutcome::kDead ? dead_ : retried_)++;
  if (outcome == SendOutcome::kDead) {
    spdlog::warn("webhook {}: event {} dead-lettered after {} attempts ({})", webhook_id, head->Int(1),
                 attempts, answer.error);
  }
  return outcome;
}

Expected<int64_t> Webhooks::PruneDelivered(std::chrono::seconds age) {
  int64_t deleted = 0;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("DELETE FROM webhook_deliveries WHERE state = 'DELIVERED' AND "
                                           "updated_at < now() - make_interval(secs => $1)",
                                           {static_cast<int64_t>(age.count())}));
    deleted = static_cast<int64_t>(rows.affected_rows());
    return Status::Ok();
  }));
  return deleted;
}

}  // namespace modelfleet::webhooks
