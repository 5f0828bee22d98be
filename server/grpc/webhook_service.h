// WebhookService over gRPC: thin handlers over the webhooks core (server/webhooks/).
#pragma once

#include "auth/token_store.h"
#include "modelfleet/v1/webhooks.grpc.pb.h"
#include "webhooks/webhooks.h"

namespace modelfleet::grpc_edge {

class WebhookServiceImpl final : public v1::WebhookService::Service {
 public:
  WebhookServiceImpl(webhooks::Webhooks& webhooks, auth::TokenStore& tokens)
      : webhooks_(webhooks), tokens_(tokens) {}

  grpc::Status CreateWebhook(grpc::ServerContext* ctx, const v1::CreateWebhookRequest* req,
                             v1::CreateWebhookResponse* resp) override;
  grpc::Status ListWebhooks(grpc::ServerContext* ctx, const v1::ListWebhooksRequest* req,
                            v1::ListWebhooksResponse* resp) override;
  grpc::Status DeleteWebhook(grpc::ServerContext* ctx, const v1::DeleteWebhookRequest* req,
                             v1::DeleteWebhookResponse* resp) override;
  grpc::Status TestWebhook(grpc::ServerContext* ctx, const v1::TestWebhookRequest* req,
                           v1::TestWebhookResponse* resp) override;
  grpc::Status ListDeliveries(grpc::ServerContext* ctx, const v1::ListDeliveriesRequest* req,
                              v1::ListDeliveriesResponse* resp) override;
  grpc::Status ReplayDeliveries(grpc::ServerContext* ctx, const v1::ReplayDeliveriesRequest* req,
                                v1::ReplayDeliveriesResponse* resp) override;

 private:
  webhooks::Webhooks& webhooks_;
  auth::TokenStore& tokens_;
};

}  // namespace modelfleet::grpc_edge
