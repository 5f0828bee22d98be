#include "cli/commands.h"

#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "modelfleet/validation.h"

namespace modelfleet::cli {

namespace {

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

void PrintJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  std::cout << json << std::endl;
}

class Call {
 public:
  explicit Call(const Connection& c) {
    if (!c.token.empty()) context.AddMetadata("authorization", "Bearer " + c.token);
  }
  grpc::ClientContext context;
};

Expected<std::pair<std::string, std::string>> SplitPair(const std::string& text, char sep, const std::string& what) {
  size_t at = text.find(sep);
  if (at == std::string::npos || at == 0 || at + 1 == text.size()) {
    return Fail(InvalidArgument(what, "'" + text + "' is not of the form a" + std::string(1, sep) + "b"));
  }
  return std::make_pair(text.substr(0, at), text.substr(at + 1));
}

Expected<v1::VersionRef> ParseRef(const std::string& ref) {
  MF_ASSIGN_OR_RETURN(auto parts, SplitPair(ref, '@', "ref"));
  v1::VersionRef r;
  r.set_model(parts.first);
  if (ValidateSemVer(parts.second, "ref").ok()) {
    r.set_version(parts.second);
  } else {
    r.set_alias(parts.second);
  }
  return r;
}

template <typename Stub>
Expected<std::unique_ptr<typename Stub::Stub>> MakeStub(const Connection& c) {
  MF_ASSIGN_OR_RETURN(auto channel, OpenChannel(c));
  return Stub::NewStub(channel);
}

Expected<std::string> FileSha256(const std::string& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(NotFound("cannot open " + path));
  Sha256 hash;
  std::string buf(1 << 20, '\0');
  *size = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<size_t>(in.gcount());
    hash.Update(std::string_view(buf.data(), n));
    *size += n;
  }
  return hash.FinishHex();
}

}  // namespace

Expected<std::shared_ptr<grpc::Channel>> OpenChannel(const Connection& c) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  if (c.insecure) return grpc::CreateCustomChannel(c.server, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  if (!c.tls_ca.empty()) {
    std::ifstream in(c.tls_ca);
    if (!in) return Fail(InvalidArgument("--tls-ca", "cannot read " + c.tls_ca));
    std::stringstream ss;
    ss << in.rdbuf();
    ssl.pem_root_certs = ss.str();
  }
  return grpc::CreateCustomChannel(c.server, grpc::SslCredentials(ssl), args);
}

Status CreateModel(const Connection& c, const std::string& name, const std::string& task,
                   const std::string& description, const std::vector<std::string>& class_labels) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::CreateModelRequest req;
  req.mutable_model()->set_name(name);
  req.mutable_model()->set_task(task);
  req.mutable_model()->set_description(description);
  for (const auto& l : class_labels) req.mutable_model()->add_class_labels(l);
  Call call(c);
  v1::Model model;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateModel(&call.context, req, &model)));
  PrintJson(model);
  return Status::Ok();
}

Status ListModels(const Connection& c) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::ListModelsRequest req;
  do {
    Call call(c);
    v1::ListModelsResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListModels(&call.context, req, &resp)));
    for (const auto& m : resp.models()) PrintJson(m);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return Status::Ok();
}

Status Push(const Connection& c, const PushOptions& o) {
  v1::Manifest m;
  if (!o.manifest_template.empty()) {
    std::ifstream in(o.manifest_template);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || !google::protobuf::util::JsonStringToMessage(ss.str(), &m).ok()) {
      return InvalidArgument("--manifest", o.manifest_template + " is not a JSON Manifest");
    }
  }
  m.set_model(o.model);
  m.set_version(o.version);
  if (!o.format.empty()) m.set_format(o.format);
  if (!o.quantization.empty()) m.set_quantization(o.quantization);
  uint64_t size = 0;
  MF_ASSIGN_OR_RETURN(std::string digest, FileSha256(o.file, &size));
  m.set_digest(digest);
  m.set_size_bytes(size);
  for (const auto& kv : o.metrics) {
    MF_ASSIGN_OR_RETURN(auto p, SplitPair(kv, '=', "--metric"));
    try {
      (*m.mutable_metrics())[p.first] = std::stod(p.second);
    } catch (const std::exception&) {
      return InvalidArgument("--metric", "'" + p.second + "' is not a number");
    }
  }
  for (const auto& kv : o.labels) {
    MF_ASSIGN_OR_RETURN(auto p, SplitPair(kv, '=', "--label"));
    (*m.mutable_labels())[p.first] = p.second;
  }
  for (const auto& kv : o.params) {
    MF_ASSIGN_OR_RETURN(auto p, SplitPair(kv, '=', "--param"));
    (*m.mutable_params())[p.first] = p.second;
  }
  if (!o.git_commit.empty()) m.mutable_lineage()->set_git_commit(o.git_commit);
  if (!o.ci_run_id.empty()) m.mutable_lineage()->set_ci_run_id(o.ci_run_id);
  if (!o.ci_run_url.empty()) m.mutable_lineage()->set_ci_run_url(o.ci_run_url);
  if (!o.parent_version.empty()) m.mutable_lineage()->set_parent_version(o.parent_version);
  if (!o.sign_key_file.empty()) {
    if (o.key_id.empty()) return InvalidArgument("--key-id", "is required with --sign-key");
    MF_ASSIGN_OR_RETURN(std::string key, ReadEd25519PrivateKeyPem(o.sign_key_file));
    MF_RETURN_IF_ERROR(SignManifest(m, o.key_id, key));
  }
  MF_RETURN_IF_ERROR(ValidateManifest(m, "manifest"));

  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  Call call(c);
  v1::ModelVersion version;
  auto writer = stub->PushVersion(&call.context, &version);
  v1::PushVersionRequest msg;
  *msg.mutable_manifest() = m;
  if (writer->Write(msg)) {
    std::ifstream in(o.file, std::ios::binary);
    std::string buf(1 << 20, '\0');
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      msg.set_chunk(buf.data(), n);
      if (!writer->Write(msg)) break;  // the server answered early (e.g. idempotent retry)
    }
  }
  writer->WritesDone();
  MF_RETURN_IF_ERROR(FromGrpc(writer->Finish()));
  PrintJson(version);
  return Status::Ok();
}

Status ListVersions(const Connection& c, const std::string& model, const std::string& filter) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::ListVersionsRequest req;
  req.set_model(model);
  req.set_filter(filter);
  do {
    Call call(c);
    v1::ListVersionsResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListVersions(&call.context, req, &resp)));
    for (const auto& v : resp.versions()) PrintJson(v);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return Status::Ok();
}

Status GetVersion(const Connection& c, const std::string& ref) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::GetVersionRequest req;
  MF_ASSIGN_OR_RETURN(*req.mutable_ref(), ParseRef(ref));
  Call call(c);
  v1::ModelVersion v;
  MF_RETURN_IF_ERROR(FromGrpc(stub->GetVersion(&call.context, req, &v)));
  PrintJson(v);
  return Status::Ok();
}

Status SetAlias(const Connection& c, const std::string& model, const std::string& alias, const std::string& version,
                const std::string& reason) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::SetAliasRequest req;
  req.set_model(model);
  req.set_alias(alias);
  req.set_version(version);
  req.set_reason(reason);
  Call call(c);
  v1::Alias a;
  MF_RETURN_IF_ERROR(FromGrpc(stub->SetAlias(&call.context, req, &a)));
  PrintJson(a);
  return Status::Ok();
}

Status AliasHistory(const Connection& c, const std::string& model, const std::string& alias) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::ListAliasHistoryRequest req;
  req.set_model(model);
  req.set_alias(alias);
  do {
    Call call(c);
    v1::ListAliasHistoryResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListAliasHistory(&call.context, req, &resp)));
    for (const auto& ch : resp.changes()) PrintJson(ch);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return Status::Ok();
}

Status Download(const Connection& c, const std::string& ref, const std::string& out) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(c));
  v1::DownloadRequest req;
  MF_ASSIGN_OR_RETURN(*req.mutable_ref(), ParseRef(ref));
  const std::string part = out + ".part";
  std::error_code ec;
  uint64_t have = std::filesystem::exists(part) ? std::filesystem::file_size(part, ec) : 0;
  req.set_offset(have);
  Call call(c);
  auto reader = stub->Download(&call.context, req);
  std::ofstream file(part, std::ios::binary | std::ios::app);
  v1::Manifest manifest;
  v1::DownloadChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) manifest = chunk.manifest();
    first = false;
    file.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
  }
  file.close();
  MF_RETURN_IF_ERROR(FromGrpc(reader->Finish()));
  uint64_t size = 0;
  MF_ASSIGN_OR_RETURN(std::string digest, FileSha256(part, &size));
  if (digest != manifest.digest() || size != manifest.size_bytes()) {
    std::filesystem::remove(part, ec);
    return DataLoss("downloaded bytes do not match the manifest (sha256 " + digest + ", expected " +
                    manifest.digest() + "); removed " + part);
  }
  std::filesystem::rename(part, out, ec);
  if (ec) return Internal("rename " + part + ": " + ec.message());
  PrintJson(manifest);
  return Status::Ok();
}

Status CreateToken(const Connection& c, const std::string& name, const std::string& role, int64_t ttl) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(c));
  v1::CreateTokenRequest req;
  req.set_name(name);
  v1::Role parsed;
  if (!v1::Role_Parse("ROLE_" + [&] {
        std::string upper = role;
        for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        return upper;
      }(), &parsed)) {
    return InvalidArgument("--role", "must be admin, publisher, device or viewer");
  }
  req.set_role(parsed);
  req.set_ttl_seconds(ttl);
  Call call(c);
  v1::CreateTokenResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateToken(&call.context, req, &resp)));
  PrintJson(resp);
  return Status::Ok();
}

Status AddPublisherKey(const Connection& c, const std::string& key_id, const std::string& pem_file) {
  MF_ASSIGN_OR_RETURN(std::string public_key, ReadEd25519PublicKeyPem(pem_file));
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(c));
  v1::AddPublisherKeyRequest req;
  req.set_key_id(key_id);
  req.set_public_key(public_key);
  Call call(c);
  v1::PublisherKey key;
  MF_RETURN_IF_ERROR(FromGrpc(stub->AddPublisherKey(&call.context, req, &key)));
  PrintJson(key);
  return Status::Ok();
}

// ------------------------------------------------------------------------------- fleet

Status CreateEnrollmentToken(const Connection& c, const std::string& name, uint32_t max_uses, int64_t ttl,
                             bool auto_accept) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::CreateEnrollmentTokenRequest req;
  req.set_name(name);
  req.set_max_uses(max_uses);
  req.set_ttl_seconds(ttl);
  req.set_auto_accept(auto_accept);
  Call call(c);
  v1::CreateEnrollmentTokenResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateEnrollmentToken(&call.context, req, &resp)));
  PrintJson(resp);
  return Status::Ok();
}

Status ListDevices(const Connection& c, const std::string& filter) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::ListDevicesRequest req;
  req.set_filter(filter);
  do {
    Call call(c);
    v1::ListDevicesResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListDevices(&call.context, req, &resp)));
    for (const auto& d : resp.devices()) PrintJson(d);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return Status::Ok();
}

Status SetDeviceAdmission(const Connection& c, const std::string& device_id, const std::string& admission,
                          const std::string& reason) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::SetDeviceAdmissionRequest req;
  req.set_device_id(device_id);
  v1::DeviceAdmission parsed;
  std::string upper = admission;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (!v1::DeviceAdmission_Parse("DEVICE_ADMISSION_" + upper, &parsed)) {
    return InvalidArgument("admission", "must be accepted, rejected or decommissioned");
  }
  req.set_admission(parsed);
  req.set_reason(reason);
  Call call(c);
  v1::Device d;
  MF_RETURN_IF_ERROR(FromGrpc(stub->SetDeviceAdmission(&call.context, req, &d)));
  PrintJson(d);
  return Status::Ok();
}

Expected<v1::Stage> ParseStage(const std::string& spec) {
  v1::Stage stage;
  std::stringstream parts(spec);
  std::string part;
  bool first = true;
  auto number = [&](const std::string& text, const std::string& what) -> Expected<double> {
    try {
      size_t used = 0;
      double v = std::stod(text, &used);
      if (used != text.size()) throw std::invalid_argument(what);
      return v;
    } catch (const std::exception&) {
      return Fail(InvalidArgument("--stage", "'" + text + "' is not a number for " + what + " in '" + spec + "'"));
    }
  };
  while (std::getline(parts, part, ':')) {
    if (first) {
      MF_ASSIGN_OR_RETURN(double percent, number(part, "the percentage"));
      stage.set_percent(percent);
      stage.set_success_threshold(1.0);
      first = false;
      continue;
    }
    if (part == "approval") {
      stage.set_requires_approval(true);
      continue;
    }
    MF_ASSIGN_OR_RETURN(auto kv, SplitPair(part, '=', "--stage"));
    MF_ASSIGN_OR_RETURN(double v, number(kv.second, kv.first));
    auto* g = stage.mutable_gates();
    if (kv.first == "min") {
      stage.set_min_devices(static_cast<uint32_t>(v));
    } else if (kv.first == "soak") {
      stage.set_soak_seconds(static_cast<uint32_t>(v));
    } else if (kv.first == "threshold") {
      stage.set_success_threshold(v);
    } else if (kv.first == "max-failure") {
      g->set_max_failure_ratio(v);
    } else if (kv.first == "max-error") {
      g->set_max_error_ratio(v);
    } else if (kv.first == "max-p95") {
      g->set_max_p95_latency_ms(v);
    } else if (kv.first == "max-shift") {
      g->set_max_class_shift(v);
    } else if (kv.first == "min-inferences") {
      g->set_min_inferences(static_cast<uint64_t>(v));
    } else {
      return Fail(InvalidArgument("--stage", "unknown key '" + kv.first + "' in '" + spec + "'"));
    }
  }
  if (first) return Fail(InvalidArgument("--stage", "is empty"));
  return stage;
}

Status CreateRollout(const Connection& c, const std::string& model, const std::string& version,
                     const std::string& target, const std::vector<std::string>& stages, bool auto_rollback,
                     uint32_t timeout_seconds, bool queue) {
  v1::CreateRolloutRequest req;
  req.set_model(model);
  req.set_version(version);
  req.set_target(target);
  req.set_auto_rollback(auto_rollback);
  req.set_deployment_timeout_seconds(timeout_seconds);
  req.set_queue_if_conflicting(queue);
  for (const auto& spec : stages) {
    MF_ASSIGN_OR_RETURN(*req.add_stages(), ParseStage(spec));
  }
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  Call call(c);
  v1::Rollout r;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateRollout(&call.context, req, &r)));
  PrintJson(r);
  return Status::Ok();
}

Status ListRollouts(const Connection& c, const std::string& model) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::ListRolloutsRequest req;
  req.set_model(model);
  do {
    Call call(c);
    v1::ListRolloutsResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListRollouts(&call.context, req, &resp)));
    for (const auto& r : resp.rollouts()) PrintJson(r);
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return Status::Ok();
}

Status GetRollout(const Connection& c, const std::string& rollout_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::GetRolloutRequest req;
  req.set_rollout_id(rollout_id);
  Call call(c);
  v1::Rollout r;
  MF_RETURN_IF_ERROR(FromGrpc(stub->GetRollout(&call.context, req, &r)));
  PrintJson(r);
  return Status::Ok();
}

Status RolloutAction(const Connection& c, const std::string& verb, const std::string& rollout_id,
                     const std::string& reason) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::RolloutActionRequest req;
  req.set_rollout_id(rollout_id);
  req.set_reason(reason);
  Call call(c);
  v1::Rollout r;
  grpc::Status s;
  if (verb == "pause") {
    s = stub->PauseRollout(&call.context, req, &r);
  } else if (verb == "resume") {
    s = stub->ResumeRollout(&call.context, req, &r);
  } else if (verb == "approve") {
    s = stub->ApproveStage(&call.context, req, &r);
  } else if (verb == "abort") {
    s = stub->AbortRollout(&call.context, req, &r);
  } else if (verb == "rollback") {
    s = stub->RollbackRollout(&call.context, req, &r);
  } else if (verb == "retry") {
    s = stub->RetryFailed(&call.context, req, &r);
  } else {
    return InvalidArgument("verb", "must be pause, resume, approve, abort, rollback or retry");
  }
  MF_RETURN_IF_ERROR(FromGrpc(s));
  PrintJson(r);
  return Status::Ok();
}

Status WatchRollout(const Connection& c, const std::string& rollout_id, bool fail_on_pause) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(c));
  v1::WatchRolloutRequest req;
  req.set_rollout_id(rollout_id);
  Call call(c);
  auto reader = stub->WatchRollout(&call.context, req);
  v1::RolloutEvent event;
  v1::RolloutState last = v1::ROLLOUT_STATE_UNSPECIFIED;
  while (reader->Read(&event)) {
    PrintJson(event);
    last = event.rollout().state();
    if (fail_on_pause && last == v1::ROLLOUT_STATE_PAUSED) {
      call.context.TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok() && !(fail_on_pause && last == v1::ROLLOUT_STATE_PAUSED)) return FromGrpc(s);
  if (last == v1::ROLLOUT_STATE_COMPLETED) return Status::Ok();
  return FailedPrecondition("rollout " + rollout_id + " ended " + v1::RolloutState_Name(last) + ": " +
                            event.rollout().state_reason());
}

}  // namespace modelfleet::cli
