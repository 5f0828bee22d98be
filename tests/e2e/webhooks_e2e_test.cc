// Webhooks end to end: modelfleet-server with --secret-key-file, simulated mats (client/devsim)
// going through a staged rollout, and three receivers (tests/e2e/webhook_receiver.py, Python's
// http.server) that verify every HMAC and record the event ids they accept:
//   every    subscribed to all types; the server is SIGKILLed mid-rollout and restarted, and
//            still every event from the webhook's creation on arrives (deduplicated by id)
//   flaky    rollout.*; answers 500 to its first requests, then gets every rollout event
//   dead     rollout.*; its port is closed: deliveries end dead-lettered, are listed, and once
//            it is up `webhooks replay` delivers them
// Short retry settings (50 ms base, 200 ms cap, 4 attempts) keep it to seconds.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "devsim/fleet_simulator.h"
#include "modelfleet/crypto.h"
#include "modelfleet/v1/events.pb.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/webhooks.pb.h"
#include "postgres_environment.h"
#include "process.h"
#include "server_process.h"
#include "test_data.h"

namespace modelfleet {
namespace {

using namespace std::chrono_literals;
using testing::ServerProcess;
using testing::Subprocess;
using testing::TempDir;

[[maybe_unused]] ::testing::Environment* const kPostgres =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

bool WaitFor(
    const std::function<bool()>& done, std::chrono::milliseconds budget,
    const std::function<void()>& meanwhile = [] { std::this_thread::sleep_for(100ms); }) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    meanwhile();
  }
  return done();
}

// One receiver process and what it recorded.
struct Receiver {
  std::filesystem::path secret_file, record_file, log_file;
  std::optional<Subprocess> process;
  int port = 0;

  void Start(const TempDir& dir, const std::string& name, int fail_first, int at_port = 0) {
    secret_file = dir.path() / (name + ".secret");
    record_file = dir.path() / (name + ".record");
    log_file = dir.path() / (name + ".log");
    std::filesystem::remove(log_file);
    Subprocess::Options p;
    p.argv = {
        "/usr/bin/python3",      (testing::SourceDir() / "tests" / "e2e" / "webhook_receiver.py").string(),
        std::to_string(at_port), secret_file.string(),
        record_file.string(),    std::to_string(fail_first)};
    p.log_path = log_file;
    std::string error;
    process = Subprocess::Start(p, &error);
    ASSERT_TRUE(process.has_value()) << error;
    ASSERT_TRUE(WaitFor([&] { return testing::ReadFileOrEmpty(log_file).starts_with("port "); }, 10s))
        << testing::ReadFileOrEmpty(log_file);
    port = std::stoi(testing::ReadFileOrEmpty(log_file).substr(5));
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/hook"; }
  // The event ids accepted (deduplicated), and every line about a failed check.
  std::set<int64_t> Ids(std::vector<std::string>* bad = nullptr) const {
    std::set<int64_t> ids;
    std::istringstream in(testing::ReadFileOrEmpty(record_file));
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("BAD")) {
        if (bad) bad->push_back(line);
      } else if (!line.empty()) {
        ids.insert(std::stoll(line.substr(0, line.find(' '))));
      }
    }
    return ids;
  }
};

class WebhooksE2E : public ::testing::Test {
 protected:
  void StartServer() {
    std::string error;
    server_ = ServerProcess::Start(options_, &error);
    ASSERT_NE(server_, nullptr) << error;
    options_.port = server_->port();  // a restart comes back where the mats look for it
  }

  std::string Run(const std::vector<std::string>& args, int expect = 0) {
    std::string out;
    EXPECT_EQ(testing::RunCli(server_->address(), admin_, args, &out), expect) << out;
    return out;
  }

  int64_t Subscribe(Receiver& r, const std::vector<std::string>& types) {
    std::vector<std::string> args = {"webhooks", "add", r.url(), "-o", "json"};
    for (const auto& t : types) args.insert(args.end(), {"--type", t});
    v1::CreateWebhookResponse created;
    const std::string out = Run(args);
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &created).ok()) << out;
    EXPECT_TRUE(created.secret().starts_with("mfwhsec_")) << out;
    std::ofstream(r.secret_file) << created.secret();
    return created.webhook().id();
  }

  // The whole event log, oldest first.
  std::vector<v1::Event> Events() {
    std::string out;
    if (testing::RunCli(server_->address(), admin_, {"events", "tail", "-o", "json"}, &out) != 0) return {};
    std::vector<v1::Event> events;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      v1::Event e;
      if (google::protobuf::util::JsonStringToMessage(line, &e).ok()) events.push_back(e);
    }
    return events;
  }

  // The ids a webhook is owed: from its own webhook.created event on, of the given family.
  static std::set<int64_t> Owed(const std::vector<v1::Event>& events, int64_t webhook_id,
                                const std::string& family) {
    std::set<int64_t> owed;
    int64_t from = -1;
    for (const auto& e : events) {
      if (e.type() == "webhook.created" && e.subject_id() == std::to_string(webhook_id)) from = e.id();
      if (from >= 0 && e.id() >= from && (family.empty() || e.type().starts_with(family + ".")))
        owed.insert(e.id());
    }
    return owed;
  }

  static std::string Missing(const std::set<int64_t>& owed, const std::set<int64_t>& got) {
    std::string missing;
    for (int64_t id : owed) {
      if (!got.count(id)) missing += std::to_string(id) + " ";
    }
    return missing;
  }

  TempDir dir_{"modelfleet-webhooks"};
  ServerProcess::Options options_;
  std::unique_ptr<ServerProcess> server_;
  std::string admin_;
};

TEST_F(WebhooksE2E, EveryEventArrivesAcrossAKillFlakyReceiversCatchUpDeadOnesAreReplayed) {
  ASSERT_TRUE(testing::Cluster()->CreateDatabase("webhooks_e2e")) << testing::Cluster()->last_error();
  options_.database_url = testing::Cluster()->conninfo("webhooks_e2e");
  options_.blob_dir = dir_.path() / "blobs";  // kept across the restart
  std::ofstream(dir_.path() / "key", std::ios::binary) << HexEncode(RandomBytes(32));
  options_.extra_args = {"--secret-key-file",           (dir_.path() / "key").string(),
                         "--check-in-interval-seconds", "1",
                         "--controller-interval-ms",    "200",
                         "--webhook-retry-base-ms",     "50",
                         "--webhook-retry-cap-ms",      "200",
                         "--webhook-max-attempts",      "4",
                         "--webhook-timeout-ms",        "2000"};
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::string error;
  admin_ = testing::CreateTokenOffline(options_.database_url, "hooks-admin", "admin", &error);
  ASSERT_FALSE(admin_.empty()) << error;

  // The receivers and their webhooks. `dead` listens only long enough to learn a free port.
  Receiver every, flaky, dead;
  ASSERT_NO_FATAL_FAILURE(every.Start(dir_, "every", 0));
  ASSERT_NO_FATAL_FAILURE(flaky.Start(dir_, "flaky", 3));
  ASSERT_NO_FATAL_FAILURE(dead.Start(dir_, "dead", 0));
  dead.process->Stop();
  const int64_t every_id = Subscribe(every, {});
  const int64_t flaky_id = Subscribe(flaky, {"rollout.*"});
  const int64_t dead_id = Subscribe(dead, {"rollout.*"});
  Run({"webhooks", "add", "ftp://example.com/x"}, 2);  // INVALID_ARGUMENT: the usage exit code
  std::string out;
  ASSERT_EQ(testing::RunCli(server_->address(), admin_, {"webhooks", "test", std::to_string(every_id)}, &out), 0) << out;

  // A model, two versions, four mats on 1.0.0.
  const std::string model = "hook-mat";
  Run({"models", "create", model, "--task", "person-detection"});
  std::map<std::string, std::string> digests;
  uint32_t seed = 3;
  for (const std::string version : {"1.0.0", "1.1.0"}) {
    const std::string bytes = testing::PatternBytes(20 << 10, ++seed);
    const auto file = dir_.path() / (version + ".pt");
    std::ofstream(file, std::ios::binary) << bytes;
    Run({"versions", "push", model, version, file.string(), "--version-counter", std::to_string(seed)});
    digests[version] = Sha256Hex(bytes);
  }
  v1::CreateEnrollmentTokenResponse enroll;
  out = Run({"enroll-tokens", "create", "hook-line", "--auto-accept", "-o", "json"});
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &enroll).ok()) << out;
  devsim::FleetSimulator::Options sim_options;
  sim_options.devices = 4;
  sim_options.addresses = {server_->address()};
  sim_options.enrollment_token = enroll.token();
  sim_options.model = model;
  sim_options.factory_version = "1.0.0";
  sim_options.factory_digest = digests["1.0.0"];
  sim_options.threads = 2;
  sim_options.channels_per_address = 1;
  devsim::FleetSimulator sim(sim_options);
  ASSERT_TRUE(sim.EnrollAll().ok());
  sim.Round();

  // The staged rollout; the server is SIGKILLed as soon as `every` has its rollout.created.
  out = Run({"rollouts", "create", model, "1.1.0", "--target", "*", "--stage", "50", "--stage", "100", "-o",
             "json"});
  v1::Rollout rollout;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &rollout).ok()) << out;
  auto round = [&] {
    sim.Round();
    std::this_thread::sleep_for(250ms);
  };
  auto has_type = [](const std::vector<v1::Event>& events, const std::string& type) {
    return std::any_of(events.begin(), events.end(), [&](const v1::Event& e) { return e.type() == type; });
  };
  ASSERT_TRUE(WaitFor(
      [&] {
        return testing::ReadFileOrEmpty(every.record_file).find("rollout.created") != std::string::npos;
      },
      10s, round));
  server_->process().Signal(SIGKILL);
  ASSERT_TRUE(server_->process().Wait(10s).has_value());
  ASSERT_FALSE(has_type(Events(), "rollout.completed"));  // (the CLI finds no server: empty)
  sim.Round();                                            // the mats find no server for a moment
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(StartServer());

  ASSERT_TRUE(WaitFor([&] { return has_type(Events(), "rollout.completed"); }, 40s, round)) << server_->Log();
  const std::vector<v1::Event> events = Events();
  EXPECT_TRUE(has_type(events, "rollout.stage_advanced"));

  // Every event reaches `every`; every rollout event reaches `flaky` after its 500s.
  const auto every_owed = Owed(events, every_id, "");
  const auto flaky_owed = Owed(events, flaky_id, "rollout");
  EXPECT_TRUE(WaitFor([&] { return Missing(every_owed, every.Ids()).empty(); }, 15s))
      << "missing: " << Missing(every_owed, every.Ids()) << "\n"
      << server_->Log();
  EXPECT_TRUE(WaitFor([&] { return Missing(flaky_owed, flaky.Ids()).empty(); }, 15s))
      << "missing: " << Missing(flaky_owed, flaky.Ids());
  EXPECT_GE(flaky_owed.size(), 4u);

  // `dead` ends in dead-letter, listed; up again and replayed, it gets every rollout event.
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string listed;
        testing::RunCli(server_->address(), admin_,
            {"webhooks", "deliveries", std::to_string(dead_id), "--state", "dead", "-o", "json"}, &listed);
        return listed.find("WEBHOOK_DELIVERY_STATE_DEAD") != std::string::npos;
      },
      15s));
  out = Run({"webhooks", "list", "-o", "json"});
  EXPECT_NE(out.find("\"dead\""), std::string::npos) << out;
  EXPECT_TRUE(dead.Ids().empty());
  ASSERT_NO_FATAL_FAILURE(dead.Start(dir_, "dead", 0, dead.port));
  const auto dead_owed = Owed(events, dead_id, "rollout");
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string replayed;
        testing::RunCli(server_->address(), admin_, {"webhooks", "replay", std::to_string(dead_id)}, &replayed);
        return Missing(dead_owed, dead.Ids()).empty();
      },
      15s, [] { std::this_thread::sleep_for(500ms); }))
      << "missing: " << Missing(dead_owed, dead.Ids());

  std::printf("owed/received: every %zu/%zu, flaky %zu/%zu, dead %zu/%zu (events in the log: %zu)\n",
              every_owed.size(), every.Ids().size(), flaky_owed.size(), flaky.Ids().size(), dead_owed.size(),
              dead.Ids().size(), events.size());
  std::vector<std::string> bad;
  for (const Receiver* r : {&every, &flaky, &dead}) r->Ids(&bad);
  EXPECT_TRUE(bad.empty()) << bad.front();

  Run({"webhooks", "remove", std::to_string(flaky_id)});
  Run({"webhooks", "remove", std::to_string(flaky_id)}, 3);  // NOT_FOUND
  EXPECT_EQ(server_->Stop(), 0) << server_->Log();
  for (Receiver* r : {&every, &flaky, &dead}) r->process->Stop();
}

}  // namespace
}  // namespace modelfleet
