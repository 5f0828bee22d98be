#include "grpc/admin_service.h"

#include <spdlog/spdlog.h>

#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {

namespace {
constexpr std::string_view kService = "/modelfleet.v1.AdminService/";
}  // namespace

grpc::Status AdminServiceImpl::CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                                           v1::CreateTokenResponse* resp) {
  return GuardCall("/modelfleet.v1.AdminService/CreateToken", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "CreateToken");
    auto result = tokens_.Create(*req, caller.Actor());
    if (result) spdlog::info("token '{}' ({}) created by {}", req->name(), auth::RoleName(req->role()), caller.Actor());
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status AdminServiceImpl::ListTokens(grpc::ServerContext* ctx, const v1::ListTokensRequest* req,
                                          v1::ListTokensResponse* resp) {
  return GuardCall("/modelfleet.v1.AdminService/ListTokens", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListTokens");
    auto tokens = tokens_.List(req->include_revoked());
    if (!tokens) return ToGrpcStatus(tokens.error(), ctx);
    for (auto& t : *tokens) *resp->add_tokens() = std::move(t);
    return grpc::Status::OK;
  });
}

grpc::Status AdminServiceImpl::RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req,
                                           v1::Token* resp) {
  return GuardCall("/modelfleet.v1.AdminService/RevokeToken", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "RevokeToken");
    auto result = tokens_.Revoke(req->id(), caller.Actor());
    if (result) spdlog::info("token {} revoked by {}", req->id(), caller.Actor());
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status AdminServiceImpl::WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*, v1::Token* resp) {
  return GuardCall("/modelfleet.v1.AdminService/WhoAmI", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "WhoAmI");
    return Respond(tokens_.Get(caller.token_id), resp, ctx);
  });
}

grpc::Status AdminServiceImpl::AddPublisherKey(grpc::ServerContext* ctx, const v1::AddPublisherKeyRequest* req,
                                               v1::PublisherKey* resp) {
  return GuardCall("/modelfleet.v1.AdminService/AddPublisherKey", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "AddPublisherKey");
    return Respond(registry_.AddPublisherKey(*req, caller), resp, ctx);
  });
}

grpc::Status AdminServiceImpl::ListPublisherKeys(grpc::ServerContext* ctx, const v1::ListPublisherKeysRequest*,
                                                 v1::ListPublisherKeysResponse* resp) {
  return GuardCall("/modelfleet.v1.AdminService/ListPublisherKeys", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListPublisherKeys");
    return Respond(registry_.ListPublisherKeys(), resp, ctx);
  });
}

grpc::Status AdminServiceImpl::RevokePublisherKey(grpc::ServerContext* ctx, const v1::RevokePublisherKeyRequest* req,
                                                  v1::PublisherKey* resp) {
  return GuardCall("/modelfleet.v1.AdminService/RevokePublisherKey", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "RevokePublisherKey");
    return Respond(registry_.RevokePublisherKey(*req, caller), resp, ctx);
  });
}

}  // namespace modelfleet::grpc_edge
