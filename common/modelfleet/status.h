// The one error style of modelfleet: a Status with gRPC-compatible codes, and
// Expected<T> = std::expected<T, Status> for functions that return a value.
//
// Library exceptions (libpqxx, libcurl, OpenSSL, libtorch) are caught inside their wrapper
// and turned into a Status there; nothing above the wrappers throws for expected failures.
// Conversion to grpc::Status happens in exactly one place (ToGrpcStatus, server/grpc/call_context.h),
// and back on the client side in one other (client/common/grpc_status.h).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace modelfleet {

// Same numeric values as grpc::StatusCode so conversion is a cast.
enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // Lets `return Fail(s);` work in functions returning Status as well as Expected<T>.
  Status(std::unexpected<Status> failure) : Status(std::move(failure.error())) {}  // NOLINT

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // For INVALID_ARGUMENT errors: the request field that is wrong ("manifest.version").
  const std::string& field() const { return field_; }
  Status& WithField(std::string field) {
    field_ = std::move(field);
    return *this;
  }

  // "NOT_FOUND: model 'x' does not exist"
  std::string ToString() const;

  // Prepends context: "reading blob: <message>". Keeps code and field.
  Status Annotate(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string field_;
};

inline Status InvalidArgument(std::string field, std::string_view message) {
  Status s(StatusCode::kInvalidArgument, field + ": " + std::string(message));
  s.WithField(std::move(field));
  return s;
}
inline Status NotFound(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
inline Status AlreadyExists(std::string message) {
  return {StatusCode::kAlreadyExists, std::move(message)};
}
inline Status FailedPrecondition(std::string message) {
  return {StatusCode::kFailedPrecondition, std::move(message)};
}
inline Status Unavailable(std::string message) {
  return {StatusCode::kUnavailable, std::move(message)};
}
inline Status Internal(std::string message) { return {StatusCode::kInternal, std::move(message)}; }
inline Status DataLoss(std::string message) { return {StatusCode::kDataLoss, std::move(message)}; }
inline Status PermissionDenied(std::string message) {
  return {StatusCode::kPermissionDenied, std::move(message)};
}
inline Status Unauthenticated(std::string message) {
  return {StatusCode::kUnauthenticated, std::move(message)};
}

template <typename T>
using Expected = std::expected<T, Status>;

inline std::unexpected<Status> Fail(Status s) { return std::unexpected<Status>(std::move(s)); }

// The status of an Expected, dropping its value.
template <typename T>
Status StatusOf(const Expected<T>& e) {
  return e ? Status::Ok() : e.error();
}

}  // namespace modelfleet

#define MF_CONCAT_INNER(a, b) a##b
#define MF_CONCAT(a, b) MF_CONCAT_INNER(a, b)

// Returns from the enclosing function (returning Status or Expected<T>) if `expr`, a Status,
// is not OK.
#define MF_RETURN_IF_ERROR(expr)                         \
  do {                                                   \
    ::modelfleet::Status mf_status_ = (expr);            \
    if (!mf_status_.ok()) return ::modelfleet::Fail(std::move(mf_status_)); \
  } while (0)

// MF_ASSIGN_OR_RETURN(auto x, ExpectedExpr()); returns the error (as Status or Expected).
#define MF_ASSIGN_OR_RETURN(lhs, expr)                                        \
  auto MF_CONCAT(mf_expected_, __LINE__) = (expr);                            \
  if (!MF_CONCAT(mf_expected_, __LINE__))                                     \
    return ::modelfleet::Fail(std::move(MF_CONCAT(mf_expected_, __LINE__).error())); \
  lhs = std::move(*MF_CONCAT(mf_expected_, __LINE__))
