#include "blob/s3/s3_blob_store.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "blob/s3/s3_http_client.h"
#include "blob/s3/s3_multipart.h"
#include "blob/s3/s3_xml.h"

namespace modelfleet::blob {

namespace {

using s3::HttpRequest;
using s3::Is2xx;
using s3::StatusFromS3Error;
using s3::XmlFirstElement;

std::optional<uint64_t> ParseUint64(std::string_view s) {
  uint64_t value = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, value);
  if (ec != std::errc() || ptr != end || s.empty()) return std::nullopt;
  return value;
}

Status ValidateOptions(const S3Options& options) {
  const std::string& bucket = options.bucket;
  if (bucket.size() < 3 || bucket.size() > 63) {
    return InvalidArgument("bucket", "must be 3 to 63 characters, got '" + bucket + "'");
  }
  for (char c : bucket) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
      return InvalidArgument("bucket", "may only contain a-z, 0-9, '-' and '.', got '" +
                                           bucket + "'");
    }
  }
  if (options.region.empty()) return InvalidArgument("region", "must not be empty");
  if (options.access_key.empty()) return InvalidArgument("access_key", "must not be empty");
  if (options.secret_key.empty()) return InvalidArgument("secret_key", "must not be empty");
  if (options.part_size < s3::kMinPartSize || options.part_size > s3::kMaxPartSize) {
    return InvalidArgument("part_size", "must be between 5 MiB and 5 GiB, got " +
                                            std::to_string(options.part_size));
  }
  if (options.list_page_size < 1 || options.list_page_size > 1000) {
    return InvalidArgument("list_page_size", "must be between 1 and 1000");
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return InvalidArgument("request_timeout", "timeouts must be positive");
  }
  if (options.key_prefix.starts_with('/')) {
    return InvalidArgument("key_prefix", "must not start with '/'");
  }
  for (char c : options.key_prefix) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '_' || c == '/')) {
      return InvalidArgument("key_prefix", "may only contain A-Z a-z 0-9 . _ - /, got '" +
                                               options.key_prefix + "'");
    }
  }
  return Status::Ok();
}

// Path-style addressing: "/<bucket>" and "/<bucket>/<key_prefix><key>".
std::string BucketPath(const S3Options& o) { return "/" + o.bucket; }
std::string ObjectName(const S3Options& o, const std::string& key) { return o.key_prefix + key; }
std::string ObjectPath(const S3Options& o, const std::string& key) {
  return BucketPath(o) + "/" + ObjectName(o, key);
}
// "object 'k' in bucket 'b'" — used in every message about a key.
std::string Where(const S3Options& o, const std::string& key) {
  return "object '" + ObjectName(o, key) + "' in bucket '" + o.bucket + "'";
}
std::string BucketWhere(const S3Options& o) {
  return "bucket '" + o.bucket + "' at " + o.endpoint;
}

}  // namespace

S3BlobStore::S3BlobStore(S3Options options, std::shared_ptr<s3::HttpClient> http)
    : options_(std::move(options)), http_(std::move(http)) {}
S3BlobStore::~S3BlobStore() = default;

Expected<std::unique_ptr<BlobStore>> S3BlobStore::Open(const S3Options& options) {
  MF_RETURN_IF_ERROR(ValidateOptions(options));
  MF_ASSIGN_OR_RETURN(std::shared_ptr<s3::HttpClient> http,
                      s3::HttpClient::Create({
                          .endpoint = options.endpoint,
                          .credentials = {options.access_key, options.secret_key, options.region,
                                          "s3"},
                          .connect_timeout = options.connect_timeout,
                          .request_timeout = options.request_timeout,
                      }));

  HttpRequest head;
  head.method = "HEAD";
  head.path = BucketPath(options);
  const std::string head_op = "HEAD " + BucketWhere(options);
  MF_ASSIGN_OR_RETURN(auto head_response, http->Perform(head, head_op));

  if (head_response.http_status == 404) {
    if (!options.create_bucket) {
      return Fail(FailedPrecondition("bucket '" + options.bucket + "' does not exist at " +
                                     options.endpoint + " (and create_bucket is off)"));
    }
    HttpRequest create;
    create.method = "PUT";
    create.path = BucketPath(options);
    std::string body;
    if (options.region != "us-east-1") {
      body = "<CreateBucketConfiguration><LocationConstraint>" + s3::XmlEscape(options.region) +
             "</LocationConstraint></CreateBucketConfiguration>";
      create.headers.emplace_back("content-type", "application/xml");
    }
    create.body = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()),
                                           body.size());
    const std::string create_op = "CreateBucket " + BucketWhere(options);
    MF_ASSIGN_OR_RETURN(auto created, http->Perform(create, create_op));
    const bool raced = created.http_status == 409 &&
                       XmlFirstElement(created.body, "Code") == "BucketAlreadyOwnedByYou";
    if (!Is2xx(created.http_status) && !raced) {
      return Fail(StatusFromS3Error(create_op, created.http_status, created.body));
    }
  } else if (!Is2xx(head_response.http_status)) {
    // HEAD replies have no body, so the S3 error code is unknown: ask again with a GET, whose
    // error document names it (InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied, ...).
    HttpRequest probe;
    probe.method = "GET";
    probe.path = BucketPath(options);
    probe.query = {{"list-type", "2"}, {"max-keys", "1"}};
    const std::string probe_op = "ListObjectsV2 " + BucketWhere(options);
    MF_ASSIGN_OR_RETURN(auto probed, http->Perform(probe, probe_op));
    if (!Is2xx(probed.http_status)) {
      return Fail(StatusFromS3Error(probe_op, probed.http_status, probed.body));
    }
    return Fail(StatusFromS3Error(head_op, head_response.http_status, ""));
  }
  return std::unique_ptr<BlobStore>(new S3BlobStore(options, std::move(http)));
}

std::string S3BlobStore::Describe() const {
  const S3Options& o = options_;
  return "s3://" + o.bucket + (o.key_prefix.empty() ? "" : "/" + o.key_prefix) + "@" +
         http_->authority();
}

Expected<std::unique_ptr<BlobWriter>> S3BlobStore::Create(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  return s3::NewS3ObjectWriter(http_, {ObjectPath(options_, key), Where(options_, key)},
                               options_.part_size);
}

Expected<BlobInfo> S3BlobStore::Stat(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  HttpRequest request;
  request.method = "HEAD";
  request.path = ObjectPath(options_, key);
  const std::string op = "HEAD " + Where(options_, key);
  MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
  if (response.http_status == 404) {
    return Fail(NotFound("blob '" + key + "' not found (" + op + ": HTTP 404)"));
  }
  if (!Is2xx(response.http_status)) {
    return Fail(StatusFromS3Error(op, response.http_status, response.body));
  }
  auto length = response.headers.find("content-length");
  std::optional<uint64_t> size;
  if (length != response.headers.end()) size = ParseUint64(length->second);
  if (!size) return Fail(Internal(op + ": reply has no valid Content-Length"));
  return BlobInfo{.size = *size};
}

Status S3BlobStore::Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
                         const BlobSink& sink) {
  if (offset == 0 && !length) return ReadWholeObject(key, sink);
  MF_ASSIGN_OR_RETURN(BlobInfo info, Stat(key));  // validates the key too
  if (offset > info.size) {
    return Status(StatusCode::kOutOfRange,
                  "read of blob '" + key + "' at offset " + std::to_string(offset) +
                      " is past its end (size " + std::to_string(info.size) + ")");
  }
  const uint64_t available = info.size - offset;
  const uint64_t wanted = length ? std::min(*length, available) : available;
  if (wanted == 0) return Status::Ok();

  const uint64_t last = offset + wanted - 1;
  const bool whole_object = offset == 0 && wanted == info.size;
  uint64_t delivered = 0;
  const std::string op = "GET " + Where(options_, key) + " bytes " + std::to_string(offset) +
                         "-" + std::to_string(last);
  BlobSink counting_sink = [&](std::span<const uint8_t> piece) -> Status {
    if (piece.size() > wanted - delivered) {
      return Internal(op + ": the store sent more bytes than requested");
    }
    delivered += piece.size();
    return sink(piece);
  };
  HttpRequest request;
  request.method = "GET";
  request.path = ObjectPath(options_, key);
  request.headers.emplace_back("range",
                               "bytes=" + std::to_string(offset) + "-" + std::to_string(last));
  request.sink = &counting_sink;
  // 206 is the ranged reply; a plain 200 (range ignored) is only the right bytes for the whole
  // object.
  request.stream_if = [whole_object](long status) {
    return status == 206 || (status == 200 && whole_object);
  };
  MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
  const long status = response.http_status;
  if (!(status == 206 || (status == 200 && whole_object))) {
    if (status == 404 && XmlFirstElement(response.body, "Code") != "NoSuchBucket") {
      return NotFound("blob '" + key + "' not found (" + op + ": HTTP 404, deleted meanwhile)");
    }
    if (Is2xx(status)) {
      return Internal(op + ": unexpected HTTP " + std::to_string(status) + " to a ranged GET");
    }
    return StatusFromS3Error(op, status, response.body);
  }
  if (delivered != wanted) {
    return Unavailable(op + ": short read, got " + std::to_string(delivered) + " of " +
                       std::to_string(wanted) + " bytes (object replaced meanwhile?)");
  }
  return Status::Ok();
}

Status S3BlobStore::ReadWholeObject(const std::string& key, const BlobSink& sink) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  const std::string op = "GET " + Where(options_, key);
  uint64_t delivered = 0;
  BlobSink counting_sink = [&](std::span<const uint8_t> piece) -> Status {
    delivered += piece.size();
    return sink(piece);
  };
  HttpRequest request;
  request.method = "GET";
  request.path = ObjectPath(options_, key);
  request.sink = &counting_sink;
  request.stream_if = [](long status) { return status == 200; };
  MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
  const long status = response.http_status;
  if (status != 200) {
    if (status == 404 && XmlFirstElement(response.body, "Code") != "NoSuchBucket") {
      return NotFound("blob '" + key + "' not found (" + op + ": HTTP 404)");
    }
    if (Is2xx(status)) return Internal(op + ": unexpected HTTP " + std::to_string(status));
    return StatusFromS3Error(op, status, response.body);
  }
  // curl fails a body shorter than its Content-Length; this also catches a reply without one.
  auto length = response.headers.find("content-length");
  std::optional<uint64_t> size;
  if (length != response.headers.end()) size = ParseUint64(length->second);
  if (!size) return Internal(op + ": reply has no valid Content-Length");
  if (delivered != *size) {
    return Unavailable(op + ": short read, got " + std::to_string(delivered) + " of " +
                       std::to_string(*size) + " bytes");
  }
  return Status::Ok();
}

Status S3BlobStore::Delete(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  HttpRequest request;
  request.method = "DELETE";
  request.path = ObjectPath(options_, key);
  const std::string op = "DELETE " + Where(options_, key);
  MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
  if (Is2xx(response.http_status)) return Status::Ok();
  if (response.http_status == 404 &&
      XmlFirstElement(response.body, "Code") != "NoSuchBucket") {
    return Status::Ok();  // already gone
  }
  return StatusFromS3Error(op, response.http_status, response.body);
}

Expected<std::vector<std::string>> S3BlobStore::List(const std::string& prefix) {
  const std::string& key_prefix = options_.key_prefix;
  std::vector<std::string> keys;
  std::optional<std::string> continuation;
  for (int page = 1;; ++page) {
    HttpRequest request;
    request.method = "GET";
    request.path = BucketPath(options_);
    request.query = {{"list-type", "2"},
                     {"prefix", key_prefix + prefix},
                     {"max-keys", std::to_string(options_.list_page_size)}};
    if (continuation) request.query.emplace_back("continuation-token", *continuation);
    const std::string op = "ListObjectsV2 (page " + std::to_string(page) + ") of bucket '" +
                           options_.bucket + "' prefix '" + key_prefix + prefix + "'";
    MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return Fail(StatusFromS3Error(op, response.http_status, response.body));
    }
    for (std::string_view contents : s3::XmlRawElements(response.body, "Contents")) {
      std::optional<std::string> name = XmlFirstElement(contents, "Key");
      if (!name) return Fail(Internal(op + ": <Contents> without <Key> in the reply"));
      if (!name->starts_with(key_prefix)) continue;  // cannot happen with a correct server
      keys.push_back(name->substr(key_prefix.size()));
    }
    if (XmlFirstElement(response.body, "IsTruncated") != "true") break;
    std::optional<std::string> next = XmlFirstElement(response.body, "NextContinuationToken");
    if (!next || next->empty() || next == continuation) {
      return Fail(Internal(op + ": truncated reply without a new NextContinuationToken"));
    }
    continuation = std::move(next);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace modelfleet::blob
