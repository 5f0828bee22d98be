// RegistryService over gRPC: thin handlers that authorise the call, call one Registry
// method and convert the result.
#pragma once

#include <functional>

#include "auth/token_store.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "registry/registry.h"

namespace modelfleet::grpc_edge {

class RegistryServiceImpl final : public v1::RegistryService::Service {
 public:
  // Decides whether a device credential may download what it asks for (the fleet knows which
  // versions a device was assigned). Without one, devices may not download at all.
  using DeviceDownloadGate = std::function<Status(const auth::Principal& device, const v1::VersionRef& ref)>;

  RegistryServiceImpl(registry::Registry& registry, auth::TokenStore& tokens, DeviceDownloadGate device_gate = {})
      : registry_(registry), tokens_(tokens), device_gate_(std::move(device_gate)) {}

  grpc::Status CreateModel(grpc::ServerContext* ctx, const v1::CreateModelRequest* req, v1::Model* resp) override;
  grpc::Status GetModel(grpc::ServerContext* ctx, const v1::GetModelRequest* req, v1::Model* resp) override;
  grpc::Status ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                          v1::ListModelsResponse* resp) override;
  grpc::Status ArchiveModel(grpc::ServerContext* ctx, const v1::ArchiveModelRequest* req, v1::Model* resp) override;
  grpc::Status PushVersion(grpc::ServerContext* ctx, grpc::ServerReader<v1::PushVersionRequest>* reader,
                           v1::ModelVersion* resp) override;
  grpc::Status GetVersion(grpc::ServerContext* ctx, const v1::GetVersionRequest* req, v1::ModelVersion* resp) override;
  grpc::Status ListVersions(grpc::ServerContext* ctx, const v1::ListVersionsRequest* req,
                            v1::ListVersionsResponse* resp) override;
  grpc::Status ArchiveVersion(grpc::ServerContext* ctx, const v1::ArchiveVersionRequest* req,
                              v1::ModelVersion* resp) override;
  grpc::Status PurgeVersion(grpc::ServerContext* ctx, const v1::PurgeVersionRequest* req,
                            v1::PurgeVersionResponse* resp) override;
  grpc::Status SetAlias(grpc::ServerContext* ctx, const v1::SetAliasRequest* req, v1::Alias* resp) override;
  grpc::Status DeleteAlias(grpc::ServerContext* ctx, const v1::DeleteAliasRequest* req,
                           v1::DeleteAliasResponse* resp) override;
  grpc::Status ResolveAlias(grpc::ServerContext* ctx, const v1::ResolveAliasRequest* req,
                            v1::ModelVersion* resp) override;
  grpc::Status ListAliasHistory(grpc::ServerContext* ctx, const v1::ListAliasHistoryRequest* req,
                                v1::ListAliasHistoryResponse* resp) override;
  grpc::Status Download(grpc::ServerContext* ctx, const v1::DownloadRequest* req,
                        grpc::ServerWriter<v1::DownloadChunk>* writer) override;

 private:
  registry::Registry& registry_;
  auth::TokenStore& tokens_;
  DeviceDownloadGate device_gate_;
};

}  // namespace modelfleet::grpc_edge
