// BlobStore: where artifact bytes live. Two backends implement it (a local directory and
// S3-compatible object storage) and both pass the same conformance suite
// (tests/integration/blob_store_conformance_test.cc).
//
// Keys are relative, '/'-separated, made of [A-Za-z0-9._-] segments (the registry uses
// "sha256/<64 hex>"). Backends reject other keys with INVALID_ARGUMENT.
//
// Thread safety: a BlobStore is safe to use from many threads at once. A BlobWriter is used
// by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::blob {

// An upload in progress. Nothing is visible under the key until Commit() returns OK; a writer
// destroyed without Commit() aborts and leaves nothing behind (no temp file, no multipart
// upload). Memory use is bounded by the backend's part size, never by the object size.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;

  // Appends bytes. Errors: UNAVAILABLE (store unreachable), INTERNAL (disk full, ...).
  virtual Status Append(std::span<const uint8_t> bytes) = 0;

  // Makes the object visible under its key, atomically replacing any object there.
  // Errors as Append. After Commit (successful or not) the writer must not be used again.
  virtual Status Commit() = 0;

  // Discards everything written. Idempotent; never fails (best effort on remote stores).
  virtual void Abort() = 0;
};

struct BlobInfo {
  uint64_t size = 0;
};

// Receives consecutive pieces of an object. Returning a non-OK status stops the read and
// Read() returns that status.
using BlobSink = std::function<Status(std::span<const uint8_t>)>;

class BlobStore {
 public:
  virtual ~BlobStore() = default;

  // Short human-readable description for logs ("local:/var/lib/x", "s3://bucket@host").
  virtual std::string Describe() const = 0;

  // Starts an upload to `key`. Errors: INVALID_ARGUMENT (bad key), UNAVAILABLE.
  virtual Expected<std::unique_ptr<BlobWriter>> Create(const std::string& key) = 0;

  // Streams bytes [offset, offset+length) of `key` to `sink` in pieces of bounded size;
  // length = nullopt means to the end. Errors: NOT_FOUND (no such key), OUT_OF_RANGE
  // (offset > size), UNAVAILABLE, or whatever `sink` returned.
  virtual Status Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
                      const BlobSink& sink) = 0;

  // Errors: NOT_FOUND, UNAVAILABLE.
  virtual Expected<BlobInfo> Stat(const std::string& key) = 0;

  // Removes `key`. Deleting a missing key is OK (idempotent). Errors: UNAVAILABLE.
  virtual Status Delete(const std::string& key) = 0;

  // Keys under `prefix` (for audits and tests: "is anything orphaned?"). Errors: UNAVAILABLE.
  virtual Expected<std::vector<std::string>> List(const std::string& prefix) = 0;
};

// Validates a key against the rules above. Shared by all backends.
Status ValidateBlobKey(const std::string& key);

}  // namespace modelfleet::blob
