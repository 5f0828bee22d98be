// The pieces of a webhook delivery that need no database: the signed request, the retry
// schedule, the HTTP seam, and the sealed secrets.
//
// Signature scheme (v1), what a receiver checks:
//   Modelfleet-Timestamp: <unix seconds when this attempt was signed>
//   Modelfleet-Signature: v1=<lowercase hex HMAC-SHA256(key = secret, msg = "<timestamp>.<body>")>
//   Modelfleet-Event-Id / Idempotency-Key: <event id>
// `secret` is the string CreateWebhook returned ("mfwhsec_..."), its bytes as they are. The
// timestamp is inside the MAC so a receiver can refuse stale requests (replays); the event id
// is in the body too, and is the key to deduplicate on (delivery is at-least-once).
//
// Thread safety: everything here is thread-safe (SecretBox is immutable after Load).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::webhooks {

inline constexpr char kSecretPrefix[] = "mfwhsec_";

struct WebhookRequest {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// What the receiver answered. http_status 0: no HTTP answer (refused, timed out, TLS), with
// `error` saying why.
struct WebhookResponse {
  int http_status = 0;
  std::string error;
  bool delivered() const { return http_status >= 200 && http_status < 300; }
};

// The request for one attempt: the headers of the scheme above.
WebhookRequest SignedRequest(std::string url, std::string_view secret, int64_t event_id, std::string body,
                             int64_t unix_seconds);

// The seam to the network. Implementations are thread-safe; Post never throws and returns
// within about `timeout` (connect and read each bounded by it).
class WebhookSender {
 public:
  virtual ~WebhookSender() = default;
  virtual WebhookResponse Post(const WebhookRequest& request, std::chrono::milliseconds timeout) = 0;
};

// POSTs with cpp-httplib's client (http and https; https verifies the receiver's certificate
// against the system CAs). No redirects are followed: a 3xx is a failed attempt.
std::unique_ptr<WebhookSender> MakeHttpSender();

// When a failed attempt is retried: "full jitter" exponential backoff. After `attempts`
// failed attempts (>= 1) the next one waits uniform[0, min(cap, base * 2^(attempts-1))].
// `uniform01` in [0, 1) is the jitter (injected so tests can pin it).
struct RetryPolicy {
  int max_attempts = 10;  // the attempt that fails this many times makes the delivery DEAD
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds cap{600000};
};
std::chrono::milliseconds RetryDelay(const RetryPolicy& policy, int attempts, double uniform01);
double UniformJitter();  // thread-safe uniform [0, 1)

// Seals and opens webhook secrets with AES-256-GCM under the server key (--secret-key-file).
class SecretBox {
 public:
  // The key file holds 32 bytes, raw or as 64 hex digits (surrounding whitespace ignored).
  // Errors: NOT_FOUND (no file), INVALID_ARGUMENT (anything else in it).
  static Expected<SecretBox> Load(const std::string& path);
  // REQUIRES: key.size() == 32.
  explicit SecretBox(std::string key) : key_(std::move(key)) {}

  struct Sealed {
    std::string nonce;   // 12 random bytes, fresh per Seal
    std::string sealed;  // ciphertext || tag
  };
  // A new secret to show once: kSecretPrefix + 64 hex digits of 32 random bytes.
  static std::string GenerateSecret();
  Expected<Sealed> Seal(std::string_view secret) const;
  // PERMISSION_DENIED when sealed under another key (or altered).
  Expected<std::string> Open(const Sealed& sealed) const;

 private:
  std::string key_;
};

}  // namespace modelfleet::webhooks
