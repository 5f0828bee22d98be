// The fixture of modelfleet-agent's end-to-end tests (agent_*e2e_test.cc, one executable each):
// the built agent and server binaries over real gRPC, a real PostgreSQL cluster and s3rver as
// the blob store (testing::PeersEnvironment, once per executable), and real int8 TorchScript
// models made by tests/models/make_test_model.py with /usr/bin/python3 (the tests are skipped
// when it cannot import torch).
//
// Per test: a database and a bucket of its own, a modelfleet-server (check-in interval 1 s,
// controller tick 200 ms), an admin token, the publisher key "ci-1" trusted by the server and
// written as <work>/publisher.pem for the agents to pin, the model "mat-person", and an
// auto-accepting enrollment token. Agents are started by NewAgent() + Start() with a config of
// their own; their logs (stdout+stderr, one file per start) are printed on failure.
//
// Include from exactly one .cc per test executable.
#pragma once

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "peers_environment.h"
#include "process.h"
#include "s3rver.h"
#include "server_process.h"
#include "temp_postgres.h"

namespace modelfleet::agent_e2e {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::Authorize;

inline constexpr char kModel[] = "mat-person";

inline ::testing::Environment* const kPeers =
    ::testing::AddGlobalTestEnvironment(new testing::PeersEnvironment);

inline std::string Describe(const grpc::Status& s) {
  return std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
}

inline std::string Base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

// A raw Ed25519 public key as a SubjectPublicKeyInfo PEM (what `openssl pkey -pubout` writes).
inline std::string PublicKeyPem(const std::string& raw) {
  const std::string der = std::string("\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12) + raw;
  return "-----BEGIN PUBLIC KEY-----\n" + Base64(der) + "\n-----END PUBLIC KEY-----\n";
}

inline void WriteFile(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return pred();
}

inline std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Why the model tests cannot run here (empty when /usr/bin/python3 imports torch).
inline const std::string& TorchMissing() {
  static const std::string reason = [] {
    std::string out;
    if (testing::RunCommand({"/usr/bin/python3", "-c", "import torch"}, &out) != 0) {
      return "/usr/bin/python3 cannot import torch (python3-torch missing): " + out;
    }
    return std::string();
  }();
  return reason;
}

// The directory (model.pt + manifest.json) of make_test_model.py run with `args`, made once
// per executable and kept until it exits. Empty path and *error set if the script failed.
inline fs::path TestModel(const std::vector<std::string>& args, std::string* error) {
  static std::mutex mu;
  static std::map<std::vector<std::string>, fs::path> made;
  static testing::TempDir dir("agent-e2e-models");  // removed at exit
  std::lock_guard lock(mu);
  if (auto it = made.find(args); it != made.end()) return it->second;
  const fs::path out = dir.path() / ("m" + std::to_string(made.size()));
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   (testing::SourceDir() / "tests/models/make_test_model.py").string(),
                                   "--out", out.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string output;
  if (testing::RunCommand(argv, &output) != 0) {
    *error = "make_test_model.py failed: " + output;
    return {};
  }
  made[args] = out;
  return out;
}

// One modelfleet-agent process with its own state directory.
struct AgentProc {
  fs::path dir, state, config, log;
  std::optional<testing::Subprocess> proc;
  int starts = 0;

  // The current start's log.
  std::string Log() const { return testing::ReadFileOrEmpty(log); }
  // Every start's log, in order.
  std::string AllLogs() const {
    std::string all;
    for (int i = 1; i <= starts; ++i) {
      all += testing::ReadFileOrEmpty(dir / ("agent-" + std::to_string(i) + ".log"));
    }
    return all;
  }
  std::string Active() const { return Trimmed(testing::ReadFileOrEmpty(state / "active")); }
  std::string DeviceId() const {
    const std::string c = testing::ReadFileOrEmpty(state / "credential");
    return c.substr(0, c.find('\n'));
  }
  // Line 2 of update.state (agent/update/update_state.h): the persisted state's name.
  std::string PersistedState() const {
    const std::string s = testing::ReadFileOrEmpty(state / "update.state");
    const size_t a = s.find('\n');
    if (a == std::string::npos) return "";
    const size_t b = s.find('\n', a + 1);
    return b == std::string::npos ? "" : s.substr(a + 1, b - a - 1);
  }
  fs::path PartFile(const std::string& digest) const { return state / "partial" / (digest + ".part"); }
  size_t PresenceLines() const {
    const std::string s = Log();
    size_t n = 0;
    for (size_t p = s.find("{\"event\":"); p != std::string::npos; p = s.find("{\"event\":", p + 1)) ++n;
    return n;
  }
  // Telemetry lines of this start's log for `version` that count at least one inference.
  size_t TelemetryWithInferences(const std::string& version) const {
    const std::string s = Log();
    const std::regex re(std::string("telemetry ") + kModel + "@" +
                        std::regex_replace(version, std::regex("\\."), "\\.") + ": ([0-9]+) inferences");
    size_t n = 0;
    for (std::sregex_iterator it(s.begin(), s.end(), re), end; it != end; ++it) {
      if (std::stoull((*it)[1].str()) > 0) ++n;
    }
    return n;
  }
};

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TorchMissing().empty()) GTEST_SKIP() << TorchMissing();
    static int counter = 0;
    db_ = "agent_" + std::to_string(++counter) + "_" + std::to_string(::getpid());
    ASSERT_TRUE(testing::Cluster()->CreateDatabase(db_)) << testing::Cluster()->last_error();
    testing::ServerProcess::Options o;
    o.database_url = testing::Cluster()->conninfo(db_);
    testing::UseS3Peer(o, db_);
    bucket_ = o.s3_bucket;
    o.extra_args = {"--check-in-interval-seconds", "1", "--controller-interval-ms", "200"};
    std::string error;
    server_ = testing::ServerProcess::Start(o, &error);
    ASSERT_NE(server_, nullptr) << error;
    admin_ = testing::CreateTokenOffline(o.database_url, "bootstrap", "admin", &error);
    ASSERT_FALSE(admin_.empty()) << error;
    auto channel = server_->Channel();
    fleet_ = v1::FleetService::NewStub(channel);
    registry_ = v1::RegistryService::NewStub(channel);
    admin_stub_ = v1::AdminService::NewStub(channel);

    // The publisher key: trusted by the server, pinned in the agents' config.
    key_ = GenerateEd25519KeyPair();
    {
      grpc::ClientContext ctx;
      Authorize(ctx, admin_);
      v1::AddPublisherKeyRequest req;
      req.set_key_id("ci-1");
      req.set_public_key(key_.public_key);
      v1::PublisherKey resp;
      grpc::Status s = admin_stub_->AddPublisherKey(&ctx, req, &resp);
      ASSERT_TRUE(s.ok()) << Describe(s);
    }
    WriteFile(work_.path() / "publisher.pem", PublicKeyPem(key_.public_key));
    {
      grpc::ClientContext ctx;
      Authorize(ctx, admin_);
      v1::CreateModelRequest req;
      req.mutable_model()->set_name(kModel);
      req.mutable_model()->set_task("person-detection");
      v1::Model model;
      grpc::Status s = registry_->CreateModel(&ctx, req, &model);
      ASSERT_TRUE(s.ok()) << Describe(s);
    }
    {
      grpc::ClientContext ctx;
      Authorize(ctx, admin_);
      v1::CreateEnrollmentTokenRequest req;
      req.set_name("agents");
      req.set_auto_accept(true);
      v1::CreateEnrollmentTokenResponse resp;
      grpc::Status s = fleet_->CreateEnrollmentToken(&ctx, req, &resp);
      ASSERT_TRUE(s.ok()) << Describe(s);
      enrollment_token_ = resp.token();
    }
  }

  void TearDown() override {
    for (auto& a : agents_) {
      if (a->proc) a->proc->Stop(5s);
      if (HasFailure()) {
        std::string log = a->AllLogs();
        if (log.size() > 8000) log = "..." + log.substr(log.size() - 8000);
        std::fprintf(stderr, "---- agent %s logs (tail) ----\n%s\n", a->dir.filename().c_str(), log.c_str());
      }
    }
    if (HasFailure() && server_) {
      std::string log = server_->Log();
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      std::fprintf(stderr, "---- server log (tail) ----\n%s\n", log.c_str());
    }
  }

  // make_test_model.py's model for `args` (fails the test if it cannot be made).
  fs::path Model(const std::vector<std::string>& args = {}) {
    std::string error;
    fs::path dir = TestModel(args, &error);
    EXPECT_FALSE(dir.empty()) << error;
    return dir;
  }

  // The manifest of the model in `dir` as `version`, signed with the trusted key (or not).
  v1::Manifest ManifestOf(const fs::path& dir, const std::string& version, uint64_t counter,
                          bool sign = true) {
    v1::Manifest m;
    google::protobuf::util::JsonParseOptions jo;
    jo.ignore_unknown_fields = true;
    auto js =
        google::protobuf::util::JsonStringToMessage(testing::ReadFileOrEmpty(dir / "manifest.json"), &m, jo);
    EXPECT_TRUE(js.ok()) << js.ToString();
    m.set_model(kModel);
    m.set_version(version);
    m.set_version_counter(counter);
    m.mutable_lineage()->set_git_commit("0123456789abcdef");
    if (sign) {
      EXPECT_TRUE(SignManifest(m, "ci-1", key_.private_key).ok());
    }
    return m;
  }

  // Pushes the model in `dir` as `version` (its manifest signed with the trusted key unless
  // sign = false); returns the manifest.
  v1::Manifest Push(const fs::path& dir, const std::string& version, uint64_t counter, bool sign = true) {
    const v1::Manifest m = ManifestOf(dir, version, counter, sign);
    const std::string bytes = testing::ReadFileOrEmpty(dir / "model.pt");
    EXPECT_EQ(Sha256Hex(bytes), m.digest());
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::ModelVersion out;
    auto writer = registry_->PushVersion(&ctx, &out);
    v1::PushVersionRequest msg;
    *msg.mutable_manifest() = m;
    writer->Write(msg);
    msg.clear_manifest();
    msg.set_chunk(bytes);
    writer->Write(msg);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_TRUE(s.ok()) << Describe(s);
    return m;
  }

  // A one-stage rollout of `version` to every device. The previous rollout of this test is
  // aborted first if it has not finished (a failed deployment keeps a gate-less rollout
  // RUNNING, and the server refuses overlapping rollouts).
  std::string Rollout(const std::string& version) {
    if (!last_rollout_.empty()) {
      grpc::ClientContext ctx;
      Authorize(ctx, admin_);
      v1::RolloutActionRequest req;
      req.set_rollout_id(last_rollout_);
      req.set_reason("the test moves on");
      v1::Rollout r;
      (void)fleet_->AbortRollout(&ctx, req, &r);  // FAILED_PRECONDITION once it completed
    }
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::CreateRolloutRequest req;
    req.set_model(kModel);
    req.set_version(version);
    req.set_target("*");
    auto* stage = req.add_stages();
    stage->set_percent(100);
    stage->set_success_threshold(0.5);
    stage->set_soak_seconds(1);
    req.set_deployment_timeout_seconds(300);
    v1::Rollout r;
    grpc::Status s = fleet_->CreateRollout(&ctx, req, &r);
    EXPECT_TRUE(s.ok()) << Describe(s);
    last_rollout_ = r.rollout_id();
    return r.rollout_id();
  }

  std::optional<v1::Device> GetDevice(const std::string& id) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::GetDeviceRequest req;
    req.set_device_id(id);
    v1::Device d;
    if (!fleet_->GetDevice(&ctx, req, &d).ok()) return std::nullopt;
    return d;
  }

  v1::DeploymentStep StepOf(const AgentProc& a) {
    auto d = GetDevice(a.DeviceId());
    return d ? d->current_deployment_step() : v1::DEPLOYMENT_STEP_UNSPECIFIED;
  }

  // The server's record of the device's terminal deployment reports, one detail per line
  // ("<deployment> FAILED: <reason>").
  std::string DeploymentHistory(const AgentProc& a) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::ListDeviceHistoryRequest req;
    req.set_device_id(a.DeviceId());
    req.set_page_size(100);
    v1::ListDeviceHistoryResponse resp;
    grpc::Status s = fleet_->ListDeviceHistory(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    std::string out;
    for (const auto& e : resp.events()) {
      if (e.kind() == "deployment") out += e.detail() + "\n";
    }
    return out;
  }

  AgentProc& NewAgent(const std::string& name, const std::vector<std::string>& extra = {}) {
    auto a = std::make_unique<AgentProc>();
    a->dir = work_.path() / name;
    fs::create_directories(a->dir);
    a->state = a->dir / "state";
    a->config = a->dir / "agent.conf";
    std::string conf =
        "# written by the agent e2e tests\n"
        "server = " +
        server_->address() +
        "\n"
        "insecure = true\n"
        "enrollment_token = " +
        enrollment_token_ +
        "\n"
        "state_dir = " +
        a->state.string() +
        "\n"
        "hardware_id = hw-" +
        name +
        "\n"
        "site = berlin\n"
        "sensor = synthetic\n"
        "synthetic_schedule = empty:1s, sitting:2s, lying_full:2s\n"
        "frame_rate_hz = 20\n"
        "presence_min_confidence = 0\n"
        "presence_hold_frames = 2\n"
        "presence_nobody_after = 2s\n"
        "check_in_interval = 1s\n"
        "backoff_initial = 200ms\n"
        "backoff_max = 2s\n"
        "disk_reserve_bytes = 0\n";
    bool has_key = false;
    for (const auto& line : extra) {
      conf += line + "\n";
      has_key = has_key || line.rfind("publisher_key", 0) == 0;
    }
    if (!has_key) conf += "publisher_key = " + (work_.path() / "publisher.pem").string() + "\n";
    WriteFile(a->config, conf);
    agents_.push_back(std::move(a));
    return *agents_.back();
  }

  // Starts (or restarts) the agent, with `env` added to its environment.
  void Start(AgentProc& a, const std::map<std::string, std::string>& env = {}) {
    testing::Subprocess::Options o;
    o.argv = {(testing::BinaryDir() / "client/agent/app/modelfleet-agent").string(), "--config",
              a.config.string()};
    o.env = env;
    a.log = a.dir / ("agent-" + std::to_string(++a.starts) + ".log");
    o.log_path = a.log;
    std::string error;
    a.proc = testing::Subprocess::Start(o, &error);
    ASSERT_TRUE(a.proc.has_value()) << error;
  }

  // SIGKILL: a power cut as far as the agent can tell.
  void Kill(AgentProc& a) {
    a.proc->Signal(SIGKILL);
    ASSERT_TRUE(a.proc->Wait(10s).has_value());
  }

  std::string db_, bucket_;
  testing::TempDir work_{"agent-e2e"};
  std::unique_ptr<testing::ServerProcess> server_;
  std::string admin_, enrollment_token_, last_rollout_;
  Ed25519KeyPair key_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
  std::vector<std::unique_ptr<AgentProc>> agents_;
};

}  // namespace modelfleet::agent_e2e
