// A webhook delivery's state machine, as a declared table (database spelling in caps).
//
//             2xx                       attempts reach max_attempts
//   DELIVERED <--- PENDING ------------------------------------------> DEAD
//                  |    ^  another answer or none: attempts+1,           |
//                  +----+  next_attempt_at = now + RetryDelay            |
//                       ^------------------------------------------------+
//                          ReplayDeliveries (attempts reset to 0)
//
// Every UPDATE of webhook_deliveries.state takes its guard ("WHERE state = ...") from
// SourceOf, so the SQL cannot allow a move the table does not.
#pragma once

#include <optional>
#include <string_view>

#include "modelfleet/v1/webhooks.pb.h"

namespace modelfleet::webhooks {

enum class DeliveryEvent {
  kAnswered2xx,      // the receiver accepted it
  kFailedWillRetry,  // no 2xx, attempts left
  kFailedLastTime,   // no 2xx, the last attempt
  kReplayed,         // an admin asked for it again
};

struct DeliveryTransition {
  v1::WebhookDeliveryState from;
  DeliveryEvent on;
  v1::WebhookDeliveryState to;
  std::string_view why;
};

inline constexpr DeliveryTransition kDeliveryTransitions[] = {
    {v1::WEBHOOK_DELIVERY_STATE_PENDING, DeliveryEvent::kAnswered2xx, v1::WEBHOOK_DELIVERY_STATE_DELIVERED,
     "at-least-once: delivered only once the receiver said so"},
    {v1::WEBHOOK_DELIVERY_STATE_PENDING, DeliveryEvent::kFailedWillRetry, v1::WEBHOOK_DELIVERY_STATE_PENDING,
     "retried after RetryDelay; holds back the webhook's later events"},
    {v1::WEBHOOK_DELIVERY_STATE_PENDING, DeliveryEvent::kFailedLastTime, v1::WEBHOOK_DELIVERY_STATE_DEAD,
     "dead-lettered so the webhook's later events can go"},
    {v1::WEBHOOK_DELIVERY_STATE_DEAD, DeliveryEvent::kReplayed, v1::WEBHOOK_DELIVERY_STATE_PENDING,
     "the receiver is back: send it again from attempt 0"},
};

inline constexpr const DeliveryTransition* FindTransition(DeliveryEvent on) {
  for (const auto& t : kDeliveryTransitions) {
    if (t.on == on) return &t;
  }
  return nullptr;
}

// "PENDING" <-> WEBHOOK_DELIVERY_STATE_PENDING; "" / UNSPECIFIED for anything else.
inline constexpr std::string_view DeliveryStateName(v1::WebhookDeliveryState state) {
  switch (state) {
    case v1::WEBHOOK_DELIVERY_STATE_PENDING:
      return "PENDING";
    case v1::WEBHOOK_DELIVERY_STATE_DELIVERED:
      return "DELIVERED";
    case v1::WEBHOOK_DELIVERY_STATE_DEAD:
      return "DEAD";
    default:
      return "";
  }
}
inline v1::WebhookDeliveryState DeliveryStateFromName(std::string_view name) {
  for (auto s : {v1::WEBHOOK_DELIVERY_STATE_PENDING, v1::WEBHOOK_DELIVERY_STATE_DELIVERED,
                 v1::WEBHOOK_DELIVERY_STATE_DEAD}) {
    if (DeliveryStateName(s) == name) return s;
  }
  return v1::WEBHOOK_DELIVERY_STATE_UNSPECIFIED;
}

// The guard and the result of `on`, in database spelling.
inline std::string_view SourceOf(DeliveryEvent on) { return DeliveryStateName(FindTransition(on)->from); }
inline std::string_view TargetOf(DeliveryEvent on) { return DeliveryStateName(FindTransition(on)->to); }

}  // namespace modelfleet::webhooks
