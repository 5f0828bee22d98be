// AWS Signature Version 4, header-based authentication ("Authorization: AWS4-HMAC-SHA256 ..."),
// as S3 and S3-compatible stores (MinIO) expect it. Pure functions: every input is explicit
// (no clock, no environment), so the published AWS examples can be reproduced exactly.
//
// Reference: AWS S3 API documentation, "Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk (AWS Signature Version 4)".
//
// S3 specifics followed here: the path is URI-encoded once (S3 does not double-encode it) and is
// not normalised (no removal of "." / ".." segments or duplicate slashes).
//
// Thread safety: all functions are re-entrant and may be called from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::blob::s3 {

// Raw (not yet encoded) query parameters, in any order; a parameter without a value ("?uploads")
// has an empty value. Duplicate names are allowed.
using QueryParams = std::vector<std::pair<std::string, std::string>>;

// HTTP headers as sent, names in any case. Every header given to SignRequest is signed.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// `s` with A-Z lowered (header names; no locale, other bytes kept).
std::string ToLower(std::string_view s);

// Percent-encodes `input` the AWS way: the unreserved characters A-Z a-z 0-9 '-' '.' '_' '~' are
// kept, every other byte becomes %XX with upper-case hex (so ' ' is %20, never '+'). '/' is kept
// as is when `encode_slash` is false (object key paths) and encoded as %2F otherwise (query
// names and values).
std::string UriEncode(std::string_view input, bool encode_slash);

// The canonical URI of an S3 request: the absolute, unencoded path encoded once with '/' kept.
// An empty path becomes "/". Example: "/test$file.text" -> "/test%24file.text".
std::string CanonicalUri(std::string_view path);

// Names and values encoded with UriEncode(.., true), joined as "name=value" (also when the value
// is empty: "lifecycle="), sorted by encoded name then encoded value, joined with '&'.
std::string CanonicalQueryString(const QueryParams& query);

struct CanonicalHeaders {
  // "name:value\n" per header: names lower-cased, values trimmed with inner runs of spaces
  // collapsed to one; sorted by name; values of repeated names joined with ','.
  std::string block;
  // Lower-cased names joined with ';' in the same order ("host;range;x-amz-date").
  std::string signed_headers;
};
CanonicalHeaders CanonicalizeHeaders(const HeaderList& headers);

// Lower-case hex of SHA-256(data); the value of x-amz-content-sha256 for a signed payload.
// Errors: INTERNAL if OpenSSL fails (out of memory).
Expected<std::string> Sha256Hex(std::span<const uint8_t> data);
Expected<std::string> Sha256Hex(std::string_view data);

// SHA-256 of the empty payload.
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// HMAC-SHA256(key, data). Errors: INTERNAL if OpenSSL fails.
Expected<std::array<uint8_t, 32>> HmacSha256(std::span<const uint8_t> key, std::string_view data);

// "YYYYMMDD/region/service/aws4_request".
std::string CredentialScope(std::string_view date, std::string_view region,
                            std::string_view service);

// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
// Errors: INTERNAL if OpenSSL fails.
Expected<std::array<uint8_t, 32>> SigningKey(std::string_view secret_key, std::string_view date,
                                            std::string_view region, std::string_view service);

// A request to sign. `headers` must contain exactly what will be sent (at least "host",
// "x-amz-date" and "x-amz-content-sha256" for S3); all of them are signed.
struct SigV4Request {
  std::string method;        // "GET", "PUT", ...
  std::string path;          // absolute and NOT encoded: "/bucket/key with space"
  QueryParams query;         // raw names and values
  HeaderList headers;
  std::string payload_hash;  // hex SHA-256 of the body (or "UNSIGNED-PAYLOAD")
};

struct SigV4Credentials {
  std::string access_key;
  std::string secret_key;
  std::string region;           // "us-east-1"
  std::string service = "s3";
};

// Every intermediate value, so tests can compare each step with the published examples.
struct SigV4Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;
  std::string signature;      // lower-case hex
  std::string authorization;  // the whole Authorization header value
};

// HTTPMethod\nCanonicalURI\nCanonicalQueryString\nCanonicalHeaders\n\nSignedHeaders\nPayloadHash
std::string CanonicalRequest(const SigV4Request& request);

// "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex SHA-256 of canonical_request>".
// Errors: INTERNAL if OpenSSL fails.
Expected<std::string> StringToSign(std::string_view amz_date, std::string_view scope,
                                   std::string_view canonical_request);

// Signs `request` at `amz_date` (ISO 8601 basic format, "20130524T000000Z"; the scope date is its
// first 8 characters). The Authorization value has the form
// "AWS4-HMAC-SHA256 Credential=<key>/<scope>,SignedHeaders=<names>,Signature=<hex>".
// Errors: INVALID_ARGUMENT (amz_date malformed, empty method), INTERNAL (OpenSSL failure).
Expected<SigV4Signature> SignRequest(const SigV4Request& request,
                                     const SigV4Credentials& credentials,
                                     std::string_view amz_date);

// Formats a UNIX time (seconds, UTC) as "YYYYMMDDTHHMMSSZ".
std::string FormatAmzDate(int64_t unix_seconds);

}  // namespace modelfleet::blob::s3
