#include "agent/app/grpc_transport.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "common/grpc_status.h"

namespace modelfleet::agent::app {

using client::StatusFromGrpc;

GrpcChunkFetcher::GrpcChunkFetcher(std::shared_ptr<grpc::Channel> channel, std::string token,
                                   std::string model, std::string version,
                                   std::chrono::seconds timeout)
    : stub_(v1::RegistryService::NewStub(std::move(channel))),
      token_(std::move(token)),
      model_(std::move(model)),
      version_(std::move(version)),
      timeout_(timeout) {}

Status GrpcChunkFetcher::Fetch(uint64_t offset, uint64_t length, const Sink& sink) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token_);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::DownloadRequest req;
  req.mutable_ref()->set_model(model_);
  req.mutable_ref()->set_version(version_);
  req.set_offset(offset);
  req.set_length(length);
  auto reader = stub_->Download(&ctx, req);
  v1::DownloadChunk chunk;
  Status sink_status;
  while (reader->Read(&chunk)) {
    sink_status = sink(chunk);
    if (!sink_status.ok()) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (!sink_status.ok()) return sink_status;
  if (!s.ok()) {
    // The server being busy is an outage, not a full local disk (see the updater's IsRetryable).
    Status status = StatusFromGrpc(s, "Download");
    if (status.code() == StatusCode::kResourceExhausted) {
      return Status(StatusCode::kUnavailable, status.message());
    }
    return status;
  }
  return Status::Ok();
}

Status GrpcReporter::Report(const v1::DeploymentReport& report) {
  // A few quick retries: the server may be restarting; the caller keeps the state otherwise.
  grpc::Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token_);
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    v1::ReportDeploymentResponse resp;
    s = stub_.ReportDeployment(&ctx, report, &resp);
    if (s.ok()) {
      spdlog::info("reported {} {} bytes_done={}", report.deployment_id(),
                   v1::DeploymentStep_Name(report.step()), report.bytes_done());
      return Status::Ok();
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300 * (attempt + 1)));
  }
  // Throttled or away: the updater keeps its state and repeats the report later.
  if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    return Unavailable("ReportDeployment: " + s.error_message());
  }
  return StatusFromGrpc(s, "ReportDeployment");
}

}  // namespace modelfleet::agent::app
