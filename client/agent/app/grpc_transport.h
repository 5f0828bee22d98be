// The agent's gRPC side of the update flow: the two interfaces agent/update/ defines, over
// the server's RegistryService.Download and DeviceService.ReportDeployment. The update flow
// itself knows no gRPC (the build enforces it: see scripts/check_layering.py).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "agent/update/downloader.h"
#include "agent/update/updater.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"

namespace modelfleet::agent::app {

// Download of one version's bytes, resumable by offset. A busy server (RESOURCE_EXHAUSTED)
// counts as UNAVAILABLE: an outage to wait out, not a full local disk.
class GrpcChunkFetcher final : public update::ChunkFetcher {
 public:
  GrpcChunkFetcher(std::shared_ptr<grpc::Channel> channel, std::string token, std::string model,
                   std::string version, std::chrono::seconds timeout);
  Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) override;

 private:
  std::unique_ptr<v1::RegistryService::Stub> stub_;
  std::string token_, model_, version_;
  std::chrono::seconds timeout_;
};

// Deployment reports, with a few quick retries while the server is restarting or busy (the
// updater keeps its state and repeats the report later otherwise).
class GrpcReporter final : public update::DeploymentReporter {
 public:
  GrpcReporter(v1::DeviceService::Stub& stub, const std::string& token, std::chrono::seconds timeout)
      : stub_(stub), token_(token), timeout_(timeout) {}
  Status Report(const v1::DeploymentReport& report) override;

 private:
  v1::DeviceService::Stub& stub_;
  const std::string& token_;
  std::chrono::seconds timeout_;
};

}  // namespace modelfleet::agent::app
