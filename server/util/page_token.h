// Keyset pagination shared by every List RPC: page sizes and opaque page tokens.
//
// A token is the hex of "<kind>|<fingerprint>|<last key>": the fingerprint binds it to the
// query it came from (INVALID_ARGUMENT page_token when reused with another), the last key is
// where the next page starts (an immutable, ordered key, so concurrent writes neither repeat
// nor skip rows).
#pragma once

#include <string>
#include <string_view>

#include "modelfleet/crypto.h"
#include "modelfleet/numbers.h"
#include "modelfleet/status.h"

namespace modelfleet {

inline constexpr int kMaxPageSize = 1000;

// 0 means `default_size`. INVALID_ARGUMENT page_size outside [0, kMaxPageSize].
inline Expected<int> CheckedPageSize(int32_t requested, int default_size) {
  if (requested < 0 || requested > kMaxPageSize) {
    return Fail(InvalidArgument("page_size", "must be between 0 and " + std::to_string(kMaxPageSize)));
  }
  return requested == 0 ? default_size : requested;
}

inline std::string EncodePageToken(std::string_view kind, const std::string& fingerprint,
                                   const std::string& last_key) {
  return HexEncode(std::string(kind) + "|" + fingerprint + "|" + last_key);
}

// The last key of a token made by EncodePageToken with the same kind and fingerprint.
inline Expected<std::string> DecodePageToken(const std::string& token, std::string_view kind,
                                             const std::string& fingerprint) {
  auto raw = HexDecode(token);
  std::string prefix = std::string(kind) + "|" + fingerprint + "|";
  if (!raw || !raw->starts_with(prefix)) {
    return Fail(InvalidArgument("page_token", "is not a token returned for this query"));
  }
  return raw->substr(prefix.size());
}

// A numeric last key. INVALID_ARGUMENT page_token if it is not one.
inline Expected<int64_t> PageTokenId(const std::string& last_key) {
  const std::optional<int64_t> v = ParseNumber<int64_t>(last_key);
  if (!v) return Fail(InvalidArgument("page_token", "is corrupt"));
  return *v;
}

}  // namespace modelfleet
