#include "registry/registry.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>

#include "events/event_log.h"
#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/manifest.h"
#include "modelfleet/validation.h"
#include "registry/version_filter.h"
#include "util/page_token.h"
#include "util/time.h"

namespace modelfleet::registry {

namespace {

constexpr int kDefaultPageSize = 50;

// Advisory lock key for a digest: its first 60 bits, so every blob has its own lock.
int64_t DigestLockKey(const std::string& digest) {
  int64_t key = 0;
  std::from_chars(digest.data(), digest.data() + 15, key, 16);
  return key;
}

std::string BlobKeyFor(const std::string& digest) { return "sha256/" + digest; }

constexpr std::string_view kModelColumns =
    "id, name, description, task, definition, archived, created_by, " MF_EPOCH_MICROS(
        "created_at") ", " MF_EPOCH_MICROS("updated_at");

Expected<v1::Model> ModelFromRow(const db::Row& row) {
  v1::Model model;
  std::string definition = row.Bytea(4);
  if (!model.ParseFromString(definition)) return Fail(Internal("stored model definition is corrupt"));
  model.set_name(row.Str(1));
  model.set_description(row.Str(2));
  model.set_task(row.Str(3));
  model.set_archived(row.Bool(5));
  model.set_created_by(row.Str(6));
  SetTimestamp(row.OptInt(7), model.mutable_create_time());
  SetTimestamp(row.OptInt(8), model.mutable_update_time());
  return model;
}

struct ModelIdentity {
  int64_t id;
  bool archived;
};

Expected<ModelIdentity> LoadModelIdentity(db::Tx& tx, const std::string& name, bool for_update) {
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(std::string("SELECT id, archived FROM models WHERE name = $1") +
                                             (for_update ? " FOR UPDATE" : ""),
                                         {name}));
  if (rows.empty()) return Fail(NotFound("model '" + name + "' does not exist"));
  return ModelIdentity{rows[0].Int(0), rows[0].Bool(1)};
}

constexpr std::string_view kVersionColumns =
    "v.id, v.version, v.state, v.manifest, v.created_by, " MF_EPOCH_MICROS(
        "v.created_at") ", " MF_EPOCH_MICROS("v.archived_at") ", v.digest, v.size_bytes, v.blob_key, "
    "coalesce((SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM aliases a "
    "WHERE a.version_id = v.id), '')";

Status ValidateVersionRef(const v1::VersionRef& ref, const std::string& field) {
  MF_RETURN_IF_ERROR(ValidateModelName(ref.model(), field + ".model"));
  switch (ref.selector_case()) {
    case v1::VersionRef::kVersion: return ValidateSemVer(ref.version(), field + ".version");
    case v1::VersionRef::kAlias: return ValidateAliasName(ref.alias(), field + ".alias");
    default: return InvalidArgument(field, "needs a version or an alias");
  }
}

Status ValidatePublisherKeyRequest(const v1::AddPublisherKeyRequest& request) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.key_id(), "key_id"));
  if (request.public_key().size() != 32) {
    return InvalidArgument("public_key", "must be a raw 32-byte Ed25519 public key");
  }
  return Status::Ok();
}

v1::PublisherKey PublisherKeyFromRow(const db::Row& row) {
  v1::PublisherKey key;
  key.set_key_id(row.Str(0));
  key.set_public_key(row.Bytea(1));
  key.set_added_by(row.Str(2));
  SetTimestamp(row.OptInt(3), key.mutable_add_time());
  if (!row.IsNull(4)) SetTimestamp(row.OptInt(4), key.mutable_revoke_time());
  return key;
}

// Records an event about model `model` (the subject of version and alias events too).
Status RecordModelEvent(db::Tx& tx, std::string_view type, const auth::Principal& caller, const std::string& model,
                        events::Payload payload) {
  return StatusOf(events::AppendEvent(tx, {type, caller.Actor(), "model", model, std::move(payload)}));
}

constexpr std::string_view kPublisherKeyColumns =
    "key_id, public_key, added_by, " MF_EPOCH_MICROS("added_at") ", " MF_EPOCH_MICROS("revoked_at");

}  // namespace

namespace {

// One model_versions row with what the registry needs besides the public message.
struct VersionRow {
  int64_t id = 0;
  std::string digest;
  uint64_t size = 0;
  std::string blob_key;
  std::string state;
  v1::ModelVersion version;
};

Expected<VersionRow> VersionFromRow(const db::Row& row);
Expected<VersionRow> LoadVersion(db::Tx& tx, const v1::VersionRef& ref, const std::string& field);

}  // namespace

Registry::Registry(db::Pool& pool, blob::BlobStore& store, ArtifactCache& cache,
                   RegistryOptions options)
    : pool_(pool), store_(store), cache_(cache), options_(options) {}

// ------------------------------------------------------------------------------- models

Expected<v1::Model> Registry::CreateModel(const v1::CreateModelRequest& request,
                                          const auth::Principal& caller) {
  const v1::Model& m = request.model();
  MF_RETURN_IF_ERROR(ValidateModelName(m.name(), "model.name"));
  MF_RETURN_IF_ERROR(ValidateText(m.description(), 4096, "model.description"));
  MF_RETURN_IF_ERROR(ValidateText(m.task(), 128, "model.task"));
  if (m.class_labels_size() > 1024) return Fail(InvalidArgument("model.class_labels", "has more than 1024 entries"));
  for (int i = 0; i < m.class_labels_size(); ++i) {
    std::string field = "model.class_labels[" + std::to_string(i) + "]";
    if (m.class_labels(i).empty()) return Fail(InvalidArgument(field, "is empty"));
    MF_RETURN_IF_ERROR(ValidateText(m.class_labels(i), 128, field));
  }
  MF_RETURN_IF_ERROR(ValidateInputSpec(m.input_spec(), "model.input_spec"));

  v1::Model definition;
  *definition.mutable_class_labels() = m.class_labels();
  *definition.mutable_input_spec() = m.input_spec();
  v1::Model created;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    auto rows = tx.Exec("INSERT INTO models (name, description, task, definition, created_by) "
                        "VALUES ($1, $2, $3, $4::bytea, $5) RETURNING " + std::string(kModelColumns),
                        {m.name(), m.description(), m.task(), db::Bytes{definition.SerializeAsString()},
                         caller.Actor()});
    if (!rows && rows.error().code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("model '" + m.name() + "' already exists");
    }
    if (!rows) return rows.error();
    MF_ASSIGN_OR_RETURN(created, ModelFromRow((*rows)[0]));
    return RecordModelEvent(tx, "model.created", caller, m.name(), events::Payload().Str("task", m.task()));
  });
  MF_RETURN_IF_ERROR(s);
  return created;
}

Expected<v1::Model> Registry::GetModel(const v1::GetModelRequest& request) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.name(), "name"));
  v1::Model model;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " + std::string(kModelColumns) + " FROM models WHERE name = $1",
                                           {request.name()}));
    if (rows.empty()) return NotFound("model '" + request.name() + "' does not exist");
    MF_ASSIGN_OR_RETURN(model, ModelFromRow(rows[0]));
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return model;
}

Expected<v1::ListModelsResponse> Registry::ListModels(const v1::ListModelsRequest& request) {
  MF_ASSIGN_OR_RETURN(int page_size, CheckedPageSize(request.page_size(), kDefaultPageSize));
  std::string fingerprint = request.include_archived() ? "all" : "active";
  std::string after;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(after, DecodePageToken(request.page_token(), "models", fingerprint));
  }
  v1::ListModelsResponse response;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT " + std::string(kModelColumns) + " FROM models WHERE name > $1 "
        "AND ($2::boolean OR NOT archived) ORDER BY name LIMIT $3",
        {after, request.include_archived(), static_cast<int64_t>(page_size) + 1}));
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      MF_ASSIGN_OR_RETURN(*response.add_models(), ModelFromRow(rows[i]));
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(EncodePageToken("models", fingerprint, response.models().rbegin()->name()));
    }
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return response;
}

Expected<v1::Model> Registry::ArchiveModel(const v1::ArchiveModelRequest& request,
                                           const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.name(), "name"));
  v1::Model model;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity before, LoadModelIdentity(tx, request.name(), true));
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "UPDATE models SET archived = TRUE, updated_at = now() WHERE name = $1 RETURNING " +
            std::string(kModelColumns),
        {request.name()}));
    if (rows.empty()) return NotFound("model '" + request.name() + "' does not exist");
    MF_ASSIGN_OR_RETURN(model, ModelFromRow(rows[0]));
    if (before.archived) return Status::Ok();  // archiving twice: one event
    return RecordModelEvent(tx, "model.archived", caller, request.name(), events::Payload());
  });
  MF_RETURN_IF_ERROR(s);
  return model;
}

// ------------------------------------------------------------------------------- versions

namespace {

Expected<VersionRow> VersionFromRow(const db::Row& row) {
  VersionRow v;
  v.id = row.Int(0);
  v.state = row.Str(2);
  std::string manifest = row.Bytea(3);
  if (!v.version.mutable_manifest()->ParseFromString(manifest)) {
    return Fail(Internal("stored manifest of version id " + std::to_string(v.id) + " is corrupt"));
  }
  v.version.set_state(v.state == "READY" ? v1::VERSION_STATE_READY : v1::VERSION_STATE_ARCHIVED);
  v.version.set_created_by(row.Str(4));
  SetTimestamp(row.OptInt(5), v.version.mutable_create_time());
  if (!row.IsNull(6)) SetTimestamp(row.OptInt(6), v.version.mutable_archive_time());
  v.digest = row.Str(7);
  v.size = static_cast<uint64_t>(row.Int(8));
  v.blob_key = row.Str(9);
  std::string aliases = row.Str(10);
  std::stringstream ss(aliases);
  for (std::string alias; std::getline(ss, alias, ',');) {
    if (!alias.empty()) v.version.add_aliases(alias);
  }
  return v;
}

Expected<VersionRow> LoadVersion(db::Tx& tx, const v1::VersionRef& ref, const std::string& field) {
  std::string sql = "SELECT " + std::string(kVersionColumns) + " FROM model_versions v JOIN models m ON m.id = v.model_id ";
  std::vector<db::Param> params{ref.model()};
  if (ref.selector_case() == v1::VersionRef::kAlias) {
    sql += "JOIN aliases al ON al.version_id = v.id WHERE m.name = $1 AND al.alias = $2";
    params.push_back(ref.alias());
  } else {
    sql += "WHERE m.name = $1 AND v.version = $2";
    params.push_back(ref.version());
  }
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(sql, params));
  if (rows.empty()) {
    MF_RETURN_IF_ERROR(StatusOf(LoadModelIdentity(tx, ref.model(), false)));
    if (ref.selector_case() == v1::VersionRef::kAlias) {
      return Fail(NotFound("alias '" + ref.alias() + "' of model '" + ref.model() + "' does not exist")
                      .WithField(field + ".alias"));
    }
    return Fail(NotFound("version " + ref.version() + " of model '" + ref.model() + "' does not exist")
                    .WithField(field + ".version"));
  }
  return VersionFromRow(rows[0]);
}

}  // namespace

Status Registry::VerifySignature(const v1::Manifest& manifest) {
  if (!manifest.has_signature()) {
    if (options_.require_signatures) {
      return FailedPrecondition("this server accepts only signed manifests (manifest.signature is missing)");
    }
    return Status::Ok();
  }
  std::string public_key;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT public_key FROM publisher_keys WHERE key_id = $1 AND revoked_at IS NULL",
        {manifest.signature().key_id()}));
    if (rows.empty()) {
      return PermissionDenied("manifest.signature.key_id: '" + manifest.signature().key_id() +
                              "' is not a trusted publisher key");
    }
    public_key = rows[0].Bytea(0);
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  Status verified = VerifyManifestSignature(manifest, public_key);
  if (!verified.ok()) {
    return PermissionDenied("manifest.signature: does not verify with key '" +
                            manifest.signature().key_id() + "'");
  }
  return Status::Ok();
}

Expected<v1::ModelVersion> Registry::PushVersion(const v1::Manifest& manifest,
                                                 const ChunkReader& next_chunk,
                                                 const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateManifest(manifest, "manifest"));
  MF_RETURN_IF_ERROR(VerifySignature(manifest));

  // Idempotent retry or conflict, decided before reading any byte.
  std::optional<v1::ModelVersion> existing;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, manifest.model(), false));
    if (model.archived) return FailedPrecondition("model '" + manifest.model() + "' is archived");
    v1::VersionRef ref;
    ref.set_model(manifest.model());
    ref.set_version(manifest.version());
    auto row = LoadVersion(tx, ref, "manifest");
    if (!row && row.error().code() == StatusCode::kNotFound) return Status::Ok();
    if (!row) return row.error();
    if (row->digest != manifest.digest() || row->size != manifest.size_bytes()) {
      return AlreadyExists("version " + manifest.version() + " of model '" + manifest.model() +
                           "' already exists with other bytes (sha256 " + row->digest + ")");
    }
    existing = row->version;
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  if (existing) return *existing;

  // Stream the bytes into the store, hashing as they pass.
  const std::string blob_key = BlobKeyFor(manifest.digest());
  MF_ASSIGN_OR_RETURN(auto writer, store_.Create(blob_key));
  Sha256 hash;
  uint64_t received = 0;
  while (true) {
    MF_ASSIGN_OR_RETURN(std::optional<std::string> chunk, next_chunk());
    if (!chunk) break;
    if (chunk->empty()) return Fail(InvalidArgument("chunk", "is empty"));
    if (chunk->size() > options_.max_chunk_bytes) {
      return Fail(InvalidArgument("chunk", "is larger than " + std::to_string(options_.max_chunk_bytes) + " bytes"));
    }
    received += chunk->size();
    if (received > manifest.size_bytes()) {
      return Fail(InvalidArgument("chunk", "the pushed bytes exceed manifest.size_bytes (" +
                                               std::to_string(manifest.size_bytes()) + ")"));
    }
    hash.Update(*chunk);
    MF_RETURN_IF_ERROR(writer->Append(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(chunk->data()), chunk->size())));
  }
  if (received != manifest.size_bytes()) {
    return Fail(InvalidArgument("manifest.size_bytes", "declares " + std::to_string(manifest.size_bytes()) +
                                                           " bytes but " + std::to_string(received) + " were pushed"));
  }
  std::string actual = hash.FinishHex();
  if (actual != manifest.digest()) {
    return Fail(InvalidArgument("manifest.digest", "declares sha256 " + manifest.digest() +
                                                       " but the pushed bytes hash to " + actual));
  }

  // Insert the row, publish the blob, commit: all under the digest's lock.
  v1::ModelVersion created;
  bool blob_committed = false;
  s = pool_.WriteWithAdvisoryLock(DigestLockKey(manifest.digest()), [&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, manifest.model(), true));
    if (model.archived) return FailedPrecondition("model '" + manifest.model() + "' is archived");
    MF_ASSIGN_OR_RETURN(auto inserted, tx.Exec(
        "INSERT INTO model_versions (model_id, version, state, digest, size_bytes, format, metrics, labels, "
        "manifest, signature_key_id, blob_key, created_by) "
        "VALUES ($1, $2, 'READY', $3, $4, $5, $6::jsonb, $7::jsonb, $8::bytea, $9, $10, $11) "
        "ON CONFLICT (model_id, version) DO NOTHING RETURNING id",
        {model.id, manifest.version(), manifest.digest(), static_cast<int64_t>(manifest.size_bytes()),
         manifest.format(), JsonNumberObject(manifest.metrics()), JsonStringObject(manifest.labels()),
         db::Bytes{manifest.SerializeAsString()},
         manifest.has_signature() ? db::Param(manifest.signature().key_id()) : db::Param(nullptr),
         blob_key, caller.Actor()}));
    v1::VersionRef ref;
    ref.set_model(manifest.model());
    ref.set_version(manifest.version());
    if (inserted.empty()) {
      // A concurrent push of the same version won the race.
      MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, ref, "manifest"));
      if (row.digest != manifest.digest()) {
        return AlreadyExists("version " + manifest.version() + " of model '" + manifest.model() +
                             "' already exists with other bytes (sha256 " + row.digest + ")");
      }
      created = row.version;
      return Status::Ok();  // the writer is aborted when it goes out of scope
    }
    MF_RETURN_IF_ERROR(writer->Commit());
    blob_committed = true;
    MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, ref, "manifest"));
    created = row.version;
    return RecordModelEvent(tx, "version.pushed", caller, manifest.model(),
                            events::Payload()
                                .Str("version", manifest.version())
                                .Str("digest", manifest.digest())
                                .Int("size_bytes", static_cast<int64_t>(manifest.size_bytes()))
                                .Str("format", manifest.format())
                                .Str("state", "READY")
                                .Str("signature_key_id", manifest.has_signature() ? manifest.signature().key_id() : ""));
  });
  if (!s.ok() && blob_committed) {
    // The row did not commit (e.g. the database went away at COMMIT): do not leave an orphan.
    Status cleanup = DeleteBlobIfUnreferenced(manifest.digest(), blob_key);
    if (!cleanup.ok()) {
      return Fail(s.Annotate("push failed and the uploaded blob " + blob_key +
                             " could not be removed (" + cleanup.ToString() + ")"));
    }
  }
  MF_RETURN_IF_ERROR(s);
  return created;
}

Status Registry::DeleteBlobIfUnreferenced(const std::string& digest, const std::string& blob_key) {
  return pool_.WriteWithAdvisoryLock(DigestLockKey(digest), [&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT count(*) FROM model_versions WHERE digest = $1", {digest}));
    if (rows[0].Int(0) > 0) return Status::Ok();
    cache_.Forget(digest);
    return store_.Delete(blob_key);
  });
}

Expected<v1::ModelVersion> Registry::GetVersion(const v1::GetVersionRequest& request) {
  MF_RETURN_IF_ERROR(ValidateVersionRef(request.ref(), "ref"));
  v1::ModelVersion version;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, request.ref(), "ref"));
    version = row.version;
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return version;
}

Expected<v1::ListVersionsResponse> Registry::ListVersions(const v1::ListVersionsRequest& request) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_ASSIGN_OR_RETURN(int page_size, CheckedPageSize(request.page_size(), kDefaultPageSize));
  MF_ASSIGN_OR_RETURN(auto terms, ParseVersionFilter(request.filter()));
  std::string fingerprint = Sha256Hex(request.model() + "\n" + request.filter()).substr(0, 16);
  int64_t before_id = INT64_MAX;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(std::string last, DecodePageToken(request.page_token(), "versions", fingerprint));
    MF_ASSIGN_OR_RETURN(before_id, PageTokenId(last));
  }

  std::string sql = "SELECT " + std::string(kVersionColumns) +
                    " FROM model_versions v WHERE v.model_id = $1 AND v.id < $2";
  std::vector<db::Param> params;
  auto next = [&](db::Param p) {
    params.push_back(std::move(p));
    return "$" + std::to_string(params.size());
  };
  // $1 and $2 are filled in once the model id is known.
  params.resize(2);
  for (const FilterTerm& t : terms) {
    std::string op(FilterOpSql(t.op));
    switch (t.field) {
      case FilterTerm::Field::kMetric:
        sql += " AND (v.metrics->>" + next(t.key) + ")::float8 " + op + " " + next(t.number);
        break;
      case FilterTerm::Field::kLabel:
        sql += t.op == FilterOp::kEq ? " AND v.labels->>" + next(t.key) + " = " + next(t.text)
                                     : " AND v.labels->>" + next(t.key) + " IS DISTINCT FROM " + next(t.text);
        break;
      case FilterTerm::Field::kAlias:
        sql += std::string(t.op == FilterOp::kEq ? " AND EXISTS" : " AND NOT EXISTS") +
               " (SELECT 1 FROM aliases a WHERE a.version_id = v.id AND a.alias = " + next(t.text) + ")";
        break;
      case FilterTerm::Field::kFormat:
        sql += " AND v.format " + op + " " + next(t.text);
        break;
      case FilterTerm::Field::kVersion:
        sql += " AND v.version " + op + " " + next(t.text);
        break;
      case FilterTerm::Field::kState:
        sql += " AND v.state " + op + " " + next(t.text);
        break;
    }
  }
  sql += " ORDER BY v.id DESC LIMIT " + next(static_cast<int64_t>(page_size) + 1);

  v1::ListVersionsResponse response;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, request.model(), false));
    params[0] = model.id;
    params[1] = before_id;
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(sql, params));
    int64_t last_id = 0;
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      MF_ASSIGN_OR_RETURN(VersionRow row, VersionFromRow(rows[i]));
      *response.add_versions() = row.version;
      last_id = row.id;
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(EncodePageToken("versions", fingerprint, std::to_string(last_id)));
    }
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return response;
}

Expected<v1::ModelVersion> Registry::ArchiveVersion(const v1::ArchiveVersionRequest& request,
                                                    const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateSemVer(request.version(), "version"));
  v1::ModelVersion version;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    // The model row lock serialises this with SetAlias, so no alias can land on the version
    // between the check below and the update.
    MF_RETURN_IF_ERROR(StatusOf(LoadModelIdentity(tx, request.model(), true)));
    v1::VersionRef ref;
    ref.set_model(request.model());
    ref.set_version(request.version());
    MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, ref, ""));
    if (row.version.aliases_size() > 0) {
      return FailedPrecondition("alias '" + row.version.aliases(0) + "' points at version " + request.version() +
                                "; move or delete it before archiving");
    }
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec("UPDATE model_versions SET state = 'ARCHIVED', archived_at = coalesce(archived_at, now()) "
                               "WHERE id = $1",
                               {row.id})));
    MF_ASSIGN_OR_RETURN(VersionRow archived, LoadVersion(tx, ref, ""));
    version = archived.version;
    if (row.state == "ARCHIVED") return Status::Ok();  // archiving twice: one event
    return RecordModelEvent(tx, "version.archived", caller, request.model(),
                            events::Payload().Str("version", request.version()));
  });
  MF_RETURN_IF_ERROR(s);
  return version;
}

Expected<v1::PurgeVersionResponse> Registry::PurgeVersion(const v1::PurgeVersionRequest& request,
                                                          const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateSemVer(request.version(), "version"));
  v1::VersionRef ref;
  ref.set_model(request.model());
  ref.set_version(request.version());
  std::string digest;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, ref, ""));
    digest = row.digest;
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  v1::PurgeVersionResponse response;
  s = pool_.WriteWithAdvisoryLock(DigestLockKey(digest), [&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(VersionRow row, LoadVersion(tx, ref, ""));
    if (row.state != "ARCHIVED") {
      return FailedPrecondition("version " + request.version() + " is " + row.state + "; archive it before purging");
    }
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec("DELETE FROM model_versions WHERE id = $1", {row.id})));
    MF_ASSIGN_OR_RETURN(auto refs, tx.Exec("SELECT count(*) FROM model_versions WHERE digest = $1", {row.digest}));
    if (refs[0].Int(0) == 0) {
      // Deleting the blob inside the transaction: if it fails, the row stays.
      cache_.Forget(row.digest);
      MF_RETURN_IF_ERROR(store_.Delete(row.blob_key));
      response.set_blob_deleted(true);
    }
    return RecordModelEvent(tx, "version.purged", caller, request.model(),
                            events::Payload()
                                .Str("version", request.version())
                                .Str("digest", row.digest)
                                .Bool("blob_deleted", response.blob_deleted()));
  });
  MF_RETURN_IF_ERROR(s);
  return response;
}

// ------------------------------------------------------------------------------- aliases

Expected<v1::Alias> Registry::SetAlias(const v1::SetAliasRequest& request, const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateAliasName(request.alias(), "alias"));
  MF_RETURN_IF_ERROR(ValidateSemVer(request.version(), "version"));
  MF_RETURN_IF_ERROR(ValidateText(request.reason(), 1024, "reason"));
  if (!request.expected_current_version().empty() && request.expected_current_version() != "-") {
    MF_RETURN_IF_ERROR(ValidateSemVer(request.expected_current_version(), "expected_current_version"));
  }
  v1::Alias alias;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, request.model(), true));
    v1::VersionRef ref;
    ref.set_model(request.model());
    ref.set_version(request.version());
    MF_ASSIGN_OR_RETURN(VersionRow target, LoadVersion(tx, ref, ""));
    if (target.state != "READY") {
      return FailedPrecondition("version " + request.version() + " is " + target.state + "; only READY versions can be aliased");
    }
    MF_ASSIGN_OR_RETURN(auto current, tx.Exec(
        "SELECT v.version FROM aliases a JOIN model_versions v ON v.id = a.version_id "
        "WHERE a.model_id = $1 AND a.alias = $2 FOR UPDATE OF a",
        {model.id, request.alias()}));
    std::optional<std::string> from;
    if (!current.empty()) from = current[0].Str(0);
    if (!request.expected_current_version().empty()) {
      std::string expected = request.expected_current_version();
      bool matches = expected == "-" ? !from.has_value() : from == expected;
      if (!matches) {
        return Status(StatusCode::kAborted, "alias '" + request.alias() + "' points at " + from.value_or("nothing") +
                                                ", not " + expected);
      }
    }
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "INSERT INTO aliases (model_id, alias, version_id, updated_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (model_id, alias) DO UPDATE SET version_id = EXCLUDED.version_id, "
        "updated_by = EXCLUDED.updated_by, updated_at = now() "
        "RETURNING updated_by, " MF_EPOCH_MICROS("updated_at"),
        {model.id, request.alias(), target.id, caller.Actor()}));
    if (from != request.version()) {
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec("INSERT INTO alias_history (model_id, alias, from_version, to_version, actor, reason) "
                                 "VALUES ($1, $2, $3, $4, $5, $6)",
                                 {model.id, request.alias(), from ? db::Param(*from) : db::Param(nullptr),
                                  request.version(), caller.Actor(), request.reason()})));
    }
    alias.set_model(request.model());
    alias.set_alias(request.alias());
    alias.set_version(request.version());
    alias.set_updated_by(rows[0].Str(0));
    SetTimestamp(rows[0].OptInt(1), alias.mutable_update_time());
    if (from == request.version()) return Status::Ok();  // not moved: no event, as no history row
    return RecordModelEvent(tx, "alias.moved", caller, request.model(),
                            events::Payload()
                                .Str("alias", request.alias())
                                .Str("from_version", from.value_or(""))
                                .Str("to_version", request.version())
                                .Str("reason", request.reason()));
  });
  MF_RETURN_IF_ERROR(s);
  return alias;
}

Status Registry::DeleteAlias(const v1::DeleteAliasRequest& request, const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateAliasName(request.alias(), "alias"));
  MF_RETURN_IF_ERROR(ValidateText(request.reason(), 1024, "reason"));
  return pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, request.model(), true));
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "DELETE FROM aliases a USING model_versions v WHERE a.model_id = $1 AND a.alias = $2 "
        "AND v.id = a.version_id RETURNING v.version",
        {model.id, request.alias()}));
    if (rows.empty()) {
      return NotFound("alias '" + request.alias() + "' of model '" + request.model() + "' does not exist");
    }
    MF_RETURN_IF_ERROR(StatusOf(tx.Exec("INSERT INTO alias_history (model_id, alias, from_version, to_version, actor, reason) "
                   "VALUES ($1, $2, $3, NULL, $4, $5)",
                   {model.id, request.alias(), rows[0].Str(0), caller.Actor(), request.reason()})));
    return RecordModelEvent(tx, "alias.deleted", caller, request.model(),
                            events::Payload()
                                .Str("alias", request.alias())
                                .Str("from_version", rows[0].Str(0))
                                .Str("reason", request.reason()));
  });
}

Expected<v1::ModelVersion> Registry::ResolveAlias(const v1::ResolveAliasRequest& request) {
  v1::GetVersionRequest get;
  get.mutable_ref()->set_model(request.model());
  get.mutable_ref()->set_alias(request.alias());
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  MF_RETURN_IF_ERROR(ValidateAliasName(request.alias(), "alias"));
  return GetVersion(get);
}

Expected<v1::ListAliasHistoryResponse> Registry::ListAliasHistory(const v1::ListAliasHistoryRequest& request) {
  MF_RETURN_IF_ERROR(ValidateModelName(request.model(), "model"));
  if (!request.alias().empty()) MF_RETURN_IF_ERROR(ValidateAliasName(request.alias(), "alias"));
  MF_ASSIGN_OR_RETURN(int page_size, CheckedPageSize(request.page_size(), kDefaultPageSize));
  std::string fingerprint = Sha256Hex(request.model() + "\n" + request.alias()).substr(0, 16);
  int64_t before_id = INT64_MAX;
  if (!request.page_token().empty()) {
    MF_ASSIGN_OR_RETURN(std::string last, DecodePageToken(request.page_token(), "alias-history", fingerprint));
    MF_ASSIGN_OR_RETURN(before_id, PageTokenId(last));
  }
  v1::ListAliasHistoryResponse response;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(ModelIdentity model, LoadModelIdentity(tx, request.model(), false));
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, alias, from_version, to_version, actor, reason, " MF_EPOCH_MICROS("at") " FROM alias_history "
        "WHERE model_id = $1 AND ($2 = '' OR alias = $2) AND id < $3 ORDER BY id DESC LIMIT $4",
        {model.id, request.alias(), before_id, static_cast<int64_t>(page_size) + 1}));
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page_size; ++i) {
      auto* c = response.add_changes();
      c->set_model(request.model());
      c->set_alias(rows[i].Str(1));
      c->set_from_version(rows[i].Str(2));
      c->set_to_version(rows[i].Str(3));
      c->set_actor(rows[i].Str(4));
      c->set_reason(rows[i].Str(5));
      SetTimestamp(rows[i].OptInt(6), c->mutable_time());
    }
    if (static_cast<int>(rows.size()) > page_size) {
      response.set_next_page_token(
          EncodePageToken("alias-history", fingerprint, rows[static_cast<size_t>(page_size) - 1].Str(0)));
    }
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return response;
}

// ------------------------------------------------------------------------------- download

Status Registry::Download(const v1::DownloadRequest& request, const DownloadWriter& writer) {
  MF_RETURN_IF_ERROR(ValidateVersionRef(request.ref(), "ref"));
  VersionRow row;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(row, LoadVersion(tx, request.ref(), "ref"));
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  if (row.state != "READY") {
    return FailedPrecondition("version " + row.version.manifest().version() + " is archived");
  }
  if (request.offset() > row.size) {
    return Status(StatusCode::kOutOfRange, "offset " + std::to_string(request.offset()) + " is past the end (" +
                                               std::to_string(row.size) + " bytes)")
        .WithField("offset");
  }
  uint64_t end = row.size;
  if (request.length() > 0) {
    if (request.length() > row.size - request.offset()) {
      return Status(StatusCode::kOutOfRange, "offset + length is past the end (" + std::to_string(row.size) + " bytes)")
          .WithField("length");
    }
    end = request.offset() + request.length();
  }
  MF_ASSIGN_OR_RETURN(auto artifact, cache_.Get(row.digest, row.size, row.blob_key));

  v1::DownloadChunk chunk;
  *chunk.mutable_manifest() = row.version.manifest();
  chunk.set_offset(request.offset());
  if (request.offset() == end) return writer(chunk);  // nothing to send but the manifest
  // The verified bytes go from the cache file straight into the message's own buffer, which is
  // reused from one message to the next (no per-message allocation, no intermediate copy).
  std::string& data = *chunk.mutable_data();
  uint64_t pos = request.offset();
  while (pos < end) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(options_.download_chunk_bytes, end - pos));
    data.resize(want);
    size_t filled = 0;
    while (filled < want) {
      ssize_t n = ::pread(artifact->fd(), data.data() + filled, want - filled, static_cast<off_t>(pos + filled));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return Internal("reading cached artifact: " + std::string(n < 0 ? std::strerror(errno) : "short file"));
      }
      filled += static_cast<size_t>(n);
    }
    chunk.set_offset(pos);
    MF_RETURN_IF_ERROR(writer(chunk));
    if (pos == request.offset()) chunk.clear_manifest();
    pos += want;
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------------- publisher keys

Expected<v1::PublisherKey> Registry::AddPublisherKey(const v1::AddPublisherKeyRequest& request,
                                                     const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidatePublisherKeyRequest(request));
  v1::PublisherKey key;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    auto rows = tx.Exec("INSERT INTO publisher_keys (key_id, public_key, added_by) VALUES ($1, $2::bytea, $3) "
                        "RETURNING " + std::string(kPublisherKeyColumns),
                        {request.key_id(), db::Bytes{request.public_key()}, caller.Actor()});
    if (!rows && rows.error().code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("publisher key '" + request.key_id() + "' already exists (key ids are never reused)");
    }
    if (!rows) return rows.error();
    key = PublisherKeyFromRow((*rows)[0]);
    return StatusOf(events::AppendEvent(tx, {"publisher_key.added", caller.Actor(), "publisher_key", request.key_id(),
                                             events::Payload()}));
  });
  MF_RETURN_IF_ERROR(s);
  return key;
}

Expected<v1::ListPublisherKeysResponse> Registry::ListPublisherKeys() {
  v1::ListPublisherKeysResponse response;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " + std::string(kPublisherKeyColumns) +
                                           " FROM publisher_keys ORDER BY key_id"));
    for (const auto& row : rows) *response.add_keys() = PublisherKeyFromRow(row);
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return response;
}

Expected<v1::PublisherKey> Registry::RevokePublisherKey(const v1::RevokePublisherKeyRequest& request,
                                                        const auth::Principal& caller) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.key_id(), "key_id"));
  v1::PublisherKey key;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "UPDATE publisher_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 RETURNING " +
            std::string(kPublisherKeyColumns) + ", revoked_at = now()",
        {request.key_id()}));
    if (rows.empty()) return NotFound("publisher key '" + request.key_id() + "' does not exist");
    key = PublisherKeyFromRow(rows[0]);
    if (!rows[0].Bool(5)) return Status::Ok();  // revoked before: one event
    return StatusOf(events::AppendEvent(tx, {"publisher_key.revoked", caller.Actor(), "publisher_key",
                                             request.key_id(), events::Payload()}));
  });
  MF_RETURN_IF_ERROR(s);
  return key;
}

}  // namespace modelfleet::registry
