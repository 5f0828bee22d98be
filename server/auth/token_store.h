// API tokens: created with a role, shown once, stored only as SHA-256 hashes.
//
// A secret is "mf_" followed by 64 hex characters (256 random bits). Because secrets are
// high-entropy random strings, a plain SHA-256 is the right hash (no password stretching
// needed), and lookups are by hash.
//
// Authenticate() caches positive results for `cache_ttl` (default 5 s) so the per-call cost
// is a hash and a map lookup. A revoked token stops working at once on the replica that
// revoked it; on other replicas within cache_ttl, or within the poll interval when
// StartCacheSync runs. StartCacheSync also loads every live token into the cache at start and
// again every cache_ttl / 2, so a replica that has just started, or a fleet checking in every
// minute with a cache_ttl of minutes, authenticates from memory instead of one database round
// trip per device.
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

  // Writes a token.created event with the token. Errors: INVALID_ARGUMENT (name, role,
  // ttl_seconds), UNAVAILABLE.
  Expected<v1::CreateTokenResponse> Create(const v1::CreateTokenRequest& request,
                                           const std::string& created_by);
  // Same as Create, inside the caller's transaction (for device enrollment, which creates the
  // device row and its credential atomically). The cache is not touched. No event: the
  // caller's own event (device.enrolled) covers the credential.
  Expected<v1::CreateTokenResponse> CreateWithin(db::Tx& tx, const v1::CreateTokenRequest& request,
                                                 const std::string& created_by);
  // Revokes inside the caller's transaction and drops the token from this replica's cache.
  Status RevokeWithin(db::Tx& tx, int64_t id);

  // UNAUTHENTICATED if the secret is malformed, unknown, revoked or expired; UNAVAILABLE.
  Expected<Principal> Authenticate(const std::string& secret);
  // Writes a token.revoked event (the first time only) naming `revoked_by` (a principal's
  // Actor()). NOT_FOUND, UNAVAILABLE. Revoking twice is OK.
  Expected<v1::Token> Revoke(int64_t id, const std::string& revoked_by);
  Expected<std::vector<v1::Token>> List(bool include_revoked);
  // The caller's own token.
  Expected<v1::Token> Get(int64_t id);

  static std::string HashSecret(const std::string& secret);

  // Starts the background thread that keeps this replica's cache in step with the database:
  // Preload() at once and every cache_ttl / 2, and every `poll_interval` drops the tokens
  // revoked (by any replica) since the previous successful poll, so a database outage longer
  // than the poll interval misses no revocation. Stops when the store is destroyed.
  void StartCacheSync(std::chrono::milliseconds poll_interval);
  // Loads every live (not revoked, not expired) token into the cache, in pages.
  // UNAVAILABLE if the database is down (the cache is kept as it is).
  Status Preload();
  // Drops the tokens revoked at or after `since` (database clock, microseconds since the
  // epoch, minus a few seconds for transactions that committed late); returns the database
  // clock of this poll, to be passed as `since` next time.
  Expected<int64_t> DropRevokedSince(int64_t since_micros);

  struct CacheStats {
    uint64_t hits = 0, misses = 0;
    size_t entries = 0;
    bool preloaded = false;  // a full Preload() has finished
  };
  CacheStats Stats();
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
  uint64_t hits_ = 0, misses_ = 0;                          // under mu_
  std::atomic<bool> preloaded_{false};

  std::atomic<bool> stop_watcher_{false};
  std::condition_variable watcher_wake_;
  std::thread watcher_;
};

}  // namespace modelfleet::auth
