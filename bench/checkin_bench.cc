// Check-in benchmark: N simulated devices check in over real gRPC against a real
// modelfleet-server on a real PostgreSQL (both started by the bench), C calls kept in flight
// by gRPC's async client API.
//
// The fleet is seeded directly in the database (it is a bench, not a test): device i has the
// secret "mf_" + hex(SHA-256("checkin-bench-<i>")), an api_tokens row of role 'device' holding
// the SHA-256 hex of that secret, and an ACCEPTED devices row pointing at it; one psql
// statement with generate_series does it all (100k devices in a few seconds).
//
// Devices check in round-robin (device 0, 1, ..., N-1, 0, ...), each call carrying the device's
// bearer token, what it runs (mat-person@1.0.0) and one telemetry entry. So a device comes
// back every N / rate seconds, which decides what the server's caches see (its token cache
// keeps entries 5 s, its device cache 30 s): the summary prints that revisit interval.
//
// Baseline, same server, same run, same driver: the standard health check
// /grpc.health.v1.Health/Check through grpc::GenericStub (no authentication, no database).
//
//   --mode rollout: before measuring, pushes mat-person@2.0.0 and creates a RUNNING rollout
//   of it to 10% of the fleet (target "*", one stage that never advances), so about 10% of the
//   check-ins get an assignment (counted), each a database transaction on the server.
//
//   --fresh-replica 1: after seeding (and the rollout), restarts the server, so the measured
//   check-ins hit a replica that has just started on an existing fleet (its caches load in the
//   background from the start; its log says when), and measures them before the health
//   baseline. With --warmup 0 the first visit of every device is measured.
//
//   checkin_bench [--devices N] [--seconds S] [--warmup S] [--concurrency C] [--mode steady|rollout]
//                 [--client-threads T] [--channels K] [--server-arg ARG]... [--setup-sql SQL]...
//                 [--db-pool-size P] [--pg-statements N] [--fresh-replica 0|1]
//   defaults: 100000 devices, 20 s measured after 5 s of warm-up, 64 calls in flight,
//             steady, 2 client threads, 4 channels (TCP connections).
//
// --server-arg passes an argument to modelfleet-server (e.g. --server-arg --log-level
// --server-arg warn); --db-pool-size sets its connection pool (default: the fixture's 4);
// --setup-sql runs a statement after seeding (e.g. to try an index before writing its
// migration); --pg-statements N loads pg_stat_statements (planning tracked too) and prints the
// N statements that took PostgreSQL the most time during the check-in run.
//
// Each run also prints where the CPU went over the measured window (server, PostgreSQL, this
// client, the rest of the machine: the cores are shared) and what PostgreSQL did per call
// (commits, scans, rows written, from its statistics views).
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
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <memory>
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

struct Config {
  int devices = 100000;
  double seconds = 20;
  double warmup = 5;
  int concurrency = 64;
  std::string mode = "steady";
  int client_threads = 2;
  int channels = 4;
  std::vector<std::string> server_args;
  std::vector<std::string> setup_sql;
  int db_pool_size = 0;  // 0: the fixture's (4)
  int pg_statements = 0;  // print this many top statements (pg_stat_statements) of the check-in run
  bool fresh_replica = false;
};

std::string DeviceSecret(int64_t i) { return "mf_" + Sha256Hex("checkin-bench-" + std::to_string(i)); }

// ---------------------------------------------------------------- CPU accounting

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

// What PostgreSQL counted (pg_stat_database, pg_stat_user_tables); it publishes its counters
// within about a second, so deltas over the window are approximate.
struct DbSample {
  std::map<std::string, std::array<int64_t, 4>> tables;  // seq_scan, seq_tup_read, idx_scan, n_tup_upd
  int64_t commits = 0;
};

int Psql(const std::string& conninfo, const std::string& sql, std::string* out) {
  return testing::RunCommand({"psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql}, out);
}

DbSample TakeDbSample(const std::string& conninfo) {
  DbSample s;
  std::string out;
  if (Psql(conninfo,
           "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_upd + n_tup_ins FROM pg_stat_user_tables "
           "UNION ALL SELECT '', xact_commit, 0, 0, 0 FROM pg_stat_database WHERE datname = current_database()",
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
    if (f.size() != 5) continue;
    if (f[0].empty()) {
      s.commits = std::stoll(f[1]);
    } else {
      s.tables[f[0]] = {std::stoll(f[1]), std::stoll(f[2]), std::stoll(f[3]), std::stoll(f[4])};
    }
  }
  return s;
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

// ---------------------------------------------------------------- load driver

enum class Kind { kCheckIn, kHealth };

struct Stats {
  std::vector<float> latencies_us;  // calls completed inside the measured window
  std::array<uint64_t, 17> codes{};  // every call, warm-up included
  uint64_t measured = 0, measured_errors = 0, assignments = 0, total = 0;
};

struct RunResult {
  Kind kind;
  double window_seconds = 0;
  Stats stats;
  CpuSample cpu_start, cpu_end;

  double rate() const { return static_cast<double>(stats.measured) / window_seconds; }
  double pct(double p) const {
    const auto& l = stats.latencies_us;
    if (l.empty()) return 0;
    return l[static_cast<size_t>(p * static_cast<double>(l.size() - 1))] / 1000.0;
  }
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
};

class Driver {
 public:
  Driver(const Config& config, const std::vector<std::shared_ptr<grpc::Channel>>& channels,
         const std::vector<std::string>& bearer)
      : config_(config), channels_(channels), bearer_(bearer) {
    grpc::Slice empty("");
    empty_request_ = grpc::ByteBuffer(&empty, 1);
  }

  RunResult Run(Kind kind, const CpuWatch& watch) {
    RunResult result;
    result.kind = kind;
    const auto t0 = Clock::now();
    measure_start_ = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config_.warmup));
    measure_end_ = measure_start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config_.seconds));
    std::vector<Stats> stats(config_.client_threads);
    std::vector<std::thread> threads;
    for (int t = 0; t < config_.client_threads; ++t) {
      int calls = config_.concurrency / config_.client_threads + (t < config_.concurrency % config_.client_threads ? 1 : 0);
      threads.emplace_back([this, kind, t, calls, &stats] { Worker(kind, t, calls, stats[t]); });
    }
    std::this_thread::sleep_until(measure_start_);
    result.cpu_start = watch.Take();
    std::this_thread::sleep_until(measure_end_);
    result.cpu_end = watch.Take();
    for (auto& th : threads) th.join();
    result.window_seconds = std::chrono::duration<double>(measure_end_ - measure_start_).count();
    for (auto& s : stats) {
      auto& r = result.stats;
      r.latencies_us.insert(r.latencies_us.end(), s.latencies_us.begin(), s.latencies_us.end());
      for (size_t i = 0; i < s.codes.size(); ++i) r.codes[i] += s.codes[i];
      r.measured += s.measured;
      r.measured_errors += s.measured_errors;
      r.assignments += s.assignments;
      r.total += s.total;
    }
    std::sort(result.stats.latencies_us.begin(), result.stats.latencies_us.end());
    return result;
  }

 private:
  void Start(Kind kind, Call& call, grpc::CompletionQueue& cq, v1::DeviceService::Stub& stub,
             grpc::GenericStub& generic) {
    call.ctx = std::make_unique<grpc::ClientContext>();
    call.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    call.start = Clock::now();
    if (kind == Kind::kHealth) {
      call.health_reader = generic.PrepareUnaryCall(call.ctx.get(), "/grpc.health.v1.Health/Check", empty_request_, &cq);
      call.health_reader->StartCall();
      call.health_reader->Finish(&call.health_response, &call.status, &call);
      return;
    }
    const uint64_t n = next_device_.fetch_add(1, std::memory_order_relaxed);
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
  }

  static v1::CheckInRequest RequestTemplate() {
    v1::CheckInRequest r;
    auto* running = r.add_running();
    running->set_model(kModel);
    running->set_version(kRunningVersion);
    running->set_digest(Sha256Hex(std::string("mat-person 1.0.0 bytes")));
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
    for (auto& call : slots) {
      call.request = RequestTemplate();
      Start(kind, call, cq, *stub, generic);
    }
    int in_flight = calls;
    void* tag = nullptr;
    bool ok = false;
    while (in_flight > 0 && cq.Next(&tag, &ok)) {
      auto& call = *static_cast<Call*>(tag);
      const auto now = Clock::now();
      const int code = ok ? static_cast<int>(call.status.error_code()) : static_cast<int>(grpc::StatusCode::UNKNOWN);
      ++stats.total;
      ++stats.codes[std::clamp(code, 0, 16)];
      if (code == 0 && kind == Kind::kCheckIn && call.response.has_assignment()) ++stats.assignments;
      if (code != 0 && stats.total - stats.codes[0] <= 3) {
        std::fprintf(stderr, "call failed: %d %s\n", code, call.status.error_message().c_str());
      }
      if (call.start >= measure_start_ && now <= measure_end_) {
        ++stats.measured;
        if (code != 0) ++stats.measured_errors;
        stats.latencies_us.push_back(std::chrono::duration<float, std::micro>(now - call.start).count());
      }
      if (now < measure_end_) {
        Start(kind, call, cq, *stub, generic);
      } else {
        --in_flight;
      }
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }

  const Config& config_;
  const std::vector<std::shared_ptr<grpc::Channel>>& channels_;
  const std::vector<std::string>& bearer_;
  grpc::ByteBuffer empty_request_;
  std::atomic<uint64_t> next_device_{0};
  Clock::time_point measure_start_, measure_end_;
};

void PrintRun(const char* name, const RunResult& r) {
  std::printf("%-9s %9.0f calls/s over %.1f s (%llu calls), latency p50 %6.2f ms, p99 %6.2f ms, max %7.2f ms\n", name,
              r.rate(), r.window_seconds, static_cast<unsigned long long>(r.stats.measured), r.pct(0.5), r.pct(0.99),
              r.pct(1.0));
  std::printf("          %s\n", CpuLine(r.cpu_start, r.cpu_end).c_str());
  const DbSample &a = r.cpu_start.db, &b = r.cpu_end.db;
  const double calls = static_cast<double>(std::max<uint64_t>(1, r.stats.measured));
  std::printf("          database per call: %.2f commits", static_cast<double>(b.commits - a.commits) / calls);
  for (const auto& [table, after] : b.tables) {
    auto it = a.tables.find(table);
    std::array<int64_t, 4> before = it == a.tables.end() ? std::array<int64_t, 4>{} : it->second;
    if (after == before) continue;
    std::printf("; %s: %.2f seq scans (%.0f rows read), %.2f index scans, %.2f rows written", table.c_str(),
                static_cast<double>(after[0] - before[0]) / calls, static_cast<double>(after[1] - before[1]) / calls,
                static_cast<double>(after[2] - before[2]) / calls, static_cast<double>(after[3] - before[3]) / calls);
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

// ---------------------------------------------------------------- setup

bool SeedDevices(const std::string& conninfo, int devices, std::string* error) {
  // The secret's and hash's SQL must match DeviceSecret() and TokenStore::HashSecret (SHA-256 hex).
  const std::string secret = "'mf_' || encode(sha256(convert_to('checkin-bench-' || i, 'UTF8')), 'hex')";
  const std::string sql =
      "BEGIN; "
      "CREATE TEMP TABLE seed AS SELECT i, 'dev-' || lpad(to_hex(i), 16, '0') AS device_id, "
      "  encode(sha256(convert_to(" + secret + ", 'UTF8')), 'hex') AS token_hash "
      "  FROM generate_series(0, " + std::to_string(devices - 1) + ") AS i; "
      "INSERT INTO api_tokens (name, role, token_hash, created_by) "
      "  SELECT device_id, 'device', token_hash, 'checkin_bench' FROM seed ORDER BY i; "
      "INSERT INTO devices (device_id, hardware_id, admission, token_id, enrolled_by) "
      "  SELECT s.device_id, 'hw-' || lpad(to_hex(s.i), 16, '0'), 'ACCEPTED', t.id, 'checkin_bench' "
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

bool CreateRollout(BenchServer& server, const std::string& admin, std::string* error) {
  auto registry = v1::RegistryService::NewStub(server.Channel());
  auto fleet = v1::FleetService::NewStub(server.Channel());
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
  {
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
  }
  grpc::ClientContext ctx;
  testing::Authorize(ctx, admin);
  v1::CreateRolloutRequest req;
  req.set_model(kModel);
  req.set_version(kRolloutVersion);
  req.set_target("*");
  req.set_deployment_timeout_seconds(3600);
  auto* stage = req.add_stages();
  stage->set_percent(10);
  stage->set_success_threshold(1.0);  // never advances while we measure
  stage->set_soak_seconds(3600);
  v1::Rollout rollout;
  grpc::Status s = fleet->CreateRollout(&ctx, req, &rollout);
  if (!s.ok() || rollout.state() != v1::ROLLOUT_STATE_RUNNING) {
    *error = "CreateRollout: " + (s.ok() ? "state " + v1::RolloutState_Name(rollout.state()) : s.error_message());
    return false;
  }
  std::printf("rollout %s of %s@%s to 10%% of the fleet: RUNNING, cohort cutoff %.4f\n", rollout.rollout_id().c_str(),
              kModel, kRolloutVersion, rollout.cohort_cutoff());
  return true;
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

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << flag << std::endl;
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--devices") config.devices = std::stoi(value);
    else if (flag == "--seconds") config.seconds = std::stod(value);
    else if (flag == "--warmup") config.warmup = std::stod(value);
    else if (flag == "--concurrency") config.concurrency = std::stoi(value);
    else if (flag == "--mode") config.mode = value;
    else if (flag == "--client-threads") config.client_threads = std::stoi(value);
    else if (flag == "--channels") config.channels = std::stoi(value);
    else if (flag == "--server-arg") config.server_args.push_back(value);
    else if (flag == "--setup-sql") config.setup_sql.push_back(value);
    else if (flag == "--db-pool-size") config.db_pool_size = std::stoi(value);
    else if (flag == "--pg-statements") config.pg_statements = std::stoi(value);
    else if (flag == "--fresh-replica") config.fresh_replica = value == "1" || value == "true";
    else {
      std::cerr << "unknown flag " << flag
                << "\nusage: checkin_bench [--devices N] [--seconds S] [--warmup S] [--concurrency C] "
                   "[--mode steady|rollout] [--client-threads T] [--channels K] [--server-arg ARG]... [--setup-sql SQL]... [--db-pool-size P] [--pg-statements N] [--fresh-replica 0|1]\n";
      return 2;
    }
  }
  if (config.devices < 1 || config.seconds <= 0 || config.warmup < 0 || config.concurrency < 1 ||
      config.client_threads < 1 || config.channels < 1 || (config.mode != "steady" && config.mode != "rollout")) {
    std::cerr << "bad arguments" << std::endl;
    return 2;
  }
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
  if (config.pg_statements > 0) {
    std::string out;
    if (Psql(conninfo, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'", &out) != 0 ||
        !postgres->Restart() || Psql(conninfo, "ALTER SYSTEM SET pg_stat_statements.track_planning = on", &out) != 0 ||
        Psql(conninfo, "SELECT pg_reload_conf()", &out) != 0 ||
        Psql(conninfo, "CREATE EXTENSION pg_stat_statements", &out) != 0) {
      std::cerr << "cannot enable pg_stat_statements: " << out << postgres->last_error() << std::endl;
      return 1;
    }
  }
  auto server = BenchServer::Start(conninfo, config.db_pool_size, config.server_args, &error);  // migrates
  std::string admin = server ? testing::CreateTokenOffline(conninfo, "bench_admin", "admin", &error) : "";
  if (admin.empty()) {
    std::cerr << "cannot start the server: " << error << std::endl;
    return 1;
  }
  auto seed_start = Clock::now();
  if (!SeedDevices(conninfo, config.devices, &error)) {
    std::cerr << error << std::endl;
    return 1;
  }
  std::printf("seeded %d devices (tokens + ACCEPTED devices) in %.1f s\n", config.devices, Seconds(seed_start));
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

  if (config.mode == "rollout" && !CreateRollout(*server, admin, &error)) {
    std::cerr << "rollout setup failed: " << error << std::endl;
    return 1;
  }

  if (config.fresh_replica) {
    server.reset();
    server = BenchServer::Start(conninfo, config.db_pool_size, config.server_args, &error);
    if (!server) {
      std::cerr << "cannot restart the server: " << error << std::endl;
      return 1;
    }
    std::printf("restarted the server on the seeded fleet: a fresh replica, its caches loading from now on\n");
  }

  // Several channels = several TCP connections (distinct args keep gRPC from sharing one).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < config.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("modelfleet.bench_channel", i);
    channels.push_back(grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(), args));
  }
  {  // Sanity: device 0 checks in.
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
  std::printf("setup %.1f s; %d devices, %.0f s warm-up + %.0f s measured per run, %d calls in flight, %d client "
              "threads, %d channels, mode %s\n",
              Seconds(setup_start), config.devices, config.warmup, config.seconds, config.concurrency,
              config.client_threads, config.channels, config.mode.c_str());

  CpuWatch watch{server->pid(), PostmasterPid(conninfo), conninfo};
  RunResult health, check_in;
  auto run_health = [&] {
    Driver health_driver(config, channels, bearer);
    health = health_driver.Run(Kind::kHealth, watch);
    PrintRun("health", health);
  };
  if (!config.fresh_replica) run_health();
  std::string ignored;
  if (config.pg_statements > 0) Psql(conninfo, "SELECT pg_stat_statements_reset()", &ignored);
  {
    Driver check_in_driver(config, channels, bearer);
    check_in = check_in_driver.Run(Kind::kCheckIn, watch);
    PrintRun("check-in", check_in);
  }
  if (config.fresh_replica) {
    run_health();
    for (const char* cache : {"token cache", "device cache"}) {
      const std::string log = server->Log();
      for (size_t pos = log.find(cache); pos != std::string::npos; pos = log.find(cache, pos + 1)) {
        const size_t begin = log.rfind('\n', pos) + 1;
        const size_t end = log.find('\n', pos);
        const std::string line = log.substr(begin, end - begin);
        if (line.find("loaded") != std::string::npos) {
          std::printf("          server: %s\n", line.c_str());
          break;
        }
      }
    }
  }

  const double rate = check_in.rate();
  std::printf("          each device came back every %.1f s (the server caches tokens and accepted devices for 10 min)\n",
              config.devices / std::max(1.0, rate));
  if (config.mode == "rollout") {
    std::string out;
    Psql(conninfo, "SELECT count(*) || ' deployments, ' || count(DISTINCT device_id) || ' devices' FROM deployments", &out);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    std::printf("          assignments: %llu of %llu check-ins (%.1f%%); in the database: %s\n",
                static_cast<unsigned long long>(check_in.stats.assignments),
                static_cast<unsigned long long>(check_in.stats.total),
                100.0 * static_cast<double>(check_in.stats.assignments) / std::max<uint64_t>(1, check_in.stats.total),
                out.c_str());
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
  const bool met = rate >= 16700 && check_in.pct(0.99) < 20 && check_in.stats.measured_errors == 0;
  std::printf(
      "\ncheck-ins: %d devices, %.1f s, %.0f/s, p50 %.2f ms, p99 %.2f ms (%s); health baseline %.0f/s, p50 %.2f ms, "
      "p99 %.2f ms; ratio %.2f; goal 16700/s p99<20ms: %s\n",
      config.devices, check_in.window_seconds, rate, check_in.pct(0.5), check_in.pct(0.99), config.mode.c_str(),
      health.rate(), health.pct(0.5), health.pct(0.99), rate / std::max(1.0, health.rate()), met ? "MET" : "NOT MET");

  const double failed = static_cast<double>(check_in.errors()) / std::max<uint64_t>(1, check_in.stats.total);
  if (failed > 0.01) {
    std::printf("FAILED: %.2f%% of the check-ins failed\n", 100 * failed);
    std::cerr << "server log tail:\n" << server->Log().substr(server->Log().size() > 4000 ? server->Log().size() - 4000 : 0);
    return 1;
  }
  return 0;
}
