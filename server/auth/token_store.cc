#include "auth/token_store.h"

#include <spdlog/spdlog.h>

#include "events/event_log.h"
#include "modelfleet/crypto.h"
#include "modelfleet/validation.h"
#include "util/cache_sync.h"
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

void TokenStore::StartCacheSync(std::chrono::milliseconds poll_interval) {
  watcher_ = std::thread([this, poll_interval] {
    util::CacheSync sync;
    sync.what = "token cache";
    sync.poll_interval = poll_interval;
    sync.reload_every = std::max<std::chrono::milliseconds>(cache_ttl_ / 2, poll_interval);
    sync.apply_changes_since = [this](int64_t since) { return DropRevokedSince(since); };
    sync.load_all = [this] { return Preload(); };
    util::RunCacheSync(sync, stop_watcher_, mu_, watcher_wake_);
  });
}

Expected<int64_t> TokenStore::DropRevokedSince(int64_t since_micros) {
  // Revocations are stamped with their transaction's start time, so one that commits after
  // this poll may carry an earlier stamp: re-read a margin of a few seconds.
  constexpr int64_t kLateCommitMarginMicros = 5'000'000;
  std::vector<std::string> revoked;
  int64_t clock = 0;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto now, tx.Exec("SELECT " MF_EPOCH_MICROS("clock_timestamp()")));
    clock = now[0].Int(0);
    if (since_micros == 0) return Status::Ok();
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT token_hash FROM api_tokens WHERE revoked_at >= to_timestamp($1::float8 / 1e6)",
        {static_cast<double>(since_micros - kLateCommitMarginMicros)}));
    for (const auto& row : rows) revoked.push_back(row.Str(0));
    return Status::Ok();
  }));
  std::lock_guard lock(mu_);
  for (const auto& hash : revoked) cache_.erase(hash);
  return clock;
}

Status TokenStore::Preload() {
  constexpr int64_t kPage = 10'000;
  const auto started = std::chrono::steady_clock::now();
  size_t loaded = 0;
  int64_t after = 0;
  for (;;) {
    std::vector<std::pair<std::string, CachedPrincipal>> page;
    MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "SELECT id, name, role, " MF_EPOCH_MICROS("expires_at") ", token_hash FROM api_tokens "
          "WHERE id > $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) ORDER BY id LIMIT $2",
          {after, kPage}));
      page.reserve(rows.size());
      for (const auto& row : rows) {
        CachedPrincipal entry;
        entry.principal = {row.Int(0), row.Str(1), ParseRole(row.Str(2)).value_or(v1::ROLE_UNSPECIFIED)};
        if (auto micros = row.OptInt(3)) {
          entry.expires = std::chrono::system_clock::time_point(std::chrono::microseconds(*micros));
        }
        page.emplace_back(row.Str(4), std::move(entry));
        after = row.Int(0);
      }
      return Status::Ok();
    }));
    if (page.empty()) break;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    loaded += page.size();
    for (auto& [hash, entry] : page) {
      entry.fetched = now;
      cache_.insert_or_assign(std::move(hash), std::move(entry));
    }
    if (static_cast<int64_t>(page.size()) < kPage) break;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  spdlog::log(preloaded_ ? spdlog::level::debug : spdlog::level::info, "token cache: loaded {} live tokens in {} ms",
              loaded, ms.count());
  preloaded_ = true;
  return Status::Ok();
}

TokenStore::CacheStats TokenStore::Stats() {
  std::lock_guard lock(mu_);
  return {hits_, misses_, cache_.size(), preloaded_.load()};
}

Expected<v1::CreateTokenResponse> TokenStore::Create(const v1::CreateTokenRequest& request,
                                                     const std::string& created_by) {
  v1::CreateTokenResponse response;
  MF_RETURN_IF_ERROR(pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(response, CreateWithin(tx, request, created_by));
    return StatusOf(events::AppendEvent(tx, {"token.created", created_by, "token", std::to_string(response.token().id()),
                                             events::Payload()
                                                 .Str("name", response.token().name())
                                                 .Str("role", RoleName(response.token().role()))}));
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
      ++hits_;
      return it->second.principal;
    }
    ++misses_;
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

Expected<v1::Token> TokenStore::Revoke(int64_t id, const std::string& revoked_by) {
  v1::Token token;
  Status s = pool_.Write([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING " +
            std::string(kTokenColumns) + ", token_hash, revoked_at = now()",
        {id}));
    if (rows.empty()) return NotFound("token " + std::to_string(id) + " does not exist");
    token = TokenFromRow(rows[0]);
    {
      std::lock_guard lock(mu_);
      cache_.erase(rows[0].Str(7));
    }
    if (!rows[0].Bool(8)) return Status::Ok();  // revoked before: one event
    return StatusOf(events::AppendEvent(tx, {"token.revoked", revoked_by, "token", std::to_string(id),
                                             events::Payload()
                                                 .Str("name", token.name())
                                                 .Str("role", RoleName(token.role()))}));
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
