#include "grpc/call_context.h"

#include "auth/method_roles.h"

namespace modelfleet::grpc_edge {

grpc::Status ToGrpcStatus(const Status& status, grpc::ServerContext* context) {
  if (status.ok()) return grpc::Status::OK;
  if (context != nullptr && !status.field().empty()) {
    context->AddTrailingMetadata(kFieldViolationKey, status.field());
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Expected<auth::Principal> AuthorizeCall(grpc::ServerContext* context, auth::TokenStore& tokens,
                                        std::string_view method) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Fail(Unauthenticated("missing 'authorization: Bearer <token>' metadata"));
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (!value.starts_with(kBearer)) {
    return Fail(Unauthenticated("authorization metadata is not a Bearer token"));
  }
  MF_ASSIGN_OR_RETURN(auth::Principal principal, tokens.Authenticate(std::string(value.substr(kBearer.size()))));
  MF_RETURN_IF_ERROR(auth::AuthorizeMethod(principal, method));
  return principal;
}

}  // namespace modelfleet::grpc_edge
