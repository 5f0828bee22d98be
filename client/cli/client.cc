#include "cli/client.h"

#include <fstream>
#include <sstream>

#include "common/grpc_status.h"
#include "modelfleet/rpc_details.h"
#include "modelfleet/validation.h"

namespace modelfleet::cli {

Expected<std::shared_ptr<grpc::Channel>> OpenChannel(const Settings& settings) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  if (settings.insecure)
    return grpc::CreateCustomChannel(settings.server, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  if (!settings.tls_ca.empty()) {
    std::ifstream in(settings.tls_ca);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || ss.str().empty()) return Fail(InvalidArgument("--tls-ca", "cannot read " + settings.tls_ca));
    ssl.pem_root_certs = ss.str();
  }
  return grpc::CreateCustomChannel(settings.server, grpc::SslCredentials(ssl), args);
}

Rpc::Rpc(const Settings& settings, bool streaming) {
  if (!settings.token.empty()) context.AddMetadata("authorization", "Bearer " + settings.token);
  if (!streaming) context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

Status FromGrpc(const grpc::Status& status, const Settings& settings) {
  if (status.ok()) return Status::Ok();
  Status converted = client::StatusFromGrpc(status);
  const StatusCode code = converted.code();
  std::string message = converted.message();
  std::string field;
  if (code == StatusCode::kInvalidArgument) {
    if (auto violation = DecodeBadRequestField(status.error_details())) field = violation->field;
  }
  if (code == StatusCode::kUnavailable) {
    message = "server " + settings.server + " unavailable: " + message +
              (settings.insecure ? "" : " (TLS is on; --insecure for a plaintext server)");
  } else if (code == StatusCode::kUnauthenticated && settings.token.empty()) {
    message += " (no token: give --token, MODELFLEET_TOKEN or `token =` in the config file)";
  }
  Status result(code, message);
  if (!field.empty()) result.WithField(std::move(field));
  return result;
}

Expected<std::pair<std::string, std::string>> SplitPair(const std::string& text, char sep,
                                                        const std::string& what) {
  size_t at = text.find(sep);
  if (at == std::string::npos || at == 0 || at + 1 == text.size()) {
    return Fail(InvalidArgument(what, "'" + text + "' is not of the form a" + std::string(1, sep) + "b"));
  }
  return std::make_pair(text.substr(0, at), text.substr(at + 1));
}

Expected<v1::VersionRef> ParseRef(const std::string& ref) {
  auto parts = SplitPair(ref, '@', "ref");
  if (!parts) return Fail(InvalidArgument("ref", "'" + ref + "' is not MODEL@VERSION or MODEL@ALIAS"));
  v1::VersionRef r;
  r.set_model(parts->first);
  if (ValidateSemVer(parts->second, "ref").ok()) {
    r.set_version(parts->second);
  } else {
    r.set_alias(parts->second);
  }
  return r;
}

Expected<std::pair<std::string, std::string>> ParseVersionRef(const std::string& ref) {
  auto parts = SplitPair(ref, '@', "ref");
  if (!parts || !ValidateSemVer(parts->second, "ref").ok()) {
    return Fail(InvalidArgument("ref", "'" + ref + "' is not MODEL@VERSION (an alias is not accepted here)"));
  }
  return *parts;
}

std::string RefString(const v1::VersionRef& ref) {
  return ref.model() + "@" + (ref.has_version() ? ref.version() : ref.alias());
}

}  // namespace modelfleet::cli
