#include "webhooks/delivery.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "modelfleet/crypto.h"

namespace modelfleet::webhooks {

WebhookRequest SignedRequest(std::string url, std::string_view secret, int64_t event_id, std::string body,
                             int64_t unix_seconds) {
  const std::string timestamp = std::to_string(unix_seconds);
  const std::string id = std::to_string(event_id);
  WebhookRequest request{std::move(url), {}, std::move(body)};
  request.headers = {
      {"Modelfleet-Event-Id", id},
      {"Idempotency-Key", id},
      {"Modelfleet-Timestamp", timestamp},
      {"Modelfleet-Signature", "v1=" + HmacSha256Hex(secret, timestamp + "." + request.body)},
  };
  return request;
}

std::chrono::milliseconds RetryDelay(const RetryPolicy& policy, int attempts, double uniform01) {
  // 2^(attempts-1) overflows long before the cap matters; clamp the exponent.
  const int exponent = std::clamp(attempts - 1, 0, 40);
  const double ceiling = std::min(static_cast<double>(policy.cap.count()),
                                  static_cast<double>(policy.base.count()) * std::ldexp(1.0, exponent));
  return std::chrono::milliseconds(static_cast<int64_t>(ceiling * std::clamp(uniform01, 0.0, 1.0)));
}

double UniformJitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

Expected<SecretBox> SecretBox::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(NotFound("cannot read the secret key file " + path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string content = buffer.str();
  if (content.size() == kAesGcmKeyBytes) return SecretBox(std::move(content));
  const auto first = content.find_first_not_of(" \t\r\n");
  const auto last = content.find_last_not_of(" \t\r\n");
  const std::string trimmed = first == std::string::npos ? "" : content.substr(first, last - first + 1);
  if (trimmed.size() == 2 * kAesGcmKeyBytes) {
    auto key = HexDecode(trimmed);
    if (key) return SecretBox(std::move(*key));
  }
  return Fail(InvalidArgument("secret_key_file", path + " must hold 32 bytes, raw or as 64 hex digits "
                                                        "(e.g. `openssl rand -hex 32`)"));
}

std::string SecretBox::GenerateSecret() { return kSecretPrefix + HexEncode(RandomBytes(32)); }

Expected<SecretBox::Sealed> SecretBox::Seal(std::string_view secret) const {
  Sealed out{RandomBytes(kAesGcmNonceBytes), {}};
  MF_ASSIGN_OR_RETURN(out.sealed, AesGcmSeal(key_, out.nonce, secret));
  return out;
}

Expected<std::string> SecretBox::Open(const Sealed& sealed) const {
  auto opened = AesGcmOpen(key_, sealed.nonce, sealed.sealed);
  if (!opened && opened.error().code() == StatusCode::kPermissionDenied) {
    return Fail(PermissionDenied("the webhook secret was sealed under another --secret-key-file key"));
  }
  return opened;
}

}  // namespace modelfleet::webhooks
