// The one conversion of a client-side grpc::Status into the project's Status, shared by the
// CLI and the agent (the server's opposite direction lives in server/grpc/call_context.h).
#pragma once

#include <grpcpp/support/status.h>

#include <string>
#include <string_view>

#include "modelfleet/status.h"

namespace modelfleet::client {

// Same code (a code outside gRPC's 0-16 becomes UNKNOWN: it came off the wire), message
// prefixed with "<what>: " when `what` is given. OK stays OK.
inline Status StatusFromGrpc(const grpc::Status& s, std::string_view what = {}) {
  if (s.ok()) return Status::Ok();
  const int raw = static_cast<int>(s.error_code());
  const StatusCode code = raw > 0 && raw <= 16 ? static_cast<StatusCode>(raw) : StatusCode::kUnknown;
  return Status(code, what.empty() ? s.error_message() : std::string(what) + ": " + s.error_message());
}

}  // namespace modelfleet::client
