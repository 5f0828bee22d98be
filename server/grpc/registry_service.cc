#include "grpc/registry_service.h"

#include <spdlog/spdlog.h>

#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {

namespace {

constexpr std::string_view kService = "/modelfleet.v1.RegistryService/";

}  // namespace

grpc::Status RegistryServiceImpl::CreateModel(grpc::ServerContext* ctx, const v1::CreateModelRequest* req,
                                              v1::Model* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/CreateModel", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "CreateModel");
    return Respond(registry_.CreateModel(*req, caller), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::GetModel(grpc::ServerContext* ctx, const v1::GetModelRequest* req,
                                           v1::Model* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/GetModel", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "GetModel");
    return Respond(registry_.GetModel(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                                             v1::ListModelsResponse* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ListModels", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListModels");
    return Respond(registry_.ListModels(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::ArchiveModel(grpc::ServerContext* ctx, const v1::ArchiveModelRequest* req,
                                               v1::Model* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ArchiveModel", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ArchiveModel");
    return Respond(registry_.ArchiveModel(*req, caller), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::PushVersion(grpc::ServerContext* ctx,
                                              grpc::ServerReader<v1::PushVersionRequest>* reader,
                                              v1::ModelVersion* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/PushVersion", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "PushVersion");
    v1::PushVersionRequest message;
    if (!reader->Read(&message)) {
      return ToGrpcStatus(InvalidArgument("manifest", "the stream ended before the manifest"), ctx);
    }
    if (message.part_case() != v1::PushVersionRequest::kManifest) {
      return ToGrpcStatus(InvalidArgument("manifest", "must be the first message of the stream"), ctx);
    }
    const v1::Manifest manifest = message.manifest();
    registry::ChunkReader next_chunk = [&]() -> Expected<std::optional<std::string>> {
      if (ctx->IsCancelled()) return Fail(Status(StatusCode::kCancelled, "the client cancelled the push"));
      if (!reader->Read(&message)) {
        if (ctx->IsCancelled()) return Fail(Status(StatusCode::kCancelled, "the client cancelled the push"));
        return std::optional<std::string>();
      }
      if (message.part_case() != v1::PushVersionRequest::kChunk) {
        return Fail(InvalidArgument("manifest", "may only be sent once, as the first message"));
      }
      return std::optional<std::string>(std::move(*message.mutable_chunk()));
    };
    auto result = registry_.PushVersion(manifest, next_chunk, caller);
    if (result) {
      spdlog::info("pushed {}@{} sha256={} size={} by {}", manifest.model(), manifest.version(), manifest.digest(),
                   manifest.size_bytes(), caller.Actor());
    } else {
      spdlog::warn("push of {}@{} by {} failed: {}", manifest.model(), manifest.version(), caller.Actor(),
                   result.error().ToString());
    }
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::GetVersion(grpc::ServerContext* ctx, const v1::GetVersionRequest* req,
                                             v1::ModelVersion* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/GetVersion", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "GetVersion");
    return Respond(registry_.GetVersion(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::ListVersions(grpc::ServerContext* ctx, const v1::ListVersionsRequest* req,
                                               v1::ListVersionsResponse* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ListVersions", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListVersions");
    return Respond(registry_.ListVersions(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::ArchiveVersion(grpc::ServerContext* ctx, const v1::ArchiveVersionRequest* req,
                                                 v1::ModelVersion* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ArchiveVersion", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ArchiveVersion");
    return Respond(registry_.ArchiveVersion(*req, caller), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::PurgeVersion(grpc::ServerContext* ctx, const v1::PurgeVersionRequest* req,
                                               v1::PurgeVersionResponse* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/PurgeVersion", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "PurgeVersion");
    return Respond(registry_.PurgeVersion(*req, caller), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::SetAlias(grpc::ServerContext* ctx, const v1::SetAliasRequest* req,
                                           v1::Alias* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/SetAlias", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "SetAlias");
    auto result = registry_.SetAlias(*req, caller);
    if (result) {
      spdlog::info("alias {}@{} -> {} by {} ({})", req->model(), req->alias(), req->version(), caller.Actor(),
                   req->reason());
    }
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::DeleteAlias(grpc::ServerContext* ctx, const v1::DeleteAliasRequest* req,
                                              v1::DeleteAliasResponse*) {
  return GuardCall("/modelfleet.v1.RegistryService/DeleteAlias", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "DeleteAlias");
    return ToGrpcStatus(registry_.DeleteAlias(*req, caller), ctx);
  });
}

grpc::Status RegistryServiceImpl::ResolveAlias(grpc::ServerContext* ctx, const v1::ResolveAliasRequest* req,
                                               v1::ModelVersion* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ResolveAlias", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ResolveAlias");
    return Respond(registry_.ResolveAlias(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::ListAliasHistory(grpc::ServerContext* ctx, const v1::ListAliasHistoryRequest* req,
                                                   v1::ListAliasHistoryResponse* resp) {
  return GuardCall("/modelfleet.v1.RegistryService/ListAliasHistory", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListAliasHistory");
    return Respond(registry_.ListAliasHistory(*req), resp, ctx);
  });
}

grpc::Status RegistryServiceImpl::Download(grpc::ServerContext* ctx, const v1::DownloadRequest* req,
                                           grpc::ServerWriter<v1::DownloadChunk>* writer) {
  return GuardCall("/modelfleet.v1.RegistryService/Download", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "Download");
    if (caller.role == v1::ROLE_DEVICE) {
      Status allowed = device_gate_ ? device_gate_(caller, req->ref())
                                    : PermissionDenied("devices may not download from this server");
      if (!allowed.ok()) return ToGrpcStatus(allowed, ctx);
    }
    Status s = registry_.Download(*req, [&](const v1::DownloadChunk& chunk) -> Status {
      if (!writer->Write(chunk)) return Status(StatusCode::kCancelled, "the client went away");
      return Status::Ok();
    });
    if (s.code() == StatusCode::kDataLoss) {
      spdlog::error("download of {} refused: {}", req->ref().model(), s.message());
    }
    return ToGrpcStatus(s, ctx);
  });
}

}  // namespace modelfleet::grpc_edge
