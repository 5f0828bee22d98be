// The HTTP face end to end: modelfleet-server with --http-listen (real PostgreSQL 15, s3rver),
// models pushed with the `modelfleet` CLI (uploads stay on gRPC), simulated mats
// (client/devsim) checking in, and tests/e2e/http_client.py, Python's http.client, driving the
// JSON API: registry reads, a rollout created, watched, paused and aborted, devices read, the
// error replies, artifact downloads with Range, the probes, and the role x route matrix, whose
// expectations come from auth/method_roles.cc itself (AllowedRoles) for every unary procedure
// of the services' descriptors.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "auth/method_roles.h"
#include "devsim/fleet_simulator.h"
#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/v1/admin.pb.h"
#include "modelfleet/v1/events.pb.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/registry.pb.h"
#include "modelfleet/v1/webhooks.pb.h"
#include "peers_environment.h"
#include "process.h"
#include "server_process.h"
#include "test_data.h"

namespace modelfleet {
namespace {

using namespace std::chrono_literals;
using testing::ServerProcess;
using testing::Subprocess;
using testing::TempDir;

[[maybe_unused]] ::testing::Environment* const kPeers =
    ::testing::AddGlobalTestEnvironment(new testing::PeersEnvironment);

constexpr int kDevices = 4;

// The CLI against `server` as `token`.
int Cli(const ServerProcess& server, const std::string& token, const std::vector<std::string>& args,
        std::string* out) {
  return testing::RunCli(server.address(), token, args, out);
}

std::string RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_ADMIN: return "admin";
    case v1::ROLE_PUBLISHER: return "publisher";
    case v1::ROLE_VIEWER: return "viewer";
    case v1::ROLE_DEVICE: return "device";
    default: return "?";
  }
}

// {"/modelfleet.v1.X/Y": ["admin", ...]} for every unary method the table lists.
std::string RolesTableJson() {
  std::string json = "{";
  // Reached through a message of each file: that links the file's descriptors into this binary.
  for (const auto* service : {v1::ListModelsRequest::descriptor()->file()->FindServiceByName("RegistryService"),
                              v1::WhoAmIRequest::descriptor()->file()->FindServiceByName("AdminService"),
                              v1::CheckInRequest::descriptor()->file()->FindServiceByName("DeviceService"),
                              v1::CheckInRequest::descriptor()->file()->FindServiceByName("FleetService"),
                              v1::ListEventsRequest::descriptor()->file()->FindServiceByName("EventService"),
                              v1::ListWebhooksRequest::descriptor()->file()->FindServiceByName("WebhookService")}) {
    EXPECT_NE(service, nullptr);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* method = service->method(i);
      if (method->client_streaming() || method->server_streaming()) continue;
      const std::string path = "/" + service->full_name() + "/" + method->name();
      const auto roles = auth::AllowedRoles(path);
      if (roles.empty()) continue;  // Enroll: no bearer token at all
      if (json.size() > 1) json += ",";
      json += JsonString(path) + ":[";
      for (size_t r = 0; r < roles.size(); ++r) json += (r ? "," : "") + JsonString(RoleName(roles[r]));
      json += "]";
    }
  }
  return json + "}";
}

TEST(HttpE2E, JsonApiDownloadsProbesAndTheRoleMatrix) {
  ASSERT_NE(testing::Cluster(), nullptr);
  const std::string db = "http_" + std::to_string(::getpid());
  ASSERT_TRUE(testing::Cluster()->CreateDatabase(db)) << testing::Cluster()->last_error();
  ServerProcess::Options o;
  o.database_url = testing::Cluster()->conninfo(db);
  testing::UseS3Peer(o, db);
  o.http = true;
  // --allow-publisher-rollouts: the matrix checks the table; that flag is a policy on top of it.
  o.extra_args = {"--check-in-interval-seconds", "1", "--controller-interval-ms", "200", "--allow-publisher-rollouts",
                  "--metrics-require-token"};
  std::string error;
  auto server = ServerProcess::Start(o, &error);
  ASSERT_NE(server, nullptr) << error;
  const std::string admin = testing::CreateTokenOffline(o.database_url, "http-admin", "admin", &error);
  ASSERT_FALSE(admin.empty()) << error;

  std::map<std::string, std::string> tokens = {{"admin", admin}};
  for (const char* role : {"publisher", "viewer"}) {
    std::string out;
    ASSERT_EQ(Cli(*server, admin, {"tokens", "create", std::string("http-") + role, "--role", role, "-o", "json"}, &out), 0)
        << out;
    v1::CreateTokenResponse created;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &created).ok()) << out;
    tokens[role] = created.secret();
  }

  // A model with two versions, pushed over gRPC by the CLI.
  TempDir dir("modelfleet-http");
  const std::string model = "http-mat";
  std::string out;
  ASSERT_EQ(Cli(*server, admin, {"models", "create", model, "--task", "person-detection"}, &out), 0) << out;
  std::map<std::string, std::string> digests;
  uint32_t seed = 7;
  for (const std::string version : {"1.0.0", "1.1.0"}) {
    const std::string bytes = testing::PatternBytes(40 << 10, ++seed);
    const auto file = dir.path() / (version + ".pt");
    std::ofstream(file, std::ios::binary) << bytes;
    ASSERT_EQ(Cli(*server, admin,
                  {"versions", "push", model, version, file.string(), "--version-counter", std::to_string(seed)}, &out),
              0)
        << out;
    digests[version] = Sha256Hex(bytes);
  }

  // The mats, running 1.0.0.
  ASSERT_EQ(Cli(*server, admin, {"enroll-tokens", "create", "http-line", "--auto-accept", "-o", "json"}, &out), 0) << out;
  v1::CreateEnrollmentTokenResponse enroll;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &enroll).ok()) << out;
  devsim::FleetSimulator::Options sim_options;
  sim_options.devices = kDevices;
  sim_options.addresses = {server->address()};
  sim_options.enrollment_token = enroll.token();
  sim_options.model = model;
  sim_options.factory_version = "1.0.0";
  sim_options.factory_digest = digests["1.0.0"];
  sim_options.threads = 2;
  sim_options.channels_per_address = 1;
  devsim::FleetSimulator sim(sim_options);
  ASSERT_TRUE(sim.EnrollAll().ok());
  sim.Round();
  tokens["device"] = sim.device(0).token;

  std::string config = "{\"http\":" + JsonString("127.0.0.1:" + std::to_string(server->http_port())) +
                       ",\"model\":" + JsonString(model) + ",\"devices\":" + std::to_string(kDevices) +
                       ",\"versions\":" + JsonStringObject(digests) + ",\"tokens\":" + JsonStringObject(tokens) +
                       ",\"roles\":" + RolesTableJson() + "}";
  const auto config_path = dir.path() / "config.json";
  std::ofstream(config_path) << config;

  // The client runs while the mats keep checking in (the rollout it creates needs them).
  Subprocess::Options p;
  p.argv = {"/usr/bin/python3", (testing::SourceDir() / "tests" / "e2e" / "http_client.py").string(),
            config_path.string()};
  p.log_path = dir.path() / "client.log";
  auto client = Subprocess::Start(p, &error);
  ASSERT_TRUE(client.has_value()) << error;
  std::optional<int> code;
  const auto deadline = std::chrono::steady_clock::now() + 240s;
  while (!(code = client->Wait(0ms)) && std::chrono::steady_clock::now() < deadline) {
    sim.Round();
    std::this_thread::sleep_for(300ms);
  }
  if (!code) code = client->Stop(1s);
  const std::string log = testing::ReadFileOrEmpty(p.log_path);
  std::printf("---- http_client.py ----\n%s", log.c_str());  // what was checked, pass or fail
  EXPECT_EQ(code, 0) << log << "\n---- server log ----\n" << server->Log();
  EXPECT_NE(log.find("ALL OK"), std::string::npos) << log;

  // SIGTERM while a Server-Sent Events client listens: the stream ends (the client would
  // reconnect elsewhere) and the server exits cleanly well within its grace.
  Subprocess::Options listener;
  listener.argv = {"/usr/bin/python3", "-c",
                   "import http.client, sys\n"
                   "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=60)\n"
                   "c.request('GET', '/v1/events', headers={'Authorization': 'Bearer ' + sys.argv[2]})\n"
                   "r = c.getresponse()\n"
                   "print('status', r.status, flush=True)\n"
                   "r.read()\n"
                   "print('stream ended', flush=True)\n",
                   std::to_string(server->http_port()), admin};
  listener.log_path = dir.path() / "listener.log";
  auto sse = Subprocess::Start(listener, &error);
  ASSERT_TRUE(sse.has_value()) << error;
  for (int i = 0; i < 100 && testing::ReadFileOrEmpty(listener.log_path).find("status 200") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_NE(testing::ReadFileOrEmpty(listener.log_path).find("status 200"), std::string::npos)
      << testing::ReadFileOrEmpty(listener.log_path);
  const auto stop_started = std::chrono::steady_clock::now();
  EXPECT_EQ(server->Stop(), 0) << server->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_started, 10s) << "the grace is 20 s; nothing was in flight";
  EXPECT_EQ(sse->Wait(10s), 0);
  EXPECT_NE(testing::ReadFileOrEmpty(listener.log_path).find("stream ended"), std::string::npos);
}

}  // namespace
}  // namespace modelfleet
