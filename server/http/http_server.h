// modelfleet-server's HTTP face, on its own port (--http-listen), over cpp-httplib (Debian's
// libcpp-httplib-dev: one header plus a shared library, TLS through OpenSSL, a thread pool we
// size; Boost.Beast would have meant writing the HTTP/1.1 server loop ourselves).
//
// Routes:
//   POST /<package>.<Service>/<Method>   the JSON API (Connect unary; see connect_gateway.h)
//   GET  /v1/models/{model}/versions/{version}/artifact
//   GET  /v1/models/{model}/aliases/{alias}/artifact
//        The artifact's bytes, as gRPC's Download serves them: from the verified artifact cache,
//        authorised like Download (a device only what it is assigned). Range requests (one or
//        several ranges) get 206 with Content-Range; a range past the end gets 416. The ETag is
//        the artifact's SHA-256 digest; the manifest's digest and size travel as
//        X-Modelfleet-Digest and Content-Length.
//   GET  /v1/events?type=rollout.*&type=...&subject_kind=rollout&subject_id=ro-1
//        Server-Sent Events over gRPC's WatchEvents (same tokens, same per-role visibility):
//        "id: <event id>" and "data: <the Event in JSON>" per event, a keep-alive comment every
//        15 s. Resumes after the Last-Event-ID header (or ?after_id=); a first connection starts
//        with the events recorded from then on. Ends when the server shuts down (clients
//        reconnect and resume). The token travels in the Authorization header (never the URL).
//   GET  /metrics     Prometheus text format (when the server gives a source; a bearer token
//                     of a role allowed "GET /metrics" in auth/method_roles when required)
//   GET  /healthz     200 while the process serves HTTP (liveness)
//   GET  /readyz      200 while the server takes calls, 503 once it drains or is not ready
// Every error is a Connect error body ({"code", "message"}) with the matching HTTP status,
// including the listener's own refusals (unknown route 404, wrong method 405, body over the
// limit 413).
//
// Thread-safe. Start once; Stop (or the destructor) stops accepting, lets requests in flight
// finish and joins the threads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "auth/token_store.h"
#include "http/connect_gateway.h"
#include "modelfleet/status.h"

namespace httplib {
class Server;
}

namespace modelfleet::http_edge {

struct HttpServerOptions {
  std::string listen;                 // "host:port"; port 0 picks a free one
  std::vector<std::string> services;  // gRPC services the JSON API routes ("modelfleet.v1.FleetService")
  std::string tls_cert, tls_key;      // PEM files; both empty = plaintext (the caller allows it)
  size_t max_body_bytes = 4 << 20;    // larger request bodies get 413
  int threads = 32;                   // concurrent requests (a request holds a thread)
  std::function<bool()> ready;        // /readyz; nullptr = always ready
  std::function<std::string()> metrics;  // /metrics body; nullptr = no /metrics route
  bool metrics_require_token = false;
};

class HttpServer {
 public:
  // Binds and starts serving. `channel` reaches the server's gRPC services (its in-process
  // channel); `tokens` authenticates what the HTTP server authorises itself (/metrics).
  // Errors: INVALID_ARGUMENT for a malformed listen address or unreadable certificate,
  // UNAVAILABLE when the address cannot be bound.
  static Expected<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                     std::shared_ptr<grpc::Channel> channel,
                                                     auth::TokenStore& tokens);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  void Routes();

  HttpServerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  auth::TokenStore* tokens_ = nullptr;
  std::unique_ptr<ConnectGateway> gateway_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace modelfleet::http_edge
