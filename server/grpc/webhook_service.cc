#include "grpc/webhook_service.h"

#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {

namespace {

constexpr std::string_view kService = "/modelfleet.v1.WebhookService/";

}  // namespace

grpc::Status WebhookServiceImpl::CreateWebhook(grpc::ServerContext* ctx, const v1::CreateWebhookRequest* req,
                                               v1::CreateWebhookResponse* resp) {
  return GuardCall("/modelfleet.v1.WebhookService/CreateWebhook", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "CreateWebhook");
    return Respond(webhooks_.Create(*req, caller), resp, ctx);
  });
}

grpc::Status WebhookServiceImpl::ListWebhooks(grpc::ServerContext* ctx, const v1::ListWebhooksRequest*,
                                              v1::ListWebhooksResponse* resp) {
  return GuardCall("/modelfleet.v1.WebhookService/ListWebhooks", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListWebhooks");
    return Respond(webhooks_.List(), resp, ctx);
  });
}

grpc::Status WebhookServiceImpl::DeleteWebhook(grpc::ServerContext* ctx, const v1::DeleteWebhookRequest* req,
                                               v1::DeleteWebhookResponse*) {
  return GuardCall("/modelfleet.v1.WebhookService/DeleteWebhook", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "DeleteWebhook");
    return ToGrpcStatus(webhooks_.Delete(req->id(), caller), ctx);
  });
}

grpc::Status WebhookServiceImpl::TestWebhook(grpc::ServerContext* ctx, const v1::TestWebhookRequest* req,
                                             v1::TestWebhookResponse* resp) {
  return GuardCall("/modelfleet.v1.WebhookService/TestWebhook", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "TestWebhook");
    return Respond(webhooks_.Test(req->id(), caller), resp, ctx);
  });
}

grpc::Status WebhookServiceImpl::ListDeliveries(grpc::ServerContext* ctx,
                                                const v1::ListDeliveriesRequest* req,
                                                v1::ListDeliveriesResponse* resp) {
  return GuardCall("/modelfleet.v1.WebhookService/ListDeliveries", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListDeliveries");
    return Respond(webhooks_.ListDeliveries(*req), resp, ctx);
  });
}

grpc::Status WebhookServiceImpl::ReplayDeliveries(grpc::ServerContext* ctx,
                                                  const v1::ReplayDeliveriesRequest* req,
                                                  v1::ReplayDeliveriesResponse* resp) {
  return GuardCall("/modelfleet.v1.WebhookService/ReplayDeliveries", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ReplayDeliveries");
    auto replayed = webhooks_.Replay(req->webhook_id(), req->delivery_id());
    if (!replayed) return ToGrpcStatus(replayed.error(), ctx);
    resp->set_replayed(*replayed);
    return grpc::Status::OK;
  });
}

}  // namespace modelfleet::grpc_edge
