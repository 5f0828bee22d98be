// Fleet download benchmark: N devices download the same version at once, over real gRPC,
// from a real modelfleet-server on a real PostgreSQL, with the S3 peer (s3rver) as the store.
//
// Devices arrive in waves (a fleet never arrives at one instant): each wave downloads
// concurrently, the next starts when it is done. It runs the fleet twice:
//   baseline: the server started with --cache-bytes 0, so every download reads and verifies
//             the object from the store again (what a proxy without a cache costs);
//   cached:   the default verified-artifact cache, so the fleet costs one store read.
// and prints wall time, aggregate throughput, per-download latency and the ratio.
//
// Within one wave both servers fetch from the store once (concurrent requests for one digest
// share a single fetch); across waves only the cached server avoids going back to the store.
//
//   fleet_download_bench [--devices N] [--waves W] [--megabytes M]   (defaults: 32, 8, 16)
#include <chrono>
#include <cstring>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "modelfleet/crypto.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "s3rver.h"
#include "server_process.h"
#include "temp_postgres.h"

using namespace modelfleet;
using Clock = std::chrono::steady_clock;

namespace {

struct RunResult {
  double seconds = 0;
  std::vector<double> latencies_ms;
  int failures = 0;
};

RunResult DownloadFleet(testing::ServerProcess& server, const std::string& token, int devices, int waves,
                        const std::string& digest) {
  RunResult result;
  result.latencies_ms.resize(devices);
  std::atomic<int> failures{0};
  auto start = Clock::now();
  const int per_wave = std::max(1, devices / std::max(1, waves));
  for (int first = 0; first < devices; first += per_wave) {
    std::vector<std::thread> threads;
    for (int d = first; d < std::min(devices, first + per_wave); ++d) {
      threads.emplace_back([&, d] {
        auto stub = v1::RegistryService::NewStub(server.Channel());
        auto t0 = Clock::now();
        grpc::ClientContext ctx;
        testing::Authorize(ctx, token);
        v1::DownloadRequest req;
        req.mutable_ref()->set_model("mat-person");
        req.mutable_ref()->set_alias("production");
        auto reader = stub->Download(&ctx, req);
        Sha256 hash;
        v1::DownloadChunk chunk;
        while (reader->Read(&chunk)) hash.Update(chunk.data());
        if (!reader->Finish().ok() || hash.FinishHex() != digest) ++failures;
        result.latencies_ms[d] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      });
    }
    for (auto& t : threads) t.join();
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.failures = failures;
  std::sort(result.latencies_ms.begin(), result.latencies_ms.end());
  return result;
}

void Print(const char* name, const RunResult& r, int devices, double megabytes) {
  auto pct = [&](double p) { return r.latencies_ms[static_cast<size_t>(p * (r.latencies_ms.size() - 1))]; };
  std::printf(
      "%-9s %3d downloads of %.0f MB: %7.2f s, %8.1f MB/s aggregate, latency p50 %7.1f ms p99 %7.1f ms, "
      "failures %d\n",
      name, devices, megabytes, r.seconds, devices * megabytes / r.seconds, pct(0.5), pct(0.99), r.failures);
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 32;
  int megabytes = 16;
  int waves = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--devices") == 0) devices = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--megabytes") == 0) megabytes = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--waves") == 0) waves = std::atoi(argv[i + 1]);
  }
  std::string error;
  auto postgres = testing::TempPostgres::Start(&error);
  auto s3 = postgres ? testing::S3rverProcess::Start(&error) : nullptr;
  if (!postgres || !s3) {
    std::cerr << "cannot start peers: " << error << std::endl;
    return 1;
  }
  std::string bytes(static_cast<size_t>(megabytes) << 20, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < bytes.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(bytes.data() + i, &v, 8);
  }
  const std::string digest = Sha256Hex(bytes);

  RunResult results[2];
  const char* names[2] = {"baseline", "cached"};
  for (int run = 0; run < 2; ++run) {
    std::string db = std::string("bench_") + names[run];
    postgres->CreateDatabase(db);
    testing::ServerProcess::Options o;
    o.database_url = postgres->conninfo(db);
    o.blob_store = "s3";
    o.s3_endpoint = s3->endpoint();
    o.s3_bucket = std::string("bench-") + names[run];
    o.s3_access_key = testing::S3rverProcess::kAccessKey;
    o.s3_secret_key = testing::S3rverProcess::kSecretKey;
    if (run == 0) o.extra_args = {"--cache-bytes", "0"};
    auto server = testing::ServerProcess::Start(o, &error);
    std::string admin = server ? testing::CreateTokenOffline(o.database_url, "bench", "admin", &error) : "";
    if (admin.empty()) {
      std::cerr << error << std::endl;
      return 1;
    }
    auto stub = v1::RegistryService::NewStub(server->Channel());
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
        return 1;
      }
    }
    {
      grpc::ClientContext ctx;
      testing::Authorize(ctx, admin);
      v1::SetAliasRequest req;
      req.set_model("mat-person");
      req.set_alias("production");
      req.set_version("1.0.0");
      v1::Alias a;
      stub->SetAlias(&ctx, req, &a);
    }
    results[run] = DownloadFleet(*server, admin, devices, waves, digest);
    Print(names[run], results[run], devices, megabytes);
  }
  std::printf("ratio: cached fleet download is %.2fx the baseline's throughput\n",
              results[0].seconds / results[1].seconds);
  return results[0].failures + results[1].failures == 0 ? 0 : 1;
}
