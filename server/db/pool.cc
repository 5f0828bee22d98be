#include "db/pool.h"

#include <array>
#include <cassert>
#include <charconv>
#include <cmath>
#include <exception>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace modelfleet::db {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstReconnectBackoff{50};
constexpr milliseconds kMaxReconnectBackoff{400};

// ---------------------------------------------------------------------------------------------
// Error mapping

std::string TrimTrailingSpace(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

bool IsConnectionSqlState(const std::string& state) {
  return state.starts_with("08")   // connection_exception
         || state == "57P01"       // admin_shutdown
         || state == "57P02"       // crash_shutdown
         || state == "57P03"       // cannot_connect_now ("the database system is starting up")
         || state == "53300";      // too_many_connections
}

StatusCode CodeForSqlState(const std::string& state) {
  if (state == "23505") return StatusCode::kAlreadyExists;
  if (state == "23503") return StatusCode::kFailedPrecondition;
  if (state == "23514" || state == "23502") return StatusCode::kInvalidArgument;
  if (state.starts_with("22")) return StatusCode::kInvalidArgument;
  if (state == "40001" || state == "40P01") return StatusCode::kAborted;
  if (state == "57014") return StatusCode::kDeadlineExceeded;
  if (IsConnectionSqlState(state)) return StatusCode::kUnavailable;
  return StatusCode::kInternal;
}

// Maps the exception being handled (call only inside a catch block) to a Status. Sets
// *connection_broken when the error means the connection can no longer be used.
Status CurrentExceptionToStatus(bool* connection_broken) {
  try {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    *connection_broken = true;
    return {StatusCode::kUnknown,
            "connection lost during COMMIT, the transaction may or may not have committed: " +
                TrimTrailingSpace(e.what())};
  } catch (const pqxx::broken_connection& e) {
    *connection_broken = true;
    return Unavailable("database connection failed: " + TrimTrailingSpace(e.what()));
  } catch (const pqxx::serialization_failure& e) {
    return {StatusCode::kAborted, "[40001] " + TrimTrailingSpace(e.what())};
  } catch (const pqxx::deadlock_detected& e) {
    return {StatusCode::kAborted, "[40P01] " + TrimTrailingSpace(e.what())};
  } catch (const pqxx::statement_completion_unknown& e) {
    *connection_broken = true;
    return {StatusCode::kUnknown, "[40003] " + TrimTrailingSpace(e.what())};
  } catch (const pqxx::transaction_rollback& e) {
    // Other class 40 errors (libpqxx does not keep their SQLSTATE).
    return {StatusCode::kAborted, "[40000] " + TrimTrailingSpace(e.what())};
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    if (IsConnectionSqlState(state)) *connection_broken = true;
    std::string message = "[" + (state.empty() ? std::string("?????") : state) + "] " +
                          TrimTrailingSpace(e.what());
    return {CodeForSqlState(state), std::move(message)};
  } catch (const std::exception& e) {
    return Internal(std::string("database error: ") + TrimTrailingSpace(e.what()));
  } catch (...) {
    return Internal("database error: unknown exception");
  }
}

// ---------------------------------------------------------------------------------------------
// Parameter encoding

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  std::array<char, 64> buffer;
  auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  assert(ec == std::errc());
  return std::string(buffer.data(), end);
}

std::optional<std::string> ParamToText(const Param& param) {
  struct Visitor {
    std::optional<std::string> operator()(std::nullptr_t) const { return std::nullopt; }
    std::optional<std::string> operator()(int64_t v) const { return std::to_string(v); }
    std::optional<std::string> operator()(double v) const { return FormatDouble(v); }
    std::optional<std::string> operator()(bool v) const {
      return std::string(v ? "true" : "false");
    }
    std::optional<std::string> operator()(const std::string& v) const { return v; }
    std::optional<std::string> operator()(const Bytes& v) const {
      static constexpr char kHexDigits[] = "0123456789abcdef";
      std::string text = "\\x";
      text.reserve(2 + 2 * v.data.size());
      for (unsigned char byte : v.data) {
        text.push_back(kHexDigits[byte >> 4]);
        text.push_back(kHexDigits[byte & 0xf]);
      }
      return text;
    }
  };
  return std::visit(Visitor{}, param);
}

Result ToResult(const pqxx::result& r) {
  std::vector<std::string> column_names;
  const auto columns = r.columns();
  column_names.reserve(columns);
  for (pqxx::row::size_type c = 0; c < columns; ++c) column_names.emplace_back(r.column_name(c));
  std::vector<Row> rows;
  rows.reserve(r.size());
  for (const auto& pq_row : r) {
    std::vector<std::optional<std::string>> values;
    values.reserve(pq_row.size());
    for (const auto& field : pq_row) {
      if (field.is_null()) {
        values.emplace_back(std::nullopt);
      } else {
        values.emplace_back(std::string(field.c_str(), field.size()));
      }
    }
    rows.emplace_back(std::move(values));
  }
  return Result(std::move(column_names), std::move(rows),
                static_cast<uint64_t>(r.affected_rows()));
}

// Drops server notices (e.g. "relation already exists, skipping") instead of letting libpqxx
// print them to stderr. Errors still arrive as exceptions.
class DropNotices final : public pqxx::errorhandler {
 public:
  explicit DropNotices(pqxx::connection_base& connection) : pqxx::errorhandler(connection) {}
  bool operator()(const char*) noexcept override { return false; }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Row

const std::optional<std::string>* Row::Cell(size_t i) const {
  assert(i < values_.size() && "column index out of range");
  if (i >= values_.size()) return nullptr;
  return &values_[i];
}

bool Row::IsNull(size_t i) const {
  const auto* cell = Cell(i);
  return cell == nullptr || !cell->has_value();
}

std::string Row::Str(size_t i) const { return OptStr(i).value_or(std::string()); }

std::optional<std::string> Row::OptStr(size_t i) const {
  const auto* cell = Cell(i);
  if (cell == nullptr) return std::nullopt;
  return *cell;
}

std::optional<int64_t> Row::OptInt(size_t i) const {
  const auto* cell = Cell(i);
  if (cell == nullptr || !cell->has_value()) return std::nullopt;
  const std::string& text = **cell;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

int64_t Row::Int(size_t i) const { return OptInt(i).value_or(0); }

double Row::Double(size_t i) const {
  const auto* cell = Cell(i);
  if (cell == nullptr || !cell->has_value()) return 0.0;
  const std::string& text = **cell;
  if (text == "NaN") return std::nan("");
  if (text == "Infinity") return HUGE_VAL;
  if (text == "-Infinity") return -HUGE_VAL;
  double value = 0.0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return 0.0;
  return value;
}

std::string Row::Bytea(size_t i) const {
  const auto* cell = Cell(i);
  if (cell == nullptr || !cell->has_value()) return {};
  const std::string& text = **cell;
  if (!text.starts_with("\\x")) return text;  // not hex output (bytea_output = escape)
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  std::string bytes;
  bytes.reserve((text.size() - 2) / 2);
  for (size_t pos = 2; pos + 1 < text.size(); pos += 2) {
    bytes.push_back(static_cast<char>(nibble(text[pos]) << 4 | nibble(text[pos + 1])));
  }
  return bytes;
}

bool Row::Bool(size_t i) const {
  const auto* cell = Cell(i);
  if (cell == nullptr || !cell->has_value()) return false;
  return **cell == "t" || **cell == "true";
}

// ---------------------------------------------------------------------------------------------
// Tx

namespace internal {
struct TxContext {
  pqxx::transaction_base* transaction;
  bool connection_broken = false;  // set when a statement failed because the connection broke
};
}  // namespace internal

Expected<Result> Tx::Exec(std::string_view sql, const std::vector<Param>& params) {
  return Run(sql, &params);
}

Expected<Result> Tx::ExecScript(std::string_view sql) { return Run(sql, nullptr); }

Expected<Result> Tx::Run(std::string_view sql, const std::vector<Param>* params) {
  if (!first_error_.ok()) {
    return Fail(first_error_.Annotate("an earlier statement in this transaction failed"));
  }
  try {
    pqxx::result result;
    if (params != nullptr) {
      std::vector<std::optional<std::string>> texts;
      texts.reserve(params->size());
      for (const Param& param : *params) texts.push_back(ParamToText(param));
      result = context_->transaction->exec_params(std::string(sql),
                                                  pqxx::prepare::make_dynamic_params(texts));
    } else {
      result = context_->transaction->exec(std::string(sql));
    }
    return ToResult(result);
  } catch (...) {
    first_error_ = CurrentExceptionToStatus(&context_->connection_broken);
    return Fail(first_error_);
  }
}

// ---------------------------------------------------------------------------------------------
// Pool internals

namespace internal {
// One place for a connection in the pool. `connection` is null until connected, and again
// after it broke.
struct PoolSlot {
  struct Connection {
    explicit Connection(const std::string& conninfo) : connection(conninfo) {}
    pqxx::connection connection;
    DropNotices drop_notices{connection};  // declared last: destroyed before the connection
  };
  std::unique_ptr<Connection> connection;
};
}  // namespace internal

using internal::PoolSlot;

class Pool::Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<PoolSlot> slot) : pool_(pool), slot_(std::move(slot)) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (slot_) pool_->Release(std::move(slot_));
  }
  PoolSlot& slot() { return *slot_; }

 private:
  Pool* pool_;
  std::unique_ptr<PoolSlot> slot_;
};

namespace {

// Sleeps before the next reconnect attempt; false (without sleeping) if that would pass the
// deadline.
bool BackoffBefore(Clock::time_point deadline, milliseconds& backoff) {
  if (Clock::now() + backoff > deadline) return false;
  std::this_thread::sleep_for(backoff);
  backoff = std::min(backoff * 2, kMaxReconnectBackoff);
  return true;
}

// Begins a transaction of the given mode on `connection` and takes the advisory lock, if any.
// Throws libpqxx exceptions.
std::unique_ptr<pqxx::transaction_base> BeginTransaction(pqxx::connection& connection,
                                                         bool read_only, bool autocommit,
                                                         std::optional<int64_t> lock_key) {
  std::unique_ptr<pqxx::transaction_base> transaction;
  if (autocommit) {
    transaction = std::make_unique<pqxx::nontransaction>(connection);
  } else if (read_only) {
    transaction = std::make_unique<pqxx::read_transaction>(connection);
  } else {
    transaction = std::make_unique<pqxx::work>(connection);
  }
  if (lock_key) transaction->exec_params("SELECT pg_advisory_xact_lock($1)", *lock_key);
  return transaction;
}

// Runs fn in `transaction`, then commits (fn OK and no failed statement) or rolls back.
// Never throws. Sets context.connection_broken if the connection must not be reused.
Status RunCallbackAndFinish(std::unique_ptr<pqxx::transaction_base> transaction,
                            const std::function<Status(Tx&)>& fn, Tx& tx,
                            internal::TxContext& context) {
  Status fn_status;
  try {
    fn_status = fn(tx);
  } catch (const std::exception& e) {
    fn_status = Internal(std::string("exception in database transaction callback: ") + e.what());
  } catch (...) {
    fn_status = Internal("unknown exception in database transaction callback");
  }
  if (fn_status.ok() && !tx.first_error().ok()) fn_status = tx.first_error();

  if (!fn_status.ok()) {
    try {
      transaction->abort();
      transaction.reset();
    } catch (...) {
      context.connection_broken = true;  // rollback failed: do not trust this connection
    }
    return fn_status;
  }
  Status commit_status;
  try {
    transaction->commit();
  } catch (...) {
    commit_status = CurrentExceptionToStatus(&context.connection_broken);
  }
  try {
    transaction.reset();
  } catch (...) {
    context.connection_broken = true;
  }
  return commit_status;
}

}  // namespace

Pool::Pool(PoolOptions options) : options_(std::move(options)) {
  for (int i = 0; i < options_.size; ++i) idle_.push_back(std::make_unique<PoolSlot>());
}

Pool::~Pool() = default;

Expected<std::unique_ptr<Pool>> Pool::Open(const PoolOptions& options) {
  if (options.size < 1) return Fail(InvalidArgument("size", "pool size must be at least 1"));
  std::unique_ptr<Pool> pool(new Pool(options));
  PoolSlot& first = *pool->idle_.front();
  const auto deadline = Clock::now() + options.reconnect_budget;
  milliseconds backoff = kFirstReconnectBackoff;
  while (true) {
    Status status = pool->ConnectOnce(first);
    if (status.ok()) break;
    if (!BackoffBefore(deadline, backoff)) return Fail(std::move(status));
  }
  return pool;
}

int Pool::open_connections() const { return open_connections_.load(); }

Pool::Stats Pool::GetStats() const {
  return {options_.size,
          open_connections_.load(std::memory_order_relaxed),
          in_use_.load(std::memory_order_relaxed),
          acquisitions_.load(std::memory_order_relaxed),
          acquire_timeouts_.load(std::memory_order_relaxed),
          std::chrono::nanoseconds(acquire_wait_ns_.load(std::memory_order_relaxed))};
}

Status Pool::ConnectOnce(PoolSlot& slot) {
  if (slot.connection) return Status::Ok();
  try {
    slot.connection = std::make_unique<PoolSlot::Connection>(options_.conninfo);
    open_connections_.fetch_add(1);
    return Status::Ok();
  } catch (...) {
    bool ignored = false;
    Status status = CurrentExceptionToStatus(&ignored);
    if (status.code() != StatusCode::kUnavailable) {
      // E.g. a malformed conninfo: still "cannot connect" from the caller's point of view.
      status = Unavailable("cannot connect to the database: " + status.message());
    }
    return status;
  }
}

void Pool::Disconnect(PoolSlot& slot) {
  if (!slot.connection) return;
  slot.connection.reset();
  open_connections_.fetch_sub(1);
}

Expected<Pool::Lease> Pool::Acquire(bool probe) {
  const auto wait_start = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  const bool ready = slot_returned_.wait_for(lock, options_.acquire_timeout, [&] {
    return !idle_.empty() || (!probe && down_flag_.load(std::memory_order_relaxed));
  });
  acquire_wait_ns_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                       std::chrono::steady_clock::now() - wait_start)
                                                       .count()),
                             std::memory_order_relaxed);
  if (ready && idle_.empty()) return Fail(Unavailable("database unreachable (found while waiting for a connection)"));
  if (!ready) {
    acquire_timeouts_.fetch_add(1, std::memory_order_relaxed);
    return Fail(Status(StatusCode::kResourceExhausted,
                       "no database connection became free within " +
                           std::to_string(options_.acquire_timeout.count()) + " ms (pool size " +
                           std::to_string(options_.size) + ")"));
  }
  std::unique_ptr<PoolSlot> slot = std::move(idle_.front());
  idle_.pop_front();
  in_use_.fetch_add(1, std::memory_order_relaxed);
  acquisitions_.fetch_add(1, std::memory_order_relaxed);
  return Lease(this, std::move(slot));
}

void Pool::Release(std::unique_ptr<PoolSlot> slot) {
  in_use_.fetch_sub(1, std::memory_order_relaxed);
  if (slot->connection && !slot->connection->connection.is_open()) Disconnect(*slot);
  {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(slot));
  }
  slot_returned_.notify_one();
}

class Pool::ProbeTicket {
 public:
  explicit ProbeTicket(Pool* pool) : pool_(pool) {}
  ProbeTicket(const ProbeTicket&) = delete;
  ProbeTicket& operator=(const ProbeTicket&) = delete;
  ~ProbeTicket() {
    if (!held) return;
    {
      std::lock_guard lock(pool_->health_mu_);
      pool_->probing_ = false;
    }
    pool_->verdict_.notify_all();
  }
  bool held = false;

 private:
  Pool* pool_;
};

Status Pool::AdmitCall(ProbeTicket* ticket) {
  if (!down_flag_.load(std::memory_order_relaxed)) return Status::Ok();
  std::unique_lock lock(health_mu_);
  if (!down_) return Status::Ok();
  if (!probing_) {
    probing_ = true;
    ticket->held = true;
    return Status::Ok();
  }
  const uint64_t seen = verdicts_;
  verdict_.wait_for(lock, options_.probe_wait, [&] { return verdicts_ != seen || !probing_; });
  if (!down_) return Status::Ok();
  const auto for_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - down_since_).count();
  return Unavailable("database unreachable for " + std::to_string(for_ms) + " ms: " + down_reason_);
}

void Pool::NoteReachable() {
  if (!down_flag_.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(health_mu_);
    if (down_) {
      const auto for_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - down_since_).count();
      spdlog::info("database reachable again after {} ms", for_ms);
      down_ = false;
      down_flag_ = false;
    }
    ++verdicts_;
  }
  verdict_.notify_all();
}

void Pool::NoteUnreachable(const Status& why) {
  {
    std::lock_guard lock(health_mu_);
    if (!down_) {
      spdlog::warn("database unreachable, calls fail fast until a probe connects: {}", why.message());
      down_ = true;
      down_flag_ = true;
      down_since_ = Clock::now();
    }
    down_reason_ = why.message();
    ++verdicts_;
  }
  verdict_.notify_all();
  // Callers waiting for a free connection give up at once rather than at acquire_timeout.
  { std::lock_guard lock(mu_); }
  slot_returned_.notify_all();
}

Status Pool::RunOnSlot(PoolSlot& slot, Mode mode, std::optional<int64_t> advisory_lock_key,
                       const std::function<Status(Tx&)>& fn, bool may_reconnect) {
  std::unique_ptr<pqxx::transaction_base> transaction;
  // At most two tries: the slot's connection and, if that turns out to be broken, a fresh one.
  // A fresh connection that fails means the database is unreachable: no waiting and retrying
  // here (callers back off; the pool fails fast until a probe connects).
  while (true) {
    const bool fresh = !slot.connection;
    Status status;
    if (fresh) {
      if (!may_reconnect) return Unavailable("the database session's connection was lost");
      status = ConnectOnce(slot);
      if (!status.ok()) {
        NoteUnreachable(status);
        return status;
      }
    }
    bool connection_broken = false;
    try {
      transaction = BeginTransaction(slot.connection->connection, mode == Mode::kReadOnly,
                                     mode == Mode::kAutocommit, advisory_lock_key);
      // Autocommit sends nothing at begin: only a fresh connection has heard the server.
      if (mode != Mode::kAutocommit || fresh) NoteReachable();
      break;
    } catch (...) {
      status = CurrentExceptionToStatus(&connection_broken);
    }
    try {
      transaction.reset();
    } catch (...) {
      connection_broken = true;
    }
    if (!connection_broken && slot.connection->connection.is_open()) {
      return status;  // not a connection problem (e.g. lock wait canceled): do not retry
    }
    Disconnect(slot);
    if (fresh) {
      NoteUnreachable(status);
      return status;
    }
    if (!may_reconnect) return status;
  }

  internal::TxContext context{transaction.get()};
  Tx tx(&context);
  Status status = RunCallbackAndFinish(std::move(transaction), fn, tx, context);
  if (context.connection_broken || !slot.connection->connection.is_open()) Disconnect(slot);
  return status;
}

Status Pool::Run(Mode mode, std::optional<int64_t> advisory_lock_key, const std::function<Status(Tx&)>& fn) {
  ProbeTicket ticket(this);
  MF_RETURN_IF_ERROR(AdmitCall(&ticket));
  MF_ASSIGN_OR_RETURN(Lease lease, Acquire(ticket.held));
  Status status = RunOnSlot(lease.slot(), mode, advisory_lock_key, fn, /*may_reconnect=*/true);
  // Without BEGIN, a connection broken by a database restart shows only at the first
  // statement: RunOnSlot then drops it, and one more run reconnects.
  if (mode == Mode::kAutocommit && status.code() == StatusCode::kUnavailable && !lease.slot().connection) {
    status = RunOnSlot(lease.slot(), mode, advisory_lock_key, fn, /*may_reconnect=*/true);
  }
  return status;
}

Status Pool::Write(const std::function<Status(Tx&)>& fn) { return Run(Mode::kReadWrite, std::nullopt, fn); }

Status Pool::ReadAutocommit(const std::function<Status(Tx&)>& fn) { return Run(Mode::kAutocommit, std::nullopt, fn); }

Status Pool::Read(const std::function<Status(Tx&)>& fn) { return Run(Mode::kReadOnly, std::nullopt, fn); }

Status Pool::WriteWithAdvisoryLock(int64_t lock_key, const std::function<Status(Tx&)>& fn) {
  return Run(Mode::kReadWrite, lock_key, fn);
}

Status Pool::WithSession(const std::function<Status(Session&)>& fn) {
  ProbeTicket ticket(this);
  MF_RETURN_IF_ERROR(AdmitCall(&ticket));
  MF_ASSIGN_OR_RETURN(Lease lease, Acquire(ticket.held));
  PoolSlot& slot = lease.slot();
  while (true) {
    // Check the idle connection still works now, since a session cannot reconnect later
    // without losing its session state. A broken one is replaced once.
    const bool fresh = !slot.connection;
    Status status = ConnectOnce(slot);
    if (status.ok()) {
      try {
        pqxx::nontransaction probe(slot.connection->connection);
        probe.exec("SELECT 1");
        NoteReachable();
        break;
      } catch (...) {
        bool ignored = false;
        status = CurrentExceptionToStatus(&ignored);
        Disconnect(slot);
      }
    }
    if (fresh) {
      NoteUnreachable(status);
      return status;
    }
  }

  Session session(this, &slot);
  Status fn_status;
  try {
    fn_status = fn(session);
  } catch (const std::exception& e) {
    fn_status = Internal(std::string("exception in database session callback: ") + e.what());
  } catch (...) {
    fn_status = Internal("unknown exception in database session callback");
  }
  if (slot.connection) {
    Expected<Result> unlocked = session.ExecAutocommit("SELECT pg_advisory_unlock_all()");
    if (!unlocked) Disconnect(slot);
  }
  return fn_status;
}

// ---------------------------------------------------------------------------------------------
// Session

Status Session::Write(const std::function<Status(Tx&)>& fn) {
  return pool_->RunOnSlot(*slot_, Pool::Mode::kReadWrite, std::nullopt, fn,
                          /*may_reconnect=*/false);
}

Status Session::Read(const std::function<Status(Tx&)>& fn) {
  return pool_->RunOnSlot(*slot_, Pool::Mode::kReadOnly, std::nullopt, fn,
                          /*may_reconnect=*/false);
}

Expected<Result> Session::ExecAutocommit(std::string_view sql, const std::vector<Param>& params) {
  if (!slot_->connection) return Fail(Unavailable("the database session's connection was lost"));
  bool connection_broken = false;
  Expected<Result> result;
  try {
    pqxx::nontransaction transaction(slot_->connection->connection);
    internal::TxContext context{&transaction};
    Tx tx(&context);
    result = tx.Exec(sql, params);
    connection_broken = context.connection_broken;
  } catch (...) {
    result = Fail(CurrentExceptionToStatus(&connection_broken));
  }
  if (connection_broken || !slot_->connection->connection.is_open()) pool_->Disconnect(*slot_);
  return result;
}

std::string TextArrayLiteral(const std::vector<std::string_view>& items) {
  std::string out = "{";
  for (std::string_view item : items) {
    if (out.size() > 1) out += ',';
    out += item;
  }
  return out + "}";
}

}  // namespace modelfleet::db
