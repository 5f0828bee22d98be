#include "agent/app/enrollment.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "agent/update/fs_util.h"
#include "common/grpc_status.h"

namespace modelfleet::agent::app {
namespace {

bool IsBackoffCode(StatusCode c) {
  return c == StatusCode::kUnavailable || c == StatusCode::kResourceExhausted ||
         c == StatusCode::kDeadlineExceeded || c == StatusCode::kUnknown ||
         c == StatusCode::kInternal || c == StatusCode::kAborted;
}

}  // namespace

void FillDeviceAttributes(const AgentConfig& config, v1::DeviceAttributes* a) {
  a->set_hardware_revision(config.hardware_revision);
  a->set_firmware_version(config.firmware_version);
  a->set_site(config.site);
  a->set_sensor_rows(config.sensor_rows);
  a->set_sensor_cols(config.sensor_cols);
  for (const auto& [k, v] : config.labels) (*a->mutable_labels())[k] = v;
}

Enrollment::Enrollment(const AgentConfig& config, v1::DeviceService::Stub& device, StopSignal& stop,
                       Backoff& backoff)
    : config_(config), device_(device), stop_(stop), backoff_(backoff) {}

Status Enrollment::LoadOrEnroll() {
  if (Status s = LoadCredential(); !s.ok()) {
    if (s.code() != StatusCode::kNotFound) spdlog::warn("{}; enrolling again", s.ToString());
    return Enroll();
  }
  spdlog::info("device {} (stored credential)", device_id_);
  return Status::Ok();
}

Status Enrollment::LoadCredential() {
  const auto path = std::filesystem::path(config_.state_dir) / "credential";
  auto bytes = update::ReadWholeFile(path);
  if (!bytes) return bytes.error();
  const size_t nl = bytes->find('\n');
  if (nl == std::string::npos) return DataLoss("credential file " + path.string() + " is malformed");
  device_id_ = bytes->substr(0, nl);
  token_ = bytes->substr(nl + 1);
  while (!token_.empty() && (token_.back() == '\n' || token_.back() == ' ')) token_.pop_back();
  if (device_id_.empty() || token_.empty()) return DataLoss("credential file " + path.string() + " is malformed");
  return Status::Ok();
}

Status Enrollment::Enroll() {
  if (config_.enrollment_token.empty()) {
    return InvalidArgument("enrollment_token", "is required: the agent has no device credential yet");
  }
  v1::EnrollRequest req;
  req.set_enrollment_token(config_.enrollment_token);
  req.set_hardware_id(config_.hardware_id);
  FillDeviceAttributes(config_, req.mutable_attributes());
  while (!stop_.requested()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + config_.rpc_timeout);
    v1::EnrollResponse resp;
    grpc::Status s = device_.Enroll(&ctx, req, &resp);
    if (s.ok()) {
      device_id_ = resp.device_id();
      token_ = resp.device_token();
      MF_RETURN_IF_ERROR(update::AtomicWriteFile(std::filesystem::path(config_.state_dir) / "credential",
                                                 device_id_ + "\n" + token_ + "\n", 0600));
      spdlog::info("enrolled as device {} (admission {})", device_id_,
                   v1::DeviceAdmission_Name(resp.admission()));
      backoff_.Reset();
      return Status::Ok();
    }
    Status st = client::StatusFromGrpc(s, "Enroll");
    if (!IsBackoffCode(st.code())) return st;
    const auto wait = backoff_.Next();
    spdlog::warn("{}; retrying in {} ms", st.ToString(), wait.count());
    stop_.SleepFor(wait);
  }
  return Status(StatusCode::kCancelled, "stopped");
}

}  // namespace modelfleet::agent::app
