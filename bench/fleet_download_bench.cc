// Fleet download benchmark: N devices download the same version at once, over real gRPC,
// from a real modelfleet-server on a real PostgreSQL, with the S3 peer (s3rver) as the store.
//
// Devices arrive in waves (a fleet never arrives at one instant): each wave downloads
// concurrently, the next starts when it is done. Three fleets, same client code, same
// artifact bytes, same waves, each over its own TCP localhost channel:
//   plain stream: a minimal gRPC server (a child process of this bench) that streams the
//             bytes from memory in prebuilt 1 MiB messages: no auth, no database, no store,
//             no verification. What the wire carries on this machine: the reference figure.
//   first fetch: modelfleet-server with --cache-bytes 0, so every wave is a first fetch: the
//             server reads the object from s3rver, verifies it against the manifest digest and
//             only then serves it (concurrent requests of one wave share that one fetch).
//   cached:   modelfleet-server with its verified-artifact cache, warmed by one download
//             before the clock starts: every download is served from the verified cache
//             (the no-cache vs cached ratio is printed too: what the cache saves).
// For each it prints wall time, aggregate throughput and per-download latency, then the
// object-store reads each server cost (counted on the store's side: the GET requests for the
// artifact's key in s3rver's request log), and closes with each goal: figure, reference,
// ratio, MET or NOT MET.
//
// The client checks every byte it receives against the bytes pushed (memcmp at the offset the
// message names, not a hash: the client must cost far less than the server it measures).
//
// The machine is shared: the three fleets run in rounds (plain, first fetch, cached, again), so
// that whatever else runs meanwhile weighs on all three alike, and each figure is the median
// round. The server CPU time per GB served (user + system, from /proc) is printed beside each
// figure: it is far less noisy than wall time.
//
//   fleet_download_bench [--devices N] [--waves W] [--megabytes M] [--rounds R]
//                                                            (defaults: 32, 8, 16, 3)
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "modelfleet/crypto.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "process.h"
#include "server_process.h"
#include "temp_postgres.h"

using namespace modelfleet;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPlainMessageBytes = 1 << 20;
constexpr const char* kS3AccessKey = "S3RVER";  // s3rver's built-in credentials
constexpr const char* kS3SecretKey = "S3RVER";

std::string ArtifactBytes(int megabytes) {
  std::string bytes(static_cast<size_t>(megabytes) << 20, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < bytes.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(bytes.data() + i, &v, 8);
  }
  return bytes;
}

// The channel every fleet is downloaded over: the one the test fixtures use
// (ServerProcess::Channel), to whichever address.
std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// ---------------------------------------------------------------- the plain-stream reference

class PlainStreamService final : public v1::RegistryService::Service {
 public:
  explicit PlainStreamService(const std::string& bytes) {
    for (size_t off = 0; off < bytes.size(); off += kPlainMessageBytes) {
      v1::DownloadChunk& chunk = chunks_.emplace_back();
      chunk.set_offset(off);
      chunk.set_data(bytes.substr(off, kPlainMessageBytes));
    }
  }
  grpc::Status Download(grpc::ServerContext*, const v1::DownloadRequest*,
                        grpc::ServerWriter<v1::DownloadChunk>* writer) override {
    for (const auto& chunk : chunks_) {
      if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    return grpc::Status::OK;
  }

 private:
  std::vector<v1::DownloadChunk> chunks_;
};

// The child: `fleet_download_bench --plain-stream-server PORT MEGABYTES`, until SIGTERM.
int RunPlainStreamServer(int port, int megabytes) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const std::string bytes = ArtifactBytes(megabytes);
  PlainStreamService service(bytes);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server) return 2;
  std::printf("plain stream server listening\n");
  std::fflush(stdout);
  int received = 0;
  sigwait(&signals, &received);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}

// ---------------------------------------------------------------- s3rver with a request log

// s3rver as the tests start it (tests/support/s3rver.h), but without --silent: its log has a
// line per request ("info: GET /<bucket>/<key> 200 ..."), which is how the bench counts store
// reads: on the store's side, whatever the server believes it did.
class LoggingS3rver {
 public:
  static std::unique_ptr<LoggingS3rver> Start(std::string* error) {
    auto s3 = std::unique_ptr<LoggingS3rver>(new LoggingS3rver());
    std::filesystem::path binary = testing::SourceDir() / "node_modules" / ".bin" / "s3rver";
    if (!std::filesystem::exists(binary)) {
      if (const char* env = std::getenv("MODELFLEET_S3RVER")) binary = env;
    }
    std::filesystem::create_directories(s3->dir_.path() / "data");
    s3->port_ = testing::FreeTcpPort();
    testing::Subprocess::Options o;
    o.argv = {binary.string(), "--directory", (s3->dir_.path() / "data").string(), "--address", "127.0.0.1",
              "--port", std::to_string(s3->port_)};
    o.log_path = s3->log_path();
    o.env["NODE_OPTIONS"] = "--openssl-legacy-provider";
    // s3rver's request logger drops the first 16 characters of each line, which are only the
    // colour codes around "-->" when colours are on; without them it would cut the method off.
    o.env["FORCE_COLOR"] = "1";
    auto process = testing::Subprocess::Start(o, error);
    if (!process) return nullptr;
    s3->process_.emplace(std::move(*process));
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline && s3->process_->Running()) {
      if (testing::WaitForTcpPort(s3->port_, std::chrono::milliseconds(200))) return s3;
    }
    *error = "s3rver (" + binary.string() + ") did not come up: " + testing::ReadFileOrEmpty(s3->log_path());
    return nullptr;
  }
  ~LoggingS3rver() {
    if (process_) process_->Stop(std::chrono::seconds(5));
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Requests "<method> /<bucket>/<key>" in the log so far.
  int CountRequests(const std::string& method, const std::string& bucket, const std::string& key) const {
    std::ifstream log(log_path());
    const std::string needle = method + " /" + bucket + "/" + key;
    int count = 0;
    for (std::string line; std::getline(log, line);) {
      std::string plain;  // without the colour codes (ESC [ ... m)
      for (size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\x1b') {
          while (i < line.size() && line[i] != 'm') ++i;
        } else {
          plain += line[i];
        }
      }
      if (plain.find(needle + " ") != std::string::npos) ++count;
    }
    return count;
  }

 private:
  LoggingS3rver() : dir_("modelfleet-bench-s3rver") {}
  std::filesystem::path log_path() const { return dir_.path() / "s3rver.log"; }
  testing::TempDir dir_;
  int port_ = 0;
  std::optional<testing::Subprocess> process_;
};

// ---------------------------------------------------------------- the fleet

// CPU time (user + system) a process has used so far, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct RunResult {
  double seconds = 0;
  double server_cpu_seconds = 0;
  std::vector<double> latencies_ms;
  int failures = 0;
};

// Every device: one Download of mat-person@production on its own channel, every byte compared
// with `bytes` at the offset its message names.
RunResult DownloadFleet(const std::string& address, pid_t server, const std::string& token, int devices,
                        int waves, const std::string& bytes) {
  RunResult result;
  const double cpu_before = CpuSeconds(server);
  result.latencies_ms.resize(devices);
  std::atomic<int> failures{0};
  auto start = Clock::now();
  const int per_wave = std::max(1, devices / std::max(1, waves));
  for (int first = 0; first < devices; first += per_wave) {
    std::vector<std::thread> threads;
    for (int d = first; d < std::min(devices, first + per_wave); ++d) {
      threads.emplace_back([&, d] {
        auto stub = v1::RegistryService::NewStub(Channel(address));
        auto t0 = Clock::now();
        grpc::ClientContext ctx;
        testing::Authorize(ctx, token);
        v1::DownloadRequest req;
        req.mutable_ref()->set_model("mat-person");
        req.mutable_ref()->set_alias("production");
        auto reader = stub->Download(&ctx, req);
        uint64_t received = 0;
        bool same = true;
        v1::DownloadChunk chunk;
        while (reader->Read(&chunk)) {
          const std::string& data = chunk.data();
          same = same && chunk.offset() == received && received + data.size() <= bytes.size() &&
                 std::memcmp(data.data(), bytes.data() + received, data.size()) == 0;
          received += data.size();
        }
        if (!reader->Finish().ok() || !same || received != bytes.size()) ++failures;
        result.latencies_ms[d] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      });
    }
    for (auto& t : threads) t.join();
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.server_cpu_seconds = CpuSeconds(server) - cpu_before;
  result.failures = failures;
  std::sort(result.latencies_ms.begin(), result.latencies_ms.end());
  return result;
}

double MBps(const RunResult& r, int devices, int megabytes) { return devices * megabytes / r.seconds; }

void Print(const char* name, const RunResult& r, int devices, int megabytes) {
  auto pct = [&](double p) { return r.latencies_ms[static_cast<size_t>(p * (r.latencies_ms.size() - 1))]; };
  std::printf(
      "%-12s %3d downloads of %d MB: %6.3f s, %7.1f MB/s aggregate, latency p50 %6.1f ms p99 %6.1f ms, "
      "server CPU %5.0f ms/GB, failures %d\n",
      name, devices, megabytes, r.seconds, MBps(r, devices, megabytes), pct(0.5), pct(0.99),
      1000 * r.server_cpu_seconds / (devices * megabytes / 1024.0), r.failures);
  std::fflush(stdout);
}

// Creates the model, pushes `bytes` as 1.0.0 and points the alias production at it.
bool PushArtifact(const std::shared_ptr<grpc::Channel>& channel, const std::string& admin, const std::string& bytes,
                  const std::string& digest) {
  auto stub = v1::RegistryService::NewStub(channel);
  {
    grpc::ClientContext ctx;
    testing::Authorize(ctx, admin);
    v1::CreateModelRequest req;
    req.mutable_model()->set_name("mat-person");
    v1::Model m;
    stub->CreateModel(&ctx, req, &m);
  }
  {
    grpc::ClientContext ctx;
    testing::Authorize(ctx, admin);
    v1::ModelVersion v;
    auto writer = stub->PushVersion(&ctx, &v);
    v1::PushVersionRequest msg;
    auto* m = msg.mutable_manifest();
    m->set_model("mat-person");
    m->set_version("1.0.0");
    m->set_format("torchscript-int8");
    m->set_digest(digest);
    m->set_size_bytes(bytes.size());
    writer->Write(msg);
    for (size_t off = 0; off < bytes.size(); off += 1 << 20) {
      msg.set_chunk(bytes.substr(off, 1 << 20));
      writer->Write(msg);
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) {
      std::cerr << "push failed: " << s.error_message() << std::endl;
      return false;
    }
  }
  grpc::ClientContext ctx;
  testing::Authorize(ctx, admin);
  v1::SetAliasRequest req;
  req.set_model("mat-person");
  req.set_alias("production");
  req.set_version("1.0.0");
  v1::Alias a;
  return stub->SetAlias(&ctx, req, &a).ok();
}

struct Goal {
  const char* what;
  double figure, reference, target;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--plain-stream-server") == 0) {
    return RunPlainStreamServer(std::atoi(argv[2]), std::atoi(argv[3]));
  }
  int devices = 32;
  int megabytes = 16;
  int waves = 8;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--devices") == 0) devices = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--megabytes") == 0) megabytes = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--waves") == 0) waves = std::atoi(argv[i + 1]);
  }
  const int effective_waves = (devices + std::max(1, devices / std::max(1, waves)) - 1) /
                              std::max(1, devices / std::max(1, waves));
  std::string error;
  auto postgres = testing::TempPostgres::Start(&error);
  auto s3 = postgres ? LoggingS3rver::Start(&error) : nullptr;
  if (!postgres || !s3) {
    std::cerr << "cannot start peers: " << error << std::endl;
    return 1;
  }
  const std::string bytes = ArtifactBytes(megabytes);
  const std::string digest = Sha256Hex(bytes);
  const std::string blob_key = "sha256/" + digest;
  std::printf("%d devices in %d waves of %d, downloading one %d MB artifact each, over TCP localhost\n", devices,
              effective_waves, std::max(1, devices / std::max(1, waves)), megabytes);

  // The three servers, all up before the first fleet starts.
  testing::TempDir plain_dir("modelfleet-bench-plain");
  const int plain_port = testing::FreeTcpPort();
  testing::Subprocess::Options plain_options;
  plain_options.argv = {std::filesystem::read_symlink("/proc/self/exe").string(), "--plain-stream-server",
                        std::to_string(plain_port), std::to_string(megabytes)};
  plain_options.log_path = plain_dir.path() / "plain.log";
  auto plain_server = testing::Subprocess::Start(plain_options, &error);
  if (!plain_server || !testing::WaitForTcpPort(plain_port, std::chrono::seconds(30))) {
    std::cerr << "plain stream server did not come up: " << error
              << testing::ReadFileOrEmpty(plain_options.log_path) << std::endl;
    return 1;
  }
  const char* buckets[2] = {"bench-nocache", "bench-cached"};
  std::unique_ptr<testing::ServerProcess> servers[2];
  std::string admins[2];
  for (int k = 0; k < 2; ++k) {
    std::string db = std::string("bench_") + (k == 0 ? "nocache" : "cached");
    postgres->CreateDatabase(db);
    testing::ServerProcess::Options o;
    o.database_url = postgres->conninfo(db);
    o.blob_store = "s3";
    o.s3_endpoint = s3->endpoint();
    o.s3_bucket = buckets[k];
    o.s3_access_key = kS3AccessKey;
    o.s3_secret_key = kS3SecretKey;
    if (k == 0) o.extra_args = {"--cache-bytes", "0"};
    servers[k] = testing::ServerProcess::Start(o, &error);
    admins[k] = servers[k] ? testing::CreateTokenOffline(o.database_url, "bench", "admin", &error) : "";
    if (admins[k].empty()) {
      std::cerr << error << std::endl;
      return 1;
    }
    if (!PushArtifact(servers[k]->Channel(), admins[k], bytes, digest)) return 1;
  }
  // Warm the cache: one download, untimed.
  if (DownloadFleet(servers[1]->address(), servers[1]->process().pid(), admins[1], 1, 1, bytes).failures != 0) {
    return 1;
  }

  // Rounds, each running the three fleets one after the other, so that the load of whoever
  // else shares the machine falls on all three alike; each figure is the median round.
  enum { kPlain, kFirstFetch, kCached };
  const char* names[3] = {"plain stream", "first fetch", "cached"};
  std::vector<RunResult> runs[3];
  int failures = 0;
  for (int round = 0; round < rounds; ++round) {
    runs[kPlain].push_back(DownloadFleet("127.0.0.1:" + std::to_string(plain_port), plain_server->pid(), "none",
                                         devices, waves, bytes));
    for (int k = 0; k < 2; ++k) {
      runs[kFirstFetch + k].push_back(
          DownloadFleet(servers[k]->address(), servers[k]->process().pid(), admins[k], devices, waves, bytes));
    }
    for (auto& r : runs) failures += r.back().failures;
  }
  plain_server->Stop(std::chrono::seconds(5));
  RunResult median[3];
  for (int k = 0; k < 3; ++k) {
    std::vector<RunResult> sorted = runs[k];
    std::sort(sorted.begin(), sorted.end(), [](const RunResult& a, const RunResult& b) { return a.seconds < b.seconds; });
    median[k] = sorted[sorted.size() / 2];
    Print(names[k], median[k], devices, megabytes);
    std::printf("%-12s every round (MB/s):", "");
    for (const auto& r : runs[k]) std::printf(" %.1f", MBps(r, devices, megabytes));
    std::printf("\n");
  }
  int store_gets[2];
  for (int k = 0; k < 2; ++k) {
    store_gets[k] = s3->CountRequests("GET", buckets[k], blob_key);
    std::printf("%-12s object-store requests for the artifact (s3rver's log): %d GET, %d HEAD, for %d downloads "
                "in %d waves\n",
                names[kFirstFetch + k], store_gets[k], s3->CountRequests("HEAD", buckets[k], blob_key),
                rounds * devices + k, rounds * effective_waves + k);
  }
  std::printf("cached vs first fetch (no cache): %.2fx the throughput\n",
              median[kFirstFetch].seconds / median[kCached].seconds);

  const double plain_mbps = MBps(median[kPlain], devices, megabytes);
  const Goal goals[] = {
      {"cached serving of a verified artifact", MBps(median[kCached], devices, megabytes), plain_mbps, 0.8},
      {"first verifying fetch from s3rver (every wave)", MBps(median[kFirstFetch], devices, megabytes), plain_mbps,
       0.5},
  };
  for (const Goal& g : goals) {
    const double ratio = g.figure / g.reference;
    std::printf("goal: %-48s %7.1f MB/s vs plain stream %7.1f MB/s = %.2fx (goal >= %.1fx): %s\n", g.what, g.figure,
                g.reference, ratio, g.target, ratio >= g.target ? "MET" : "NOT MET");
  }
  // One store read per artifact per replica: the cached replica fetched once, for every round.
  std::printf("goal: %-48s %d GET of the artifact for %d downloads (goal 1): %s\n",
              "store reads of the cached replica", store_gets[1], rounds * devices + 1,
              store_gets[1] == 1 ? "MET" : "NOT MET");
  return failures == 0 ? 0 : 1;
}
