#include "http/connect_gateway.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <mutex>

#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/numbers.h"
#include "modelfleet/rpc_details.h"

namespace modelfleet::http_edge {

namespace {

namespace pb = google::protobuf;

constexpr std::string_view kFieldTrailer = "modelfleet-field";

// The content types a unary Connect call may carry: JSON, or the binary protobuf encoding
// (passed through as it is: it is the gRPC message already).
enum class Codec { kJson, kProto };

std::optional<Codec> CodecOf(std::string_view content_type) {
  std::string type(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  if (type == "application/json") return Codec::kJson;
  if (type == "application/proto") return Codec::kProto;
  return std::nullopt;
}

// Connect-Timeout-Ms: at most 10 ASCII digits (the protocol's limit).
std::optional<std::chrono::milliseconds> ParseTimeout(std::string_view text) {
  if (text.size() > 10 || text.starts_with('-')) return std::nullopt;
  const std::optional<int64_t> ms = ParseNumber<int64_t>(text);
  if (!ms) return std::nullopt;
  return std::chrono::milliseconds(*ms);
}

// A header value gRPC may carry as metadata: printable ASCII only.
bool IsPrintableAscii(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// protobuf's JSON parser reports "INVALID_ARGUMENT:Cannot find field: x" (its util::Status
// text); the code is ours to say.
std::string JsonErrorText(std::string text) {
  constexpr std::string_view kPrefix = "INVALID_ARGUMENT:";
  if (std::string_view(text).starts_with(kPrefix)) text.erase(0, kPrefix.size());
  return text;
}

std::string FlattenByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

// "trailer-<key>" headers for a response's trailing metadata (Connect unary's form), minus
// gRPC's own and binary entries.
void AddTrailers(const std::multimap<grpc::string_ref, grpc::string_ref>& trailers, HttpReply& reply) {
  for (const auto& [key, value] : trailers) {
    std::string_view k(key.data(), key.size());
    if (k.starts_with("grpc-") || k.ends_with("-bin")) continue;
    reply.headers.emplace_back("trailer-" + std::string(k), std::string(value.data(), value.size()));
  }
}

}  // namespace

std::string_view ConnectCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kCancelled: return "canceled";
    case StatusCode::kUnknown: return "unknown";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kAlreadyExists: return "already_exists";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kResourceExhausted: return "resource_exhausted";
    case StatusCode::kFailedPrecondition: return "failed_precondition";
    case StatusCode::kAborted: return "aborted";
    case StatusCode::kOutOfRange: return "out_of_range";
    case StatusCode::kUnimplemented: return "unimplemented";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kDataLoss: return "data_loss";
    case StatusCode::kUnauthenticated: return "unauthenticated";
  }
  return "unknown";
}

int ConnectHttpStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kCancelled: return 499;
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kOutOfRange: return 400;
    case StatusCode::kDeadlineExceeded: return 504;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kAborted: return 409;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kUnimplemented: return 501;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kUnknown:
    case StatusCode::kInternal:
    case StatusCode::kDataLoss: return 500;
  }
  return 500;
}

HttpReply ConnectErrorReply(StatusCode code, std::string_view message, std::string_view field) {
  HttpReply reply;
  reply.status = ConnectHttpStatus(code);
  reply.body = "{\"code\":" + JsonString(ConnectCodeName(code)) + ",\"message\":" + JsonString(message);
  if (!field.empty()) {
    const FieldViolation violation{.field = std::string(field), .description = std::string(message)};
    reply.body += ",\"details\":[{\"type\":\"google.rpc.BadRequest\",\"value\":" +
                  JsonString(Base64Encode(EncodeBadRequest(violation))) +
                  ",\"debug\":{\"fieldViolations\":[{\"field\":" + JsonString(field) +
                  ",\"description\":" + JsonString(message) + "}]}}]";
    reply.headers.emplace_back("trailer-" + std::string(kFieldTrailer), std::string(field));
  }
  reply.body += "}";
  return reply;
}

Expected<std::unique_ptr<ConnectGateway>> ConnectGateway::Create(std::shared_ptr<grpc::Channel> channel,
                                                                 const std::vector<std::string>& services,
                                                                 std::chrono::milliseconds default_deadline) {
  std::unique_ptr<ConnectGateway> gateway(new ConnectGateway);
  for (const std::string& name : services) {
    const pb::ServiceDescriptor* service = pb::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (service == nullptr) return Fail(NotFound("service '" + name + "' is not linked into this binary"));
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* method = service->method(i);
      if (method->client_streaming() || method->server_streaming()) continue;
      Procedure p{.path = "/" + service->full_name() + "/" + method->name(),
                  .input = method->input_type(),
                  .output = method->output_type()};
      gateway->procedures_.emplace(p.path, p);
    }
  }
  gateway->channel_ = std::move(channel);
  gateway->stub_ = std::make_unique<grpc::GenericStub>(gateway->channel_);
  gateway->default_deadline_ = default_deadline;
  return gateway;
}

const ConnectGateway::Procedure* ConnectGateway::Find(std::string_view path) const {
  auto it = procedures_.find(path);
  return it == procedures_.end() ? nullptr : &it->second;
}

std::vector<std::string> ConnectGateway::Paths() const {
  std::vector<std::string> paths;
  for (const auto& [path, procedure] : procedures_) paths.push_back(path);
  return paths;
}

HttpReply ConnectGateway::Call(const Procedure& procedure, const ConnectRequestHeaders& headers,
                               std::string_view body) {
  const std::optional<Codec> codec = CodecOf(headers.content_type);
  if (!codec) {
    HttpReply reply = ConnectErrorReply(StatusCode::kInvalidArgument,
                                        "content-type must be application/json (or application/proto), not '" +
                                            headers.content_type + "'");
    reply.status = 415;  // Connect: an unsupported codec is an HTTP-level refusal
    reply.headers.emplace_back("accept-post", "application/json, application/proto");
    return reply;
  }
  if (!headers.connect_protocol_version.empty() && headers.connect_protocol_version != "1") {
    return ConnectErrorReply(StatusCode::kInvalidArgument,
                             "connect-protocol-version must be 1, not '" + headers.connect_protocol_version + "'");
  }
  std::chrono::milliseconds timeout = default_deadline_;
  if (!headers.connect_timeout_ms.empty()) {
    auto parsed = ParseTimeout(headers.connect_timeout_ms);
    if (!parsed) {
      return ConnectErrorReply(StatusCode::kInvalidArgument,
                               "connect-timeout-ms must be 1 to 10 digits, not '" + headers.connect_timeout_ms + "'");
    }
    timeout = std::min(*parsed, default_deadline_);
  }
  if (!IsPrintableAscii(headers.authorization)) {
    return ConnectErrorReply(StatusCode::kUnauthenticated, "the authorization header holds non-printable characters");
  }

  // The request as the gRPC message's bytes.
  std::string request_bytes;
  const pb::Message* prototype = pb::MessageFactory::generated_factory()->GetPrototype(procedure.input);
  if (*codec == Codec::kJson) {
    std::unique_ptr<pb::Message> request(prototype->New());
    if (!body.empty()) {  // Connect: an empty body is the empty message
      pb::util::JsonParseOptions options;
      options.ignore_unknown_fields = false;
      auto parsed = pb::util::JsonStringToMessage(pb::StringPiece(body.data(), body.size()), request.get(), options);
      if (!parsed.ok()) {
        return ConnectErrorReply(StatusCode::kInvalidArgument,
                                 "the request body is not a valid " + procedure.input->full_name() +
                                     " in JSON: " + JsonErrorText(parsed.ToString()));
      }
    }
    request_bytes = request->SerializeAsString();
  } else {
    std::unique_ptr<pb::Message> request(prototype->New());
    if (!request->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return ConnectErrorReply(StatusCode::kInvalidArgument,
                               "the request body is not a valid binary " + procedure.input->full_name());
    }
    request_bytes = std::string(body);
  }

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!headers.authorization.empty()) context.AddMetadata("authorization", headers.authorization);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  grpc::Status status;
  stub_->UnaryCall(&context, procedure.path, grpc::StubOptions(), &request_buffer, &response_buffer,
                   [&](grpc::Status s) {
                     std::lock_guard lock(mu);
                     status = std::move(s);
                     done = true;
                     done_cv.notify_one();
                   });
  {
    std::unique_lock lock(mu);
    done_cv.wait(lock, [&] { return done; });
  }

  HttpReply reply;
  if (!status.ok()) {
    const auto code = static_cast<StatusCode>(status.error_code());
    std::string field;
    if (auto violation = DecodeBadRequestField(status.error_details())) field = violation->field;
    reply = ConnectErrorReply(code, status.error_message(), field);
    // The field is already a trailer-header when it came as a BadRequest detail.
    if (field.empty()) AddTrailers(context.GetServerTrailingMetadata(), reply);
    return reply;
  }
  std::string response_bytes = FlattenByteBuffer(response_buffer);
  if (*codec == Codec::kProto) {
    reply.content_type = "application/proto";
    reply.body = std::move(response_bytes);
  } else {
    std::unique_ptr<pb::Message> response(
        pb::MessageFactory::generated_factory()->GetPrototype(procedure.output)->New());
    if (!response->ParseFromString(response_bytes)) {
      return ConnectErrorReply(StatusCode::kInternal, "the server's response did not decode as " +
                                                          procedure.output->full_name());
    }
    pb::util::JsonPrintOptions options;
    auto printed = pb::util::MessageToJsonString(*response, &reply.body, options);
    if (!printed.ok()) return ConnectErrorReply(StatusCode::kInternal, "encoding the response: " + printed.ToString());
  }
  AddTrailers(context.GetServerTrailingMetadata(), reply);
  return reply;
}

}  // namespace modelfleet::http_edge
