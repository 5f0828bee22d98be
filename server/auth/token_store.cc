#include "auth/token_store.h"

#include "modelfleet/crypto.h"
#include "modelfleet/validation.h"
#include "util/time.h"

namespace modelfleet::auth {

namespace {

constexpr std::string_view kSecretPrefix = "mf_";
constexpr std::string_view kTokenColumns =
    "id, name, role, created_by, " MF_EPOCH_MICROS("created_at") ", " MF_EPOCH_MICROS("expires_at") ", "
    MF_EPOCH_MICROS("revoked_at");

v1::Token TokenFromRow(const db::Row& row) {
  v1::Token t;
  t.set_id(row.Int(0));
  t.set_name(row.Str(1));
  t.set_role(ParseRole(row.Str(2)).value_or(v1::ROLE_UNSPECIFIED));
  t.set_created_by(row.Str(3));
  SetTimestamp(row.OptInt(4), t.mutable_create_time());
  SetTimestamp(row.OptInt(5), t.mutable_expire_time());
  SetTimestamp(row.OptInt(6), t.mutable_revoke_time());
  if (row.IsNull(5)) t.clear_expire_time();
  if (row.IsNull(6)) t.clear_revoke_time();
  return t;
}

}  // namespace

TokenStore::TokenStore(db::Pool& pool, std::chrono::milliseconds cache_ttl)
    : pool_(pool), cache_ttl_(cache_ttl) {}

std::string TokenStore::HashSecret(const std::string& secret) { return Sha256Hex(secret); }

TokenStore::~TokenStore() {
  stop_watcher_ = true;
  watcher_wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void TokenStore::StartRevocationWatcher(std::chrono::milliseconds interval) {
  watcher_ = std::thread([this, interval] {
    while (!stop_watcher_) {
      {
        std::unique_lock lock(mu_);
        watcher_wake_.wait_for(lock, interval, [&] { return stop_watcher_.load(); });
      }
      if (stop_watcher_) break;
      // A window of several intervals, so a slow or failed poll misses nothing.
      (void)DropRecentlyRevoked(interval * 5 + std::chrono::seconds(5));
    }
  });
}

Status TokenStore::DropRecentlyRevoked(std::chrono::milliseconds window) {
  std::vector<std::string> revoked;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT token_hash FROM api_tokens WHERE revoked_at > now() - make_interval(secs => $1::float8)",
        {static_cast<double>(window.count()) / 1000.0}));
    for (const auto& row : rows) revoked.push_back(row.Str(0));
    return Status::Ok();
  }));
  std::lock_guard lock(mu_);
  for (const auto& hash : revoked) cache_.erase(hash);
  return Status::Ok();
}

Expected<v1::CreateTokenResponse> TokenStore::Create(const v1::CreateTokenRequest& request,
                                                     const std::string& created_by) {
  v1::CreateTokenResponse response;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(response, CreateWithin(tx, request, created_by));
    return Status::Ok();
  }));
  return response;
}

Expected<v1::CreateTokenResponse> TokenStore::CreateWithin(db::Tx& tx, const v1::CreateTokenRequest& request,
                                                           const std::string& created_by) {
  MF_RETURN_IF_ERROR(ValidateIdentifier(request.name(), "name"));
  std::string role = RoleName(request.role());
  if (!ParseRole(role)) return Fail(InvalidArgument("role", "must be admin, publisher, device or viewer"));
  if (request.ttl_seconds() < 0 || request.ttl_seconds() > 10LL * 365 * 24 * 3600) {
    return Fail(InvalidArgument("ttl_seconds", "must be between 0 (never expires) and 10 years"));
  }
  std::string secret = std::string(kSecretPrefix) + HexEncode(RandomBytes(32));
  std::string sql = "INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at) "
                    "VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint > 0 THEN now() + make_interval(secs => $5::bigint) END) "
                    "RETURNING " + std::string(kTokenColumns);
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(sql, {request.name(), role, HashSecret(secret), created_by,
                                               static_cast<int64_t>(request.ttl_seconds())}));
  v1::CreateTokenResponse response;
  *response.mutable_token() = TokenFromRow(rows[0]);
  response.set_secret(secret);
  return response;
}

Status TokenStore::RevokeWithin(db::Tx& tx, int64_t id) {
  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
      "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING token_hash", {id}));
  if (rows.empty()) return NotFound("token " + std::to_string(id) + " does not exist");
  std::lock_guard lock(mu_);
  cache_.erase(rows[0].Str(0));
  return Status::Ok();
}

Expected<Principal> TokenStore::Authenticate(const std::string& secret) {
  if (!secret.starts_with(kSecretPrefix) || secret.size() != kSecretPrefix.size() + 64) {
    return Fail(Unauthenticated("malformed bearer token"));
  }
  std::string hash = HashSecret(secret);
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.fetched < cache_ttl_ &&
        (!it->second.expires || *it->second.expires > std::chrono::system_clock::now())) {
      return it->second.principal;
    }
  }
  CachedPrincipal entry;
  bool found = false;
  Status s = pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT id, name, role, " MF_EPOCH_MICROS("expires_at") " FROM api_tokens "
        "WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        {hash}));
    if (rows.empty()) return Status::Ok();
    found = true;
    entry.principal = {rows[0].Int(0), rows[0].Str(1), ParseRole(rows[0].Str(2)).value_or(v1::ROLE_UNSPECIFIED)};
    if (auto micros = rows[0].OptInt(3)) {
      entry.expires = std::chrono::system_clock::time_point(std::chrono::microseconds(*micros));
    }
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  std::lock_guard lock(mu_);
  if (!found) {
    cache_.erase(hash);
    return Fail(Unauthenticated("unknown, revoked or expired bearer token"));
  }
  entry.fetched = now;
  if (cache_.size() > 4'000'000) cache_.clear();  // bound memory under token churn
  cache_[hash] = entry;
  return entry.principal;
}

Expected<v1::Token> TokenStore::Revoke(int64_t id) {
  v1::Token token;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING " +
            std::string(kTokenColumns) + ", token_hash",
        {id}));
    if (rows.empty()) return NotFound("token " + std::to_string(id) + " does not exist");
    token = TokenFromRow(rows[0]);
    std::lock_guard lock(mu_);
    cache_.erase(rows[0].Str(7));
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return token;
}

Expected<std::vector<v1::Token>> TokenStore::List(bool include_revoked) {
  std::vector<v1::Token> tokens;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " + std::string(kTokenColumns) +
                                           " FROM api_tokens WHERE $1::boolean OR revoked_at IS NULL ORDER BY id",
                                           {include_revoked}));
    for (const auto& row : rows) tokens.push_back(TokenFromRow(row));
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return tokens;
}

Expected<v1::Token> TokenStore::Get(int64_t id) {
  v1::Token token;
  Status s = pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " + std::string(kTokenColumns) + " FROM api_tokens WHERE id = $1", {id}));
    if (rows.empty()) return NotFound("token " + std::to_string(id) + " does not exist");
    token = TokenFromRow(rows[0]);
    return Status::Ok();
  });
  MF_RETURN_IF_ERROR(s);
  return token;
}

}  // namespace modelfleet::auth
