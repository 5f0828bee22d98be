#include "grpc/event_service.h"

#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {

namespace {

constexpr std::string_view kService = "/modelfleet.v1.EventService/";
constexpr int kDefaultPageSize = 100;

}  // namespace

grpc::Status EventServiceImpl::ListEvents(grpc::ServerContext* ctx, const v1::ListEventsRequest* req,
                                          v1::ListEventsResponse* resp) {
  return GuardCall("/modelfleet.v1.EventService/ListEvents", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListEvents");
    auto page = log_.List(req->after_id(), events::FilterFromProto(req->filter()), caller.role,
                          req->page_size() == 0 ? kDefaultPageSize : req->page_size());
    if (!page) return ToGrpcStatus(page.error(), ctx);
    for (auto& event : page->events) *resp->add_events() = std::move(event);
    resp->set_next_after_id(page->next_after_id);
    return grpc::Status::OK;
  });
}

grpc::Status EventServiceImpl::WatchEvents(grpc::ServerContext* ctx, const v1::WatchEventsRequest* req,
                                           grpc::ServerWriter<v1::Event>* writer) {
  return GuardCall("/modelfleet.v1.EventService/WatchEvents", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "WatchEvents");
    Status ended = events::FollowEvents(
        log_, notifier_, req->after_id(), events::FilterFromProto(req->filter()), caller.role,
        [&](const v1::Event& event) -> Status {
          if (!writer->Write(event)) return Status(StatusCode::kCancelled, "the client went away");
          return Status::Ok();
        },
        [&] { return ctx->IsCancelled() || CallsInFlight::Get().draining(); });
    // A stream never ends by itself: at shutdown it ends here so the drain does not wait for it,
    // with the status that tells the client to resume elsewhere.
    if (ended.code() == StatusCode::kCancelled && CallsInFlight::Get().draining()) {
      ended = Unavailable("the server is shutting down; resume from the last event id received");
    }
    return ToGrpcStatus(ended, ctx);
  });
}

}  // namespace modelfleet::grpc_edge
