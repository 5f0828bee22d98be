#include "db/migrations.h"

#include <algorithm>
#include <map>
#include <set>

#include "modelfleet/crypto.h"

namespace modelfleet::db {

namespace {

constexpr std::string_view kCreateSchemaMigrations =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";
// The runner's own bookkeeping (not a numbered migration: it must exist before any of them
// is checked). Databases migrated before checksums were recorded get theirs on the next run.
constexpr std::string_view kAddChecksumColumn =
    "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS sha256 text";

std::string MigrationLabel(const Migration& migration) {
  std::string number = std::to_string(migration.version);
  if (number.size() < 4) number.insert(0, 4 - number.size(), '0');
  return number + "_" + migration.name;
}

Status CheckMigrationList(const std::vector<Migration>& migrations) {
  int previous = 0;
  for (const Migration& migration : migrations) {
    if (migration.version <= previous) {
      return InvalidArgument("migrations", "migration versions must be positive, unique and "
                                           "ascending; " + MigrationLabel(migration) +
                                               " comes after version " +
                                               std::to_string(previous));
    }
    previous = migration.version;
  }
  return Status::Ok();
}

// What each applied version recorded: its SHA-256 ("" for rows from before checksums).
Expected<std::map<int, std::string>> ReadAppliedChecksums(Tx& tx) {
  MF_ASSIGN_OR_RETURN(Result rows, tx.Exec("SELECT version, coalesce(sha256, '') FROM schema_migrations"));
  std::map<int, std::string> out;
  for (const Row& row : rows) out[static_cast<int>(row.Int(0))] = row.Str(1);
  return out;
}

Expected<std::vector<int>> ReadAppliedVersions(Tx& tx) {
  MF_ASSIGN_OR_RETURN(Result exists,
                      tx.Exec("SELECT to_regclass('schema_migrations') IS NOT NULL"));
  if (!exists[0].Bool(0)) return std::vector<int>{};
  MF_ASSIGN_OR_RETURN(Result rows, tx.Exec("SELECT version FROM schema_migrations ORDER BY 1"));
  std::vector<int> versions;
  versions.reserve(rows.size());
  for (const Row& row : rows) versions.push_back(static_cast<int>(row.Int(0)));
  return versions;
}

}  // namespace

Expected<std::vector<int>> AppliedMigrations(Pool& pool) {
  std::vector<int> versions;
  MF_RETURN_IF_ERROR(pool.Read([&](Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(versions, ReadAppliedVersions(tx));
    return Status::Ok();
  }));
  return versions;
}

Status ApplyMigrations(Pool& pool, const std::vector<Migration>& migrations) {
  MF_RETURN_IF_ERROR(CheckMigrationList(migrations));
  return pool.WithSession([&](Session& session) -> Status {
    // Released by WithSession when this callback returns (pg_advisory_unlock_all), or by the
    // server if the connection drops.
    MF_RETURN_IF_ERROR(StatusOf(
        session.ExecAutocommit("SELECT pg_advisory_lock($1)", {kMigrationsAdvisoryLockKey})));
    MF_RETURN_IF_ERROR(session.Write([](Tx& tx) -> Status {
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec(kCreateSchemaMigrations)));
      return StatusOf(tx.Exec(kAddChecksumColumn));
    }));

    std::vector<int> applied;
    std::map<int, std::string> checksums;
    MF_RETURN_IF_ERROR(session.Read([&](Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(applied, ReadAppliedVersions(tx));
      MF_ASSIGN_OR_RETURN(checksums, ReadAppliedChecksums(tx));
      return Status::Ok();
    }));
    std::set<int> known;
    for (const Migration& migration : migrations) known.insert(migration.version);
    for (int version : applied) {
      if (!known.contains(version)) {
        return FailedPrecondition(
            "the database has schema migration version " + std::to_string(version) +
            " which this build does not know (it knows up to " +
            (known.empty() ? std::string("none") : std::to_string(*known.rbegin())) +
            "); refusing to run against a newer schema");
      }
    }

    // A landed migration is never edited: the database may already run what it said before.
    for (const Migration& migration : migrations) {
      auto recorded = checksums.find(migration.version);
      if (recorded == checksums.end()) continue;
      const std::string sha256 = Sha256Hex(migration.sql);
      if (recorded->second.empty()) {
        MF_RETURN_IF_ERROR(session.Write([&](Tx& tx) -> Status {
          return StatusOf(tx.Exec("UPDATE schema_migrations SET sha256 = $2 WHERE version = $1 AND sha256 IS NULL",
                                  {int64_t{migration.version}, sha256}));
        }));
      } else if (recorded->second != sha256) {
        return FailedPrecondition("migrations/" + MigrationLabel(migration) +
                                  ".sql was changed after it was applied to this database (applied sha256 " +
                                  recorded->second + ", this build's " + sha256 +
                                  "); a landed migration must never be edited: restore it and add a new one");
      }
    }

    const std::set<int> already(applied.begin(), applied.end());
    for (const Migration& migration : migrations) {
      if (already.contains(migration.version)) continue;
      Status status = session.Write([&](Tx& tx) -> Status {
        MF_RETURN_IF_ERROR(StatusOf(tx.ExecScript(migration.sql)));
        return StatusOf(tx.Exec("INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                                {int64_t{migration.version}, migration.name, Sha256Hex(migration.sql)}));
      });
      if (!status.ok()) return status.Annotate("migration " + MigrationLabel(migration));
    }
    return Status::Ok();
  });
}

}  // namespace modelfleet::db
