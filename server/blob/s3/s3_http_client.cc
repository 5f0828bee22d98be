#include "blob/s3/s3_http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <ctime>
#include <mutex>
#include <utility>
#include <vector>

namespace modelfleet::blob::s3 {
namespace {

constexpr size_t kMaxErrorBodyBytes = 64 * 1024;  // error documents are small; cap what we keep
constexpr size_t kMaxPooledHandles = 8;
// curl's receive buffer, hence the largest piece a streamed reply hands its sink. Its default
// (16 KiB) cost a callback and a recv() per 16 KiB of artifact; 512 KiB is the largest every
// libcurl accepts. Set on every request, so a pooled handle never carries another size.
constexpr long kReceiveBufferBytes = 512 * 1024;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// curl_global_init is not safe to race with other curl calls: do it exactly once.
Status GlobalCurlInit() {
  static const CURLcode result = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (result != CURLE_OK) {
    return Internal(std::string("curl_global_init failed: ") + curl_easy_strerror(result));
  }
  return Status::Ok();
}

struct TransferState {
  CURL* handle = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
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

// Idle curl handles. curl_easy_reset keeps a handle's connection cache, so a handle taken from
// the pool may reuse the connection of an earlier request.
class HttpClient::HandlePool {
 public:
  ~HandlePool() {
    for (CURL* handle : idle_) curl_easy_cleanup(handle);
  }

  // nullptr only when curl_easy_init fails (out of memory).
  CURL* Acquire() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CURL* handle = idle_.back();
        idle_.pop_back();
        return handle;
      }
    }
    return curl_easy_init();
  }

  void Release(CURL* handle) {
    curl_easy_reset(handle);  // keeps the connection cache: the next request may reuse it
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxPooledHandles) {
        idle_.push_back(handle);
        return;
      }
    }
    curl_easy_cleanup(handle);
  }

 private:
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

Expected<std::shared_ptr<HttpClient>> HttpClient::Create(HttpClientOptions options) {
  MF_ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(options.endpoint));
  MF_RETURN_IF_ERROR(GlobalCurlInit());
  return std::shared_ptr<HttpClient>(new HttpClient(std::move(options), std::move(endpoint)));
}

HttpClient::HttpClient(HttpClientOptions options, Endpoint endpoint)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      handles_(std::make_unique<HandlePool>()) {}

HttpClient::~HttpClient() = default;

Expected<HttpResponse> HttpClient::Perform(const HttpRequest& request,
                                           std::string_view operation) {
  MF_ASSIGN_OR_RETURN(std::string payload_hash, Sha256Hex(request.body));
  const std::string amz_date = FormatAmzDate(static_cast<int64_t>(std::time(nullptr)));

  SigV4Request to_sign;
  to_sign.method = request.method;
  to_sign.path = request.path;
  to_sign.query = request.query;
  to_sign.headers = request.headers;
  to_sign.headers.emplace_back("host", endpoint_.authority);
  to_sign.headers.emplace_back("x-amz-date", amz_date);
  to_sign.headers.emplace_back("x-amz-content-sha256", payload_hash);
  to_sign.payload_hash = payload_hash;
  MF_ASSIGN_OR_RETURN(SigV4Signature signature,
                      SignRequest(to_sign, options_.credentials, amz_date));

  // The URL carries exactly the encoding that was signed.
  std::string url = endpoint_.scheme + "://" + endpoint_.authority + CanonicalUri(request.path);
  if (!request.query.empty()) url += "?" + CanonicalQueryString(request.query);

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

  CURL* handle = handles_->Acquire();
  if (handle == nullptr) return Fail(Internal(std::string(operation) + ": curl_easy_init failed"));
  struct HandleReturner {
    HandlePool* pool;
    CURL* handle;
    ~HandleReturner() { pool->Release(handle); }
  } returner{handles_.get(), handle};

  HttpResponse response;
  TransferState state;
  state.handle = handle;
  state.request = &request;
  state.response = &response;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(handle, CURLOPT_BUFFERSIZE, kReceiveBufferBytes);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  if (request.sink != nullptr) {
    // A streamed read may legitimately take long: bound stalls instead of the total time.
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, static_cast<long>(options_.request_timeout.count() / 1000)));
  } else {
    curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(options_.request_timeout.count()));
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
                            options_.endpoint + ": " + detail + " (curl error " +
                            std::to_string(static_cast<int>(result)) + ")"));
  }
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &response.http_status);
  return response;
}

}  // namespace modelfleet::blob::s3
