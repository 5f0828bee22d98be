// The gRPC edge: converting Status to grpc::Status (the one place that does it) and
// authenticating / authorising a call from its metadata.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "auth/principal.h"
#include "auth/token_store.h"
#include "grpc/rpc_metrics.h"
#include "modelfleet/status.h"

namespace modelfleet::grpc_edge {

// Trailing metadata key naming the request field an INVALID_ARGUMENT (or NOT_FOUND) refers to.
inline constexpr char kFieldViolationKey[] = "modelfleet-field";

// Converts a Status to a grpc::Status with the same code and message. When the Status names a
// field, adds it to the trailing metadata of `context` (modelfleet-field) and, for
// INVALID_ARGUMENT, sends a google.rpc.BadRequest detail with it (grpc-status-details-bin).
grpc::Status ToGrpcStatus(const Status& status, grpc::ServerContextBase* context);

template <typename T>
grpc::Status ToGrpcStatus(const Expected<T>& result, grpc::ServerContextBase* context) {
  return ToGrpcStatus(StatusOf(result), context);
}

// Reads "authorization: Bearer <secret>", authenticates it and checks that its role may call
// `method` ("/modelfleet.v1.RegistryService/PushVersion").
// Errors: UNAUTHENTICATED (no, malformed, unknown, revoked or expired token),
// PERMISSION_DENIED (role not allowed), UNAVAILABLE (database down).
Expected<auth::Principal> AuthorizeCall(grpc::ServerContextBase* context, auth::TokenStore& tokens,
                                        std::string_view method);

// Inside a handler with `ctx`, `tokens_` and a `kService` prefix in scope: authorises the
// call as `method` or returns its error status from the handler.
#define MF_AUTHORIZE_OR_RETURN(principal, method)                                                \
  auto principal##_or = ::modelfleet::grpc_edge::AuthorizeCall(ctx, tokens_, std::string(kService) + (method)); \
  if (!principal##_or) return ::modelfleet::grpc_edge::ToGrpcStatus(principal##_or.error(), ctx);  \
  [[maybe_unused]] const ::modelfleet::auth::Principal& principal = *principal##_or

// The calls being served, by method, and the server's drain at shutdown: once draining, new
// calls are refused with UNAVAILABLE (clients retry elsewhere or later) while the ones in
// flight finish. Thread-safe; one per process (the handlers of every service register here).
class CallsInFlight {
 public:
  static CallsInFlight& Get();
  // False (and nothing registered) once draining.
  bool Begin(std::string_view method);
  void End(std::string_view method);
  void StartDraining();
  bool draining();
  // Waits until no call is in flight; false if some still are at `deadline`.
  bool WaitUntilIdle(std::chrono::steady_clock::time_point deadline);
  // "2 x /modelfleet.v1.RegistryService/Download, 1 x ..." ("" when none).
  std::string Describe();

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  bool draining_ = false;
  std::map<std::string, int, std::less<>> calls_;
};

// Logs the exception being handled (call only inside a catch block) with a fresh incident id
// and returns INTERNAL naming that id, so an operator can find the log line.
grpc::Status InternalErrorForCurrentException(std::string_view method);

// The last-resort exception barrier around a handler's body. Nothing should throw past the
// core's Status/Expected, but if something does (a bug, std::bad_alloc), the caller gets
// INTERNAL with an incident id that is logged with the exception, not gRPC's anonymous UNKNOWN.
template <typename Body>
grpc::Status RunGuarded(std::string_view method, Body&& body) noexcept {
  try {
    return body();
  } catch (...) {
    return InternalErrorForCurrentException(method);
  }
}

// Runs a handler's body: registers the call in CallsInFlight for its duration, inside
// RunGuarded, and records it in the installed RpcMetrics (grpc/rpc_metrics.h).
template <typename Body>
grpc::Status GuardCall(std::string_view method, Body&& body) noexcept {
  CallsInFlight& calls = CallsInFlight::Get();
  CallMeasurement measurement;
  try {
    // Interned once per call site (each handler's lambda is a Body type of its own); a Body
    // type shared by several methods falls back to the table's lookup.
    static const size_t site_method = RpcMethodIndex(method);
    measurement = CallMeasurement(RpcMethodName(site_method) == method ? site_method : RpcMethodIndex(method));
    if (!calls.Begin(method)) {
      measurement.Done(grpc::StatusCode::UNAVAILABLE);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
    }
  } catch (...) {
    return InternalErrorForCurrentException(method);
  }
  grpc::Status status = RunGuarded(method, std::forward<Body>(body));
  calls.End(method);
  measurement.Done(status.error_code());
  return status;
}

// Copies a successful result into the response and converts the status.
template <typename T>
grpc::Status Respond(Expected<T> result, T* response, grpc::ServerContextBase* ctx) {
  if (!result) return ToGrpcStatus(result.error(), ctx);
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace modelfleet::grpc_edge
