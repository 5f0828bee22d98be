// AdminService over gRPC: API tokens and trusted publisher keys.
#pragma once

#include "auth/token_store.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "registry/registry.h"

namespace modelfleet::grpc_edge {

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(registry::Registry& registry, auth::TokenStore& tokens) : registry_(registry), tokens_(tokens) {}

  grpc::Status CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                           v1::CreateTokenResponse* resp) override;
  grpc::Status ListTokens(grpc::ServerContext* ctx, const v1::ListTokensRequest* req,
                          v1::ListTokensResponse* resp) override;
  grpc::Status RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req, v1::Token* resp) override;
  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest* req, v1::Token* resp) override;
  grpc::Status AddPublisherKey(grpc::ServerContext* ctx, const v1::AddPublisherKeyRequest* req,
                               v1::PublisherKey* resp) override;
  grpc::Status ListPublisherKeys(grpc::ServerContext* ctx, const v1::ListPublisherKeysRequest* req,
                                 v1::ListPublisherKeysResponse* resp) override;
  grpc::Status RevokePublisherKey(grpc::ServerContext* ctx, const v1::RevokePublisherKeyRequest* req,
                                  v1::PublisherKey* resp) override;

 private:
  registry::Registry& registry_;
  auth::TokenStore& tokens_;
};

}  // namespace modelfleet::grpc_edge
