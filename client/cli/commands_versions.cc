// `modelfleet versions push|list|show|download|verify|archive|purge`.
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/manifest.h"
#include "modelfleet/numbers.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"

namespace modelfleet::cli {

namespace {

constexpr size_t kChunkBytes = 1 << 20;  // the server's maximum chunk

TransferProgress::Mode ProgressMode(bool wanted) {
  if (!wanted) return TransferProgress::Mode::kOff;
  return StderrIsTerminal() ? TransferProgress::Mode::kTerminal : TransferProgress::Mode::kLines;
}

// SHA-256 (hex) and size of a file. Errors: NOT_FOUND if it cannot be read.
Expected<std::pair<std::string, uint64_t>> HashFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(NotFound("cannot open " + path));
  Sha256 hash;
  std::string buf(kChunkBytes, '\0');
  uint64_t size = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<size_t>(in.gcount());
    hash.Update(std::string_view(buf.data(), n));
    size += n;
  }
  if (in.bad()) return Fail(Internal("reading " + path + " failed"));
  return std::make_pair(hash.FinishHex(), size);
}

KeyValues DescribeVersion(const v1::ModelVersion& v) {
  const v1::Manifest& m = v.manifest();
  KeyValues kv = {
      {"model", m.model()},
      {"version", m.version()},
      {"state", v1::VersionState_Name(v.state()).substr(sizeof("VERSION_STATE_") - 1)},
      {"aliases", OrDash(Join({v.aliases().begin(), v.aliases().end()}, ", "))},
      {"size",
       FormatBytes(static_cast<double>(m.size_bytes())) + " (" + std::to_string(m.size_bytes()) + " bytes)"},
      {"sha256", m.digest()},
      {"format", OrDash(m.format())},
      {"quantization", OrDash(m.quantization())},
      {"signed by", m.has_signature() ? OrDash(m.signature().key_id()) : "- (unsigned)"},
      {"version counter", std::to_string(m.version_counter())},
      {"metrics", AlignedLines(MetricEntries(m.metrics()))},
      {"labels", AlignedLines(TextEntries(m.labels()))},
      {"params", AlignedLines(TextEntries(m.params()))},
      {"class labels", OrDash(Join({m.class_labels().begin(), m.class_labels().end()}, ", "))},
      {"git commit", OrDash(m.lineage().git_commit())},
      {"ci run", OrDash(Join({m.lineage().ci_run_id(), m.lineage().ci_run_url()}, " "))},
      {"parent version", OrDash(m.lineage().parent_version())},
      {"self-test", m.has_self_test()
                        ? std::to_string(m.self_test().reference_input_size()) + " inputs, budget " +
                              FormatMilliseconds(m.self_test().latency_budget_ms())
                        : "-"},
      {"created by", OrDash(v.created_by())},
      {"created", FormatTime(v.create_time())},
  };
  if (v.has_archive_time()) kv.emplace_back("archived", FormatTime(v.archive_time()));
  return kv;
}

// The metric columns of `versions list`: `requested` as given; with `wide` every metric any
// version has, sorted; else the headline metrics that any version has, in their order. (A
// model cannot store its own choice of headline metrics: the Model message has no place for it.)
std::vector<std::string> MetricColumns(const std::vector<v1::ModelVersion>& versions,
                                       const std::vector<std::string>& requested, bool wide) {
  if (!requested.empty()) return requested;
  std::set<std::string> present;
  for (const auto& v : versions) {
    for (const auto& [name, value] : v.manifest().metrics()) present.insert(name);
  }
  if (wide) return {present.begin(), present.end()};
  std::vector<std::string> columns;
  for (const char* name : kHeadlineMetrics) {
    if (present.contains(name)) columns.emplace_back(name);
  }
  return columns;
}

// The metric's name as a column header: upper case, otherwise as typed for --metrics.
std::string MetricHeader(const std::string& name) {
  std::string header = name;
  for (char& c : header) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return header;
}

// The manifest to push: the --manifest file (if any) under the flags.
Expected<v1::Manifest> BuildManifest(const PushOptions& o, const std::string& digest, uint64_t size) {
  v1::Manifest m;
  if (!o.manifest_file.empty()) {
    std::ifstream in(o.manifest_file);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) return Fail(InvalidArgument("--manifest", "cannot read " + o.manifest_file));
    auto parsed = google::protobuf::util::JsonStringToMessage(ss.str(), &m);
    if (!parsed.ok()) {
      return Fail(InvalidArgument(
          "--manifest", o.manifest_file + " is not a JSON Manifest: " + std::string(parsed.message())));
    }
    if (!m.model().empty() && m.model() != o.model) {
      return Fail(InvalidArgument(
          "--manifest", o.manifest_file + " is for model '" + m.model() + "', not '" + o.model + "'"));
    }
    if (!m.version().empty() && m.version() != o.version) {
      return Fail(InvalidArgument("--manifest",
                                  o.manifest_file + " is for version " + m.version() + ", not " + o.version));
    }
    if (!m.digest().empty() && m.digest() != digest) {
      return Fail(InvalidArgument("--manifest", o.manifest_file + " says sha256 " + m.digest() + " but " +
                                                    o.file + " has sha256 " + digest));
    }
    if (m.size_bytes() != 0 && m.size_bytes() != size) {
      return Fail(InvalidArgument("--manifest", o.manifest_file + " says " + std::to_string(m.size_bytes()) +
                                                    " bytes but " + o.file + " has " + std::to_string(size)));
    }
    m.clear_signature();  // re-signed below if asked; a stale one would not verify
  }
  m.set_model(o.model);
  m.set_version(o.version);
  if (!o.format.empty()) m.set_format(o.format);
  if (!o.quantization.empty()) m.set_quantization(o.quantization);
  m.set_digest(digest);
  m.set_size_bytes(size);
  if (o.version_counter != 0) m.set_version_counter(o.version_counter);
  for (const auto& kv : o.metrics) {
    MF_ASSIGN_OR_RETURN(auto p, SplitPair(kv, '=', "--metric"));
    const std::optional<double> v = ParseNumber<double>(p.second);
    if (!v) return Fail(InvalidArgument("--metric", "'" + p.second + "' is not a number"));
    (*m.mutable_metrics())[p.first] = *v;
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
  if (!o.dataset.empty()) m.mutable_lineage()->set_dataset(o.dataset);
  if (!o.sign_key_file.empty() || !o.key_id.empty()) {
    if (o.key_id.empty()) return Fail(InvalidArgument("--key-id", "is required with --sign-key"));
    if (o.sign_key_file.empty()) return Fail(InvalidArgument("--sign-key", "is required with --key-id"));
    MF_ASSIGN_OR_RETURN(std::string key, ReadEd25519PrivateKeyPem(o.sign_key_file));
    MF_RETURN_IF_ERROR(SignManifest(m, o.key_id, key));
  }
  MF_RETURN_IF_ERROR(ValidateManifest(m, "manifest"));
  return m;
}

Status ConflictingBytes(const PushOptions& o, const std::string& server_digest,
                        const std::string& local_digest) {
  return AlreadyExists("version " + o.version + " of model '" + o.model +
                       "' already exists with other bytes (server sha256 " + server_digest + ", " + o.file +
                       " sha256 " + local_digest + "); versions are immutable: push under a new version");
}

}  // namespace

Status PushVersion(const Settings& s, const PushOptions& o) {
  MF_ASSIGN_OR_RETURN(auto hashed, HashFile(o.file));
  const auto& [digest, size] = hashed;
  MF_ASSIGN_OR_RETURN(v1::Manifest manifest, BuildManifest(o, digest, size));
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));

  // A re-run (CI retrying a job) must not upload again: ask first. Any error here (e.g. the
  // model does not exist yet, or the token may push but not read) is left to the push to report.
  {
    Rpc rpc(s);
    v1::GetVersionRequest req;
    req.mutable_ref()->set_model(o.model);
    req.mutable_ref()->set_version(o.version);
    v1::ModelVersion existing;
    if (stub->GetVersion(&rpc.context, req, &existing).ok()) {
      if (existing.manifest().digest() != digest || existing.manifest().size_bytes() != size) {
        return ConflictingBytes(o, existing.manifest().digest(), digest);
      }
      if (o.progress) {
        std::cerr << "push " << o.model << "@" << o.version << ": already there with the same bytes (sha256 "
                  << ShortDigest(digest) << "...), nothing uploaded" << std::endl;
      }
      PrintObject(s.output, existing, [&] { return DescribeVersion(existing); });
      return Status::Ok();
    }
  }

  std::ifstream in(o.file, std::ios::binary);
  if (!in) return NotFound("cannot open " + o.file);
  Rpc rpc(s, /*streaming=*/true);
  v1::ModelVersion version;
  auto writer = stub->PushVersion(&rpc.context, &version);
  v1::PushVersionRequest msg;
  *msg.mutable_manifest() = manifest;
  TransferProgress progress("push " + o.model + "@" + o.version, size, ProgressMode(o.progress), std::cerr);
  uint64_t sent = 0;
  if (writer->Write(msg)) {
    std::string buf(kChunkBytes, '\0');
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      msg.set_chunk(buf.data(), n);
      if (!writer->Write(msg)) break;  // the server answered early (an error, or an idempotent retry)
      sent += n;
      progress.Update(sent);
    }
  }
  writer->WritesDone();
  grpc::Status finished = writer->Finish();
  if (finished.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
    // Lost a race with another push of the same version with other bytes.
    return AlreadyExists(finished.error_message() + " (" + o.file + " has sha256 " + digest +
                         "); versions are immutable: push under a new version");
  }
  MF_RETURN_IF_ERROR(FromGrpc(finished, s));
  progress.Finish(sent, "sha256 " + ShortDigest(digest) + "... verified by the server");
  PrintObject(s.output, version, [&] { return DescribeVersion(version); });
  return Status::Ok();
}

Status ListVersions(const Settings& s, const std::string& model, const std::string& filter,
                    const std::vector<std::string>& metrics) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::ListVersionsRequest req;
  req.set_model(model);
  req.set_filter(filter);
  MF_ASSIGN_OR_RETURN(std::vector<v1::ModelVersion> versions,
                      ListAll(s, *stub, &v1::RegistryService::Stub::ListVersions, req,
                              [](const v1::ListVersionsResponse& r) -> const auto& { return r.versions(); }));
  const std::vector<std::string> shown = MetricColumns(versions, metrics, s.wide);
  std::vector<std::string> headers = {"VERSION", "STATE", "ALIASES", "SIZE", "SHA256", "SIGNED BY"};
  for (const auto& name : shown) headers.push_back(MetricHeader(name));
  headers.push_back("CREATED");
  PrintList<v1::ModelVersion>(s, versions, std::move(headers), [&](const v1::ModelVersion& v) {
    const auto& m = v.manifest();
    std::vector<std::string> row = {m.version(),
                                    v1::VersionState_Name(v.state()).substr(sizeof("VERSION_STATE_") - 1),
                                    OrDash(Join({v.aliases().begin(), v.aliases().end()}, ",")),
                                    FormatBytes(static_cast<double>(m.size_bytes())),
                                    ShortDigest(m.digest()),
                                    m.has_signature() ? OrDash(m.signature().key_id()) : "-"};
    for (const auto& name : shown) {
      auto it = m.metrics().find(name);
      row.push_back(it == m.metrics().end() ? "-" : FormatMetric(name, it->second));
    }
    row.push_back(FormatTime(v.create_time()));
    return row;
  });
  if (s.output == OutputFormat::kJson || versions.empty()) return Status::Ok();
  // Notes for people, on stderr: why a metric they may expect is not there.
  const bool any_metrics = std::any_of(versions.begin(), versions.end(), [](const v1::ModelVersion& v) {
    return !v.manifest().metrics().empty();
  });
  if (metrics.empty() && !s.wide && shown.empty() && any_metrics) {
    std::cerr << "(none of the headline metrics "
              << Join({std::begin(kHeadlineMetrics), std::end(kHeadlineMetrics)}, ", ")
              << "; --metrics NAME,... picks others, --wide shows every one)" << std::endl;
  }
  for (const auto& name : metrics) {
    const bool known = std::any_of(versions.begin(), versions.end(), [&](const v1::ModelVersion& v) {
      return v.manifest().metrics().contains(name);
    });
    if (!known) std::cerr << "(no version listed has the metric '" << name << "')" << std::endl;
  }
  return Status::Ok();
}

Status ShowVersion(const Settings& s, const std::string& ref) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::GetVersionRequest req;
  MF_ASSIGN_OR_RETURN(*req.mutable_ref(), ParseRef(ref));
  Rpc rpc(s);
  v1::ModelVersion v;
  MF_RETURN_IF_ERROR(FromGrpc(stub->GetVersion(&rpc.context, req, &v), s));
  PrintObject(s.output, v, [&] { return DescribeVersion(v); });
  return Status::Ok();
}

Status DownloadVersion(const Settings& s, const std::string& ref, const std::string& out,
                       bool want_progress) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::DownloadRequest req;
  MF_ASSIGN_OR_RETURN(*req.mutable_ref(), ParseRef(ref));
  const std::string part = out + ".part";
  std::error_code ec;
  const uint64_t have = std::filesystem::exists(part, ec) ? std::filesystem::file_size(part, ec) : 0;
  req.set_offset(have);
  Rpc rpc(s, /*streaming=*/true);
  auto reader = stub->Download(&rpc.context, req);
  std::ofstream file(part, std::ios::binary | std::ios::app);
  if (!file) return Internal("cannot write " + part);
  v1::Manifest manifest;
  v1::DownloadChunk chunk;
  std::optional<TransferProgress> progress;
  uint64_t done = have;
  while (reader->Read(&chunk)) {
    if (!progress) {
      manifest = chunk.manifest();
      progress.emplace("download " + ref, manifest.size_bytes(), ProgressMode(want_progress), std::cerr,
                       have);
    }
    file.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    done += chunk.data().size();
    progress->Update(done);
  }
  file.close();
  grpc::Status finished = reader->Finish();
  if (finished.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
    std::filesystem::remove(part, ec);
    return Status(StatusCode::kOutOfRange,
                  finished.error_message() + "; removed the stale " + part + ", run again");
  }
  MF_RETURN_IF_ERROR(FromGrpc(finished, s));
  if (!file) return Internal("writing " + part + " failed");
  MF_ASSIGN_OR_RETURN(auto hashed, HashFile(part));
  if (hashed.first != manifest.digest() || hashed.second != manifest.size_bytes()) {
    std::filesystem::remove(part, ec);
    return DataLoss("downloaded bytes do not match the manifest (sha256 " + hashed.first + ", " +
                    std::to_string(hashed.second) + " bytes; expected " + manifest.digest() + ", " +
                    std::to_string(manifest.size_bytes()) + " bytes); removed " + part);
  }
  std::filesystem::rename(part, out, ec);
  if (ec) return Internal("rename " + part + " to " + out + ": " + ec.message());
  if (progress) progress->Finish(done, "sha256 verified, saved " + out);
  v1::ModelVersion shown;
  *shown.mutable_manifest() = manifest;
  PrintObject(s.output, manifest, [&] {
    KeyValues kv = {{"file", out}};
    for (auto& e : DescribeVersion(shown)) {
      if (e.first == "model" || e.first == "version" || e.first == "size" || e.first == "sha256" ||
          e.first == "signed by") {
        kv.push_back(e);
      }
    }
    return kv;
  });
  return Status::Ok();
}

Status VerifyVersion(const Settings& s, const VerifyOptions& o) {
  MF_ASSIGN_OR_RETURN(v1::VersionRef ref, ParseRef(o.ref));
  // Local inputs first: a missing file or key is a usage error, before any network call.
  MF_ASSIGN_OR_RETURN(auto hashed, HashFile(o.file));
  std::string given_key;
  if (!o.public_key_file.empty()) {
    MF_ASSIGN_OR_RETURN(given_key, ReadEd25519PublicKeyPem(o.public_key_file));
  }
  MF_ASSIGN_OR_RETURN(auto registry, MakeStub<v1::RegistryService>(s));
  v1::ModelVersion version;
  {
    Rpc rpc(s);
    v1::GetVersionRequest req;
    *req.mutable_ref() = ref;
    MF_RETURN_IF_ERROR(FromGrpc(registry->GetVersion(&rpc.context, req, &version), s));
  }
  const v1::Manifest& m = version.manifest();
  const bool size_ok = hashed.second == m.size_bytes();
  const bool digest_ok = hashed.first == m.digest();

  // signature: ok | unsigned | unknown_key | revoked_key | invalid
  std::string signature = "unsigned", signature_detail = "the manifest is not signed";
  const std::string key_id = m.has_signature() ? m.signature().key_id() : "";
  if (m.has_signature()) {
    std::string public_key = given_key;
    std::string source = o.public_key_file;
    if (public_key.empty()) {
      MF_ASSIGN_OR_RETURN(auto admin, MakeStub<v1::AdminService>(s));
      Rpc rpc(s);
      v1::ListPublisherKeysResponse keys;
      MF_RETURN_IF_ERROR(FromGrpc(admin->ListPublisherKeys(&rpc.context, {}, &keys), s));
      signature = "unknown_key";
      signature_detail = "key '" + key_id + "' is not among the server's publisher keys";
      for (const auto& k : keys.keys()) {
        if (k.key_id() != key_id) continue;
        if (k.has_revoke_time()) {
          signature = "revoked_key";
          signature_detail = "key '" + key_id + "' was revoked " + FormatTime(k.revoke_time());
        } else {
          public_key = k.public_key();
          source = "trusted by the server";
        }
      }
    }
    if (!public_key.empty()) {
      if (VerifyManifestSignature(m, public_key).ok()) {
        signature = "ok";
        signature_detail = "key '" + key_id + "', " + source;
      } else {
        signature = "invalid";
        signature_detail = "does not verify with key '" + key_id + "' (" + source + ")";
      }
    }
  }
  const bool signature_ok = signature == "ok" || (signature == "unsigned" && o.allow_unsigned);
  const bool verified = size_ok && digest_ok && signature_ok;
  const std::string resolved = m.model() + "@" + m.version();

  if (s.output == OutputFormat::kJson) {
    std::cout << "{\"ref\":" << JsonString(o.ref) << ",\"model\":" << JsonString(m.model())
              << ",\"version\":" << JsonString(m.version()) << ",\"file\":" << JsonString(o.file)
              << ",\"size_bytes\":" << hashed.second << ",\"expected_size_bytes\":" << m.size_bytes()
              << ",\"size_ok\":" << (size_ok ? "true" : "false") << ",\"digest\":" << JsonString(hashed.first)
              << ",\"expected_digest\":" << JsonString(m.digest())
              << ",\"digest_ok\":" << (digest_ok ? "true" : "false")
              << ",\"signature\":" << JsonString(signature) << ",\"key_id\":" << JsonString(key_id)
              << ",\"verified\":" << (verified ? "true" : "false") << "}" << std::endl;
  } else {
    PrintKeyValues(
        std::cout,
        {{"file", o.file},
         {"version", resolved + (ref.has_alias() ? " (" + o.ref + ")" : "")},
         {"size", (size_ok ? "ok (" : "MISMATCH (") + std::to_string(hashed.second) + " bytes" +
                      (size_ok ? ")" : ", manifest says " + std::to_string(m.size_bytes()) + ")")},
         {"sha256", (digest_ok ? "ok (" + hashed.first + ")"
                               : "MISMATCH (" + hashed.first + ", manifest says " + m.digest() + ")")},
         {"signature", (signature == "ok"                             ? "ok: "
                        : signature == "unsigned" && o.allow_unsigned ? "none: "
                                                                      : "FAILED: ") +
                           signature_detail},
         {"verdict", verified ? "VERIFIED" : "NOT VERIFIED"}});
  }
  if (verified) return Status::Ok();
  std::vector<std::string> problems;
  if (!size_ok) problems.push_back("size");
  if (!digest_ok) problems.push_back("sha256");
  if (!signature_ok) problems.push_back("signature (" + signature_detail + ")");
  return DataLoss(
      o.file + " does not match " + resolved + ": " + Join(problems, ", ") +
      (signature == "unsigned" && !o.allow_unsigned ? "; --allow-unsigned accepts unsigned versions" : ""));
}

Status ArchiveVersion(const Settings& s, const std::string& ref) {
  MF_ASSIGN_OR_RETURN(auto parts, ParseVersionRef(ref));
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::ArchiveVersionRequest req;
  req.set_model(parts.first);
  req.set_version(parts.second);
  Rpc rpc(s);
  v1::ModelVersion v;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ArchiveVersion(&rpc.context, req, &v), s));
  PrintObject(s.output, v, [&] { return DescribeVersion(v); });
  return Status::Ok();
}

Status PurgeVersion(const Settings& s, const std::string& ref) {
  MF_ASSIGN_OR_RETURN(auto parts, ParseVersionRef(ref));
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::PurgeVersionRequest req;
  req.set_model(parts.first);
  req.set_version(parts.second);
  Rpc rpc(s);
  v1::PurgeVersionResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->PurgeVersion(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] {
    return KeyValues{{"purged", ref},
                     {"blob", resp.blob_deleted() ? "deleted" : "kept (another version shares the bytes)"}};
  });
  return Status::Ok();
}

}  // namespace modelfleet::cli
