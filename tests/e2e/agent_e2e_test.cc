// End-to-end tests of modelfleet-agent: the built agent and server binaries over real gRPC, a
// real PostgreSQL cluster, s3rver as the blob store, and a real int8 TorchScript model made by
// tests/models/make_test_model.py (skipped when /usr/bin/python3 cannot import torch).
//
//   RolloutActivatesThenBrokenModelFails  3 agents enroll with no model; a signed good 1.0.0
//       rolled out to 100% ends ACTIVATED on all of them (digest active on disk, presence JSON
//       lines on stdout); a signed --broken 1.1.0 fails its self-test: FAILED, 1.0.0 keeps running.
//   KeepsRunningWhileServerIsAway  with the server frozen (SIGSTOP) check-ins fail and back
//       off, inference goes on; once it is back the telemetry of the whole gap arrives.
//   KilledMidDownloadResumes  an agent with a throttled download is SIGKILLed with a partial
//       file on disk; restarted, it resumes from those bytes and ends ACTIVATED.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "process.h"
#include "peers_environment.h"
#include "s3rver.h"
#include "server_process.h"
#include "temp_postgres.h"

namespace modelfleet {
namespace {

namespace fs = std::filesystem;
using testing::Authorize;
using namespace std::chrono_literals;

constexpr char kModel[] = "mat-person";

[[maybe_unused]] ::testing::Environment* const kPeers =
    ::testing::AddGlobalTestEnvironment(new testing::PeersEnvironment);

std::string Describe(const grpc::Status& s) {
  return std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
}

std::string Base64(const std::string& in) {
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
std::string PublicKeyPem(const std::string& raw) {
  const std::string der = std::string("\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12) + raw;
  return "-----BEGIN PUBLIC KEY-----\n" + Base64(der) + "\n-----END PUBLIC KEY-----\n";
}

void WriteFile(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return pred();
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The models of make_test_model.py, made once per test binary.
struct Models {
  std::string skip_reason;
  std::string error;
  fs::path good, broken;  // directories holding model.pt + manifest.json
};
const Models& GetModels() {
  static Models* models = [] {
    auto* m = new Models;
    std::string out;
    if (testing::RunCommand({"/usr/bin/python3", "-c", "import torch"}, &out) != 0) {
      m->skip_reason = "/usr/bin/python3 cannot import torch (python3-torch missing): " + out;
      return m;
    }
    static testing::TempDir dir("agent-e2e-models");
    const fs::path script = testing::SourceDir() / "tests/models/make_test_model.py";
    m->good = dir.path() / "good";
    m->broken = dir.path() / "broken";
    if (testing::RunCommand({"/usr/bin/python3", script.string(), "--out", m->good.string()}, &out) != 0 ||
        testing::RunCommand({"/usr/bin/python3", script.string(), "--out", m->broken.string(), "--seed", "2", "--broken"}, &out) != 0) {
      m->error = "make_test_model.py failed: " + out;
    }
    return m;
  }();
  return *models;
}

// One modelfleet-agent process with its own state directory.
struct AgentProc {
  fs::path dir, state, config, log;
  std::optional<testing::Subprocess> proc;
  int starts = 0;

  std::string Log() const { return testing::ReadFileOrEmpty(log); }
  std::string Active() const { return Trimmed(testing::ReadFileOrEmpty(state / "active")); }
  std::string DeviceId() const {
    const std::string c = testing::ReadFileOrEmpty(state / "credential");
    return c.substr(0, c.find('\n'));
  }
  size_t PresenceLines() const {
    const std::string s = Log();
    size_t n = 0;
    for (size_t p = s.find("{\"event\":"); p != std::string::npos; p = s.find("{\"event\":", p + 1)) ++n;
    return n;
  }
};

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const Models& models = GetModels();
    if (!models.skip_reason.empty()) GTEST_SKIP() << models.skip_reason;
    ASSERT_TRUE(models.error.empty()) << models.error;
    static int counter = 0;
    db_ = "agent_" + std::to_string(++counter) + "_" + std::to_string(::getpid());
    ASSERT_TRUE(testing::Cluster()->CreateDatabase(db_)) << testing::Cluster()->last_error();
    testing::ServerProcess::Options o;
    o.database_url = testing::Cluster()->conninfo(db_);
    o.blob_store = "s3";
    o.s3_endpoint = testing::S3Peer()->endpoint();
    o.s3_bucket = "bucket-" + db_;
    std::replace(o.s3_bucket.begin(), o.s3_bucket.end(), '_', '-');
    o.s3_access_key = testing::S3rverProcess::kAccessKey;
    o.s3_secret_key = testing::S3rverProcess::kSecretKey;
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
        std::string log = a->Log();
        if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
        std::fprintf(stderr, "---- agent %s log (tail) ----\n%s\n", a->dir.filename().c_str(), log.c_str());
      }
    }
    if (HasFailure() && server_) {
      std::string log = server_->Log();
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      std::fprintf(stderr, "---- server log (tail) ----\n%s\n", log.c_str());
    }
  }

  // Pushes the model in `dir` as `version`, its manifest signed with the trusted key.
  v1::Manifest Push(const fs::path& dir, const std::string& version, uint64_t counter) {
    v1::Manifest m;
    google::protobuf::util::JsonParseOptions jo;
    jo.ignore_unknown_fields = true;
    auto js = google::protobuf::util::JsonStringToMessage(testing::ReadFileOrEmpty(dir / "manifest.json"), &m, jo);
    EXPECT_TRUE(js.ok()) << js.ToString();
    m.set_model(kModel);
    m.set_version(version);
    m.set_version_counter(counter);
    m.mutable_lineage()->set_git_commit("0123456789abcdef");
    EXPECT_TRUE(SignManifest(m, "ci-1", key_.private_key).ok());
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

  std::string Rollout(const std::string& version) {
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

  AgentProc& NewAgent(const std::string& name, const std::vector<std::string>& extra = {}) {
    auto a = std::make_unique<AgentProc>();
    a->dir = work_.path() / name;
    fs::create_directories(a->dir);
    a->state = a->dir / "state";
    a->config = a->dir / "agent.conf";
    std::string conf =
        "# written by agent_e2e_test\n"
        "server = " + server_->address() + "\n"
        "insecure = true\n"
        "enrollment_token = " + enrollment_token_ + "\n"
        "state_dir = " + a->state.string() + "\n"
        "publisher_key = " + (work_.path() / "publisher.pem").string() + "\n"
        "hardware_id = hw-" + name + "\n"
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
    for (const auto& line : extra) conf += line + "\n";
    WriteFile(a->config, conf);
    agents_.push_back(std::move(a));
    return *agents_.back();
  }

  void Start(AgentProc& a) {
    testing::Subprocess::Options o;
    o.argv = {(testing::BinaryDir() / "client/agent/app/modelfleet-agent").string(), "--config", a.config.string()};
    a.log = a.dir / ("agent-" + std::to_string(++a.starts) + ".log");
    o.log_path = a.log;
    std::string error;
    a.proc = testing::Subprocess::Start(o, &error);
    ASSERT_TRUE(a.proc.has_value()) << error;
  }

  std::string db_;
  testing::TempDir work_{"agent-e2e"};
  std::unique_ptr<testing::ServerProcess> server_;
  std::string admin_, enrollment_token_;
  Ed25519KeyPair key_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
  std::vector<std::unique_ptr<AgentProc>> agents_;
};

TEST_F(AgentE2E, RolloutActivatesThenBrokenModelFails) {
  const v1::Manifest good = Push(GetModels().good, "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  std::vector<AgentProc*> agents;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(&NewAgent("mat-" + std::to_string(i)));
    ASSERT_NO_FATAL_FAILURE(Start(*agents.back()));
  }
  // All enrolled (credential stored with mode 0600), no model yet.
  ASSERT_TRUE(WaitFor([&] {
    return std::all_of(agents.begin(), agents.end(), [](AgentProc* a) { return !a->DeviceId().empty(); });
  }, 30s));
  for (AgentProc* a : agents) {
    EXPECT_EQ(fs::status(a->state / "credential").permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
    EXPECT_EQ(a->Active(), "");
  }

  Rollout("1.0.0");
  const bool activated = WaitFor([&] {
    for (AgentProc* a : agents) {
      auto d = GetDevice(a->DeviceId());
      if (!d || d->current_deployment_step() != v1::DEPLOYMENT_STEP_ACTIVATED) return false;
      if (a->Active() != good.digest()) return false;
    }
    return true;
  }, 90s);
  ASSERT_TRUE(activated);
  for (AgentProc* a : agents) {
    EXPECT_TRUE(fs::exists(a->state / "models" / good.digest() / "model.pt"));
    // It reports what it runs.
    ASSERT_TRUE(WaitFor([&] {
      auto d = GetDevice(a->DeviceId());
      return d && d->running_size() == 1 && d->running(0).version() == "1.0.0" &&
             d->running(0).digest() == good.digest();
    }, 20s));
    // Presence events as JSON lines on stdout.
    ASSERT_TRUE(WaitFor([&] { return a->PresenceLines() > 0; }, 20s)) << a->Log();
  }

  // A broken 1.1.0: the self-test fails, the deployment ends FAILED, 1.0.0 keeps running.
  const v1::Manifest broken = Push(GetModels().broken, "1.1.0", 2);
  ASSERT_FALSE(HasFailure());
  ASSERT_NE(broken.digest(), good.digest());
  Rollout("1.1.0");
  const bool failed = WaitFor([&] {
    for (AgentProc* a : agents) {
      auto d = GetDevice(a->DeviceId());
      if (!d || d->current_deployment_step() != v1::DEPLOYMENT_STEP_FAILED) return false;
    }
    return true;
  }, 90s);
  ASSERT_TRUE(failed);
  for (AgentProc* a : agents) {
    EXPECT_EQ(a->Active(), good.digest());
    EXPECT_FALSE(fs::exists(a->state / "models" / broken.digest()));
    EXPECT_FALSE(fs::exists(a->state / "partial" / (broken.digest() + ".part")));
    const std::string log = a->Log();
    EXPECT_NE(log.find("self-test"), std::string::npos);
    EXPECT_NE(log.find("FAILED"), std::string::npos);
    ASSERT_TRUE(a->proc->Running()) << "the agent died";
    // Still running 1.0.0: inferences keep being counted in its telemetry.
    auto telemetry_lines = [&] {
      const std::string log = a->Log();
      size_t n = 0;
      for (size_t p = log.find("telemetry mat-person@1.0.0: "); p != std::string::npos;
           p = log.find("telemetry mat-person@1.0.0: ", p + 1)) {
        if (log.compare(p + 28, 2, "0 ") != 0) ++n;
      }
      return n;
    };
    const size_t before = telemetry_lines();
    EXPECT_TRUE(WaitFor([&] { return telemetry_lines() > before + 1; }, 20s));
    auto d = GetDevice(a->DeviceId());
    ASSERT_TRUE(d.has_value());
    ASSERT_EQ(d->running_size(), 1);
    EXPECT_EQ(d->running(0).version(), "1.0.0");
  }
  // SIGTERM: a clean exit.
  for (AgentProc* a : agents) EXPECT_EQ(a->proc->Stop(10s), 0);
}

TEST_F(AgentE2E, KeepsRunningWhileServerIsAway) {
  const v1::Manifest good = Push(GetModels().good, "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  AgentProc& a = NewAgent("away", {"rpc_timeout = 1s"});
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s));
  Rollout("1.0.0");
  ASSERT_TRUE(WaitFor([&] { return a.Active() == good.digest(); }, 60s));
  ASSERT_TRUE(WaitFor([&] { return a.Log().find("telemetry mat-person@1.0.0") != std::string::npos; }, 20s));

  server_->process().Signal(SIGSTOP);
  const size_t log_at_stop = a.Log().size();
  std::this_thread::sleep_for(6s);
  const std::string during = a.Log().substr(log_at_stop);
  server_->process().Signal(SIGCONT);
  EXPECT_TRUE(a.proc->Running());
  // Check-ins failed and backed off...
  EXPECT_NE(during.find("next check-in in"), std::string::npos) << during;
  // ...and after the gap one check-in carries the inferences of the whole time (20 Hz x ~6 s).
  std::regex big("telemetry mat-person@1\\.0\\.0: ([0-9]+) inferences");
  ASSERT_TRUE(WaitFor([&] {
    const std::string after = a.Log().substr(log_at_stop);
    for (std::sregex_iterator it(after.begin(), after.end(), big), end; it != end; ++it) {
      if (std::stoull((*it)[1].str()) >= 60) return true;
    }
    return false;
  }, 30s)) << a.Log().substr(log_at_stop);
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

TEST_F(AgentE2E, KilledMidDownloadResumes) {
  const v1::Manifest good = Push(GetModels().good, "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  ASSERT_GT(good.size_bytes(), 8000u);
  // 1 KiB per request at 3 KiB/s: the ~20 KB model takes several seconds.
  AgentProc& a = NewAgent("slow", {"download_chunk_bytes = 1024", "download_rate_limit = 3000"});
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s));
  Rollout("1.0.0");
  const fs::path part = a.state / "partial" / (good.digest() + ".part");
  ASSERT_TRUE(WaitFor([&] {
    const auto size = testing::ReadFileOrEmpty(part).size();
    return size >= 4096 && size < good.size_bytes() / 2;
  }, 60s)) << "no partial download seen";
  a.proc->Signal(SIGKILL);
  ASSERT_TRUE(a.proc->Wait(10s).has_value());
  const uint64_t kept = testing::ReadFileOrEmpty(part).size();
  ASSERT_GT(kept, 0u);
  ASSERT_LT(kept, good.size_bytes());
  EXPECT_TRUE(fs::exists(a.state / "update.state"));

  ASSERT_NO_FATAL_FAILURE(Start(a));
  const bool activated = WaitFor([&] {
    auto d = GetDevice(a.DeviceId());
    return d && d->current_deployment_step() == v1::DEPLOYMENT_STEP_ACTIVATED && a.Active() == good.digest();
  }, 90s);
  ASSERT_TRUE(activated);
  const std::string log = a.Log();
  EXPECT_NE(log.find("resuming deployment"), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("resumed from byte ([0-9]+)"))) << log;
  EXPECT_GE(std::stoull(m[1].str()), kept);
  EXPECT_FALSE(fs::exists(part));
  EXPECT_TRUE(fs::exists(a.state / "models" / good.digest() / "model.pt"));
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

}  // namespace
}  // namespace modelfleet
