// The S3 BlobWriter: uploads one object, holding at most one part in memory. An object that fits
// in one part is sent with a single PUT at Commit; a larger one becomes a multipart upload
// (CreateMultipartUpload when the first part is full and more bytes follow, UploadPart for each
// full part, CompleteMultipartUpload at Commit). Abort, a failed Commit and the destructor of an
// uncommitted writer abort a pending multipart upload, best effort.
//
// Contract: BlobWriter's (blob_store.h) plus what S3BlobStore::Create documents
// (s3_blob_store.h): errors name the operation and the object; after a failed Append or Commit
// every later Append/Commit returns that same error; Commit after Commit or Abort is
// FAILED_PRECONDITION; more than kMaxPartCount parts is RESOURCE_EXHAUSTED.
//
// Thread safety: a writer is used by one thread at a time. It shares the HttpClient, so it may
// outlive the store that created it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "blob/blob_store.h"
#include "blob/s3/s3_http_client.h"

namespace modelfleet::blob::s3 {

inline constexpr uint64_t kMinPartSize = 5ull * 1024 * 1024;         // S3's minimum (but the last)
inline constexpr uint64_t kMaxPartSize = 5ull * 1024 * 1024 * 1024;  // S3's maximum part size
inline constexpr uint64_t kMaxPartCount = 10000;                     // S3's maximum part count

// The object a writer uploads to.
struct ObjectTarget {
  std::string path;   // request path, "/<bucket>/<key_prefix><key>" (HttpRequest::path)
  std::string where;  // for messages: "object '<key_prefix><key>' in bucket '<bucket>'"
};

// Never talks to the store: the first request happens when a part fills up or at Commit.
// REQUIRES: kMinPartSize <= part_size <= kMaxPartSize.
std::unique_ptr<BlobWriter> NewS3ObjectWriter(std::shared_ptr<HttpClient> http, ObjectTarget target,
                                              uint64_t part_size);

}  // namespace modelfleet::blob::s3
