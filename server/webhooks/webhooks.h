// Webhooks: the transport-free core behind WebhookService, and the store the dispatcher
// (webhook_dispatcher.h) drives. Tables: migrations/0007_webhooks.sql.
//
// A delivery's states and moves: delivery_state.h.
//
// Ordering: a webhook's PENDING deliveries go out in event-id order, one at a time. The oldest
// one waiting for its retry holds back the later ones of the same webhook (receivers see
// events in order unless one is dead-lettered), never those of other webhooks.
//
// Every method is thread-safe. Secrets never appear in logs or error messages.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "auth/principal.h"
#include "db/pool.h"
#include "events/event_log.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/webhooks.pb.h"
#include "webhooks/delivery.h"
#include "webhooks/delivery_state.h"

namespace modelfleet::webhooks {

inline constexpr size_t kMaxUrlLength = 2048;
inline constexpr size_t kMaxEventTypes = 64;

// INVALID_ARGUMENT naming `field` unless `url` is http:// or https://, has a host, has no
// user:password@, no fragment, no whitespace or control characters, and is at most
// kMaxUrlLength long.
Status ValidateWebhookUrl(const std::string& url, const std::string& field = "url");

struct WebhookOptions {
  RetryPolicy retry;
  std::chrono::milliseconds timeout{5000};  // per attempt
};

// What SendNextDue did for one webhook.
enum class SendOutcome {
  kNothingDue,  // no PENDING delivery, or the oldest one waits for its retry time
  kDelivered,   // the receiver answered 2xx
  kRetrying,    // failed; retried at next_attempt_at
  kDead,        // failed for the last time
};

class Webhooks {
 public:
  // `box` may be null (no --secret-key-file): then Create and Test return FAILED_PRECONDITION
  // and nothing is sent. `box` and `sender` must outlive this object.
  Webhooks(db::Pool& pool, const SecretBox* box, WebhookSender& sender, WebhookOptions options);

  // Validates the URL and types (events::ValidateFilter), generates and seals a secret and
  // starts the webhook at the newest event (it gets what happens from now on, including its
  // own webhook.created event if its types match). The secret is in the response only.
  // Errors: INVALID_ARGUMENT (url, event_types[i]), FAILED_PRECONDITION (no secret key),
  // UNAVAILABLE.
  Expected<v1::CreateWebhookResponse> Create(const v1::CreateWebhookRequest& request,
                                             const auth::Principal& caller);
  // Oldest first, with pending and dead counts. UNAVAILABLE.
  Expected<v1::ListWebhooksResponse> List();
  // Removes the webhook and its deliveries (an in-flight attempt may still land). NOT_FOUND.
  Status Delete(int64_t id, const auth::Principal& caller);
  // POSTs a signed "webhook.test" event (id 0) now. NOT_FOUND, FAILED_PRECONDITION (no key),
  // PERMISSION_DENIED (sealed under another key). A receiver's failure is in the response.
  Expected<v1::TestWebhookResponse> Test(int64_t id, const auth::Principal& caller);
  // Newest first. NOT_FOUND (webhook), INVALID_ARGUMENT (page_size).
  Expected<v1::ListDeliveriesResponse> ListDeliveries(const v1::ListDeliveriesRequest& request);
  // DEAD -> PENDING, attempts 0, due now: `delivery_id`, or all of the webhook when 0. Returns
  // how many. NOT_FOUND (webhook, or a delivery_id that is not a dead one of it).
  Expected<int64_t> Replay(int64_t webhook_id, int64_t delivery_id);

  // ---- for the dispatcher (one replica at a time; see webhook_dispatcher.h)

  // Moves every webhook's cursor over the events after it, inserting a delivery row for each
  // event that matches its types (read with admin visibility), at most `batch` events per
  // webhook per call, each webhook in its own transaction. Returns how many deliveries were
  // created. UNAVAILABLE.
  Expected<int64_t> AdvanceCursors(events::EventLog& log, int batch = 500);
  // The webhooks whose oldest PENDING delivery is due now.
  Expected<std::vector<int64_t>> WebhooksDue();
  // Sends the oldest PENDING delivery of `webhook_id` if it is due and records the outcome
  // (a delivery becomes DELIVERED only after a 2xx). REQUIRES: no other SendNextDue for the
  // same webhook runs at once (the dispatcher's per-webhook exclusivity). FAILED_PRECONDITION
  // (no key), UNAVAILABLE.
  Expected<SendOutcome> SendNextDue(int64_t webhook_id);

  // Deletes the DELIVERED deliveries last touched more than `age` ago (dead and pending ones
  // stay until delivered, replayed or their webhook is removed). Returns how many. UNAVAILABLE.
  Expected<int64_t> PruneDelivered(std::chrono::seconds age);

  // Attempts by outcome since this object was made (for metrics).
  struct Counts {
    uint64_t delivered = 0, retried = 0, dead = 0;
  };
  Counts counts() const { return {delivered_.load(), retried_.load(), dead_.load()}; }

  const WebhookOptions& options() const { return options_; }

 private:
  db::Pool& pool_;
  const SecretBox* box_;
  WebhookSender& sender_;
  const WebhookOptions options_;
  std::atomic<uint64_t> delivered_{0}, retried_{0}, dead_{0};
};

}  // namespace modelfleet::webhooks
