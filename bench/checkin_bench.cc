// Check-in benchmark: N simulated devices check in over real gRPC against a real
// modelfleet-server on a real PostgreSQL (both started by the bench), C calls kept in flight
// by gRPC's async client API.
//
// The fleet is seeded directly in the database (it is a bench, not a test), as a fleet in
// steady state looks there: device i has the secret "mf_" + hex(SHA-256("checkin-bench-<i>")),
// an api_tokens row of role 'device' holding the SHA-256 hex of that secret, and an ACCEPTED
// devices row pointing at it that already reports what it runs (mat-person@1.0.0 with the
// digest the bench sends, agent state IDLE) and a last_seen spread uniformly over the past
// 300 s (the server's status refresh); one psql statement with generate_series does it all.
//
// The replica under test always starts on the seeded fleet: the bench starts the server once
// on the empty database (it migrates; its resident memory then is the 0-device baseline),
// seeds, and restarts it. It prints how long that replica took to load its device cache (its
// log line "device cache: loaded N accepted devices in X ms", and when the bench saw that line
// after spawning the process: the goal is within 3 s), its resident memory once its caches
// loaded, and the bytes per cached device that makes.
//
// Devices check in round-robin (device 0, 1, ..., N-1, 0, ...), each call carrying the device's
// bearer token, what it runs (mat-person@1.0.0) and one telemetry entry. So a device comes
// back every N / rate seconds: the summary prints that revisit interval.
//
// Modes (--mode):
//   warm (default; `steady` is accepted as an alias for one release): the steady state, every
//     device already seen by the replica. The warm-up lasts at least --warmup seconds, at
//     least one full round-robin pass over the fleet (every device's check-in completed once)
//     and until the replica's device cache finished its initial load; then the window opens.
//   cold: a replica serving a fleet it has never seen. The server is restarted after seeding
//     (implies --fresh-replica 1) and the check-ins are measured from the first call (no
//     warm-up), its caches loading meanwhile. Every measured check-in is a device's first
//     visit: if the window would wrap past one round of the fleet, measuring stops at the wrap
//     (the output says so, and the rate is over the shorter window).
//   rollout: warm, then, as the window opens, mat-person@2.0.0 (pushed during setup) starts
//     rolling out to 10% of the fleet (target "*", one stage that never advances): the window
//     sees that cohort get its assignments (each a short write transaction on the server).
//   rollout-all: the same with one stage whose cohort is the whole fleet (100%); prints how
//     many distinct devices got an assignment in the window out of how many checked in.
//
//   --enroll-rate N (any mode): while the window is open, devices enroll as a real fleet grows:
//     new devices call DeviceService/Enroll at N/s with the fleet's enrollment token (created
//     through FleetService/CreateEnrollmentToken with auto-accept, as deploy/ sets up a fleet:
//     an enrolled device is ACCEPTED at once), each then checks in once with its new credential
//     like modelfleet-agent does. Prints enrollments done and failed, their p50/p99 latency,
//     and those first check-ins. The run meets the goal only if no enrollment failed.
//
//   --fresh-replica 1: restarts the server once more right before the check-in run, so the
//     check-ins hit a replica that has just started on an existing fleet (its caches load in
//     the background from the start), and measures them before the health baseline. In warm
//     and rollout modes the window still opens only after a full pass and the cache load.
//
// Baseline, same server, same run, same driver: the standard health check
// /grpc.health.v1.Health/Check through grpc::GenericStub (no authentication, no database).
//
//   checkin_bench [--devices N] [--seconds S] [--warmup S] [--concurrency C]
//                 [--mode warm|cold|rollout|rollout-all] [--enroll-rate N]
//                 [--client-threads T] [--channels K] [--server-arg ARG]... [--setup-sql SQL]...
//                 [--db-pool-size P] [--pg-statements N] [--fresh-replica 0|1]
//   defaults: 100000 devices, 20 s measured after at least 5 s of warm-up, 64 calls in flight,
//             warm, no enrollments, 2 client threads, 4 channels (TCP connections).
//
// --server-arg passes an argument to modelfleet-server (e.g. --server-arg --log-level
// --server-arg warn: but the bench reads the cache loads from the info-level log); --db-pool-size
// sets its connection pool (default: the fixture's 4); --setup-sql runs a statement after
// seeding (e.g. to try an index before writing its migration); --pg-statements N also tracks
// planning and prints the N statements that took PostgreSQL the most time during the
// check-in run.
//
// Each run also prints where the CPU went over the measured window (server, PostgreSQL, this
// client, the rest of the machine: the cores are shared) and what PostgreSQL did per call
// (commits, statements, scans, rows written); then, per check-in, the rows PostgreSQL wrote
// (inserted + updated + deleted, every table, pg_stat_user_tables deltas over the window:
// published within about a second, so approximate) and the round trips (statements the server
// executed in the window: pg_stat_statements sum(calls) deltas, the bench's own statistics
// queries left out; pg_stat_statements is loaded in every run), and the server's VmRSS at the
// end.
//
// Needs the built server: $MODELFLEET_BINARY_DIR (default: the parent of this program's
// directory, i.e. the build tree). Exits non-zero on a setup failure or if more than 1% of
// the check-ins failed.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "modelfleet/crypto.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "server_process.h"
#include "temp_postgres.h"
#include "test_data.h"

using namespace modelfleet;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kModel = "mat-person";
constexpr const char* kRunningVersion = "1.0.0";
constexpr const char* kRolloutVersion = "2.0.0";
constexpr double kCacheLoadGoalSeconds = 3;

// What every seeded device runs and reports (the digest is of made-up bytes: no such version is
// pushed, the server only records what devices report).
std::string RunningDigest() { return Sha256Hex(std::string("mat-person 1.0.0 bytes")); }

struct Config {
  int devices = 100000;
  double seconds = 20;
  double warmup = 5;
  int concurrency = 64;
  std::string mode = "warm";  // warm, cold, rollout, rollout-all
  double enroll_rate = 0;     // enrollments per second during the window
  int client_threads = 2;
  int channels = 4;
  std::vector<std::string> server_args;
  std::vector<std::string> setup_sql;
  int db_pool_size = 0;  // 0: the fixture's (4)
  int pg_statements = 0;  // print this many top statements (pg_stat_statements) of the check-in run
  bool fresh_replica = false;

  bool cold() const { return mode == "cold"; }
  int rollout_percent() const { return mode == "rollout" ? 10 : mode == "rollout-all" ? 100 : 0; }
};

std::string DeviceSecret(int64_t i) { return "mf_" + Sha256Hex("checkin-bench-" + std::to_string(i)); }

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

Clock::duration FromSeconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// ---------------------------------------------------------------- CPU and memory accounting

// utime + stime of one process, in clock ticks (0 if it is gone).
uint64_t ProcessTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return utime + stime;
}

pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

// The postmaster and all its children (backends, walwriter, ...).
uint64_t ProcessTreeTicks(pid_t root) {
  if (root <= 0) return 0;
  uint64_t total = ProcessTicks(root);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    pid_t pid = std::atoi(name.c_str());
    if (pid != root && ParentOf(pid) == root) total += ProcessTicks(pid);
  }
  return total;
}

// Busy and total ticks of the whole machine (all cores), from /proc/stat.
std::pair<uint64_t, uint64_t> MachineTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  uint64_t v, total = 0, idle = 0;
  for (int i = 0; i < 10 && in >> v; ++i) {
    total += v;
    if (i == 3 || i == 4) idle += v;  // idle, iowait
  }
  return {total - idle, total};
}

// Resident memory of a process (VmRSS), in kB; 0 if it is gone.
int64_t VmRssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return 0;
}

// What PostgreSQL counted (pg_stat_database, pg_stat_user_tables, pg_stat_statements). The
// table counters are published within about a second, so their deltas over the window are
// approximate; pg_stat_statements counts as each statement ends.
struct DbSample {
  // seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd, n_tup_del
  std::map<std::string, std::array<int64_t, 6>> tables;
  int64_t commits = 0;
  int64_t statements = 0;  // executed in this database, the bench's own statistics queries left out
  int64_t statement_rows = 0;  // rows those of them that are INSERT, UPDATE or DELETE affected
};

int Psql(const std::string& conninfo, const std::string& sql, std::string* out) {
  return testing::RunCommand({"psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql}, out);
}

// The bench's own statements all read pg_stat_* views (this query too): that is how they are
// told apart from the server's.
constexpr const char* kServerStatements =
    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND query NOT ILIKE '%pg_stat%'";

DbSample TakeDbSample(const std::string& conninfo) {
  DbSample s;
  std::string out;
  if (Psql(conninfo,
           "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del "
           "FROM pg_stat_user_tables "
           "UNION ALL SELECT '', xact_commit, 0, 0, 0, 0, 0 FROM pg_stat_database WHERE datname = current_database() "
           "UNION ALL SELECT '#', coalesce(sum(calls), 0)::bigint, "
           "  coalesce(sum(rows) FILTER (WHERE query ~* '^\\s*(INSERT|UPDATE|DELETE)'), 0)::bigint, 0, 0, 0, 0 " +
               std::string(kServerStatements),
           &out) != 0) {
    return s;
  }
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> f;
    std::istringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, '|')) f.push_back(cell);
    if (f.size() != 7) continue;
    if (f[0].empty()) {
      s.commits = std::stoll(f[1]);
    } else if (f[0] == "#") {
      s.statements = std::stoll(f[1]);
      s.statement_rows = std::stoll(f[2]);
    } else {
      s.tables[f[0]] = {std::stoll(f[1]), std::stoll(f[2]), std::stoll(f[3]),
                        std::stoll(f[4]), std::stoll(f[5]), std::stoll(f[6])};
    }
  }
  return s;
}

// Rows inserted, updated and deleted in every table between two samples.
std::array<int64_t, 3> RowsWritten(const DbSample& a, const DbSample& b) {
  std::array<int64_t, 3> rows{};
  for (const auto& [table, after] : b.tables) {
    auto it = a.tables.find(table);
    for (int i = 0; i < 3; ++i) rows[i] += after[3 + i] - (it == a.tables.end() ? 0 : it->second[3 + i]);
  }
  return rows;
}

struct CpuSample {
  uint64_t server = 0, postgres = 0, bench = 0, busy = 0, total = 0;
  Clock::time_point at;
  DbSample db;
};

struct CpuWatch {
  pid_t server_pid = 0, postmaster_pid = 0;
  std::string conninfo;
  CpuSample Take() const {
    CpuSample s;
    s.db = TakeDbSample(conninfo);
    s.server = ProcessTicks(server_pid);
    s.postgres = ProcessTreeTicks(postmaster_pid);
    s.bench = ProcessTicks(getpid());
    auto [busy, total] = MachineTicks();
    s.busy = busy;
    s.total = total;
    s.at = Clock::now();
    return s;
  }
};

std::string CpuLine(const CpuSample& a, const CpuSample& b) {
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double secs = std::chrono::duration<double>(b.at - a.at).count();
  auto cores = [&](uint64_t x, uint64_t y) { return static_cast<double>(y - x) / hz / secs; };
  const double server = cores(a.server, b.server), postgres = cores(a.postgres, b.postgres),
               bench = cores(a.bench, b.bench);
  const double ncpu = static_cast<double>(std::thread::hardware_concurrency());
  const double busy = b.total > a.total ? ncpu * static_cast<double>(b.busy - a.busy) / static_cast<double>(b.total - a.total) : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "CPU (cores of %.0f): server %.2f, postgres %.2f, bench client %.2f, rest of machine %.2f, idle %.2f",
                ncpu, server, postgres, bench, std::max(0.0, busy - server - postgres - bench), std::max(0.0, ncpu - busy));
  return buf;
}

double Percentile(const std::vector<float>& sorted_us, double p) {
  if (sorted_us.empty()) return 0;
  return sorted_us[static_cast<size_t>(p * static_cast<double>(sorted_us.size() - 1))] / 1000.0;
}

// ---------------------------------------------------------------- load driver

enum class Kind { kCheckIn, kHealth };

struct Stats {
  std::vector<float> latencies_us;  // calls completed inside the measured window
  std::array<uint64_t, 17> codes{};  // every call, warm-up included
  uint64_t measured = 0, measured_errors = 0, assignments = 0, total = 0;
  // Rollout modes: which devices checked in inside the window, and which of them got an assignment.
  std::vector<bool> visited, assigned;
  Clock::time_point last_measured{};  // completion of the last measured call
};

// When a run measures. The window opens once every condition holds (checked every 10 ms while
// the load runs); with none, it opens before the first call.
struct RunPlan {
  double warmup = 0;                       // seconds of load before the window, at least
  bool full_pass = false;                  // ... and every device's first check-in completed
  std::function<bool()> ready;             // ... and this holds (the device cache loaded)
  bool first_visits_only = false;          // cold: never call a device twice; stop at the wrap
  bool track_devices = false;              // fill Stats::visited / assigned
  std::function<void()> before_window;     // runs once the conditions hold, under load
  std::function<void(Clock::time_point end)> window_opened;
};

struct RunResult {
  Kind kind;
  double window_seconds = 0, planned_seconds = 0;
  double warmup_seconds = 0;    // from the first call to the window
  uint64_t warmup_calls = 0;    // check-ins started before the window
  bool wrapped = false;         // first_visits_only: the fleet's round ended inside the window
  Stats stats;
  CpuSample cpu_start, cpu_end;

  double rate() const { return static_cast<double>(stats.measured) / std::max(1e-9, window_seconds); }
  double pct(double p) const { return Percentile(stats.latencies_us, p); }
  uint64_t errors() const { return stats.total - stats.codes[0]; }
};

struct Call {
  std::unique_ptr<grpc::ClientContext> ctx;
  v1::CheckInRequest request;
  v1::CheckInResponse response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::CheckInResponse>> reader;
  grpc::ByteBuffer health_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> health_reader;
  grpc::Status status;
  Clock::time_point start;
  uint64_t n = 0;  // sequence number of a check-in (device n % N)
};

class Driver {
 public:
  Driver(const Config& config, const std::vector<std::shared_ptr<grpc::Channel>>& channels,
         const std::vector<std::string>& bearer)
      : config_(config), channels_(channels), bearer_(bearer) {
    grpc::Slice empty("");
    empty_request_ = grpc::ByteBuffer(&empty, 1);
  }

  RunResult Run(Kind kind, const CpuWatch& watch, const RunPlan& plan) {
    RunResult result;
    result.kind = kind;
    result.planned_seconds = config_.seconds;
    plan_ = &plan;
    const auto t0 = Clock::now();
    Clock::time_point window_end;
    auto open_window = [&] {
      if (plan.before_window) plan.before_window();
      result.cpu_start = watch.Take();
      const auto start = Clock::now();
      window_end = start + FromSeconds(config_.seconds);
      result.warmup_seconds = std::chrono::duration<double>(start - t0).count();
      result.warmup_calls = next_device_.load();
      end_ns_ = window_end.time_since_epoch().count();
      start_ns_ = start.time_since_epoch().count();
      if (plan.window_opened) plan.window_opened(window_end);
    };
    const bool at_once = plan.warmup <= 0 && !plan.full_pass && !plan.ready;
    if (at_once) open_window();

    std::vector<Stats> stats(config_.client_threads);
    std::vector<std::thread> threads;
    workers_running_ = config_.client_threads;
    for (int t = 0; t < config_.client_threads; ++t) {
      int calls = config_.concurrency / config_.client_threads + (t < config_.concurrency % config_.client_threads ? 1 : 0);
      threads.emplace_back([this, kind, t, calls, &stats] { Worker(kind, t, calls, stats[t]); });
    }
    if (!at_once) {
      const uint64_t fleet = bearer_.size();
      bool warned = false;
      for (;;) {
        const bool pass_done = !plan.full_pass || first_pass_done_.load() >= fleet;
        const bool ready = !plan.ready || plan.ready();
        if (Seconds(t0) >= plan.warmup && pass_done && ready) break;
        if (!warned && Seconds(t0) > plan.warmup + 600) {
          std::printf("warning: after %.0f s of warm-up: %s%s; opening the window anyway\n", Seconds(t0),
                      pass_done ? "" : "the first pass over the fleet is not done",
                      ready ? "" : " the device cache did not log its load");
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      open_window();
    }
    // Until the window closes, or every worker stopped (cold: the fleet's round ended).
    while (Clock::now() < window_end && workers_running_.load() > 0) {
      std::this_thread::sleep_for(std::min<Clock::duration>(window_end - Clock::now(), std::chrono::milliseconds(5)));
    }
    result.cpu_end = watch.Take();
    for (auto& th : threads) th.join();
    result.wrapped = wrapped_.load();
    const auto window_start = Clock::time_point(Clock::duration(start_ns_.load()));
    Clock::time_point last{};
    for (auto& s : stats) {
      auto& r = result.stats;
      r.latencies_us.insert(r.latencies_us.end(), s.latencies_us.begin(), s.latencies_us.end());
      for (size_t i = 0; i < s.codes.size(); ++i) r.codes[i] += s.codes[i];
      r.measured += s.measured;
      r.measured_errors += s.measured_errors;
      r.assignments += s.assignments;
      r.total += s.total;
      last = std::max(last, s.last_measured);
      if (plan.track_devices) {
        r.visited.resize(bearer_.size());
        r.assigned.resize(bearer_.size());
        for (size_t d = 0; d < bearer_.size(); ++d) {
          if (s.visited[d]) r.visited[d] = true;
          if (s.assigned[d]) r.assigned[d] = true;
        }
      }
    }
    const auto end = result.wrapped && last > window_start ? std::min(last, window_end) : window_end;
    result.window_seconds = std::chrono::duration<double>(end - window_start).count();
    std::sort(result.stats.latencies_us.begin(), result.stats.latencies_us.end());
    return result;
  }

 private:
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  // Starts the next call on `call`; false if there is none to make (cold: the round ended).
  bool Start(Kind kind, Call& call, grpc::CompletionQueue& cq, v1::DeviceService::Stub& stub,
             grpc::GenericStub& generic) {
    if (kind == Kind::kHealth) {
      call.ctx = std::make_unique<grpc::ClientContext>();
      call.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      call.start = Clock::now();
      call.health_reader = generic.PrepareUnaryCall(call.ctx.get(), "/grpc.health.v1.Health/Check", empty_request_, &cq);
      call.health_reader->StartCall();
      call.health_reader->Finish(&call.health_response, &call.status, &call);
      return true;
    }
    const uint64_t n = next_device_.fetch_add(1, std::memory_order_relaxed);
    if (plan_->first_visits_only && n >= bearer_.size()) {
      wrapped_ = true;
      return false;
    }
    call.ctx = std::make_unique<grpc::ClientContext>();
    call.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    call.start = Clock::now();
    call.n = n;
    const size_t device = n % bearer_.size();
    call.ctx->AddMetadata("authorization", bearer_[device]);
    // One minute of inferences since the previous check-in (values vary a little per call).
    auto* t = call.request.mutable_telemetry(0);
    t->set_inference_count(60 + n % 7);
    t->set_error_count(n % 3 == 0 ? 1 : 0);
    (*t->mutable_class_histogram())["empty"] = 40 + n % 5;
    (*t->mutable_class_histogram())["sitting"] = 20 + n % 2;
    t->mutable_window_end()->set_seconds(1'700'000'000 + static_cast<int64_t>(n));
    t->mutable_window_start()->set_seconds(1'700'000'000 + static_cast<int64_t>(n) - 60);
    call.reader = stub.PrepareAsyncCheckIn(call.ctx.get(), call.request, &cq);
    call.reader->StartCall();
    call.reader->Finish(&call.response, &call.status, &call);
    return true;
  }

  static v1::CheckInRequest RequestTemplate() {
    v1::CheckInRequest r;
    auto* running = r.add_running();
    running->set_model(kModel);
    running->set_version(kRunningVersion);
    running->set_digest(RunningDigest());
    r.set_agent_state(v1::AGENT_STATE_IDLE);
    auto* t = r.add_telemetry();
    t->set_model(kModel);
    t->set_version(kRunningVersion);
    t->mutable_latency()->set_p50_ms(3.1);
    t->mutable_latency()->set_p95_ms(4.7);
    t->mutable_latency()->set_p99_ms(6.2);
    t->set_mean_confidence(0.91);
    return r;
  }

  void Worker(Kind kind, int index, int calls, Stats& stats) {
    const auto& channel = channels_[index % channels_.size()];
    grpc::CompletionQueue cq;
    auto stub = v1::DeviceService::NewStub(channel);
    grpc::GenericStub generic(channel);
    std::vector<Call> slots(calls);
    stats.latencies_us.reserve(static_cast<size_t>(config_.seconds * 40000 / config_.client_threads));
    if (plan_->track_devices) {
      stats.visited.resize(bearer_.size());
      stats.assigned.resize(bearer_.size());
    }
    const uint64_t fleet = bearer_.size();
    int in_flight = 0;
    for (auto& call : slots) {
      call.request = RequestTemplate();
      if (Start(kind, call, cq, *stub, generic)) ++in_flight;
    }
    void* tag = nullptr;
    bool ok = false;
    while (in_flight > 0 && cq.Next(&tag, &ok)) {
      auto& call = *static_cast<Call*>(tag);
      const auto now = Clock::now();
      const int code = ok ? static_cast<int>(call.status.error_code()) : static_cast<int>(grpc::StatusCode::UNKNOWN);
      ++stats.total;
      ++stats.codes[std::clamp(code, 0, 16)];
      if (code != 0 && stats.total - stats.codes[0] <= 3) {
        std::fprintf(stderr, "call failed: %d %s\n", code, call.status.error_message().c_str());
      }
      if (kind == Kind::kCheckIn && call.n < fleet) first_pass_done_.fetch_add(1, std::memory_order_relaxed);
      const auto window_start = Clock::time_point(Clock::duration(start_ns_.load(std::memory_order_relaxed)));
      const auto window_end = Clock::time_point(Clock::duration(end_ns_.load(std::memory_order_relaxed)));
      if (call.start >= window_start && now <= window_end) {
        ++stats.measured;
        if (code != 0) ++stats.measured_errors;
        stats.latencies_us.push_back(std::chrono::duration<float, std::micro>(now - call.start).count());
        stats.last_measured = now;
        const bool assigned = code == 0 && kind == Kind::kCheckIn && call.response.has_assignment();
        if (assigned) ++stats.assignments;
        if (plan_->track_devices && kind == Kind::kCheckIn) {
          stats.visited[call.n % fleet] = true;
          if (assigned) stats.assigned[call.n % fleet] = true;
        }
      }
      if (now >= window_end || !Start(kind, call, cq, *stub, generic)) --in_flight;
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    workers_running_.fetch_sub(1);
  }

  const Config& config_;
  const std::vector<std::shared_ptr<grpc::Channel>>& channels_;
  const std::vector<std::string>& bearer_;
  const RunPlan* plan_ = nullptr;
  grpc::ByteBuffer empty_request_;
  std::atomic<uint64_t> next_device_{0}, first_pass_done_{0};
  std::atomic<int64_t> start_ns_{kNever}, end_ns_{kNever};  // the window, Clock's ticks
  std::atomic<int> workers_running_{0};
  std::atomic<bool> wrapped_{false};
};

void PrintRun(const char* name, const RunResult& r) {
  std::printf("%-9s %9.0f calls/s over %.1f s (%llu calls), latency p50 %6.2f ms, p99 %6.2f ms, max %7.2f ms\n", name,
              r.rate(), r.window_seconds, static_cast<unsigned long long>(r.stats.measured), r.pct(0.5), r.pct(0.99),
              r.pct(1.0));
  std::printf("          %s\n", CpuLine(r.cpu_start, r.cpu_end).c_str());
  const DbSample &a = r.cpu_start.db, &b = r.cpu_end.db;
  const double calls = static_cast<double>(std::max<uint64_t>(1, r.stats.measured));
  std::printf("          database per call: %.4f commits, %.4f statements (%lld in the window)",
              static_cast<double>(b.commits - a.commits) / calls, static_cast<double>(b.statements - a.statements) / calls,
              static_cast<long long>(b.statements - a.statements));
  for (const auto& [table, after] : b.tables) {
    auto it = a.tables.find(table);
    std::array<int64_t, 6> before = it == a.tables.end() ? std::array<int64_t, 6>{} : it->second;
    if (after == before) continue;
    std::printf("; %s: %.2f seq scans (%.0f rows read), %.2f index scans, %.3f rows written (%.3f ins, %.3f upd, %.3f del)",
                table.c_str(), static_cast<double>(after[0] - before[0]) / calls,
                static_cast<double>(after[1] - before[1]) / calls, static_cast<double>(after[2] - before[2]) / calls,
                static_cast<double>((after[3] - before[3]) + (after[4] - before[4]) + (after[5] - before[5])) / calls,
                static_cast<double>(after[3] - before[3]) / calls, static_cast<double>(after[4] - before[4]) / calls,
                static_cast<double>(after[5] - before[5]) / calls);
  }
  std::printf("\n");
  if (r.errors() > 0) {
    std::printf("          errors (all %llu calls, warm-up included):", static_cast<unsigned long long>(r.stats.total));
    for (size_t i = 1; i < r.stats.codes.size(); ++i) {
      if (r.stats.codes[i]) std::printf(" code %zu: %llu", i, static_cast<unsigned long long>(r.stats.codes[i]));
    }
    std::printf("\n");
  }
}

// ---------------------------------------------------------------- enrollments

// Devices joining the fleet while it checks in: each calls DeviceService/Enroll with the fleet's
// enrollment token, then checks in once with the credential it got, like modelfleet-agent.
// Enrollments are scheduled at a fixed rate (slot k at start + k / rate) over a few threads, so
// a slow one does not hold the next back; a slot started more than 100 ms late counts as late.
class EnrollLoad {
 public:
  EnrollLoad(std::shared_ptr<grpc::Channel> channel, std::string enrollment_token, double rate)
      : stub_(v1::DeviceService::NewStub(channel)), token_(std::move(enrollment_token)), rate_(rate) {}
  ~EnrollLoad() { Stop(); }

  void Start(Clock::time_point end) {
    start_ = Clock::now();
    end_ = end;
    const int threads = std::clamp(static_cast<int>(std::ceil(rate_ / 10)), 4, 32);
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Worker(); });
  }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  struct Result {
    std::vector<float> enroll_us, check_in_us;  // sorted
    uint64_t enrolled = 0, accepted = 0, enroll_failed = 0, checked_in = 0, check_in_failed = 0, late = 0;
  };
  Result Take() {
    std::lock_guard lock(mu_);
    std::sort(result_.enroll_us.begin(), result_.enroll_us.end());
    std::sort(result_.check_in_us.begin(), result_.check_in_us.end());
    return result_;
  }

 private:
  void Worker() {
    for (;;) {
      const uint64_t k = next_.fetch_add(1);
      const auto at = start_ + FromSeconds(static_cast<double>(k) / rate_);
      if (stop_ || at >= end_) return;
      std::this_thread::sleep_until(at);
      if (stop_) return;
      const bool late = Clock::now() - at > std::chrono::milliseconds(100);

      v1::EnrollRequest req;
      req.set_enrollment_token(token_);
      req.set_hardware_id("checkin-bench-new-" + std::to_string(k));
      auto* a = req.mutable_attributes();
      a->set_hardware_revision("3");
      a->set_firmware_version("1.4.2");
      a->set_site("bench");
      a->set_sensor_rows(16);
      a->set_sensor_cols(16);
      v1::EnrollResponse enrolled;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      const auto t0 = Clock::now();
      grpc::Status s = stub_->Enroll(&ctx, req, &enrolled);
      const float enroll_us = std::chrono::duration<float, std::micro>(Clock::now() - t0).count();

      // Its first check-in: nothing installed yet, idle, its attributes.
      grpc::Status c;
      float check_in_us = 0;
      if (s.ok()) {
        v1::CheckInRequest first;
        first.set_agent_state(v1::AGENT_STATE_IDLE);
        *first.mutable_attributes() = req.attributes();
        v1::CheckInResponse resp;
        grpc::ClientContext cctx;
        cctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        cctx.AddMetadata("authorization", "Bearer " + enrolled.device_token());
        const auto t1 = Clock::now();
        c = stub_->CheckIn(&cctx, first, &resp);
        check_in_us = std::chrono::duration<float, std::micro>(Clock::now() - t1).count();
      }
      std::lock_guard lock(mu_);
      if (late) ++result_.late;
      if (!s.ok()) {
        if (++result_.enroll_failed <= 3) std::fprintf(stderr, "Enroll failed: %d %s\n", s.error_code(), s.error_message().c_str());
        continue;
      }
      ++result_.enrolled;
      if (enrolled.admission() == v1::DEVICE_ADMISSION_ACCEPTED) ++result_.accepted;
      result_.enroll_us.push_back(enroll_us);
      if (!c.ok()) {
        if (++result_.check_in_failed <= 3) {
          std::fprintf(stderr, "first check-in of an enrolled device failed: %d %s\n", c.error_code(), c.error_message().c_str());
        }
        continue;
      }
      ++result_.checked_in;
      result_.check_in_us.push_back(check_in_us);
    }
  }

  std::unique_ptr<v1::DeviceService::Stub> stub_;
  const std::string token_;
  const double rate_;
  Clock::time_point start_, end_;
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  Result result_;
};

// ---------------------------------------------------------------- setup

bool SeedDevices(const std::string& conninfo, int devices, std::string* error) {
  // The secret's and hash's SQL must match DeviceSecret() and TokenStore::HashSecret (SHA-256 hex).
  // Each device already reports what it runs and was last seen within the status refresh
  // (300 s), as in a fleet that has been checking in all along.
  const std::string secret = "'mf_' || encode(sha256(convert_to('checkin-bench-' || i, 'UTF8')), 'hex')";
  const std::string sql =
      "BEGIN; "
      "CREATE TEMP TABLE seed AS SELECT i, 'dev-' || lpad(to_hex(i), 16, '0') AS device_id, "
      "  encode(sha256(convert_to(" + secret + ", 'UTF8')), 'hex') AS token_hash "
      "  FROM generate_series(0, " + std::to_string(devices - 1) + ") AS i; "
      "INSERT INTO api_tokens (name, role, token_hash, created_by) "
      "  SELECT device_id, 'device', token_hash, 'checkin_bench' FROM seed ORDER BY i; "
      "INSERT INTO devices (device_id, hardware_id, admission, token_id, enrolled_by, "
      "                     running_model, running_version, running_digest, agent_state, last_seen) "
      "  SELECT s.device_id, 'hw-' || lpad(to_hex(s.i), 16, '0'), 'ACCEPTED', t.id, 'checkin_bench', "
      "         '" + std::string(kModel) + "', '" + kRunningVersion + "', '" + RunningDigest() + "', 'IDLE', "
      "         now() - random() * interval '300 seconds' "
      "  FROM seed s JOIN api_tokens t ON t.token_hash = s.token_hash ORDER BY s.i; "
      "COMMIT; ANALYZE api_tokens; ANALYZE devices; "
      "SELECT count(*) FROM devices d JOIN api_tokens t ON t.id = d.token_id WHERE t.role = 'device';";
  std::string out;
  int code = Psql(conninfo, sql, &out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (code != 0 || out != std::to_string(devices)) {
    *error = "seeding failed (psql exit " + std::to_string(code) + "): " + out;
    return false;
  }
  return true;
}

// The server under test: the fixture's ServerProcess, or, with --db-pool-size (which the
// fixture fixes at 4 and the server accepts only once), the same command line started here.
struct BenchServer {
  std::unique_ptr<testing::ServerProcess> fixture;
  std::unique_ptr<testing::TempDir> dir;
  std::optional<testing::Subprocess> own;
  int port = 0;
  Clock::time_point spawned;  // just before the process was started

  std::string address() const { return fixture ? fixture->address() : "127.0.0.1:" + std::to_string(port); }
  pid_t pid() { return fixture ? fixture->process().pid() : own->pid(); }
  std::string Log() const {
    return fixture ? fixture->Log() : testing::ReadFileOrEmpty(dir->path() / "server.log");
  }
  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
  }
  ~BenchServer() {
    if (own) own->Stop(std::chrono::seconds(10));
  }

  static std::unique_ptr<BenchServer> Start(const std::string& conninfo, int pool_size,
                                            const std::vector<std::string>& extra, std::string* error) {
    auto s = std::make_unique<BenchServer>();
    s->spawned = Clock::now();
    if (pool_size <= 0) {
      testing::ServerProcess::Options o;
      o.database_url = conninfo;
      o.extra_args = extra;
      s->fixture = testing::ServerProcess::Start(o, error);
      return s->fixture ? std::move(s) : nullptr;
    }
    s->dir = std::make_unique<testing::TempDir>("modelfleet-checkin-bench");
    s->port = testing::FreeTcpPort();
    testing::Subprocess::Options p;
    p.argv = {testing::ServerBinary().string(), "serve", "--listen", s->address(), "--database-url", conninfo,
              "--blob-store", "local", "--blob-dir", (s->dir->path() / "blobs").string(),
              "--cache-dir", (s->dir->path() / "cache").string(), "--db-pool-size", std::to_string(pool_size),
              "--insecure"};
    p.argv.insert(p.argv.end(), extra.begin(), extra.end());
    p.log_path = s->dir->path() / "server.log";
    s->own = testing::Subprocess::Start(p, error);
    if (!s->own) return nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline && s->own->Running()) {
      if (s->Log().find("listening on") != std::string::npos &&
          testing::WaitForTcpPort(s->port, std::chrono::seconds(1))) {
        return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    *error = "modelfleet-server did not come up; its log:\n" + s->Log();
    return nullptr;
  }
};

// Watches a freshly started server's log, from a thread polling it every 20 ms, for its cache
// loads: "device cache: loaded N accepted devices in X ms" and "token cache: loaded N live
// tokens in X ms". Destroy it before the server.
class CacheLoadWatch {
 public:
  struct Load {
    bool done = false;
    std::string line;
    long count = -1;
    double log_ms = -1;        // what the server logged
    double seen_after_s = -1;  // when the bench saw the line, since the process was spawned
  };

  explicit CacheLoadWatch(const BenchServer& server) : server_(server) {
    thread_ = std::thread([this] { Poll(); });
  }
  ~CacheLoadWatch() {
    stop_ = true;
    thread_.join();
  }
  bool devices_loaded() const { return devices_done_.load(); }
  // Until both caches logged their load; false on timeout.
  bool Wait(std::chrono::seconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mu_);
        if (devices_.done && tokens_.done) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  Load devices() const {
    std::lock_guard lock(mu_);
    return devices_;
  }
  Load tokens() const {
    std::lock_guard lock(mu_);
    return tokens_;
  }

 private:
  static bool Find(const std::string& log, const char* prefix, const char* format, Load* load) {
    const size_t pos = log.find(prefix);
    if (pos == std::string::npos) return false;
    const size_t end = log.find('\n', pos);
    if (end == std::string::npos) return false;  // not completely written yet
    const size_t begin = log.rfind('\n', pos);
    load->line = log.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1));
    std::sscanf(log.c_str() + pos, format, &load->count, &load->log_ms);
    load->done = true;
    return true;
  }
  void Poll() {
    const auto give_up = Clock::now() + std::chrono::minutes(15);
    while (!stop_ && Clock::now() < give_up) {
      const std::string log = server_.Log();
      const double seen = Seconds(server_.spawned);
      {
        std::lock_guard lock(mu_);
        if (!devices_.done && Find(log, "device cache: loaded ", "device cache: loaded %ld accepted devices in %lf ms", &devices_)) {
          devices_.seen_after_s = seen;
          devices_done_ = true;
        }
        if (!tokens_.done && Find(log, "token cache: loaded ", "token cache: loaded %ld live tokens in %lf ms", &tokens_)) {
          tokens_.seen_after_s = seen;
        }
        if (devices_.done && tokens_.done) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  const BenchServer& server_;
  mutable std::mutex mu_;
  Load devices_, tokens_;
  std::atomic<bool> devices_done_{false}, stop_{false};
  std::thread thread_;
};

void PrintCacheLoads(const char* who, const CacheLoadWatch& watch) {
  const auto d = watch.devices(), t = watch.tokens();
  if (!d.done) {
    std::printf("%s: its device cache did not log its load (\"device cache: loaded ...\")\n", who);
    return;
  }
  std::printf("%s: device cache: loaded %ld accepted devices in %.0f ms (its log), line seen %.2f s after the process was "
              "spawned: %s 3 s; token cache: %s\n",
              who, d.count, d.log_ms, d.seen_after_s, d.seen_after_s <= kCacheLoadGoalSeconds ? "within" : "NOT within",
              t.done ? (std::to_string(t.count) + " live tokens in " + std::to_string(static_cast<long>(t.log_ms)) + " ms").c_str()
                     : "no load logged");
}

bool PushRolloutVersion(BenchServer& server, const std::string& admin, std::string* error) {
  auto registry = v1::RegistryService::NewStub(server.Channel());
  {
    grpc::ClientContext ctx;
    testing::Authorize(ctx, admin);
    v1::CreateModelRequest req;
    req.mutable_model()->set_name(kModel);
    req.mutable_model()->set_task("person-detection");
    v1::Model m;
    grpc::Status s = registry->CreateModel(&ctx, req, &m);
    if (!s.ok()) {
      *error = "CreateModel: " + s.error_message();
      return false;
    }
  }
  const std::string bytes = testing::PatternBytes(64 << 10, 2);
  grpc::ClientContext ctx;
  testing::Authorize(ctx, admin);
  v1::ModelVersion version;
  auto writer = registry->PushVersion(&ctx, &version);
  v1::PushVersionRequest msg;
  *msg.mutable_manifest() = testing::ManifestFor(kModel, kRolloutVersion, bytes);
  writer->Write(msg);
  msg.set_chunk(bytes);
  writer->Write(msg);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) {
    *error = "PushVersion: " + s.error_message();
    return false;
  }
  return true;
}

bool CreateRollout(BenchServer& server, const std::string& admin, int percent, std::string* error) {
  auto fleet = v1::FleetService::NewStub(server.Channel());
  grpc::ClientContext ctx;
  testing::Authorize(ctx, admin);
  v1::CreateRolloutRequest req;
  req.set_model(kModel);
  req.set_version(kRolloutVersion);
  req.set_target("*");
  req.set_deployment_timeout_seconds(3600);
  auto* stage = req.add_stages();
  stage->set_percent(percent);
  stage->set_success_threshold(1.0);  // never advances while we measure
  stage->set_soak_seconds(3600);
  v1::Rollout rollout;
  const auto t0 = Clock::now();
  grpc::Status s = fleet->CreateRollout(&ctx, req, &rollout);
  if (!s.ok() || rollout.state() != v1::ROLLOUT_STATE_RUNNING) {
    *error = "CreateRollout: " + (s.ok() ? "state " + v1::RolloutState_Name(rollout.state()) : s.error_message());
    return false;
  }
  std::printf("rollout %s of %s@%s to %d%% of the fleet: RUNNING, cohort cutoff %.4f (created in %.0f ms, as the "
              "window opens)\n",
              rollout.rollout_id().c_str(), kModel, kRolloutVersion, percent, rollout.cohort_cutoff(),
              1000 * Seconds(t0));
  return true;
}

std::string CreateEnrollmentToken(BenchServer& server, const std::string& admin, std::string* error) {
  auto fleet = v1::FleetService::NewStub(server.Channel());
  grpc::ClientContext ctx;
  testing::Authorize(ctx, admin);
  v1::CreateEnrollmentTokenRequest req;
  req.set_name("checkin-bench-fleet");
  req.set_auto_accept(true);  // as deploy/ sets up a fleet: enrolled devices are ACCEPTED at once
  v1::CreateEnrollmentTokenResponse resp;
  grpc::Status s = fleet->CreateEnrollmentToken(&ctx, req, &resp);
  if (!s.ok()) {
    *error = "CreateEnrollmentToken: " + s.error_message();
    return "";
  }
  return resp.token();
}

pid_t PostmasterPid(const std::string& conninfo) {
  std::string dir;
  if (Psql(conninfo, "SHOW data_directory", &dir) != 0) return 0;
  while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
  std::ifstream in(dir + "/postmaster.pid");
  pid_t pid = 0;
  in >> pid;
  return pid;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  const char* usage =
      "usage: checkin_bench [--devices N] [--seconds S] [--warmup S] [--concurrency C] "
      "[--mode warm|cold|rollout|rollout-all] [--enroll-rate N] [--client-threads T] [--channels K] "
      "[--server-arg ARG]... [--setup-sql SQL]... [--db-pool-size P] [--pg-statements N] [--fresh-replica 0|1]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << flag << "\n" << usage;
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--devices") config.devices = std::stoi(value);
    else if (flag == "--seconds") config.seconds = std::stod(value);
    else if (flag == "--warmup") config.warmup = std::stod(value);
    else if (flag == "--concurrency") config.concurrency = std::stoi(value);
    else if (flag == "--mode") config.mode = value;
    else if (flag == "--enroll-rate") config.enroll_rate = std::stod(value);
    else if (flag == "--client-threads") config.client_threads = std::stoi(value);
    else if (flag == "--channels") config.channels = std::stoi(value);
    else if (flag == "--server-arg") config.server_args.push_back(value);
    else if (flag == "--setup-sql") config.setup_sql.push_back(value);
    else if (flag == "--db-pool-size") config.db_pool_size = std::stoi(value);
    else if (flag == "--pg-statements") config.pg_statements = std::stoi(value);
    else if (flag == "--fresh-replica") config.fresh_replica = value == "1" || value == "true";
    else {
      std::cerr << "unknown flag " << flag << "\n" << usage;
      return 2;
    }
  }
  if (config.mode == "steady") {
    std::printf("--mode steady is now --mode warm (the alias goes away in the next release)\n");
    config.mode = "warm";
  }
  const bool known_mode = config.mode == "warm" || config.mode == "cold" || config.mode == "rollout" ||
                          config.mode == "rollout-all";
  if (config.devices < 1 || config.seconds <= 0 || config.warmup < 0 || config.concurrency < 1 ||
      config.client_threads < 1 || config.channels < 1 || config.enroll_rate < 0 || !known_mode) {
    std::cerr << "bad arguments\n" << usage;
    return 2;
  }
  if (config.cold()) config.fresh_replica = true;
  config.client_threads = std::min(config.client_threads, config.concurrency);
  if (!std::getenv("MODELFLEET_BINARY_DIR")) {
    auto exe = std::filesystem::read_symlink("/proc/self/exe");
    setenv("MODELFLEET_BINARY_DIR", exe.parent_path().parent_path().c_str(), 1);
  }

  std::string error;
  auto setup_start = Clock::now();
  auto postgres = testing::TempPostgres::Start(&error);
  if (!postgres || !postgres->CreateDatabase("bench_checkin")) {
    std::cerr << "cannot start PostgreSQL: " << (postgres ? postgres->last_error() : error) << std::endl;
    return 1;
  }
  const std::string conninfo = postgres->conninfo("bench_checkin");
  {  // pg_stat_statements in every run: the round trips per check-in come from it.
    std::string out;
    if (Psql(conninfo, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'", &out) != 0 ||
        !postgres->Restart() ||
        (config.pg_statements > 0 && Psql(conninfo, "ALTER SYSTEM SET pg_stat_statements.track_planning = on", &out) != 0) ||
        Psql(conninfo, "SELECT pg_reload_conf()", &out) != 0 ||
        Psql(conninfo, "CREATE EXTENSION pg_stat_statements", &out) != 0) {
      std::cerr << "cannot enable pg_stat_statements: " << out << postgres->last_error() << std::endl;
      return 1;
    }
  }

  // The server on the empty database: it migrates, and its resident memory once its (empty)
  // caches loaded is the baseline of the bytes per cached device.
  auto server = BenchServer::Start(conninfo, config.db_pool_size, config.server_args, &error);
  std::string admin = server ? testing::CreateTokenOffline(conninfo, "bench_admin", "admin", &error) : "";
  if (admin.empty()) {
    std::cerr << "cannot start the server: " << error << std::endl;
    return 1;
  }
  int64_t rss_empty_kb = 0;
  {
    CacheLoadWatch loads(*server);
    if (!loads.Wait(std::chrono::seconds(60))) std::printf("warning: the server on the empty database logged no cache loads\n");
    rss_empty_kb = VmRssKb(server->pid());
  }
  auto seed_start = Clock::now();
  if (!SeedDevices(conninfo, config.devices, &error)) {
    std::cerr << error << std::endl;
    return 1;
  }
  std::printf("seeded %d devices (tokens + ACCEPTED devices running %s@%s, IDLE, last seen within 300 s) in %.1f s\n",
              config.devices, kModel, kRunningVersion, Seconds(seed_start));
  for (const auto& sql : config.setup_sql) {
    std::string out;
    if (Psql(conninfo, sql, &out) != 0) {
      std::cerr << "--setup-sql failed: " << out << std::endl;
      return 1;
    }
    std::printf("setup SQL: %s\n", sql.c_str());
  }

  std::vector<std::string> bearer(config.devices);
  for (int i = 0; i < config.devices; ++i) bearer[i] = "Bearer " + DeviceSecret(i);

  if (config.rollout_percent() > 0 && !PushRolloutVersion(*server, admin, &error)) {
    std::cerr << "rollout setup failed: " << error << std::endl;
    return 1;
  }
  std::string enrollment_token;
  if (config.enroll_rate > 0) {
    enrollment_token = CreateEnrollmentToken(*server, admin, &error);
    if (enrollment_token.empty()) {
      std::cerr << error << std::endl;
      return 1;
    }
  }

  // The replica under test starts on the seeded fleet, like one joining a running fleet: once
  // its caches loaded (and before any check-in), its resident memory against the baseline's.
  server.reset();
  server = BenchServer::Start(conninfo, config.db_pool_size, config.server_args, &error);
  if (!server) {
    std::cerr << "cannot restart the server: " << error << std::endl;
    return 1;
  }
  int64_t rss_loaded_kb = 0;
  {
    CacheLoadWatch loads(*server);
    if (!loads.Wait(std::chrono::seconds(120))) std::printf("warning: the replica logged no cache loads within 120 s\n");
    rss_loaded_kb = VmRssKb(server->pid());
    PrintCacheLoads("replica started on the fleet (no load)", loads);
  }
  char memory_line[512];
  std::snprintf(memory_line, sizeof memory_line,
                "%.0f bytes per cached device (VmRSS %.1f MB of a replica that has just loaded %d devices, before any "
                "check-in, minus %.1f MB of the same server on the empty database after its caches loaded, over %d: "
                "device cache + credential cache + allocator)",
                static_cast<double>(rss_loaded_kb - rss_empty_kb) * 1024.0 / config.devices, rss_loaded_kb / 1024.0,
                config.devices, rss_empty_kb / 1024.0, config.devices);

  // Several channels = several TCP connections (distinct args keep gRPC from sharing one).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  auto connect = [&] {
    channels.clear();
    for (int i = 0; i < config.channels; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("modelfleet.bench_channel", i);
      channels.push_back(grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(), args));
    }
  };
  connect();
  {  // Sanity: device 0 checks in (on this replica, so a fresh one below has still seen none).
    auto stub = v1::DeviceService::NewStub(channels[0]);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", bearer[0]);
    v1::CheckInRequest req;
    v1::CheckInResponse resp;
    grpc::Status s = stub->CheckIn(&ctx, req, &resp);
    if (!s.ok() || resp.admission() != v1::DEVICE_ADMISSION_ACCEPTED) {
      std::cerr << "a seeded device cannot check in: " << s.error_code() << " " << s.error_message() << std::endl;
      return 1;
    }
  }
  std::unique_ptr<CacheLoadWatch> fresh_loads;
  if (config.fresh_replica) {
    channels.clear();
    server.reset();
    server = BenchServer::Start(conninfo, config.db_pool_size, config.server_args, &error);
    if (!server) {
      std::cerr << "cannot restart the server: " << error << std::endl;
      return 1;
    }
    fresh_loads = std::make_unique<CacheLoadWatch>(*server);
    connect();
    std::printf("restarted the server on the seeded fleet: a fresh replica, its caches loading from now on\n");
  }
  std::printf("setup %.1f s; %d devices, %s warm-up + %.0f s measured per run, %d calls in flight, %d client "
              "threads, %d channels, mode %s%s\n",
              Seconds(setup_start), config.devices,
              config.cold() ? "no check-in" : ("at least " + std::to_string(static_cast<int>(config.warmup)) + " s and one pass of").c_str(),
              config.seconds, config.concurrency, config.client_threads, config.channels, config.mode.c_str(),
              config.enroll_rate > 0 ? (", " + std::to_string(static_cast<int>(config.enroll_rate)) + " enrollments/s").c_str() : "");

  CpuWatch watch{server->pid(), PostmasterPid(conninfo), conninfo};
  RunResult health, check_in;
  auto run_health = [&] {
    Driver health_driver(config, channels, bearer);
    RunPlan plan;
    plan.warmup = config.warmup;
    health = health_driver.Run(Kind::kHealth, watch, plan);
    PrintRun("health", health);
  };
  if (!config.fresh_replica) run_health();
  std::string ignored;
  if (config.pg_statements > 0) Psql(conninfo, "SELECT pg_stat_statements_reset()", &ignored);

  std::unique_ptr<EnrollLoad> enroll;
  if (config.enroll_rate > 0) {
    // Its own connection: a new device does not share the fleet's.
    grpc::ChannelArguments args;
    args.SetInt("modelfleet.bench_channel", config.channels);
    enroll = std::make_unique<EnrollLoad>(
        grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(), args), enrollment_token,
        config.enroll_rate);
  }
  {
    RunPlan plan;
    if (config.cold()) {
      plan.first_visits_only = true;  // measured from the first call
    } else {
      plan.warmup = config.warmup;
      plan.full_pass = true;
      if (fresh_loads) plan.ready = [&] { return fresh_loads->devices_loaded(); };
    }
    plan.track_devices = config.rollout_percent() > 0;
    bool rollout_ok = true;
    if (config.rollout_percent() > 0) {
      plan.before_window = [&] { rollout_ok = CreateRollout(*server, admin, config.rollout_percent(), &error); };
    }
    if (enroll) plan.window_opened = [&](Clock::time_point end) { enroll->Start(end); };
    Driver check_in_driver(config, channels, bearer);
    check_in = check_in_driver.Run(Kind::kCheckIn, watch, plan);
    if (enroll) enroll->Stop();
    if (!rollout_ok) {
      std::cerr << "rollout setup failed: " << error << std::endl;
      return 1;
    }
    PrintRun("check-in", check_in);
  }
  const DbSample &db_start = check_in.cpu_start.db, &db_end = check_in.cpu_end.db;
  if (config.fresh_replica) {
    run_health();
    if (fresh_loads) PrintCacheLoads("          fresh replica (under load)", *fresh_loads);
  }
  const int64_t rss_end_kb = VmRssKb(server->pid());

  const double rate = check_in.rate();
  if (config.cold()) {
    if (check_in.wrapped) {
      std::printf("          cold: every measured check-in was a device's first visit; the fleet's round ended after %.1f s "
                  "(of the %.0f s asked), so the window stopped there\n",
                  check_in.window_seconds, config.seconds);
    } else {
      std::printf("          cold: every measured check-in was a device's first visit (%llu of %d devices)\n",
                  static_cast<unsigned long long>(check_in.stats.measured), config.devices);
    }
  } else {
    std::printf("          warm-up: %.1f s, %llu check-ins (every device checked in at least once%s); each device came "
                "back every %.1f s\n",
                check_in.warmup_seconds, static_cast<unsigned long long>(check_in.warmup_calls),
                fresh_loads ? ", the device cache loaded" : "", config.devices / std::max(1.0, rate));
  }
  if (config.rollout_percent() > 0) {
    std::string out;
    Psql(conninfo, "SELECT count(*) || ' deployments, ' || count(DISTINCT device_id) || ' devices' FROM deployments", &out);
    const auto visited = std::count(check_in.stats.visited.begin(), check_in.stats.visited.end(), true);
    const auto assigned = std::count(check_in.stats.assigned.begin(), check_in.stats.assigned.end(), true);
    std::printf("          assignments: %llu of %llu measured check-ins (%.1f%%); %ld distinct devices got an assignment "
                "in the window out of %ld that checked in (%.1f%%); in the database: %s\n",
                static_cast<unsigned long long>(check_in.stats.assignments),
                static_cast<unsigned long long>(check_in.stats.measured),
                100.0 * static_cast<double>(check_in.stats.assignments) / std::max<uint64_t>(1, check_in.stats.measured),
                static_cast<long>(assigned), static_cast<long>(visited),
                100.0 * static_cast<double>(assigned) / std::max<double>(1, static_cast<double>(visited)),
                Trimmed(out).c_str());
  }
  EnrollLoad::Result enrolled;
  if (enroll) {
    enrolled = enroll->Take();
    std::string out;
    Psql(conninfo, "SELECT count(*) FROM devices WHERE hardware_id LIKE 'checkin-bench-new-%' AND admission = 'ACCEPTED'", &out);
    std::printf("          enrollments (%.0f/s asked, auto-accept token): %llu done (%llu ACCEPTED), %llu failed, %llu started "
                ">100 ms late; latency p50 %.2f ms, p99 %.2f ms; their first check-ins: %llu ok, %llu failed, p50 %.2f ms, "
                "p99 %.2f ms; ACCEPTED in the database: %s\n",
                config.enroll_rate, static_cast<unsigned long long>(enrolled.enrolled),
                static_cast<unsigned long long>(enrolled.accepted), static_cast<unsigned long long>(enrolled.enroll_failed),
                static_cast<unsigned long long>(enrolled.late), Percentile(enrolled.enroll_us, 0.5),
                Percentile(enrolled.enroll_us, 0.99), static_cast<unsigned long long>(enrolled.checked_in),
                static_cast<unsigned long long>(enrolled.check_in_failed), Percentile(enrolled.check_in_us, 0.5),
                Percentile(enrolled.check_in_us, 0.99), Trimmed(out).c_str());
  }
  {
    const auto rows = RowsWritten(db_start, db_end);
    const double calls = static_cast<double>(std::max<uint64_t>(1, check_in.stats.measured));
    std::printf("          PostgreSQL per check-in: %.3f rows written (%.3f inserted + %.3f updated + %.3f deleted, every "
                "table, over the window: pg_stat_user_tables, which lags up to about a second; %.3f by the rows its INSERT, "
                "UPDATE and DELETE statements affected), %.3f round trips (%lld statements the server executed in the "
                "window, pg_stat_statements)\n",
                static_cast<double>(rows[0] + rows[1] + rows[2]) / calls, rows[0] / calls, rows[1] / calls,
                rows[2] / calls, static_cast<double>(db_end.statement_rows - db_start.statement_rows) / calls,
                static_cast<double>(db_end.statements - db_start.statements) / calls,
                static_cast<long long>(db_end.statements - db_start.statements));
    std::printf("          server memory: VmRSS %.1f MB at the end; %s\n", rss_end_kb / 1024.0, memory_line);
  }
  if (config.pg_statements > 0) {
    std::string out;
    Psql(conninfo,
         "SELECT format('%10s calls %8s ms %7s us/call  %s', calls, round(total_exec_time + total_plan_time), "
         "round(1000 * (total_exec_time + total_plan_time) / nullif(calls, 0)), left(regexp_replace(query, '\\s+', ' ', 'g'), 150)) "
         "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
         "ORDER BY total_exec_time + total_plan_time DESC LIMIT " + std::to_string(config.pg_statements),
         &out);
    std::printf("          PostgreSQL's top statements of the check-in run (warm-up included; execution + planning):\n%s",
                out.c_str());
  }
  const bool met = rate >= 16700 && check_in.pct(0.99) < 20 && check_in.stats.measured_errors == 0 &&
                   enrolled.enroll_failed == 0 && enrolled.check_in_failed == 0;
  const std::string mode =
      config.enroll_rate > 0 ? config.mode + " + " + std::to_string(static_cast<int>(config.enroll_rate)) + " enrollments/s"
                             : config.mode;
  std::printf(
      "\ncheck-ins: %d devices, %.1f s, %.0f/s, p50 %.2f ms, p99 %.2f ms (%s); health baseline %.0f/s, p50 %.2f ms, "
      "p99 %.2f ms; ratio %.2f; goal 16700/s p99<20ms: %s\n",
      config.devices, check_in.window_seconds, rate, check_in.pct(0.5), check_in.pct(0.99), mode.c_str(),
      health.rate(), health.pct(0.5), health.pct(0.99), rate / std::max(1.0, health.rate()), met ? "MET" : "NOT MET");

  const double failed = static_cast<double>(check_in.errors()) / std::max<uint64_t>(1, check_in.stats.total);
  if (failed > 0.01) {
    std::printf("FAILED: %.2f%% of the check-ins failed\n", 100 * failed);
    std::cerr << "server log tail:\n" << server->Log().substr(server->Log().size() > 4000 ? server->Log().size() - 4000 : 0);
    return 1;
  }
  return 0;
}
