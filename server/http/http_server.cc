#include "http/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>

#include "auth/method_roles.h"
#include "metrics/metrics.h"
#include "modelfleet/numbers.h"
#include "modelfleet/v1/events.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"

namespace modelfleet::http_edge {

namespace {

constexpr char kMetricsRoute[] = "GET /metrics";  // its row in auth/method_roles.cc

void Send(const HttpReply& reply, httplib::Response& res) {
  res.status = reply.status;
  for (const auto& [name, value] : reply.headers) res.set_header(name, value);
  res.set_content(reply.body, reply.content_type);
}

void SendError(StatusCode code, const std::string& message, httplib::Response& res, int http_status = 0) {
  HttpReply reply = ConnectErrorReply(code, message);
  if (http_status != 0) reply.status = http_status;
  Send(reply, res);
}

// "host:port" (host may be "[v6]").
Expected<std::pair<std::string, int>> SplitListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Fail(InvalidArgument("--http-listen", "must be host:port, not '" + listen + "'"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = listen.substr(colon + 1);
  const std::optional<int> port = port_text.size() <= 5 ? ParseNumber<int>(port_text) : std::nullopt;
  if (!port || *port < 0 || *port > 65535) {
    return Fail(InvalidArgument("--http-listen", "port must be 0..65535, not '" + port_text + "'"));
  }
  return std::make_pair(host, *port);
}

bool Readable(const std::string& path) { return std::ifstream(path).good(); }

// One artifact download: the gRPC Download stream the HTTP response is fed from, reopened at
// the requested offset when httplib asks for a range the stream is not at.
class ArtifactStream {
 public:
  ArtifactStream(std::shared_ptr<grpc::Channel> channel, std::string authorization, v1::VersionRef ref)
      : stub_(v1::RegistryService::NewStub(std::move(channel))),
        authorization_(std::move(authorization)),
        ref_(std::move(ref)) {}
  ~ArtifactStream() { Close(); }

  // Opens at `offset` for `length` bytes (0 = to the end) and reads the first message, which
  // carries the manifest. The gRPC status on failure.
  grpc::Status Open(uint64_t offset, uint64_t length) {
    Close();
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(std::chrono::system_clock::now() + std::chrono::hours(6));
    if (!authorization_.empty()) context_->AddMetadata("authorization", authorization_);
    v1::DownloadRequest request;
    *request.mutable_ref() = ref_;
    request.set_offset(offset);
    request.set_length(length);
    reader_ = stub_->Download(context_.get(), request);
    v1::DownloadChunk first;
    if (!reader_->Read(&first)) return Finish();
    manifest_ = first.manifest();
    position_ = first.offset();
    pending_ = std::move(*first.mutable_data());
    return grpc::Status::OK;
  }

  // Writes up to `length` bytes at `offset` to `sink`: what is pending from the stream, else
  // its next message. False when the stream failed (the connection is then dropped: the
  // client sees a short body, as with any interrupted download, and can resume with Range).
  bool Provide(uint64_t offset, uint64_t length, httplib::DataSink& sink) {
    if (reader_ == nullptr || offset != position_) {
      if (!Open(offset, length).ok()) return false;
    }
    while (pending_.empty()) {
      v1::DownloadChunk chunk;
      if (!reader_->Read(&chunk)) {
        grpc::Status status = Finish();
        spdlog::warn("HTTP artifact download of {} stopped at byte {}: {}", ref_.model(), position_,
                     status.ok() ? "the stream ended early" : status.error_message());
        return false;
      }
      if (chunk.offset() != position_) return false;
      pending_ = std::move(*chunk.mutable_data());
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(pending_.size(), length));
    if (!sink.write(pending_.data(), n)) return false;
    pending_.erase(0, n);
    position_ += n;
    return true;
  }

  const v1::Manifest& manifest() const { return manifest_; }

 private:
  grpc::Status Finish() {
    if (reader_ == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "no stream");
    grpc::Status status = reader_->Finish();
    reader_.reset();
    return status;
  }
  // A stream abandoned part way (a Range that ends before the artifact does, a client that
  // hung up) is cancelled, then drained so Finish returns at once.
  void Close() {
    if (reader_ == nullptr) return;
    context_->TryCancel();
    v1::DownloadChunk ignored;
    while (reader_->Read(&ignored)) {
    }
    reader_->Finish();
    reader_.reset();
  }

  std::unique_ptr<v1::RegistryService::Stub> stub_;
  std::string authorization_;
  v1::VersionRef ref_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::DownloadChunk>> reader_;
  v1::Manifest manifest_;
  uint64_t position_ = 0;
  std::string pending_;
};

// The request's byte ranges as explicit [first, last] pairs within `size` (RFC 9110 14.1.2: a
// last position past the end means the end; "-n" is the last n bytes), or nullopt when one is
// unsatisfiable (416). httplib gives (-1, n) for "-n" and (n, -1) for "n-".
std::optional<httplib::Ranges> ResolveRanges(const httplib::Ranges& ranges, uint64_t size) {
  httplib::Ranges resolved;
  const auto end = static_cast<ssize_t>(size) - 1;
  for (const auto& [first, last] : ranges) {
    if (first == -1) {
      if (last <= 0 || size == 0) return std::nullopt;
      resolved.emplace_back(std::max<ssize_t>(0, end + 1 - last), end);
      continue;
    }
    if (first > end || (last != -1 && last < first)) return std::nullopt;
    resolved.emplace_back(first, last == -1 ? end : std::min(last, end));
  }
  return resolved;
}

void ServeArtifact(const httplib::Request& req, httplib::Response& res, std::shared_ptr<grpc::Channel> channel,
                   bool by_alias) {
  v1::VersionRef ref;
  ref.set_model(req.matches[1]);
  if (by_alias) {
    ref.set_alias(req.matches[2]);
  } else {
    ref.set_version(req.matches[2]);
  }
  if (req.ranges.size() > 16) {
    SendError(StatusCode::kInvalidArgument, "at most 16 ranges per request", res, 416);
    return;
  }
  auto stream = std::make_shared<ArtifactStream>(channel, req.get_header_value("Authorization"), ref);
  grpc::Status opened = stream->Open(0, 0);
  if (!opened.ok()) {
    SendError(static_cast<StatusCode>(opened.error_code()), opened.error_message(), res);
    return;
  }
  const v1::Manifest& manifest = stream->manifest();
  const uint64_t size = manifest.size_bytes();
  res.set_header("ETag", "\"" + manifest.digest() + "\"");
  res.set_header("X-Modelfleet-Digest", "sha256:" + manifest.digest());
  res.set_header("Accept-Ranges", "bytes");
  std::optional<httplib::Ranges> ranges = ResolveRanges(req.ranges, size);
  if (!ranges) {
    const_cast<httplib::Request&>(req).ranges.clear();  // else httplib cuts the error body to them
    res.set_header("Content-Range", "bytes */" + std::to_string(size));
    SendError(StatusCode::kOutOfRange, "the requested range is outside the artifact's " + std::to_string(size) +
                                           " bytes", res, 416);
    return;
  }
  // httplib serves the ranges of a content provider itself (206, Content-Range, multipart for
  // several) from req.ranges, which it trusts to lie within the content: hand it the resolved
  // ones. The request object is the server loop's own, mutable; the handler API is const only.
  const_cast<httplib::Request&>(req).ranges = std::move(*ranges);
  res.set_content_provider(
      size, "application/octet-stream",
      [stream](size_t offset, size_t length, httplib::DataSink& sink) { return stream->Provide(offset, length, sink); });
}

// One Server-Sent Events stream: a WatchEvents call over the in-process channel, read by a
// thread of its own into a queue, so that the HTTP side can send a keep-alive comment while no
// event comes (and notice a client that went away) instead of blocking in Read.
class EventStream {
 public:
  static constexpr std::chrono::seconds kKeepAlive{15};

  EventStream(std::shared_ptr<grpc::Channel> channel, const std::string& authorization, v1::WatchEventsRequest request)
      : stub_(v1::EventService::NewStub(std::move(channel))) {
    if (!authorization.empty()) context_.AddMetadata("authorization", authorization);
    reader_ = stub_->WatchEvents(&context_, request);
    thread_ = std::thread([this] { ReadAll(); });
  }
  ~EventStream() {
    context_.TryCancel();
    thread_.join();
  }

  // The next SSE frame: an event, a keep-alive comment after kKeepAlive of silence, or nullopt
  // once the stream ended (the server shuts down: the client reconnects with Last-Event-ID).
  std::optional<std::string> Next() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kKeepAlive, [&] { return !queue_.empty() || ended_; })) return std::string(": keep-alive\n\n");
    if (queue_.empty()) return std::nullopt;
    std::string frame = std::move(queue_.front());
    queue_.pop_front();
    return frame;
  }

 private:
  void ReadAll() {
    v1::Event event;
    google::protobuf::util::JsonPrintOptions options;
    while (reader_->Read(&event)) {
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(event, &json, options).ok()) continue;
      // "data:" lines may not hold a newline; the JSON printer emits none without add_whitespace.
      std::string frame = "id: " + std::to_string(event.id()) + "\ndata: " + json + "\n\n";
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(frame));
      cv_.notify_one();
    }
    reader_->Finish();
    std::lock_guard lock(mu_);
    ended_ = true;
    cv_.notify_one();
  }

  std::unique_ptr<v1::EventService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool ended_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

// Parses a decimal event id (Last-Event-ID or ?after_id=); nullopt if malformed.
std::optional<int64_t> ParseEventId(const std::string& text) {
  return text.size() <= 18 ? ParseNumber<int64_t>(text) : std::nullopt;
}

void ServeEvents(const httplib::Request& req, httplib::Response& res, ConnectGateway& gateway,
                 std::shared_ptr<grpc::Channel> channel) {
  v1::WatchEventsRequest watch;
  watch.set_after_id(-1);  // a first connection starts from now
  const std::string resume = req.has_header("Last-Event-ID") ? req.get_header_value("Last-Event-ID")
                                                              : req.get_param_value("after_id");
  if (!resume.empty()) {
    auto id = ParseEventId(resume);
    if (!id) {
      SendError(StatusCode::kInvalidArgument, "Last-Event-ID / after_id must be an event id, not '" + resume + "'", res);
      return;
    }
    watch.set_after_id(*id);
  }
  for (size_t i = 0; i < req.get_param_value_count("type"); ++i) {
    watch.mutable_filter()->add_types(req.get_param_value("type", i));
  }
  watch.mutable_filter()->set_subject_kind(req.get_param_value("subject_kind"));
  watch.mutable_filter()->set_subject_id(req.get_param_value("subject_id"));

  // A stream's status comes only at its end: ask ListEvents first, through the same handler
  // checks (token, role, filter), so a refusal is a proper HTTP error, not an empty stream.
  const std::string authorization = req.get_header_value("Authorization");
  v1::ListEventsRequest probe;
  *probe.mutable_filter() = watch.filter();
  probe.set_page_size(1);
  const ConnectGateway::Procedure* list = gateway.Find("/modelfleet.v1.EventService/ListEvents");
  if (list == nullptr) {
    SendError(StatusCode::kUnimplemented, "this server does not serve events", res, 404);
    return;
  }
  ConnectRequestHeaders headers;
  headers.content_type = "application/proto";  // the request is a message already: no JSON round trip
  headers.authorization = authorization;
  HttpReply checked = gateway.Call(*list, headers, probe.SerializeAsString());
  if (checked.status != 200) {
    Send(checked, res);
    return;
  }
  auto stream = std::make_shared<EventStream>(std::move(channel), authorization, watch);
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Accel-Buffering", "no");  // nginx: pass each event on at once
  res.set_chunked_content_provider("text/event-stream", [stream, first = true](size_t, httplib::DataSink& sink) mutable {
    if (first) {
      first = false;
      const std::string hello = "retry: 2000\n\n";
      return sink.write(hello.data(), hello.size());
    }
    std::optional<std::string> frame = stream->Next();
    if (!frame) {
      sink.done();
      return true;
    }
    return sink.write(frame->data(), frame->size());
  });
}

}  // namespace

Expected<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                        std::shared_ptr<grpc::Channel> channel,
                                                        auth::TokenStore& tokens) {
  MF_ASSIGN_OR_RETURN(auto host_port, SplitListen(options.listen));
  std::unique_ptr<HttpServer> server(new HttpServer);
  server->options_ = options;
  server->channel_ = channel;
  server->tokens_ = &tokens;
  MF_ASSIGN_OR_RETURN(server->gateway_,
                      ConnectGateway::Create(channel, options.services, std::chrono::seconds(60)));
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return Fail(InvalidArgument("--tls-cert", "--tls-cert and --tls-key go together"));
  }
  if (!options.tls_cert.empty()) {
    if (!Readable(options.tls_cert)) return Fail(InvalidArgument("--tls-cert", "cannot read " + options.tls_cert));
    if (!Readable(options.tls_key)) return Fail(InvalidArgument("--tls-key", "cannot read " + options.tls_key));
    auto tls = std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
    if (!tls->is_valid()) {
      return Fail(InvalidArgument("--tls-cert", "the certificate and key do not make a TLS server (" +
                                                    options.tls_cert + ", " + options.tls_key + ")"));
    }
    server->server_ = std::move(tls);
  } else {
    server->server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(2, options.threads);
  server->server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server->server_->set_payload_max_length(options.max_body_bytes);
  server->server_->set_read_timeout(std::chrono::seconds(10));
  server->server_->set_write_timeout(std::chrono::seconds(30));
  server->Routes();

  const auto& [host, port] = host_port;
  server->port_ = port == 0 ? server->server_->bind_to_any_port(host) : port;
  if (port != 0 && !server->server_->bind_to_port(host, port)) server->port_ = -1;
  if (server->port_ <= 0) return Fail(Unavailable("cannot listen for HTTP on " + options.listen));
  httplib::Server* raw = server->server_.get();
  server->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Routes() {
  httplib::Server& s = *server_;
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const bool ready = !options_.ready || options_.ready();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });

  if (options_.metrics) {
    s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      if (options_.metrics_require_token) {
        const std::string header = req.get_header_value("Authorization");
        constexpr std::string_view kBearer = "Bearer ";
        if (!std::string_view(header).starts_with(kBearer)) {
          SendError(StatusCode::kUnauthenticated, "GET /metrics needs 'Authorization: Bearer <token>'", res);
          return;
        }
        auto principal = tokens_->Authenticate(header.substr(kBearer.size()));
        Status allowed = principal ? auth::AuthorizeMethod(*principal, kMetricsRoute) : principal.error();
        if (!allowed.ok()) {
          SendError(allowed.code(), allowed.message(), res);
          return;
        }
      }
      res.set_content(options_.metrics(), metrics::kTextFormatContentType);
    });
  }

  s.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
    ServeEvents(req, res, *gateway_, channel_);
  });
  s.Get(R"(/v1/models/([^/]+)/versions/([^/]+)/artifact)",
        [this](const httplib::Request& req, httplib::Response& res) { ServeArtifact(req, res, channel_, false); });
  s.Get(R"(/v1/models/([^/]+)/aliases/([^/]+)/artifact)",
        [this](const httplib::Request& req, httplib::Response& res) { ServeArtifact(req, res, channel_, true); });

  // The JSON API: every POST to "/<Service>/<Method>"; other methods on a procedure's path get
  // 405 naming POST.
  constexpr char kProcedurePath[] = R"((/[A-Za-z0-9_.]+/[A-Za-z0-9_]+))";
  s.Post(kProcedurePath, [this](const httplib::Request& req, httplib::Response& res) {
    const ConnectGateway::Procedure* procedure = gateway_->Find(req.path);
    if (procedure == nullptr) {
      SendError(StatusCode::kUnimplemented, "no procedure " + req.path + " (see the services in proto/)", res, 404);
      return;
    }
    ConnectRequestHeaders headers{.content_type = req.get_header_value("Content-Type"),
                                  .authorization = req.get_header_value("Authorization"),
                                  .connect_protocol_version = req.get_header_value("Connect-Protocol-Version"),
                                  .connect_timeout_ms = req.get_header_value("Connect-Timeout-Ms")};
    Send(gateway_->Call(*procedure, headers, req.body), res);
  });
  auto wrong_method = [this](const httplib::Request& req, httplib::Response& res) {
    if (gateway_->Find(req.path) == nullptr) {
      SendError(StatusCode::kUnimplemented, "no route " + req.method + " " + req.path, res, 404);
      return;
    }
    res.set_header("Allow", "POST");
    SendError(StatusCode::kUnimplemented, req.path + " takes POST, not " + req.method, res, 405);
  };
  s.Get(kProcedurePath, wrong_method);
  s.Put(kProcedurePath, wrong_method);
  s.Delete(kProcedurePath, wrong_method);
  s.Patch(kProcedurePath, wrong_method);

  // What httplib refuses before any route (unknown path, body over the limit, a malformed
  // request line) gets a Connect error body too.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 404: SendError(StatusCode::kUnimplemented, "no route " + req.method + " " + req.path, res, 404); break;
      case 413: SendError(StatusCode::kResourceExhausted, "the request body is over the limit", res, 413); break;
      case 405: SendError(StatusCode::kUnimplemented, "method " + req.method + " is not served", res, 405); break;
      default: SendError(StatusCode::kInvalidArgument, "malformed HTTP request", res, res.status); break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr e) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    spdlog::error("HTTP {} {}: uncaught exception: {}", req.method, req.path, what);
    SendError(StatusCode::kInternal, "internal error (the server logged it)", res, 500);
  });
}

}  // namespace modelfleet::http_edge
