// Schema migrations: numbered SQL files from migrations/ (NNNN_name.sql), embedded into the
// binary at build time by the mf_migrations library, and applied in order at server start.
#pragma once

#include <string>
#include <vector>

#include "db/pool.h"
#include "modelfleet/status.h"

namespace modelfleet::db {

struct Migration {
  int version = 0;   // NNNN from the file name; unique, > 0
  std::string name;  // the part after "NNNN_", without ".sql" ("registry")
  std::string sql;   // the whole file: one or more statements
};

// Every migrations/*.sql file of the source tree, sorted by version. Defined in the generated
// source of the mf_migrations library (link it to use this).
std::vector<Migration> EmbeddedMigrations();

// The session-level advisory lock key ApplyMigrations holds while it works.
inline constexpr int64_t kMigrationsAdvisoryLockKey = 0x6d666d6967726174;  // "mfmigrat"

// Brings the database schema up to date with `migrations`:
//  - holds pg_advisory_lock(kMigrationsAdvisoryLockKey) on one connection for the whole run,
//    so concurrent callers (e.g. two servers starting at once) serialise: the second waits,
//    then finds everything applied;
//  - creates schema_migrations(version int primary key, name text, applied_at timestamptz,
//    sha256 text) if it does not exist (adding sha256 to an older one);
//  - checks that every applied migration's SQL is byte for byte what was applied (its SHA-256
//    is recorded when it is applied; rows from before checksums get the current file's);
//    FAILED_PRECONDITION naming the file otherwise, before anything is applied;
//  - applies each migration whose version is not recorded yet, in ascending order, each in its
//    own transaction together with its schema_migrations row (a failing migration leaves no
//    trace and stops the run; earlier ones stay applied).
// Returns OK when every migration is applied (including when there was nothing to do);
// INVALID_ARGUMENT if `migrations` has non-positive, duplicate or unsorted versions;
// FAILED_PRECONDITION if the database records a version `migrations` does not contain
// (e.g. a newer version applied by newer code: this code must not run against it) or if an
// applied migration's file was edited since;
// the migration's SQL error annotated with "migration NNNN_name" if one fails;
// UNAVAILABLE / RESOURCE_EXHAUSTED from the pool. Thread-safe (uses only `pool`).
Status ApplyMigrations(Pool& pool, const std::vector<Migration>& migrations);

// The versions recorded in schema_migrations, ascending; empty if the table does not exist.
Expected<std::vector<int>> AppliedMigrations(Pool& pool);

}  // namespace modelfleet::db
