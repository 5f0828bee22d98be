// Enrollment: the device's identity on the server. Holds the device credential (device id and
// bearer token), kept in <state_dir>/credential ("<device_id>\n<token>\n", mode 0600, written
// atomically), and gets a new one from DeviceService.Enroll with the configured enrollment token
// when there is none or the server revoked it.
//
// Thread safety: not thread-safe; used by the check-in thread only. token() is a reference that
// stays valid for the object's lifetime and follows re-enrollment: the gRPC reporter and the
// download fetchers read the current token through it.
#pragma once

#include <string>

#include "agent/app/backoff.h"
#include "agent/app/config.h"
#include "agent/app/stop_signal.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::agent::app {

class Enrollment {
 public:
  // `config`, `device`, `stop` and `backoff` must outlive the Enrollment.
  Enrollment(const AgentConfig& config, v1::DeviceService::Stub& device, StopSignal& stop,
             Backoff& backoff);

  // Loads the stored credential; without one (or with a malformed one, which is logged) enrolls.
  // Errors: those of Enroll.
  Status LoadOrEnroll();

  // Enrolls with config.enrollment_token and stores the credential. While the server is away
  // (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, UNKNOWN, INTERNAL, ABORTED) it retries
  // after backoff.Next(); a success resets the backoff. Errors: INVALID_ARGUMENT (field
  // enrollment_token) when none is configured; the server's refusal (PERMISSION_DENIED for a bad
  // token, ...); the error writing the credential file; CANCELLED when a stop was requested.
  Status Enroll();

  const std::string& device_id() const { return device_id_; }
  const std::string& token() const { return token_; }

 private:
  // NOT_FOUND without a credential file; DATA_LOSS for a malformed one.
  Status LoadCredential();

  const AgentConfig& config_;
  v1::DeviceService::Stub& device_;
  StopSignal& stop_;
  Backoff& backoff_;
  std::string device_id_, token_;
};

// The device's attributes from the configuration, as sent with Enroll and the first check-in.
void FillDeviceAttributes(const AgentConfig& config, v1::DeviceAttributes* attributes);

}  // namespace modelfleet::agent::app
