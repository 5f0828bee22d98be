// The JSON API: the Connect protocol's unary JSON form over the server's own gRPC services.
//
//   POST /modelfleet.v1.RegistryService/ListVersions
//   Content-Type: application/json
//   Authorization: Bearer <token>
//   {"model": "mat-detector"}
//
// Each call is decoded with protobuf's JSON mapping and made over an in-process gRPC channel
// to the very handlers gRPC clients reach: the same bearer tokens, the same method -> roles
// table, the same validation, the same drain at shutdown. There is no second implementation
// of any RPC, and no hand-written route list: the routes are the unary methods of the given
// services, read from the generated descriptors. Streaming methods are not routes here (the
// HTTP server gives Download a Range form and events their own stream; uploads stay on gRPC).
//
// Replies follow https://connectrpc.com/docs/protocol (unary):
//   success  200, application/json, the response message in protobuf's JSON mapping (lowerCamel
//            field names, enums by name, int64 as strings, default values omitted); response
//            trailers as "trailer-<key>" headers.
//   error    the code's HTTP status (invalid_argument 400, unauthenticated 401, ...), body
//            {"code": "invalid_argument", "message": "...", "details": [...]}; a field
//            violation travels as a google.rpc.BadRequest detail (base64 "value" plus a
//            readable "debug" copy) and as the "trailer-modelfleet-field" header.
// Bad requests never reach a handler: an unknown procedure (404, unimplemented), a method other
// than POST (405), a content type other than JSON (415), a Connect-Protocol-Version other than
// 1, a malformed Connect-Timeout-Ms, malformed JSON, unknown fields or wrong types (400,
// invalid_argument, naming what is wrong).
//
// Thread-safe: Call may run on any number of threads at once.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "modelfleet/status.h"

namespace google::protobuf {
class Descriptor;
}

namespace modelfleet::http_edge {

// What the HTTP server sends back. Transport-free so the gateway is testable without sockets.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The request headers the gateway reads (names lower-case; absent = empty).
struct ConnectRequestHeaders {
  std::string content_type;
  std::string authorization;              // forwarded to the gRPC call as is
  std::string connect_protocol_version;
  std::string connect_timeout_ms;
};

// Connect's name for a status code ("invalid_argument") and the HTTP status it travels with.
std::string_view ConnectCodeName(StatusCode code);
int ConnectHttpStatus(StatusCode code);

// A Connect error reply: {"code", "message"} and, when `field` is set, a BadRequest detail.
HttpReply ConnectErrorReply(StatusCode code, std::string_view message, std::string_view field = {});

class ConnectGateway {
 public:
  struct Procedure {
    std::string path;  // "/modelfleet.v1.RegistryService/ListVersions", also the gRPC method
    const google::protobuf::Descriptor* input = nullptr;
    const google::protobuf::Descriptor* output = nullptr;
  };

  // `services`: full names ("modelfleet.v1.RegistryService") of services linked into this
  // binary; each of their unary methods becomes a procedure. `channel` reaches the server
  // (its InProcessChannel). `default_deadline` bounds a call that sends no Connect-Timeout-Ms.
  // Fails naming a service that is not in the generated descriptor pool.
  static Expected<std::unique_ptr<ConnectGateway>> Create(std::shared_ptr<grpc::Channel> channel,
                                                          const std::vector<std::string>& services,
                                                          std::chrono::milliseconds default_deadline);

  // nullptr if `path` is not a procedure.
  const Procedure* Find(std::string_view path) const;
  std::vector<std::string> Paths() const;

  // Runs one unary call (the HTTP method was checked to be POST by the caller).
  HttpReply Call(const Procedure& procedure, const ConnectRequestHeaders& headers, std::string_view body);

 private:
  ConnectGateway() = default;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::chrono::milliseconds default_deadline_{0};
  std::map<std::string, Procedure, std::less<>> procedures_;
};

}  // namespace modelfleet::http_edge
