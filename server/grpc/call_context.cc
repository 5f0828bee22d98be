#include "grpc/call_context.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <random>

#include "auth/method_roles.h"
#include "modelfleet/rpc_details.h"

namespace modelfleet::grpc_edge {

grpc::Status ToGrpcStatus(const Status& status, grpc::ServerContextBase* context) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  if (status.field().empty()) return grpc::Status(code, status.message());
  if (context != nullptr) context->AddTrailingMetadata(kFieldViolationKey, status.field());
  if (status.code() != StatusCode::kInvalidArgument) return grpc::Status(code, status.message());
  // gRPC sends the third argument as the grpc-status-details-bin trailer.
  return grpc::Status(code, status.message(),
                      EncodeBadRequestStatus(static_cast<int>(code), status.message(),
                                             {.field = status.field(), .description = status.message()}));
}

Expected<auth::Principal> AuthorizeCall(grpc::ServerContextBase* context, auth::TokenStore& tokens,
                                        std::string_view method) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return Fail(Unauthenticated("missing 'authorization: Bearer <token>' metadata"));
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (!value.starts_with(kBearer)) {
    return Fail(Unauthenticated("authorization metadata is not a Bearer token"));
  }
  MF_ASSIGN_OR_RETURN(auth::Principal principal, tokens.Authenticate(std::string(value.substr(kBearer.size()))));
  MF_RETURN_IF_ERROR(auth::AuthorizeMethod(principal, method));
  return principal;
}

CallsInFlight& CallsInFlight::Get() {
  static CallsInFlight* const calls = new CallsInFlight;  // never destroyed: handlers may outlive main's locals
  return *calls;
}

bool CallsInFlight::Begin(std::string_view method) {
  std::lock_guard lock(mu_);
  if (draining_) return false;
  auto it = calls_.find(method);
  if (it == calls_.end()) it = calls_.emplace(std::string(method), 0).first;
  ++it->second;
  return true;
}

void CallsInFlight::End(std::string_view method) {
  std::lock_guard lock(mu_);
  auto it = calls_.find(method);
  if (it != calls_.end() && --it->second <= 0) calls_.erase(it);
  if (calls_.empty()) idle_.notify_all();
}

void CallsInFlight::StartDraining() {
  std::lock_guard lock(mu_);
  draining_ = true;
}

bool CallsInFlight::draining() {
  std::lock_guard lock(mu_);
  return draining_;
}

bool CallsInFlight::WaitUntilIdle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_.wait_until(lock, deadline, [&] { return calls_.empty(); });
}

std::string CallsInFlight::Describe() {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [method, n] : calls_) {
    if (!out.empty()) out += ", ";
    out += std::to_string(n) + " x " + method;
  }
  return out;
}

grpc::Status InternalErrorForCurrentException(std::string_view method) {
  // An id per incident: random start, then counting, so ids from two replicas rarely collide.
  static std::atomic<uint64_t> next{std::random_device{}() % 1000000 * 1000};
  char id[32];
  std::snprintf(id, sizeof id, "E%llu", static_cast<unsigned long long>(next.fetch_add(1)));
  std::string what = "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  spdlog::error("internal error {} in {}: uncaught exception: {}", id, method, what);
  return grpc::Status(grpc::StatusCode::INTERNAL, std::string("internal error ") + id + " (the server logged it)");
}

}  // namespace modelfleet::grpc_edge
