#include "agent/app/check_in_loop.h"

#include <spdlog/spdlog.h>

#include "common/grpc_status.h"

namespace modelfleet::agent::app {

CheckInLoop::CheckInLoop(const AgentConfig& config, v1::DeviceService::Stub& device,
                         Enrollment& enrollment, const ActiveModelSlot& active, Telemetry& telemetry,
                         const update::UpdateStateStore& state, update::Updater& updater,
                         StopSignal& stop, Backoff& backoff)
    : config_(config),
      device_(device),
      enrollment_(enrollment),
      active_(active),
      telemetry_(telemetry),
      state_(state),
      updater_(updater),
      stop_(stop),
      backoff_(backoff) {}

void CheckInLoop::Run() {
  while (!stop_.requested()) {
    if (state_.state() != update::UpdateState::kIdle) {
      Status us = updater_.Continue();
      if (!us.ok() && !update::IsRetryable(us)) spdlog::error("update: {}", us.ToString());
    }
    if (stop_.requested()) break;
    std::chrono::seconds next = config_.check_in_interval;
    Status s = CheckIn(&next);
    if (s.ok()) {
      backoff_.Reset();
      // An update that just stopped early goes on after a short pause, not a whole interval.
      if (state_.state() != update::UpdateState::kIdle) next = std::chrono::seconds(1);
      stop_.SleepFor(next);
      continue;
    }
    if (s.code() == StatusCode::kUnauthenticated && !config_.enrollment_token.empty()) {
      spdlog::warn("{}: the credential was revoked; enrolling again", s.ToString());
      if (Status es = enrollment_.Enroll(); !es.ok()) spdlog::error("{}", es.ToString());
      continue;
    }
    const auto wait = backoff_.Next();
    spdlog::warn("{}; next check-in in {} ms", s.ToString(), wait.count());
    stop_.SleepFor(wait);
  }
}

Status CheckInLoop::CheckIn(std::chrono::seconds* next) {
  v1::CheckInRequest req;
  const auto current = active_.Get();
  if (current) {
    auto* r = req.add_running();
    r->set_model(current->manifest.model());
    r->set_version(current->manifest.version());
    r->set_digest(current->manifest.digest());
  }
  req.set_agent_state(update::AgentStateFor(state_.state()));
  if (!attributes_sent_) FillDeviceAttributes(config_, req.mutable_attributes());
  auto windows = telemetry_.Take();
  const auto now = std::chrono::system_clock::now();
  for (const auto& w : windows) *req.add_telemetry() = Telemetry::ToProto(w, now);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + enrollment_.token());
  ctx.set_deadline(now + config_.rpc_timeout);
  v1::CheckInResponse resp;
  grpc::Status s = device_.CheckIn(&ctx, req, &resp);
  if (!s.ok()) {
    // Sent again with the next check-in, unless the server refused them: it would refuse them
    // again, and every later check-in with them.
    if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      telemetry_.Restore(std::move(windows));
    } else if (!windows.empty()) {
      spdlog::error("CheckIn refused ({}); dropping the telemetry it carried", s.error_message());
    }
    return client::StatusFromGrpc(s, "CheckIn");
  }
  attributes_sent_ = true;
  for (const auto& t : req.telemetry()) {
    spdlog::info("telemetry {}@{}: {} inferences, {} errors, p95 {:.3f} ms, mean confidence {:.3f}", t.model(),
                 t.version(), t.inference_count(), t.error_count(), t.latency().p95_ms(), t.mean_confidence());
  }
  *next = resp.next_check_in_seconds() > 0 ? std::chrono::seconds(resp.next_check_in_seconds())
                                           : config_.check_in_interval;
  if (resp.has_assignment()) return TakeAssignment(resp.assignment());
  return Status::Ok();
}

Status CheckInLoop::TakeAssignment(const v1::Assignment& a) {
  if (state_.state() != update::UpdateState::kIdle) {
    if (state_.record().assignment.deployment_id() != a.deployment_id()) {
      spdlog::warn("assignment {} while {} is under way; finishing that first", a.deployment_id(),
                   state_.record().assignment.deployment_id());
    }
  } else if (a.deployment_id() == state_.record().last_finished_deployment) {
    spdlog::debug("assignment {} already finished", a.deployment_id());
  } else {
    Status us = updater_.Start(a);
    if (!us.ok() && !update::IsRetryable(us)) return us;
  }
  return Status::Ok();
}

}  // namespace modelfleet::agent::app
