// API tokens: created with a role, shown once, stored only as SHA-256 hashes.
//
// A secret is "mf_" followed by 64 hex characters (256 random bits). Because secrets are
// high-entropy random strings, a plain SHA-256 is the right hash (no password stretching
// needed), and lookups are by hash.
//
// Authenticate() caches positive results for `cache_ttl` (default 5 s) so the per-call cost
// is a hash and a map lookup. A revoked token stops working at once on the replica that
// revoked it; on other replicas within cache_ttl, or within the watch interval when
// StartRevocationWatcher runs (which lets cache_ttl be long: a fleet checking in every minute
// then authenticates from memory).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/principal.h"
#include "db/pool.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/admin.pb.h"

namespace modelfleet::auth {

class TokenStore {
 public:
  explicit TokenStore(db::Pool& pool, std::chrono::milliseconds cache_ttl = std::chrono::seconds(5));

  // Errors: INVALID_ARGUMENT (name, role, ttl_seconds), UNAVAILABLE.
  Expected<v1::CreateTokenResponse> Create(const v1::CreateTokenRequest& request,
                                           const std::string& created_by);
  // Same as Create, inside the caller's transaction (for device enrollment, which creates the
  // device row and its credential atomically). The cache is not touched.
  Expected<v1::CreateTokenResponse> CreateWithin(db::Tx& tx, const v1::CreateTokenRequest& request,
                                                 const std::string& created_by);
  // Revokes inside the caller's transaction and drops the token from this replica's cache.
  Status RevokeWithin(db::Tx& tx, int64_t id);

  // UNAUTHENTICATED if the secret is malformed, unknown, revoked or expired; UNAVAILABLE.
  Expected<Principal> Authenticate(const std::string& secret);
  // NOT_FOUND, UNAVAILABLE. Revoking twice is OK.
  Expected<v1::Token> Revoke(int64_t id);
  Expected<std::vector<v1::Token>> List(bool include_revoked);
  // The caller's own token.
  Expected<v1::Token> Get(int64_t id);

  static std::string HashSecret(const std::string& secret);

  // Polls every `interval` for tokens revoked (by any replica) within the last few intervals
  // and drops them from this replica's cache. Stops when the store is destroyed.
  void StartRevocationWatcher(std::chrono::milliseconds interval);
  // One poll of the above. UNAVAILABLE if the database is down (the cache is kept).
  Status DropRecentlyRevoked(std::chrono::milliseconds window);
  ~TokenStore();

 private:
  struct CachedPrincipal {
    Principal principal;
    std::chrono::steady_clock::time_point fetched;
    std::optional<std::chrono::system_clock::time_point> expires;
  };
  db::Pool& pool_;
  const std::chrono::milliseconds cache_ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, CachedPrincipal> cache_;  // by hash

  std::atomic<bool> stop_watcher_{false};
  std::condition_variable watcher_wake_;
  std::thread watcher_;
};

}  // namespace modelfleet::auth
