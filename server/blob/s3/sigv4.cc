#include "blob/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <string>

namespace modelfleet::blob::s3 {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string HexLower(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kHexLower[b >> 4]);
    out.push_back(kHexLower[b & 0x0f]);
  }
  return out;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Trims leading/trailing spaces and tabs and collapses inner runs of spaces to one space.
std::string TrimAll(std::string_view value) {
  size_t begin = 0;
  size_t end = value.size();
  while (begin < end && (value[begin] == ' ' || value[begin] == '\t')) ++begin;
  while (end > begin && (value[end - 1] == ' ' || value[end - 1] == '\t')) --end;
  std::string out;
  out.reserve(end - begin);
  bool previous_space = false;
  for (size_t i = begin; i < end; ++i) {
    const bool space = value[i] == ' ';
    if (space && previous_space) continue;
    out.push_back(value[i]);
    previous_space = space;
  }
  return out;
}

bool IsAmzDate(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return false;
  for (size_t i = 0; i < 15; ++i) {
    if (i == 8) continue;
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

}  // namespace

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string UriEncode(std::string_view input, bool encode_slash) {
  std::string out;
  out.reserve(input.size() * 3);
  for (char ch : input) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c) || (c == '/' && !encode_slash)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 0x0f]);
    }
  }
  return out;
}

std::string CanonicalUri(std::string_view path) {
  if (path.empty()) return "/";
  std::string encoded = UriEncode(path, /*encode_slash=*/false);
  if (encoded.front() != '/') encoded.insert(encoded.begin(), '/');
  return encoded;
}

std::string CanonicalQueryString(const QueryParams& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, true), UriEncode(value, true));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

CanonicalHeaders CanonicalizeHeaders(const HeaderList& headers) {
  // Stable sort by lower-cased name keeps the sending order of repeated headers, whose values
  // are then joined with ','.
  std::vector<std::pair<std::string, std::string>> normalized;
  normalized.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    normalized.emplace_back(ToLower(TrimAll(name)), TrimAll(value));
  }
  std::stable_sort(normalized.begin(), normalized.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  CanonicalHeaders result;
  for (size_t i = 0; i < normalized.size();) {
    const std::string& name = normalized[i].first;
    std::string joined = normalized[i].second;
    size_t j = i + 1;
    for (; j < normalized.size() && normalized[j].first == name; ++j) {
      joined.push_back(',');
      joined += normalized[j].second;
    }
    result.block += name + ":" + joined + "\n";
    if (!result.signed_headers.empty()) result.signed_headers.push_back(';');
    result.signed_headers += name;
    i = j;
  }
  return result;
}

Expected<std::string> Sha256Hex(std::span<const uint8_t> data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1 ||
      digest_len != 32) {
    return Fail(Internal("SHA-256 computation failed in OpenSSL"));
  }
  return HexLower({digest, digest_len});
}

Expected<std::string> Sha256Hex(std::string_view data) { return Sha256Hex(AsBytes(data)); }

Expected<std::array<uint8_t, 32>> HmacSha256(std::span<const uint8_t> key, std::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned int out_len = 0;
  const uint8_t* empty = reinterpret_cast<const uint8_t*>("");
  if (HMAC(EVP_sha256(), key.empty() ? empty : key.data(), static_cast<int>(key.size()),
           data.empty() ? empty : reinterpret_cast<const uint8_t*>(data.data()), data.size(),
           out.data(), &out_len) == nullptr ||
      out_len != out.size()) {
    return Fail(Internal("HMAC-SHA256 computation failed in OpenSSL"));
  }
  return out;
}

std::string CredentialScope(std::string_view date, std::string_view region,
                            std::string_view service) {
  std::string scope;
  scope.reserve(date.size() + region.size() + service.size() + 16);
  scope.append(date).append("/").append(region).append("/").append(service).append(
      "/aws4_request");
  return scope;
}

Expected<std::array<uint8_t, 32>> SigningKey(std::string_view secret_key, std::string_view date,
                                            std::string_view region, std::string_view service) {
  const std::string initial = "AWS4" + std::string(secret_key);
  MF_ASSIGN_OR_RETURN(auto date_key, HmacSha256(AsBytes(initial), date));
  MF_ASSIGN_OR_RETURN(auto region_key, HmacSha256(date_key, region));
  MF_ASSIGN_OR_RETURN(auto service_key, HmacSha256(region_key, service));
  return HmacSha256(service_key, "aws4_request");
}

std::string CanonicalRequest(const SigV4Request& request) {
  const CanonicalHeaders headers = CanonicalizeHeaders(request.headers);
  std::string out;
  out.reserve(256 + headers.block.size());
  out.append(request.method).append("\n");
  out.append(CanonicalUri(request.path)).append("\n");
  out.append(CanonicalQueryString(request.query)).append("\n");
  out.append(headers.block).append("\n");
  out.append(headers.signed_headers).append("\n");
  out.append(request.payload_hash);
  return out;
}

Expected<std::string> StringToSign(std::string_view amz_date, std::string_view scope,
                                   std::string_view canonical_request) {
  MF_ASSIGN_OR_RETURN(std::string hash, Sha256Hex(canonical_request));
  std::string out = "AWS4-HMAC-SHA256\n";
  out.append(amz_date).append("\n").append(scope).append("\n").append(hash);
  return out;
}

Expected<SigV4Signature> SignRequest(const SigV4Request& request,
                                     const SigV4Credentials& credentials,
                                     std::string_view amz_date) {
  if (!IsAmzDate(amz_date)) {
    return Fail(InvalidArgument("amz_date", "expected YYYYMMDDTHHMMSSZ, got '" +
                                                std::string(amz_date) + "'"));
  }
  if (request.method.empty()) return Fail(InvalidArgument("method", "must not be empty"));
  const std::string_view date = amz_date.substr(0, 8);
  const std::string scope = CredentialScope(date, credentials.region, credentials.service);

  SigV4Signature result;
  result.canonical_request = CanonicalRequest(request);
  result.signed_headers = CanonicalizeHeaders(request.headers).signed_headers;
  MF_ASSIGN_OR_RETURN(result.string_to_sign,
                      StringToSign(amz_date, scope, result.canonical_request));
  MF_ASSIGN_OR_RETURN(auto key, SigningKey(credentials.secret_key, date, credentials.region,
                                           credentials.service));
  MF_ASSIGN_OR_RETURN(auto signature, HmacSha256(key, result.string_to_sign));
  result.signature = HexLower(signature);
  result.authorization = "AWS4-HMAC-SHA256 Credential=" + credentials.access_key + "/" + scope +
                         ",SignedHeaders=" + result.signed_headers +
                         ",Signature=" + result.signature;
  return result;
}

std::string FormatAmzDate(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buffer[32];
  const size_t n = std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
  return std::string(buffer, n);
}

}  // namespace modelfleet::blob::s3
