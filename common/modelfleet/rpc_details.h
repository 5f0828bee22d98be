// google.rpc.Status with a google.rpc.BadRequest detail: what gRPC sends as the
// `grpc-status-details-bin` trailer, so that any gRPC client (grpcio's, Go's, ...) can read
// which request field an INVALID_ARGUMENT is about. Written and read here directly in the
// protobuf wire format (the messages are tiny and fixed; Debian ships no C++ googleapis protos):
//   google.rpc.Status      { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
//   google.protobuf.Any    { string type_url = 1; bytes value = 2; }
//   google.rpc.BadRequest  { repeated FieldViolation field_violations = 1; }
//   FieldViolation         { string field = 1; string description = 2; }
// Thread-safe (pure functions).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace modelfleet {

inline constexpr std::string_view kBadRequestTypeUrl = "type.googleapis.com/google.rpc.BadRequest";

struct FieldViolation {
  std::string field, description;
};

// The serialized google.rpc.BadRequest {violation} (what a Connect error detail's value holds).
std::string EncodeBadRequest(const FieldViolation& violation);

// The serialized google.rpc.Status {code, message, details: [BadRequest {violation}]}.
std::string EncodeBadRequestStatus(int code, std::string_view message, const FieldViolation& violation);

// The first field violation of the first BadRequest detail in a serialized google.rpc.Status;
// nullopt if there is none or the bytes are not a well-formed Status (never reads past them).
std::optional<FieldViolation> DecodeBadRequestField(std::string_view status_bytes);

}  // namespace modelfleet
