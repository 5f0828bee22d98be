// HttpClient: signed HTTP exchanges with one S3-compatible endpoint, over libcurl. Perform signs
// a request with AWS SigV4 (sigv4.h) at the current time, sends it on a pooled curl handle and
// returns the reply's status, headers and body. It does not interpret replies: a non-2xx status
// is a Response like any other (StatusFromS3Error in s3_xml.h turns it into a Status).
//
// No retries: a transfer that fails is reported once, as UNAVAILABLE, and the caller decides.
// (Bodies are sent so that curl itself may resend one when a reused connection turns out to
// have been closed by the server.)
//
// Thread safety: Perform may be called from many threads at once; each call uses its own curl
// handle, taken from a small pool under a mutex and returned (connection cache kept) afterwards.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "blob/blob_store.h"
#include "blob/s3/sigv4.h"
#include "modelfleet/status.h"

namespace modelfleet::blob::s3 {

struct Endpoint {
  std::string scheme;     // "http" or "https"
  std::string authority;  // "host[:port]", sent as the Host header
};

// Parses "http://host[:port]" or "https://host[:port]" (trailing slashes ignored).
// INVALID_ARGUMENT (field "endpoint") for anything else: no scheme, no host, a path, a query or
// user info.
Expected<Endpoint> ParseEndpoint(std::string_view endpoint);

struct HttpClientOptions {
  std::string endpoint;  // as configured: "http://127.0.0.1:9000"; named in UNAVAILABLE errors
  SigV4Credentials credentials;
  std::chrono::milliseconds connect_timeout{};
  // Bound for one exchange; for a streamed reply (HttpRequest::sink) a bound for a stall instead.
  std::chrono::milliseconds request_timeout{};
};

struct HttpRequest {
  std::string method;  // GET HEAD PUT POST DELETE
  std::string path;    // absolute and not encoded, e.g. "/bucket/prefix/key"
  QueryParams query;   // raw names and values
  HeaderList headers;  // besides host / x-amz-date / x-amz-content-sha256, which Perform adds
  std::span<const uint8_t> body;  // must stay valid until Perform returns
  // Streaming: when set, the body of a reply whose status satisfies `stream_if` goes to `sink`
  // as it arrives instead of into HttpResponse::body.
  const BlobSink* sink = nullptr;
  std::function<bool(long)> stream_if;
};

struct HttpResponse {
  long http_status = 0;
  std::string body;                            // replies that were not streamed, first 64 KiB
  std::map<std::string, std::string> headers;  // of the final response; names lower-cased
};

inline bool Is2xx(long status) { return status >= 200 && status < 300; }

class HttpClient {
 public:
  // Parses options.endpoint and initialises libcurl (once per process). Talks to nobody.
  // Errors: INVALID_ARGUMENT (endpoint, see ParseEndpoint), INTERNAL (curl_global_init failed).
  static Expected<std::shared_ptr<HttpClient>> Create(HttpClientOptions options);

  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // "host[:port]" of the endpoint.
  const std::string& authority() const { return endpoint_.authority; }

  // One signed exchange. `operation` ("GET object 'k' in bucket 'b'") starts every error
  // message. A reply of any HTTP status is a value. Errors: UNAVAILABLE (no reply: unreachable,
  // timeout, reset; names the endpoint and curl's error), INTERNAL (out of memory, OpenSSL
  // failure), or the status `request.sink` returned when it stopped a streamed reply.
  Expected<HttpResponse> Perform(const HttpRequest& request, std::string_view operation);

 private:
  class HandlePool;  // the curl handles; keeps <curl/curl.h> out of this header

  HttpClient(HttpClientOptions options, Endpoint endpoint);

  const HttpClientOptions options_;
  const Endpoint endpoint_;
  std::unique_ptr<HandlePool> handles_;
};

}  // namespace modelfleet::blob::s3
