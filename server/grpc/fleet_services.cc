#include "grpc/fleet_services.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "fleet/rollout_state.h"
#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {

// ------------------------------------------------------------------ DeviceService

namespace device_service {
constexpr std::string_view kService = "/modelfleet.v1.DeviceService/";
}

grpc::Status DeviceServiceImpl::Enroll(grpc::ServerContext* ctx, const v1::EnrollRequest* req, v1::EnrollResponse* resp) {
  return GuardCall("/modelfleet.v1.DeviceService/Enroll", [&]() -> grpc::Status {
    auto result = devices_.Enroll(*req);
    if (result) {
      spdlog::info("device {} enrolled (hardware id {}, {})", result->device_id(), req->hardware_id(),
                   v1::DeviceAdmission_Name(result->admission()));
    }
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::ServerUnaryReactor* DeviceServiceImpl::CheckIn(grpc::CallbackServerContext* ctx, const v1::CheckInRequest* req,
                                                     v1::CheckInResponse* resp) {
  using device_service::kService;
  static constexpr std::string_view kMethod = "/modelfleet.v1.DeviceService/CheckIn";
  static const size_t kMethodIndex = RpcMethodIndex(kMethod);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const CallMeasurement measurement(kMethodIndex);
  // The call stays in CallsInFlight until its reactor is finished, on whichever thread.
  CallsInFlight& calls = CallsInFlight::Get();
  if (!calls.Begin(kMethod)) {
    measurement.Done(grpc::StatusCode::UNAVAILABLE);
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
    return reactor;
  }
  auto finish = [reactor, &calls, measurement](const grpc::Status& status) {
    calls.End(kMethod);
    measurement.Done(status.error_code());
    reactor->Finish(status);
  };
  std::optional<auth::Principal> needs_database;  // the device whose answer must wait
  grpc::Status status = RunGuarded(kMethod, [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(device, "CheckIn");
    auto answer = check_in_.CheckInWithoutBlocking(device, *req);
    if (!answer) {
      needs_database = device;
      return grpc::Status::OK;
    }
    return Respond(std::move(*answer), resp, ctx);
  });
  if (!needs_database) {
    finish(status);
    return reactor;
  }
  blocking_.Submit([this, ctx, req, resp, device = std::move(*needs_database), finish] {
    finish(RunGuarded(kMethod, [&] { return Respond(check_in_.CheckIn(device, *req), resp, ctx); }));
  });
  return reactor;
}

grpc::Status DeviceServiceImpl::ReportDeployment(grpc::ServerContext* ctx, const v1::DeploymentReport* req,
                                                 v1::ReportDeploymentResponse*) {
  return GuardCall("/modelfleet.v1.DeviceService/ReportDeployment", [&]() -> grpc::Status {
    using device_service::kService;
    MF_AUTHORIZE_OR_RETURN(device, "ReportDeployment");
    return ToGrpcStatus(check_in_.ReportDeployment(device, *req), ctx);
  });
}

// ------------------------------------------------------------------ FleetService

namespace {
constexpr std::string_view kService = "/modelfleet.v1.FleetService/";
}  // namespace

grpc::Status FleetServiceImpl::CreateEnrollmentToken(grpc::ServerContext* ctx, const v1::CreateEnrollmentTokenRequest* req,
                                                     v1::CreateEnrollmentTokenResponse* resp) {
  return GuardCall("/modelfleet.v1.FleetService/CreateEnrollmentToken", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "CreateEnrollmentToken");
    return Respond(devices_.CreateEnrollmentToken(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ListEnrollmentTokens(grpc::ServerContext* ctx, const v1::ListEnrollmentTokensRequest*,
                                                    v1::ListEnrollmentTokensResponse* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ListEnrollmentTokens", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListEnrollmentTokens");
    return Respond(devices_.ListEnrollmentTokens(), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::RevokeEnrollmentToken(grpc::ServerContext* ctx, const v1::RevokeEnrollmentTokenRequest* req,
                                                     v1::EnrollmentToken* resp) {
  return GuardCall("/modelfleet.v1.FleetService/RevokeEnrollmentToken", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "RevokeEnrollmentToken");
    return Respond(devices_.RevokeEnrollmentToken(*req), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::PreauthorizeDevice(grpc::ServerContext* ctx, const v1::PreauthorizeDeviceRequest* req,
                                                  v1::Device* resp) {
  return GuardCall("/modelfleet.v1.FleetService/PreauthorizeDevice", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "PreauthorizeDevice");
    return Respond(devices_.Preauthorize(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::SetDeviceAdmission(grpc::ServerContext* ctx, const v1::SetDeviceAdmissionRequest* req,
                                                  v1::Device* resp) {
  return GuardCall("/modelfleet.v1.FleetService/SetDeviceAdmission", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "SetDeviceAdmission");
    auto result = devices_.SetAdmission(*req, caller);
    if (result) {
      spdlog::info("device {} -> {} by {}", req->device_id(), v1::DeviceAdmission_Name(req->admission()), caller.Actor());
    }
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::GetDevice(grpc::ServerContext* ctx, const v1::GetDeviceRequest* req, v1::Device* resp) {
  return GuardCall("/modelfleet.v1.FleetService/GetDevice", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "GetDevice");
    return Respond(devices_.Get(*req), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ListDevices(grpc::ServerContext* ctx, const v1::ListDevicesRequest* req,
                                           v1::ListDevicesResponse* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ListDevices", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListDevices");
    return Respond(devices_.List(*req), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ListDeviceHistory(grpc::ServerContext* ctx, const v1::ListDeviceHistoryRequest* req,
                                                 v1::ListDeviceHistoryResponse* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ListDeviceHistory", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListDeviceHistory");
    return Respond(devices_.History(*req), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::CreateRollout(grpc::ServerContext* ctx, const v1::CreateRolloutRequest* req,
                                             v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/CreateRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "CreateRollout");
    if (caller.role == v1::ROLE_PUBLISHER && !options_.allow_publisher_rollouts) {
      return ToGrpcStatus(PermissionDenied("publishers may not start rollouts on this server "
                                           "(it runs without --allow-publisher-rollouts)"),
                          ctx);
    }
    auto result = rollouts_.Create(*req, caller);
    if (result) {
      spdlog::info("rollout {} of {}@{} to '{}' created by {}", result->rollout_id(), req->model(), req->version(),
                   req->target(), caller.Actor());
    }
    return Respond(std::move(result), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::GetRollout(grpc::ServerContext* ctx, const v1::GetRolloutRequest* req, v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/GetRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "GetRollout");
    return Respond(rollouts_.Get(req->rollout_id()), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ListRollouts(grpc::ServerContext* ctx, const v1::ListRolloutsRequest* req,
                                            v1::ListRolloutsResponse* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ListRollouts", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ListRollouts");
    return Respond(rollouts_.List(*req), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::WatchRollout(grpc::ServerContext* ctx, const v1::WatchRolloutRequest* req,
                                            grpc::ServerWriter<v1::RolloutEvent>* writer) {
  return GuardCall("/modelfleet.v1.FleetService/WatchRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "WatchRollout");
    // The current state first, then every recorded event as it comes, until the rollout ends.
    auto current = rollouts_.Get(req->rollout_id());
    if (!current) return ToGrpcStatus(current.error(), ctx);
    int64_t last_event = 0;
    std::string last_progress;
    while (!ctx->IsCancelled()) {
      auto events = rollouts_.EventsAfter(req->rollout_id(), last_event);
      if (!events) return ToGrpcStatus(events.error(), ctx);
      auto rollout = rollouts_.Get(req->rollout_id());
      if (!rollout) return ToGrpcStatus(rollout.error(), ctx);
      for (auto& [id, event] : *events) {
        last_event = id;
        *event.mutable_rollout() = *rollout;
        if (!writer->Write(event)) return grpc::Status::CANCELLED;
      }
      std::string progress = rollout->progress().SerializeAsString() + rollout->state_reason();
      if (events->empty() && progress != last_progress) {
        v1::RolloutEvent tick;
        tick.set_rollout_id(req->rollout_id());
        tick.set_kind("progress");
        *tick.mutable_rollout() = *rollout;
        if (!writer->Write(tick)) return grpc::Status::CANCELLED;
      }
      last_progress = progress;
      // The watch ends when the rollout is finished (COMPLETED or terminal).
      if (!fleet::IsActive(rollout->state())) return grpc::Status::OK;
      std::this_thread::sleep_for(options_.watch_poll_interval);
    }
    return grpc::Status::CANCELLED;
  });
}

grpc::Status FleetServiceImpl::PauseRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                            v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/PauseRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "PauseRollout");
    return Respond(rollouts_.Pause(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ResumeRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                             v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ResumeRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ResumeRollout");
    return Respond(rollouts_.Resume(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::ApproveStage(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                            v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/ApproveStage", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "ApproveStage");
    return Respond(rollouts_.Approve(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::AbortRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                            v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/AbortRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "AbortRollout");
    return Respond(rollouts_.Abort(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::RollbackRollout(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                               v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/RollbackRollout", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "RollbackRollout");
    return Respond(rollouts_.Rollback(*req, caller), resp, ctx);
  });
}

grpc::Status FleetServiceImpl::RetryFailed(grpc::ServerContext* ctx, const v1::RolloutActionRequest* req,
                                           v1::Rollout* resp) {
  return GuardCall("/modelfleet.v1.FleetService/RetryFailed", [&]() -> grpc::Status {
    MF_AUTHORIZE_OR_RETURN(caller, "RetryFailed");
    return Respond(rollouts_.RetryFailed(*req, caller), resp, ctx);
  });
}

}  // namespace modelfleet::grpc_edge
