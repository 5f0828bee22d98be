// The CLI's side of gRPC: channels from Settings, authorised call contexts, gRPC status ->
// modelfleet::Status, and parsing of "model@version|alias" references.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cli/config.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/registry.pb.h"

namespace modelfleet::cli {

// Errors: INVALID_ARGUMENT if --tls-ca cannot be read.
Expected<std::shared_ptr<grpc::Channel>> OpenChannel(const Settings& settings);

// A client context carrying "authorization: Bearer <token>" (when there is a token) and, for
// unary calls, a deadline.
class Rpc {
 public:
  explicit Rpc(const Settings& settings, bool streaming = false);
  grpc::ClientContext context;
};

// gRPC status -> Status with the same code; for UNAVAILABLE the message names the server, for
// UNAUTHENTICATED it says where a token comes from; an INVALID_ARGUMENT's field comes from its
// google.rpc.BadRequest detail.
Status FromGrpc(const grpc::Status& status, const Settings& settings);

template <typename Service>
Expected<std::unique_ptr<typename Service::Stub>> MakeStub(const Settings& settings) {
  MF_ASSIGN_OR_RETURN(auto channel, OpenChannel(settings));
  return Service::NewStub(channel);
}

// Every item of a paged List call: page after page (1000 at a time) until the server's
// next_page_token is empty. `call` is the stub's method (&v1::FleetService::Stub::ListDevices),
// `items` picks the repeated field of a response. Errors: the first failed page's, as FromGrpc.
template <typename Stub, typename Request, typename Response, typename Items>
auto ListAll(const Settings& settings, Stub& stub,
             grpc::Status (Stub::*call)(grpc::ClientContext*, const Request&, Response*), Request request,
             Items items) -> Expected<std::vector<typename std::decay_t<decltype(items(Response()))>::value_type>> {
  std::vector<typename std::decay_t<decltype(items(Response()))>::value_type> all;
  request.set_page_size(1000);
  do {
    Rpc rpc(settings);
    Response response;
    MF_RETURN_IF_ERROR(FromGrpc((stub.*call)(&rpc.context, request, &response), settings));
    const auto& page = items(response);
    all.insert(all.end(), page.begin(), page.end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return all;
}

// "a=b" -> {"a", "b"}. Errors: INVALID_ARGUMENT naming `what` when either side is empty.
Expected<std::pair<std::string, std::string>> SplitPair(const std::string& text, char sep,
                                                        const std::string& what);

// "model@1.2.0" -> by version (a valid SemVer), "model@production" -> by alias.
// Errors: INVALID_ARGUMENT.
Expected<v1::VersionRef> ParseRef(const std::string& ref);
// Like ParseRef but the part after '@' must be a version (for archive and purge, which never
// act through an alias). Returns {model, version}.
Expected<std::pair<std::string, std::string>> ParseVersionRef(const std::string& ref);
std::string RefString(const v1::VersionRef& ref);

}  // namespace modelfleet::cli
