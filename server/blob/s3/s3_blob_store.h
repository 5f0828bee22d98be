// S3BlobStore: the BlobStore backend for S3-compatible object storage (MinIO in production,
// s3rver in tests), spoken over libcurl with AWS Signature Version 4 and path-style addressing
// (<endpoint>/<bucket>/<key_prefix><key>).
//
// Error contract (in addition to the BlobStore one). Every error message names the operation,
// the bucket and key, and the HTTP status with the S3 error code, or curl's error:
//   UNAVAILABLE         endpoint unreachable, timeout, connection reset, HTTP 5xx / SlowDown.
//   UNAUTHENTICATED     the store rejected the credentials (InvalidAccessKeyId,
//                       SignatureDoesNotMatch, RequestTimeTooSkewed, ...).
//   PERMISSION_DENIED   the credentials are valid but not allowed (AccessDenied).
//   FAILED_PRECONDITION the bucket does not exist (and create_bucket is false, or it was deleted
//                       after Open).
//   INVALID_ARGUMENT    bad key (ValidateBlobKey) or bad S3Options (field names the option).
//   INTERNAL            the store rejected a request this client built (a bug) or sent a reply
//                       it cannot parse.
//
// Thread safety: an S3BlobStore may be used from many threads at once (each request uses its own
// curl handle, taken from a small pool). A writer is used by one thread at a time; writers and
// the store share their HTTP client, so a writer may even outlive the store that created it.
//
// Inside this folder, by job: s3_http_client.h (signed requests over libcurl), s3_xml.h (reading
// S3's XML replies, error replies -> Status), s3_multipart.h (the writer), sigv4.h (signing).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blob/blob_store.h"

namespace modelfleet::blob {

namespace s3 {
class HttpClient;  // s3_http_client.h
}  // namespace s3

struct S3Options {
  std::string endpoint;  // "http://127.0.0.1:9000" (scheme, host, optional port; no path)
  std::string region = "us-east-1";
  std::string bucket;
  std::string access_key;
  std::string secret_key;
  // Prepended verbatim to every key ("modelfleet/" puts "sha256/ab.." at "modelfleet/sha256/ab..");
  // stripped again from the keys List returns. Optional.
  std::string key_prefix;
  // Upload buffer: a writer holds at most this many bytes in memory. Objects smaller than one part
  // are sent with one PUT, larger ones with a multipart upload of parts this size. At least 5 MiB
  // (S3's minimum part size), at most 5 GiB.
  uint64_t part_size = 8 * 1024 * 1024;
  // Open creates the bucket when it is missing; if false, a missing bucket is FAILED_PRECONDITION.
  bool create_bucket = true;
  std::chrono::milliseconds connect_timeout{3000};
  // Upper bound for one request. For a streamed Read it bounds a stall instead: the read fails
  // when no byte arrived for this long (a large object may take longer in total).
  std::chrono::milliseconds request_timeout{60000};
  // Keys asked for per ListObjectsV2 page (1..1000). Smaller values only exist for tests.
  uint32_t list_page_size = 1000;
};

class S3BlobStore : public BlobStore {
 public:
  // Validates `options`, then checks the bucket (HEAD bucket) and creates it when missing and
  // options.create_bucket is set. Errors: INVALID_ARGUMENT (options), UNAVAILABLE (endpoint
  // unreachable: names the endpoint and curl's error), UNAUTHENTICATED / PERMISSION_DENIED
  // (credentials; names the S3 error code), FAILED_PRECONDITION ("bucket 'x' does not exist").
  static Expected<std::unique_ptr<BlobStore>> Open(const S3Options& options);

  ~S3BlobStore() override;
  S3BlobStore(const S3BlobStore&) = delete;
  S3BlobStore& operator=(const S3BlobStore&) = delete;

  // "s3://<bucket>@<host:port>", or "s3://<bucket>/<key_prefix>@<host:port>" with a prefix.
  std::string Describe() const override;

  // Never talks to the store: the first request happens when a part fills up or at Commit.
  // Append errors are those of UploadPart/CreateMultipartUpload; after a failed Append or Commit,
  // further Append/Commit calls return the same error. Commit after Commit or Abort is
  // FAILED_PRECONDITION. Abort (and the destructor of an uncommitted writer) aborts a pending
  // multipart upload (best effort: an S3 lifecycle rule should clean up what a crash leaves).
  Expected<std::unique_ptr<BlobWriter>> Create(const std::string& key) override;

  // The whole object (offset 0, no length) is one plain GET: no HEAD, a single request to the
  // store. Any other range does a HEAD first (for NOT_FOUND / OUT_OF_RANGE and the exact byte
  // range), then one ranged GET. Either way the bytes go to `sink` as curl receives them, in
  // pieces of at most 512 KiB (curl's receive buffer). offset == size and length == 0 are OK with no bytes
  // delivered.
  Status Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
              const BlobSink& sink) override;

  Expected<BlobInfo> Stat(const std::string& key) override;
  Status Delete(const std::string& key) override;
  // ListObjectsV2 over all pages; keys sorted, key_prefix stripped. `prefix` is a plain string
  // prefix of the key ("sha256/" or "sha256/ab").
  Expected<std::vector<std::string>> List(const std::string& prefix) override;

 private:
  S3BlobStore(S3Options options, std::shared_ptr<s3::HttpClient> http);
  Status ReadWholeObject(const std::string& key, const BlobSink& sink);

  const S3Options options_;
  // Shared with the writers, which may outlive the store.
  std::shared_ptr<s3::HttpClient> http_;
};

}  // namespace modelfleet::blob
