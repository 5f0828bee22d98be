// The PostgreSQL access layer of modelfleet: a thread-safe connection pool, transactions run
// through callbacks, and statements with bound parameters.
//
// Nothing outside server/db/ includes libpqxx: this header exposes only plain C++ types, and
// every libpqxx exception is caught inside server/db/ and turned into a Status (see
// CurrentExceptionToStatus in pool.cc for the mapping, summarised below).
//
// Error mapping (Tx::Exec, Pool::Write/Read/..., Pool::Open):
//   23505 unique_violation                       -> ALREADY_EXISTS
//   23503 foreign_key_violation                  -> FAILED_PRECONDITION
//   23514 check_violation, 23502 not_null_violation,
//   class 22 data_exception (bad input, overflow) -> INVALID_ARGUMENT
//   40001 serialization_failure, 40P01 deadlock, other class 40
//                                                -> ABORTED (safe to retry the whole transaction)
//   57014 query_canceled (statement_timeout)     -> DEADLINE_EXCEEDED
//   broken connection, class 08, 57P01..57P03 (shutdown, "the database system is starting up"),
//   53300 too_many_connections                   -> UNAVAILABLE
//   connection lost during COMMIT, 40003 (outcome not known) -> UNKNOWN
//   everything else                              -> INTERNAL
// Messages from the server include the SQLSTATE: "[23505] ERROR: duplicate key value ...".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::db {

// Binary data for a bytea parameter (a std::string parameter is text and must be valid
// UTF-8 without NUL bytes).
struct Bytes {
  std::string data;
};

// A statement parameter. Sent to the server as text in the extended query protocol
// (never spliced into the SQL): nullptr is SQL NULL, bool is "true"/"false", double uses the
// shortest representation that round-trips exactly ("Infinity"/"-Infinity"/"NaN" for the
// special values), Bytes is bytea hex input ("\\x0aff..."). The server infers each
// parameter's type from the statement; add a cast ($1::bigint) where the context does not
// determine it.
using Param = std::variant<std::nullptr_t, int64_t, double, bool, std::string, Bytes>;

// `items` as a PostgreSQL text[] literal, "{RUNNING,COMPLETED}", to bind as a parameter of
// "col = ANY($n::text[])". Items must need no quoting (letters, digits and '_', as the
// database spellings of enum values do).
std::string TextArrayLiteral(const std::vector<std::string_view>& items);

// One result row. Values are copied out of libpqxx in text form, so a Row outlives the
// transaction that produced it. Accessors take a 0-based column index; an index out of range
// is a programming error (checked by assert in debug builds, NULL-like value otherwise).
class Row {
 public:
  Row() = default;
  explicit Row(std::vector<std::optional<std::string>> values) : values_(std::move(values)) {}

  size_t size() const { return values_.size(); }
  bool IsNull(size_t i) const;
  // The value's text form; "" if NULL.
  std::string Str(size_t i) const;
  // Integer columns (smallint/int/bigint). 0 if NULL or not an integer.
  int64_t Int(size_t i) const;
  // float4/float8/numeric columns, exactly as sent by the server ("Infinity", "NaN" included).
  // 0.0 if NULL or not a number.
  double Double(size_t i) const;
  // boolean columns ("t"/"f"). false if NULL.
  bool Bool(size_t i) const;
  std::optional<std::string> OptStr(size_t i) const;
  // nullopt if NULL (or not an integer).
  std::optional<int64_t> OptInt(size_t i) const;
  // bytea columns, decoded from the server's hex output to raw bytes. "" if NULL.
  std::string Bytea(size_t i) const;

 private:
  const std::optional<std::string>* Cell(size_t i) const;
  std::vector<std::optional<std::string>> values_;
};

// The rows of one statement, plus the number of rows an INSERT/UPDATE/DELETE affected.
class Result {
 public:
  Result() = default;
  Result(std::vector<std::string> column_names, std::vector<Row> rows, uint64_t affected_rows)
      : column_names_(std::move(column_names)),
        rows_(std::move(rows)),
        affected_rows_(affected_rows) {}

  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  const Row& operator[](size_t i) const { return rows_[i]; }
  auto begin() const { return rows_.begin(); }
  auto end() const { return rows_.end(); }
  // Rows inserted/updated/deleted by INSERT/UPDATE/DELETE (with or without RETURNING); for
  // SELECT, the number of rows returned; 0 for statements without a row count (DDL).
  uint64_t affected_rows() const { return affected_rows_; }
  // Column names in result order.
  const std::vector<std::string>& column_names() const { return column_names_; }

 private:
  std::vector<std::string> column_names_;
  std::vector<Row> rows_;
  uint64_t affected_rows_ = 0;
};

namespace internal {
struct TxContext;  // defined in pool.cc; wraps the libpqxx transaction
struct PoolSlot;   // defined in pool.cc; one pooled connection (or room for one)
}  // namespace internal

// One database transaction. Only valid inside the callback of Pool::Write/Read/
// WriteWithAdvisoryLock or Session::Write/Read; never store it. Not thread-safe: use it only
// from the thread running the callback.
class Tx {
 public:
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;

  // Runs exactly one SQL statement with bound parameters $1, $2, ... (values are never
  // concatenated into the SQL). Returns the rows, or the mapped error (see the table at the
  // top of this file).
  //
  // After the first failed statement the transaction is aborted (PostgreSQL semantics): later
  // calls return that first error again without contacting the server, and the enclosing
  // Write/Read rolls back and returns it even if the callback ignores it and returns OK.
  Expected<Result> Exec(std::string_view sql, const std::vector<Param>& params = {});

  // Runs a script of one or more ';'-separated statements without parameters (simple query
  // protocol), e.g. a migration. Returns the result of the last statement. Same error rules
  // as Exec.
  Expected<Result> ExecScript(std::string_view sql);

  // The first error a statement in this transaction returned, or OK.
  const Status& first_error() const { return first_error_; }

 private:
  friend class Pool;
  friend class Session;
  explicit Tx(internal::TxContext* context) : context_(context) {}
  Expected<Result> Run(std::string_view sql, const std::vector<Param>* params);

  internal::TxContext* context_;
  Status first_error_;
};

struct PoolOptions {
  // libpq connection string: "host=127.0.0.1 port=5432 dbname=modelfleet user=postgres" or
  // "postgresql://..." URI.
  std::string conninfo;
  // Number of connections kept open (at most `size` transactions run at once). Must be >= 1.
  int size = 4;
  // How long Write/Read wait for a free connection before RESOURCE_EXHAUSTED (a healthy but
  // saturated pool; an unreachable database answers UNAVAILABLE at once, see Pool).
  std::chrono::milliseconds acquire_timeout{5000};
  // How long Open keeps retrying to connect while the database is unreachable or starting up,
  // before returning UNAVAILABLE.
  std::chrono::milliseconds reconnect_budget{2000};
  // While the database is down, how long a call waits for the outcome of the probe another
  // call is making before it answers UNAVAILABLE.
  std::chrono::milliseconds probe_wait{100};
};

class Session;

// A pool of long-lived connections. All methods are thread-safe. Each call takes one
// connection for its duration (waiting up to acquire_timeout if all are busy) and returns it
// afterwards. The pool must outlive every call into it (do not destroy it while a call is in
// progress).
//
// Reconnection: a connection that turns out to be broken (e.g. after PostgreSQL restarted) is
// dropped and replaced. If that is discovered while beginning the transaction, i.e. before the
// callback ran, the call reconnects once, at once, so the first call after the database comes
// back succeeds. If the connection breaks while the callback runs, the call returns
// UNAVAILABLE (the callback is not re-run; the transaction did not commit) and the connection
// is replaced for the next caller.
//
// A database that is down fails fast. When a connection attempt finds the server unreachable
// (refused, reset, "shutting down", "starting up"), the pool is marked down: from then on each
// call answers UNAVAILABLE ("database unreachable for N ms: <why>") without waiting for a
// connection, except one call at a time, the probe, which tries to connect as usual; calls
// arriving during a probe wait up to probe_wait for its outcome. The first probe that connects
// marks the pool up again, so recovery needs no timer and costs no extra round trip.
// RESOURCE_EXHAUSTED stays reserved for a reachable database whose connections are all busy.
//
// No exception escapes the pool: libpqxx errors become the Status mapping above, and an
// exception thrown by a callback rolls the transaction back and becomes INTERNAL.
class Pool {
 public:
  // Connects one connection right away to check the database is reachable (the others are
  // connected on first use). UNAVAILABLE if it cannot connect (after retrying within
  // reconnect_budget), INVALID_ARGUMENT if options.size < 1.
  static Expected<std::unique_ptr<Pool>> Open(const PoolOptions& options);

  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs fn in a read-write transaction (READ COMMITTED). Commits if fn returns OK and no
  // statement failed; otherwise rolls back and returns fn's error (or the first failed
  // statement's error if fn returned OK). Also returns RESOURCE_EXHAUSTED if no connection
  // became free within acquire_timeout, UNAVAILABLE if the database is unreachable, the
  // commit's error (e.g. ABORTED on serialization failure) if COMMIT fails, and UNKNOWN if
  // the connection broke during COMMIT (the transaction may or may not have committed).
  Status Write(const std::function<Status(Tx&)>& fn);

  // Same as Write, in a READ ONLY transaction (writes fail with INTERNAL, SQLSTATE 25006).
  Status Read(const std::function<Status(Tx&)>& fn);

  // For hot-path reads: runs fn's statements in autocommit mode, without BEGIN/COMMIT (one
  // round trip per statement instead of four for a one-statement transaction). Statements do
  // not share a snapshot. REQUIRES: fn only reads and may run twice: if the connection turns
  // out to be broken, fn is re-run once on a fresh connection.
  Status ReadAutocommit(const std::function<Status(Tx&)>& fn);

  // Same as Write, but the transaction first takes pg_advisory_xact_lock(lock_key) (waiting
  // for other holders); the lock is released when the transaction ends. Serialises callers
  // that use the same key, across processes.
  Status WriteWithAdvisoryLock(int64_t lock_key, const std::function<Status(Tx&)>& fn);

  // Holds one connection for the whole of fn, so fn can run several transactions on the same
  // database session (needed for session-level locks such as pg_advisory_lock). No transparent
  // reconnection happens inside a session: if the connection breaks, the Session's calls
  // return UNAVAILABLE. When fn returns, session-level advisory locks are released
  // (pg_advisory_unlock_all); if that fails the connection is discarded. Returns fn's status,
  // or RESOURCE_EXHAUSTED / UNAVAILABLE if no connection could be obtained.
  Status WithSession(const std::function<Status(Session&)>& fn);

  // Number of connections currently open (idle or in use). For tests and metrics.
  int open_connections() const;

  // For metrics; each field is read on its own (not one snapshot).
  struct Stats {
    int size = 0;              // connections the pool may hold (PoolOptions::size)
    int open_connections = 0;  // open, idle or in use
    int in_use = 0;            // held by a call (a transaction, a session) right now
    uint64_t acquisitions = 0;     // connections handed to calls
    uint64_t acquire_timeouts = 0; // calls that got RESOURCE_EXHAUSTED waiting for one
    // Total time calls spent waiting for a connection (including those that timed out).
    std::chrono::nanoseconds acquire_wait{0};
  };
  Stats GetStats() const;
  // Whether the last connection attempt found the database unreachable (see above).
  bool database_down() const { return down_flag_.load(std::memory_order_relaxed); }

 private:
  class Lease;  // exclusive use of one slot, returned to the pool on destruction
  friend class Session;

  explicit Pool(PoolOptions options);

  enum class Mode { kReadWrite, kReadOnly, kAutocommit };
  class ProbeTicket;  // the right to try the database while it is down; see AdmitCall
  // OK if the call may go on: the database is up, or this call is now the probe (*ticket).
  // UNAVAILABLE if it is down and the probe under way did not bring it back within probe_wait.
  Status AdmitCall(ProbeTicket* ticket);
  // What a connection attempt told about the database (any caller, probe or not).
  void NoteReachable();
  void NoteUnreachable(const Status& why);
  // Runs fn as Write/Read/ReadAutocommit/WriteWithAdvisoryLock do.
  Status Run(Mode mode, std::optional<int64_t> advisory_lock_key, const std::function<Status(Tx&)>& fn);
  // Waits for an idle slot (RESOURCE_EXHAUSTED after acquire_timeout); a caller that is not
  // the probe stops waiting with UNAVAILABLE when the database is found down meanwhile.
  Expected<Lease> Acquire(bool probe);
  void Release(std::unique_ptr<internal::PoolSlot> slot);
  // Connects the slot if needed, begins a transaction, runs fn, commits or rolls back. With
  // may_reconnect, a connection found broken before fn runs is replaced once.
  Status RunOnSlot(internal::PoolSlot& slot, Mode mode, std::optional<int64_t> advisory_lock_key,
                   const std::function<Status(Tx&)>& fn, bool may_reconnect);
  // One connection attempt if the slot has no connection; UNAVAILABLE on failure.
  Status ConnectOnce(internal::PoolSlot& slot);
  void Disconnect(internal::PoolSlot& slot);

  const PoolOptions options_;
  mutable std::mutex mu_;
  std::condition_variable slot_returned_;
  // Idle slots, FIFO so that sequential calls rotate through all connections.
  std::deque<std::unique_ptr<internal::PoolSlot>> idle_;
  std::atomic<int> open_connections_{0};
  // Metrics (GetStats).
  std::atomic<int> in_use_{0};
  std::atomic<uint64_t> acquisitions_{0}, acquire_timeouts_{0}, acquire_wait_ns_{0};

  // Database health (see the class comment). down_flag_ mirrors down_ for the lock-free check
  // on every call.
  std::atomic<bool> down_flag_{false};
  std::mutex health_mu_;
  std::condition_variable verdict_;     // a connection attempt told up or down
  bool down_ = false;                   // guarded by health_mu_, as are the fields below
  bool probing_ = false;
  uint64_t verdicts_ = 0;
  std::chrono::steady_clock::time_point down_since_;
  std::string down_reason_;
};

// One pooled connection held by Pool::WithSession. Valid only inside its callback; not
// thread-safe.
class Session {
 public:
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Like Pool::Write / Pool::Read, on this session's connection, without reconnecting.
  Status Write(const std::function<Status(Tx&)>& fn);
  Status Read(const std::function<Status(Tx&)>& fn);

  // Runs one statement with parameters outside any transaction (autocommit), e.g.
  // "SELECT pg_advisory_lock($1)". Same error mapping as Tx::Exec.
  Expected<Result> ExecAutocommit(std::string_view sql, const std::vector<Param>& params = {});

 private:
  friend class Pool;
  Session(Pool* pool, internal::PoolSlot* slot) : pool_(pool), slot_(slot) {}
  Pool* pool_;
  internal::PoolSlot* slot_;
};

}  // namespace modelfleet::db
