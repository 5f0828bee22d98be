#include "blob/s3/s3_blob_store.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "blob/s3/sigv4.h"

namespace modelfleet::blob {

namespace {

using s3::HeaderList;
using s3::QueryParams;

constexpr uint64_t kMinPartSize = 5ull * 1024 * 1024;         // S3's minimum (except last part)
constexpr uint64_t kMaxPartSize = 5ull * 1024 * 1024 * 1024;  // S3's maximum part size
constexpr uint64_t kMaxPartCount = 10000;                     // S3's maximum number of parts
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;   // error documents are small; cap what we keep
constexpr size_t kMaxPooledHandles = 8;
constexpr size_t kMinBufferGrowth = 64 * 1024;

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<uint64_t> ParseUint64(std::string_view s) {
  uint64_t value = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, value);
  if (ec != std::errc() || ptr != end || s.empty()) return std::nullopt;
  return value;
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// Finds the elements <tag ...>inner</tag> (or <tag/>) and returns their raw inner text.
std::vector<std::string_view> RawElements(std::string_view xml, std::string_view tag,
                                          size_t max_count) {
  std::vector<std::string_view> found;
  const std::string open = "<" + std::string(tag);
  const std::string close = "</" + std::string(tag) + ">";
  size_t pos = 0;
  while (found.size() < max_count) {
    pos = xml.find(open, pos);
    if (pos == std::string_view::npos) break;
    size_t after = pos + open.size();
    if (after >= xml.size()) break;
    const char next = xml[after];
    if (next != '>' && next != '/' && next != ' ' && next != '\t' && next != '\r' &&
        next != '\n') {
      pos = after;  // a longer tag name sharing the prefix (<KeyCount> for <Key>)
      continue;
    }
    const size_t tag_end = xml.find('>', after);
    if (tag_end == std::string_view::npos) break;
    if (xml[tag_end - 1] == '/') {  // <tag/>
      found.emplace_back();
      pos = tag_end + 1;
      continue;
    }
    const size_t close_pos = xml.find(close, tag_end + 1);
    if (close_pos == std::string_view::npos) break;
    found.push_back(xml.substr(tag_end + 1, close_pos - tag_end - 1));
    pos = close_pos + close.size();
  }
  return found;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

struct Endpoint {
  std::string scheme;     // "http" or "https"
  std::string authority;  // "host[:port]", sent as the Host header
};

Expected<Endpoint> ParseEndpoint(std::string_view endpoint) {
  Endpoint parsed;
  std::string_view rest;
  if (endpoint.starts_with("http://")) {
    parsed.scheme = "http";
    rest = endpoint.substr(7);
  } else if (endpoint.starts_with("https://")) {
    parsed.scheme = "https";
    rest = endpoint.substr(8);
  } else {
    return Fail(InvalidArgument("endpoint", "must start with http:// or https://, got '" +
                                                std::string(endpoint) + "'"));
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.empty()) {
    return Fail(InvalidArgument("endpoint", "has no host: '" + std::string(endpoint) + "'"));
  }
  for (char c : rest) {
    if (c == '/' || c == '?' || c == '#' || c == '@' || c == ' ') {
      return Fail(InvalidArgument(
          "endpoint", "must be scheme://host[:port] without path, query or user info, got '" +
                          std::string(endpoint) + "'"));
    }
  }
  parsed.authority = std::string(rest);
  return parsed;
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
  if (options.part_size < kMinPartSize || options.part_size > kMaxPartSize) {
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

// curl_global_init is not safe to race with other curl calls: do it exactly once.
Status GlobalCurlInit() {
  static const CURLcode result = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (result != CURLE_OK) {
    return Internal(std::string("curl_global_init failed: ") + curl_easy_strerror(result));
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Client: endpoint, credentials, curl handle pool, one signed HTTP exchange at a time per call.

struct S3BlobStore::Client {
  struct Request {
    std::string method;  // GET HEAD PUT POST DELETE
    std::string path;    // raw, e.g. "/bucket/prefix/key"
    QueryParams query;
    HeaderList headers;  // besides host / x-amz-date / x-amz-content-sha256
    std::span<const uint8_t> body;
    // Streaming: when set, the body of a reply whose status satisfies `stream_if` goes to `sink`
    // as it arrives instead of into Response::body.
    const BlobSink* sink = nullptr;
    std::function<bool(long)> stream_if;
  };
  struct Response {
    long http_status = 0;
    std::string body;                            // replies that were not streamed (capped)
    std::map<std::string, std::string> headers;  // names lower-cased
  };

  S3Options options;
  Endpoint endpoint;
  s3::SigV4Credentials credentials;

  std::mutex pool_mu;
  std::vector<CURL*> pool;

  ~Client() {
    for (CURL* handle : pool) curl_easy_cleanup(handle);
  }

  std::string BucketPath() const { return "/" + options.bucket; }
  std::string ObjectName(const std::string& key) const { return options.key_prefix + key; }
  std::string ObjectPath(const std::string& key) const {
    return BucketPath() + "/" + ObjectName(key);
  }
  // "object 'k' in bucket 'b'" — used in every message about a key.
  std::string Where(const std::string& key) const {
    return "object '" + ObjectName(key) + "' in bucket '" + options.bucket + "'";
  }
  std::string BucketWhere() const {
    return "bucket '" + options.bucket + "' at " + options.endpoint;
  }

  CURL* AcquireHandle() {
    {
      std::lock_guard lock(pool_mu);
      if (!pool.empty()) {
        CURL* handle = pool.back();
        pool.pop_back();
        return handle;
      }
    }
    return curl_easy_init();
  }

  void ReleaseHandle(CURL* handle) {
    curl_easy_reset(handle);  // keeps the connection cache: the next request may reuse it
    {
      std::lock_guard lock(pool_mu);
      if (pool.size() < kMaxPooledHandles) {
        pool.push_back(handle);
        return;
      }
    }
    curl_easy_cleanup(handle);
  }

  Expected<Response> Perform(const Request& request, std::string_view operation);
};

namespace {

struct TransferState {
  CURL* handle = nullptr;
  const S3BlobStore::Client::Request* request = nullptr;
  S3BlobStore::Client::Response* response = nullptr;
  bool decided = false;
  bool streaming = false;
  bool sink_failed = false;
  Status sink_status;
};

size_t OnHeader(char* buffer, size_t size, size_t count, void* userdata) {
  auto* state = static_cast<TransferState*>(userdata);
  const size_t total = size * count;
  std::string_view line(buffer, total);
  if (line.starts_with("HTTP/")) {
    state->response->headers.clear();  // a new response (after "100 Continue", say)
    return total;
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    state->response->headers[ToLower(Trim(line.substr(0, colon)))] =
        std::string(Trim(line.substr(colon + 1)));
  }
  return total;
}

size_t OnBody(char* data, size_t size, size_t count, void* userdata) {
  auto* state = static_cast<TransferState*>(userdata);
  const size_t total = size * count;
  if (!state->decided) {
    long status = 0;
    curl_easy_getinfo(state->handle, CURLINFO_RESPONSE_CODE, &status);
    state->streaming = state->request->sink != nullptr && state->request->stream_if &&
                       state->request->stream_if(status);
    state->decided = true;
  }
  if (state->streaming) {
    Status s = (*state->request->sink)(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data), total));
    if (!s.ok()) {
      state->sink_failed = true;
      state->sink_status = std::move(s);
      return 0;  // makes curl abort the transfer with CURLE_WRITE_ERROR
    }
    return total;
  }
  std::string& body = state->response->body;
  if (body.size() < kMaxErrorBodyBytes) {
    body.append(data, std::min(total, kMaxErrorBodyBytes - body.size()));
  }
  return total;
}

// Frees a curl_slist on scope exit.
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

}  // namespace

Expected<S3BlobStore::Client::Response> S3BlobStore::Client::Perform(const Request& request,
                                                                     std::string_view operation) {
  MF_ASSIGN_OR_RETURN(std::string payload_hash, s3::Sha256Hex(request.body));
  const std::string amz_date = s3::FormatAmzDate(static_cast<int64_t>(std::time(nullptr)));

  s3::SigV4Request to_sign;
  to_sign.method = request.method;
  to_sign.path = request.path;
  to_sign.query = request.query;
  to_sign.headers = request.headers;
  to_sign.headers.emplace_back("host", endpoint.authority);
  to_sign.headers.emplace_back("x-amz-date", amz_date);
  to_sign.headers.emplace_back("x-amz-content-sha256", payload_hash);
  to_sign.payload_hash = payload_hash;
  MF_ASSIGN_OR_RETURN(s3::SigV4Signature signature,
                      s3::SignRequest(to_sign, credentials, amz_date));

  // The URL carries exactly the encoding that was signed.
  std::string url = endpoint.scheme + "://" + endpoint.authority + s3::CanonicalUri(request.path);
  if (!request.query.empty()) url += "?" + s3::CanonicalQueryString(request.query);

  curl_slist* raw_headers = nullptr;
  auto add_header = [&raw_headers](const std::string& line) {
    curl_slist* next = curl_slist_append(raw_headers, line.c_str());
    if (next == nullptr) return false;
    raw_headers = next;
    return true;
  };
  bool headers_ok = true;
  for (const auto& [name, value] : to_sign.headers) headers_ok &= add_header(name + ": " + value);
  headers_ok &= add_header("Authorization: " + signature.authorization);
  headers_ok &= add_header("Expect:");  // no "100-continue" round trip before bodies
  bool has_content_type = false;
  for (const auto& header : request.headers) {
    has_content_type |= ToLower(header.first) == "content-type";
  }
  if (!has_content_type) headers_ok &= add_header("Content-Type:");  // no curl default for POST
  SlistPtr header_list(raw_headers);
  if (!headers_ok) return Fail(Internal(std::string(operation) + ": out of memory (curl_slist)"));

  CURL* handle = AcquireHandle();
  if (handle == nullptr) return Fail(Internal(std::string(operation) + ": curl_easy_init failed"));
  struct HandleReturner {
    Client* client;
    CURL* handle;
    ~HandleReturner() { client->ReleaseHandle(handle); }
  } returner{this, handle};

  Response response;
  TransferState state;
  state.handle = handle;
  state.request = &request;
  state.response = &response;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  if (request.sink != nullptr) {
    // A streamed read may legitimately take long: bound stalls instead of the total time.
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, static_cast<long>(options.request_timeout.count() / 1000)));
  } else {
    curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options.request_timeout.count()));
  }
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &state);

  static const char kEmpty[] = "";
  if (request.method == "HEAD") {
    curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "PUT" || request.method == "POST") {
    // POSTFIELDS sends the in-memory body with a Content-Length (no copy) and lets curl resend
    // it if a reused connection turns out to be closed; CUSTOMREQUEST sets the verb.
    curl_easy_setopt(handle, CURLOPT_POST, 1L);
    curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(handle, CURLOPT_POSTFIELDS,
                     request.body.empty() ? kEmpty
                                          : reinterpret_cast<const char*>(request.body.data()));
    if (request.method == "PUT") curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, "PUT");
  } else {
    curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  const CURLcode result = curl_easy_perform(handle);
  if (state.sink_failed) return Fail(std::move(state.sink_status));
  if (result != CURLE_OK) {
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(result);
    return Fail(Unavailable(std::string(operation) + ": cannot reach S3 endpoint " +
                            options.endpoint + ": " + detail + " (curl error " +
                            std::to_string(static_cast<int>(result)) + ")"));
  }
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &response.http_status);
  return response;
}

// ---------------------------------------------------------------------------------------------
// Error mapping and XML scanning.

namespace s3_internal {

std::string XmlUnescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    const size_t semi = text.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out.push_back(text[i++]);
      continue;
    }
    const std::string_view entity = text.substr(i + 1, semi - i - 1);
    std::optional<uint32_t> code_point;
    if (entity == "amp") code_point = '&';
    else if (entity == "lt") code_point = '<';
    else if (entity == "gt") code_point = '>';
    else if (entity == "quot") code_point = '"';
    else if (entity == "apos") code_point = '\'';
    else if (entity.size() > 1 && entity[0] == '#') {
      const bool hex = entity[1] == 'x' || entity[1] == 'X';
      const std::string_view digits = entity.substr(hex ? 2 : 1);
      uint32_t value = 0;
      auto [ptr, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), value, hex ? 16 : 10);
      if (!digits.empty() && ec == std::errc() && ptr == digits.data() + digits.size() &&
          value <= 0x10FFFF) {
        code_point = value;
      }
    }
    if (!code_point) {
      out.push_back(text[i++]);
      continue;
    }
    AppendUtf8(out, *code_point);
    i = semi + 1;
  }
  return out;
}

std::optional<std::string> XmlFirstElement(std::string_view xml, std::string_view tag) {
  auto found = RawElements(xml, tag, 1);
  if (found.empty()) return std::nullopt;
  return XmlUnescape(found.front());
}

std::vector<std::string> XmlAllElements(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  for (std::string_view raw : RawElements(xml, tag, SIZE_MAX)) out.push_back(XmlUnescape(raw));
  return out;
}

Status StatusFromS3Error(std::string_view operation, long http_status, std::string_view body) {
  const std::optional<std::string> code = XmlFirstElement(body, "Code");
  const std::optional<std::string> message = XmlFirstElement(body, "Message");
  std::string text = std::string(operation) + ": HTTP " + std::to_string(http_status);
  if (code) text += " " + *code;
  if (message && !message->empty()) text += ": " + *message;

  if (code) {
    static const char* const kUnauthenticated[] = {
        "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed",
        "InvalidToken",       "ExpiredToken",          "TokenRefreshRequired",
        "RequestTimeTooSkewed", "MissingSecurityHeader", "InvalidSecurity"};
    static const char* const kUnavailable[] = {"SlowDown",      "ServiceUnavailable",
                                               "InternalError", "RequestTimeout",
                                               "OperationAborted", "XMinioServerNotInitialized"};
    for (const char* c : kUnauthenticated) {
      if (*code == c) return Unauthenticated(text + " (check the S3 access key and secret)");
    }
    for (const char* c : kUnavailable) {
      if (*code == c) return Unavailable(text);
    }
    if (*code == "AccessDenied" || *code == "AllAccessDisabled" || *code == "AccountProblem") {
      return PermissionDenied(text);
    }
    if (*code == "NoSuchKey") return NotFound(text);
    if (*code == "NoSuchBucket") return FailedPrecondition(text + " (bucket does not exist)");
    if (*code == "NoSuchUpload") {
      return Status(StatusCode::kAborted, text + " (the multipart upload was aborted)");
    }
    if (*code == "InvalidRange") return Status(StatusCode::kOutOfRange, text);
  }
  if (http_status == 401) return Unauthenticated(text);
  if (http_status == 403) return PermissionDenied(text);
  if (http_status == 404) return NotFound(text);
  if (http_status == 416) return Status(StatusCode::kOutOfRange, text);
  if (http_status == 408 || http_status == 429 || http_status >= 500) return Unavailable(text);
  return Internal(text);
}

}  // namespace s3_internal

using s3_internal::StatusFromS3Error;
using s3_internal::XmlFirstElement;

namespace {

bool Is2xx(long status) { return status >= 200 && status < 300; }

// ---------------------------------------------------------------------------------------------
// Writer.

class S3BlobWriter final : public BlobWriter {
 public:
  S3BlobWriter(std::shared_ptr<S3BlobStore::Client> client, std::string key)
      : client_(std::move(client)), key_(std::move(key)) {}
  ~S3BlobWriter() override { Abort(); }

  Status Append(std::span<const uint8_t> bytes) override {
    MF_RETURN_IF_ERROR(CheckUsable("Append"));
    const uint64_t part_size = client_->options.part_size;
    while (!bytes.empty()) {
      if (buffer_.size() == part_size) {
        // Only flush when more bytes follow: an object of exactly one part stays a single PUT.
        Status s = UploadBufferAsPart();
        if (!s.ok()) return MarkFailed(std::move(s));
      }
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(bytes.size(), part_size - buffer_.size()));
      Reserve(buffer_.size() + n);
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
      bytes = bytes.subspan(n);
    }
    return Status::Ok();
  }

  Status Commit() override {
    MF_RETURN_IF_ERROR(CheckUsable("Commit"));
    Status s = upload_id_ ? CommitMultipart() : PutWholeObject();
    if (!s.ok()) {
      AbortMultipartUpload();
      return MarkFailed(std::move(s));
    }
    state_ = State::kCommitted;
    ReleaseBuffer();
    return Status::Ok();
  }

  void Abort() override {
    if (state_ == State::kCommitted || state_ == State::kAborted) return;
    AbortMultipartUpload();
    ReleaseBuffer();
    state_ = State::kAborted;
  }

 private:
  enum class State { kOpen, kFailed, kCommitted, kAborted };

  Status CheckUsable(std::string_view what) const {
    switch (state_) {
      case State::kOpen: return Status::Ok();
      case State::kFailed: return failure_;
      case State::kCommitted:
        return FailedPrecondition(std::string(what) + " on a committed writer for " +
                                  client_->Where(key_));
      case State::kAborted:
        return FailedPrecondition(std::string(what) + " on an aborted writer for " +
                                  client_->Where(key_));
    }
    return Status::Ok();
  }

  Status MarkFailed(Status s) {
    state_ = State::kFailed;
    failure_ = s;
    ReleaseBuffer();
    return s;
  }

  // Grows the buffer geometrically but never beyond part_size.
  void Reserve(size_t needed) {
    if (buffer_.capacity() >= needed) return;
    const size_t part_size = static_cast<size_t>(client_->options.part_size);
    size_t target = std::max({needed, buffer_.capacity() * 2, kMinBufferGrowth});
    buffer_.reserve(std::min(target, part_size));
  }

  void ReleaseBuffer() {
    buffer_.clear();
    buffer_.shrink_to_fit();
  }

  Status PutWholeObject() {
    S3BlobStore::Client::Request request;
    request.method = "PUT";
    request.path = client_->ObjectPath(key_);
    request.headers.emplace_back("content-type", "application/octet-stream");
    request.body = buffer_;
    const std::string op = "PUT " + client_->Where(key_);
    MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    return Status::Ok();
  }

  Status StartMultipartUpload() {
    S3BlobStore::Client::Request request;
    request.method = "POST";
    request.path = client_->ObjectPath(key_);
    request.query = {{"uploads", ""}};
    request.headers.emplace_back("content-type", "application/octet-stream");
    const std::string op = "CreateMultipartUpload for " + client_->Where(key_);
    MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    std::optional<std::string> upload_id = XmlFirstElement(response.body, "UploadId");
    if (!upload_id || upload_id->empty()) {
      return Internal(op + ": reply has no UploadId: " + response.body.substr(0, 200));
    }
    upload_id_ = std::move(*upload_id);
    return Status::Ok();
  }

  Status UploadBufferAsPart() {
    if (!upload_id_) MF_RETURN_IF_ERROR(StartMultipartUpload());
    const uint64_t part_number = part_etags_.size() + 1;
    if (part_number > kMaxPartCount) {
      return Status(StatusCode::kResourceExhausted,
                    "upload of " + client_->Where(key_) + " needs more than 10000 parts of " +
                        std::to_string(client_->options.part_size) +
                        " bytes: raise S3Options.part_size");
    }
    S3BlobStore::Client::Request request;
    request.method = "PUT";
    request.path = client_->ObjectPath(key_);
    request.query = {{"partNumber", std::to_string(part_number)}, {"uploadId", *upload_id_}};
    request.body = buffer_;
    const std::string op =
        "UploadPart " + std::to_string(part_number) + " of " + client_->Where(key_);
    MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    auto etag = response.headers.find("etag");
    if (etag == response.headers.end() || etag->second.empty()) {
      return Internal(op + ": reply has no ETag header");
    }
    part_etags_.push_back(etag->second);
    buffer_.clear();  // keeps capacity: the next part reuses it
    return Status::Ok();
  }

  Status CommitMultipart() {
    if (!buffer_.empty()) MF_RETURN_IF_ERROR(UploadBufferAsPart());
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < part_etags_.size(); ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" +
             XmlEscape(part_etags_[i]) + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    S3BlobStore::Client::Request request;
    request.method = "POST";
    request.path = client_->ObjectPath(key_);
    request.query = {{"uploadId", *upload_id_}};
    request.headers.emplace_back("content-type", "application/xml");
    request.body = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(xml.data()),
                                            xml.size());
    const std::string op = "CompleteMultipartUpload (" + std::to_string(part_etags_.size()) +
                           " parts) for " + client_->Where(key_);
    MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
    // S3 may answer 200 and still report an error in the body.
    if (!Is2xx(response.http_status) ||
        response.body.find("<Error>") != std::string::npos) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    upload_id_.reset();  // completed: nothing left to abort
    return Status::Ok();
  }

  // Best effort: errors are ignored (an S3 lifecycle rule for incomplete uploads is the backstop).
  void AbortMultipartUpload() {
    if (!upload_id_) return;
    S3BlobStore::Client::Request request;
    request.method = "DELETE";
    request.path = client_->ObjectPath(key_);
    request.query = {{"uploadId", *upload_id_}};
    (void)client_->Perform(request, "AbortMultipartUpload for " + client_->Where(key_));
    upload_id_.reset();
  }

  std::shared_ptr<S3BlobStore::Client> client_;
  const std::string key_;
  std::vector<uint8_t> buffer_;
  std::optional<std::string> upload_id_;
  std::vector<std::string> part_etags_;
  State state_ = State::kOpen;
  Status failure_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Store.

S3BlobStore::S3BlobStore(std::shared_ptr<Client> client) : client_(std::move(client)) {}
S3BlobStore::~S3BlobStore() = default;

Expected<std::unique_ptr<BlobStore>> S3BlobStore::Open(const S3Options& options) {
  MF_RETURN_IF_ERROR(ValidateOptions(options));
  MF_ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(options.endpoint));
  MF_RETURN_IF_ERROR(GlobalCurlInit());

  auto client = std::make_shared<Client>();
  client->options = options;
  client->endpoint = std::move(endpoint);
  client->credentials = {options.access_key, options.secret_key, options.region, "s3"};

  Client::Request head;
  head.method = "HEAD";
  head.path = client->BucketPath();
  const std::string head_op = "HEAD " + client->BucketWhere();
  MF_ASSIGN_OR_RETURN(auto head_response, client->Perform(head, head_op));

  if (head_response.http_status == 404) {
    if (!options.create_bucket) {
      return Fail(FailedPrecondition("bucket '" + options.bucket + "' does not exist at " +
                                     options.endpoint + " (and create_bucket is off)"));
    }
    Client::Request create;
    create.method = "PUT";
    create.path = client->BucketPath();
    std::string body;
    if (options.region != "us-east-1") {
      body = "<CreateBucketConfiguration><LocationConstraint>" + XmlEscape(options.region) +
             "</LocationConstraint></CreateBucketConfiguration>";
      create.headers.emplace_back("content-type", "application/xml");
    }
    create.body = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()),
                                           body.size());
    const std::string create_op = "CreateBucket " + client->BucketWhere();
    MF_ASSIGN_OR_RETURN(auto created, client->Perform(create, create_op));
    const bool raced = created.http_status == 409 &&
                       XmlFirstElement(created.body, "Code") == "BucketAlreadyOwnedByYou";
    if (!Is2xx(created.http_status) && !raced) {
      return Fail(StatusFromS3Error(create_op, created.http_status, created.body));
    }
  } else if (!Is2xx(head_response.http_status)) {
    // HEAD replies have no body, so the S3 error code is unknown: ask again with a GET, whose
    // error document names it (InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied, ...).
    Client::Request probe;
    probe.method = "GET";
    probe.path = client->BucketPath();
    probe.query = {{"list-type", "2"}, {"max-keys", "1"}};
    const std::string probe_op = "ListObjectsV2 " + client->BucketWhere();
    MF_ASSIGN_OR_RETURN(auto probed, client->Perform(probe, probe_op));
    if (!Is2xx(probed.http_status)) {
      return Fail(StatusFromS3Error(probe_op, probed.http_status, probed.body));
    }
    return Fail(StatusFromS3Error(head_op, head_response.http_status, ""));
  }
  return std::unique_ptr<BlobStore>(new S3BlobStore(std::move(client)));
}

std::string S3BlobStore::Describe() const {
  const S3Options& o = client_->options;
  return "s3://" + o.bucket + (o.key_prefix.empty() ? "" : "/" + o.key_prefix) + "@" +
         client_->endpoint.authority;
}

Expected<std::unique_ptr<BlobWriter>> S3BlobStore::Create(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  return std::unique_ptr<BlobWriter>(new S3BlobWriter(client_, key));
}

Expected<BlobInfo> S3BlobStore::Stat(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  Client::Request request;
  request.method = "HEAD";
  request.path = client_->ObjectPath(key);
  const std::string op = "HEAD " + client_->Where(key);
  MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
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
  const std::string op = "GET " + client_->Where(key) + " bytes " + std::to_string(offset) +
                         "-" + std::to_string(last);
  BlobSink counting_sink = [&](std::span<const uint8_t> piece) -> Status {
    if (piece.size() > wanted - delivered) {
      return Internal(op + ": the store sent more bytes than requested");
    }
    delivered += piece.size();
    return sink(piece);
  };
  Client::Request request;
  request.method = "GET";
  request.path = client_->ObjectPath(key);
  request.headers.emplace_back("range",
                               "bytes=" + std::to_string(offset) + "-" + std::to_string(last));
  request.sink = &counting_sink;
  // 206 is the ranged reply; a plain 200 (range ignored) is only the right bytes for the whole
  // object.
  request.stream_if = [whole_object](long status) {
    return status == 206 || (status == 200 && whole_object);
  };
  MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
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

Status S3BlobStore::Delete(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  Client::Request request;
  request.method = "DELETE";
  request.path = client_->ObjectPath(key);
  const std::string op = "DELETE " + client_->Where(key);
  MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
  if (Is2xx(response.http_status)) return Status::Ok();
  if (response.http_status == 404 &&
      XmlFirstElement(response.body, "Code") != "NoSuchBucket") {
    return Status::Ok();  // already gone
  }
  return StatusFromS3Error(op, response.http_status, response.body);
}

Expected<std::vector<std::string>> S3BlobStore::List(const std::string& prefix) {
  const std::string& key_prefix = client_->options.key_prefix;
  std::vector<std::string> keys;
  std::optional<std::string> continuation;
  for (int page = 1;; ++page) {
    Client::Request request;
    request.method = "GET";
    request.path = client_->BucketPath();
    request.query = {{"list-type", "2"},
                     {"prefix", key_prefix + prefix},
                     {"max-keys", std::to_string(client_->options.list_page_size)}};
    if (continuation) request.query.emplace_back("continuation-token", *continuation);
    const std::string op = "ListObjectsV2 (page " + std::to_string(page) + ") of bucket '" +
                           client_->options.bucket + "' prefix '" + key_prefix + prefix + "'";
    MF_ASSIGN_OR_RETURN(auto response, client_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return Fail(StatusFromS3Error(op, response.http_status, response.body));
    }
    for (std::string_view contents : RawElements(response.body, "Contents", SIZE_MAX)) {
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
