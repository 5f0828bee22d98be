// EventService over gRPC: thin handlers over the events log (server/events/).
#pragma once

#include "auth/token_store.h"
#include "events/event_log.h"
#include "events/event_notifier.h"
#include "modelfleet/v1/events.grpc.pb.h"

namespace modelfleet::grpc_edge {

class EventServiceImpl final : public v1::EventService::Service {
 public:
  EventServiceImpl(events::EventLog& log, events::EventNotifier& notifier, auth::TokenStore& tokens)
      : log_(log), notifier_(notifier), tokens_(tokens) {}

  grpc::Status ListEvents(grpc::ServerContext* ctx, const v1::ListEventsRequest* req,
                          v1::ListEventsResponse* resp) override;
  // Ends when the client cancels (CANCELLED), or when the server drains or the notifier stops
  // at shutdown (UNAVAILABLE: the client resumes from the last id it received, here or on
  // another replica).
  grpc::Status WatchEvents(grpc::ServerContext* ctx, const v1::WatchEventsRequest* req,
                           grpc::ServerWriter<v1::Event>* writer) override;

 private:
  events::EventLog& log_;
  events::EventNotifier& notifier_;
  auth::TokenStore& tokens_;
};

}  // namespace modelfleet::grpc_edge
