// Registry: the transport-free core of the model registry. The gRPC handlers validate
// authentication, call one method here and convert the result; tests call it directly.
//
// Every method validates its input and returns INVALID_ARGUMENT naming the field; the other
// errors each method may return are listed on it. UNAVAILABLE means the database or the blob
// store could not be reached; nothing was changed.
//
// Consistency between PostgreSQL and the blob store: blobs are content-addressed
// ("sha256/<digest>") and may be shared by versions with identical bytes. Every step that
// creates or deletes a blob holds the PostgreSQL advisory lock of its digest, so a push and a
// purge of the same bytes never race. A push inserts its row, commits the blob, then commits
// the row: a failure at any step leaves neither.
//
// Every change writes its event (server/events/event_types.h: model.*, version.*, alias.*,
// publisher_key.*) in the change's own transaction; a call that fails or changes nothing (an
// idempotent repeat) writes none.
//
// Thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "auth/principal.h"
#include "blob/blob_store.h"
#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/registry.pb.h"
#include "registry/artifact_cache.h"

namespace modelfleet::registry {

struct RegistryOptions {
  // Reject pushes whose manifest carries no signature.
  bool require_signatures = false;
  // Largest accepted push chunk.
  size_t max_chunk_bytes = 1 << 20;
  // Size of DownloadChunk.data. 1 MiB: large enough that per-message costs (a sync write's
  // round trip through gRPC, framing) vanish, well under a client's default 4 MiB limit.
  size_t download_chunk_bytes = 1 << 20;
};

// Supplies the bytes of a push after the manifest: the next chunk, std::nullopt at the end
// of the stream, or an error (e.g. the client sent a second manifest).
using ChunkReader = std::function<Expected<std::optional<std::string>>()>;

// Receives download messages in order; a non-OK return (client gone) stops the download.
using DownloadWriter = std::function<Status(const v1::DownloadChunk&)>;

class Registry {
 public:
  Registry(db::Pool& pool, blob::BlobStore& store, ArtifactCache& cache, RegistryOptions options);

  // ALREADY_EXISTS if the name is taken.
  Expected<v1::Model> CreateModel(const v1::CreateModelRequest& request, const auth::Principal& caller);
  // NOT_FOUND.
  Expected<v1::Model> GetModel(const v1::GetModelRequest& request);
  // Ordered by name; keyset pagination.
  Expected<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request);
  // NOT_FOUND. Archiving twice is OK. Archived models accept no new versions.
  Expected<v1::Model> ArchiveModel(const v1::ArchiveModelRequest& request, const auth::Principal& caller);

  // Streams the bytes from `next_chunk` to the blob store, hashing as they pass, and records
  // the version READY only if digest and size match the manifest. Never holds the artifact in
  // memory. If model+version exists with the same digest and size, returns it without reading
  // the bytes (idempotent retry). Errors: NOT_FOUND (model), FAILED_PRECONDITION (model
  // archived; unsigned manifest while signatures are required), ALREADY_EXISTS (version exists
  // with other bytes), PERMISSION_DENIED (signature by an unknown or revoked key, or does not
  // verify), INVALID_ARGUMENT (manifest fields, chunk sizes, bytes not matching the digest or
  // size), UNAVAILABLE.
  Expected<v1::ModelVersion> PushVersion(const v1::Manifest& manifest, const ChunkReader& next_chunk,
                                         const auth::Principal& caller);

  // NOT_FOUND (model, version or alias).
  Expected<v1::ModelVersion> GetVersion(const v1::GetVersionRequest& request);
  // Newest first; filter syntax in version_filter.h; keyset pagination whose token is bound
  // to the filter (INVALID_ARGUMENT page_token if reused with another filter).
  Expected<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);
  // READY -> ARCHIVED. FAILED_PRECONDITION while an alias points at it. Idempotent.
  Expected<v1::ModelVersion> ArchiveVersion(const v1::ArchiveVersionRequest& request,
                                            const auth::Principal& caller);
  // Deletes an ARCHIVED version and its blob unless another version shares the bytes.
  // FAILED_PRECONDITION if the version is not ARCHIVED.
  Expected<v1::PurgeVersionResponse> PurgeVersion(const v1::PurgeVersionRequest& request,
                                                  const auth::Principal& caller);

  // Creates or moves an alias to a READY version and records the move in the alias history.
  // NOT_FOUND, FAILED_PRECONDITION (version archived), ABORTED (expected_current_version
  // does not match).
  Expected<v1::Alias> SetAlias(const v1::SetAliasRequest& request, const auth::Principal& caller);
  // NOT_FOUND if the alias does not exist. Recorded in the history.
  Status DeleteAlias(const v1::DeleteAliasRequest& request, const auth::Principal& caller);
  // NOT_FOUND.
  Expected<v1::ModelVersion> ResolveAlias(const v1::ResolveAliasRequest& request);
  Expected<v1::ListAliasHistoryResponse> ListAliasHistory(const v1::ListAliasHistoryRequest& request);

  // Streams [offset, offset+length) of a READY version: first message carries the manifest.
  // No byte is sent before the whole artifact has been verified against its digest.
  // Errors: NOT_FOUND, FAILED_PRECONDITION (archived), OUT_OF_RANGE (offset/length past the
  // end), DATA_LOSS (stored bytes do not match), UNAVAILABLE, or what `writer` returned.
  Status Download(const v1::DownloadRequest& request, const DownloadWriter& writer);

  // Trusted publisher keys (for AdminService).
  Expected<v1::PublisherKey> AddPublisherKey(const v1::AddPublisherKeyRequest& request,
                                             const auth::Principal& caller);
  Expected<v1::ListPublisherKeysResponse> ListPublisherKeys();
  Expected<v1::PublisherKey> RevokePublisherKey(const v1::RevokePublisherKeyRequest& request,
                                                const auth::Principal& caller);

 private:
  Status VerifySignature(const v1::Manifest& manifest);
  Status DeleteBlobIfUnreferenced(const std::string& digest, const std::string& blob_key);

  db::Pool& pool_;
  blob::BlobStore& store_;
  ArtifactCache& cache_;
  const RegistryOptions options_;
};

}  // namespace modelfleet::registry
