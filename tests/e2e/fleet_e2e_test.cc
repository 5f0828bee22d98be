// End-to-end tests of the fleet: the built modelfleet-server binary over real gRPC, a real
// PostgreSQL 15 cluster, s3rver as the blob store, and a simulated fleet of devices
// (client/devsim/fleet_simulator.h) that enrolls, checks in, reports deployments and telemetry.
//
// Servers run with --check-in-interval-seconds 1 --controller-interval-ms 200, so rollouts move
// within seconds. Cohort membership is recomputed here from the documented formula
// (server/fleet/cohort.h), independently of the server, to check stickiness.
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "devsim/fleet_simulator.h"
#include "modelfleet/crypto.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "peers_environment.h"
#include "s3rver.h"
#include "server_process.h"
#include "temp_postgres.h"
#include "test_data.h"

namespace modelfleet {
namespace {

using testing::Authorize;
using devsim::FleetSimulator;
using testing::ServerProcess;
using Answer = FleetSimulator::Answer;
using namespace std::chrono_literals;

constexpr char kModel[] = "mat-person";
constexpr char kOld[] = "1.0.0";
constexpr char kNew[] = "1.1.0";

[[maybe_unused]] ::testing::Environment* const kPeers =
    ::testing::AddGlobalTestEnvironment(new testing::PeersEnvironment);

// The cohort bucket of cohort.h, computed here independently: first 60 bits of
// SHA-256("<device_id>:<rollout_id>") / 2^60.
double Bucket(const std::string& device_id, const std::string& rollout_id) {
  const std::string hex = Sha256Hex(device_id + ":" + rollout_id);
  return static_cast<double>(std::stoull(hex.substr(0, 15), nullptr, 16)) / 1152921504606846976.0;
}

std::string FieldOf(const grpc::ClientContext& ctx) {
  auto it = ctx.GetServerTrailingMetadata().find("modelfleet-field");
  if (it == ctx.GetServerTrailingMetadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    default: return "OTHER";
  }
}

std::string Describe(const grpc::Status& s) { return std::string(CodeName(s.error_code())) + ": " + s.error_message(); }

v1::Stage MakeStage(double percent, double threshold = 0.9, uint32_t soak = 1) {
  v1::Stage s;
  s.set_percent(percent);
  s.set_success_threshold(threshold);
  s.set_soak_seconds(soak);
  return s;
}

v1::CreateRolloutRequest RolloutRequest(const std::vector<double>& percents, double threshold = 0.9, uint32_t soak = 1) {
  v1::CreateRolloutRequest req;
  req.set_model(kModel);
  req.set_version(kNew);
  req.set_target("*");
  for (double p : percents) *req.add_stages() = MakeStage(p, threshold, soak);
  return req;
}

std::string StateName(v1::RolloutState s) { return v1::RolloutState_Name(s); }

// Per device: the deployment ids it was assigned (in order, without repeats).
std::vector<std::string> AssignedDeployments(const FleetSimulator::Device& d, bool rollback) {
  std::vector<std::string> out;
  for (const Answer& a : d.answers) {
    if (a.kind == Answer::Kind::kAssignment && a.is_rollback == rollback &&
        std::find(out.begin(), out.end(), a.deployment_id) == out.end()) {
      out.push_back(a.deployment_id);
    }
  }
  return out;
}

bool EverAssigned(const FleetSimulator::Device& d) {
  return std::any_of(d.answers.begin(), d.answers.end(), [](const Answer& a) { return a.kind == Answer::Kind::kAssignment; });
}

// The first round in which the device was given an assignment (0: never).
int FirstAssignedRound(const FleetSimulator::Device& d) {
  for (const Answer& a : d.answers) {
    if (a.kind == Answer::Kind::kAssignment) return a.round;
  }
  return 0;
}

// Everything a device was told and reported, for failure messages.
std::string Trace(const FleetSimulator::Device& d) {
  std::string out = d.hardware_id + " " + d.device_id + " runs " + d.running_version + ":";
  for (const Answer& a : d.answers) {
    if (a.kind == Answer::Kind::kKeep) continue;
    out += "\n  round " + std::to_string(a.round) + " replica " + std::to_string(a.address_index) + ": " +
           (a.kind == Answer::Kind::kError ? "error " + std::to_string(static_cast<int>(a.code))
                                           : std::string(a.is_rollback ? "rollback " : "assign ") + a.deployment_id +
                                                 " -> " + a.version);
  }
  for (const auto& r : d.reports) {
    out += "\n  round " + std::to_string(r.round) + ": report " + r.deployment_id + " " +
           devsim::StepShortName(r.step) + " -> " + std::to_string(static_cast<int>(r.code));
  }
  return out;
}

class FleetE2E : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      for (size_t i = 0; i < servers_.size(); ++i) {
        if (!servers_[i]) continue;
        std::string log = servers_[i]->Log();
        if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
        std::fprintf(stderr, "---- server %zu log (tail) ----\n%s\n", i, log.c_str());
      }
    }
  }

  // A database of its own, one server on it (more with StartServer), an admin token, the model
  // with versions 1.0.0 and 1.1.0 pushed over gRPC into s3rver.
  void SetUpFleet(std::vector<std::string> extra_args = {}) {
    db_ = "fleet_" + std::to_string(++counter_) + "_" + std::to_string(::getpid());
    ASSERT_TRUE(testing::Cluster()->CreateDatabase(db_)) << testing::Cluster()->last_error();
    database_url_ = testing::Cluster()->conninfo(db_);
    ASSERT_NO_FATAL_FAILURE(StartServer(std::move(extra_args)));
    std::string error;
    admin_ = testing::CreateTokenOffline(database_url_, "bootstrap", "admin", &error);
    ASSERT_FALSE(admin_.empty()) << error;
    UseServer(0);
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
    uint32_t seed = 1;
    for (const char* version : {kOld, kNew}) {
      const std::string bytes = testing::PatternBytes(64 << 10, seed);
      v1::Manifest manifest = testing::ManifestFor(kModel, version, bytes);
      manifest.set_version_counter(seed++);
      grpc::Status s = Push(manifest, bytes, admin_);
      ASSERT_TRUE(s.ok()) << Describe(s);
      digests_[version] = manifest.digest();
    }
  }

  void StartServer(std::vector<std::string> extra_args = {}) {
    ServerProcess::Options o;
    o.database_url = database_url_;
    testing::UseS3Peer(o, db_);
    o.extra_args = {"--check-in-interval-seconds", "1", "--controller-interval-ms", "200"};
    for (auto& a : extra_args) o.extra_args.push_back(std::move(a));
    std::string error;
    auto server = ServerProcess::Start(o, &error);
    ASSERT_NE(server, nullptr) << error;
    servers_.push_back(std::move(server));
  }

  // Admin stubs talk to servers_[i].
  void UseServer(size_t i) {
    auto channel = servers_[i]->Channel();
    fleet_ = v1::FleetService::NewStub(channel);
    registry_ = v1::RegistryService::NewStub(channel);
    admin_stub_ = v1::AdminService::NewStub(channel);
  }

  std::vector<std::string> Addresses() const {
    std::vector<std::string> out;
    for (const auto& s : servers_) {
      if (s) out.push_back(s->address());
    }
    return out;
  }

  grpc::Status Push(const v1::Manifest& manifest, const std::string& bytes, const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::ModelVersion version;
    auto writer = registry_->PushVersion(&ctx, &version);
    v1::PushVersionRequest msg;
    *msg.mutable_manifest() = manifest;
    writer->Write(msg);
    msg.clear_manifest();
    msg.set_chunk(bytes);
    writer->Write(msg);
    writer->WritesDone();
    return writer->Finish();
  }

  std::string TokenFor(v1::Role role, const std::string& name) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::CreateTokenRequest req;
    req.set_name(name);
    req.set_role(role);
    v1::CreateTokenResponse resp;
    grpc::Status s = admin_stub_->CreateToken(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp.secret();
  }

  v1::CreateEnrollmentTokenResponse EnrollmentToken(const std::string& name, uint32_t max_uses = 0,
                                                    bool auto_accept = true) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::CreateEnrollmentTokenRequest req;
    req.set_name(name);
    req.set_max_uses(max_uses);
    req.set_auto_accept(auto_accept);
    v1::CreateEnrollmentTokenResponse resp;
    grpc::Status s = fleet_->CreateEnrollmentToken(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp;
  }

  std::unique_ptr<FleetSimulator> MakeFleet(int devices, int steps_per_round = 0, bool rotate = false) {
    FleetSimulator::Options o;
    o.devices = devices;
    o.addresses = Addresses();
    o.enrollment_token = EnrollmentToken("fleet-" + std::to_string(devices)).token();
    o.model = kModel;
    o.factory_version = kOld;
    o.factory_digest = digests_[kOld];
    o.steps_per_round = steps_per_round;
    o.rotate_addresses = rotate;
    auto sim = std::make_unique<FleetSimulator>(o);
    const auto start = std::chrono::steady_clock::now();
    grpc::Status s = sim->EnrollAll();
    EXPECT_TRUE(s.ok()) << Describe(s);
    std::printf("[fleet] enrolled %d devices in %lld ms\n", devices,
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - start)
                                           .count()));
    return sim;
  }

  grpc::Status CreateRollout(const v1::CreateRolloutRequest& req, v1::Rollout* out, const std::string& token = "",
                             std::string* field = nullptr) {
    grpc::ClientContext ctx;
    Authorize(ctx, token.empty() ? admin_ : token);
    v1::Rollout rollout;
    grpc::Status s = fleet_->CreateRollout(&ctx, req, &rollout);
    if (out) *out = rollout;
    if (field) *field = FieldOf(ctx);
    return s;
  }

  v1::Rollout GetRollout(const std::string& id) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::GetRolloutRequest req;
    req.set_rollout_id(id);
    v1::Rollout r;
    grpc::Status s = fleet_->GetRollout(&ctx, req, &r);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return r;
  }

  grpc::Status Act(grpc::Status (v1::FleetService::Stub::*verb)(grpc::ClientContext*, const v1::RolloutActionRequest&,
                                                                 v1::Rollout*),
                   const std::string& id, v1::Rollout* out = nullptr) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::RolloutActionRequest req;
    req.set_rollout_id(id);
    req.set_reason("e2e");
    v1::Rollout r;
    grpc::Status s = (fleet_.get()->*verb)(&ctx, req, &r);
    if (out) *out = r;
    return s;
  }

  // The rollout's recorded events, oldest first (WatchRollout without its "progress" ticks).
  // The stream ends by itself for a finished rollout; otherwise after `wait`.
  std::vector<v1::RolloutEvent> Events(const std::string& id, std::chrono::milliseconds wait = 1500ms) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    ctx.set_deadline(std::chrono::system_clock::now() + wait);
    v1::WatchRolloutRequest req;
    req.set_rollout_id(id);
    auto reader = fleet_->WatchRollout(&ctx, req);
    std::vector<v1::RolloutEvent> events;
    v1::RolloutEvent e;
    while (reader->Read(&e)) {
      if (e.kind() != "progress") events.push_back(e);
    }
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(s);
    return events;
  }

  static std::vector<std::string> Kinds(const std::vector<v1::RolloutEvent>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.kind());
    return out;
  }

  std::vector<v1::Device> AllDevices() {
    std::vector<v1::Device> out;
    std::string page;
    do {
      grpc::ClientContext ctx;
      Authorize(ctx, admin_);
      v1::ListDevicesRequest req;
      req.set_page_size(1000);
      req.set_page_token(page);
      v1::ListDevicesResponse resp;
      grpc::Status s = fleet_->ListDevices(&ctx, req, &resp);
      EXPECT_TRUE(s.ok()) << Describe(s);
      if (!s.ok()) break;
      for (auto& d : *resp.mutable_devices()) out.push_back(std::move(d));
      page = resp.next_page_token();
    } while (!page.empty());
    return out;
  }

  // Rounds, at most one per `period`, until `done(rollout after the round)` holds or `timeout`.
  // `observe(before, after, round)` sees every round. Returns the last rollout.
  struct RunResult {
    bool done = false;
    v1::Rollout rollout;
    int rounds = 0;
  };
  RunResult RunUntil(FleetSimulator& sim, const std::string& rollout_id,
                     const std::function<bool(const v1::Rollout&)>& done, std::chrono::seconds timeout,
                     std::chrono::milliseconds period = 300ms,
                     const std::function<void(const v1::Rollout&, const v1::Rollout&, int)>& observe = nullptr) {
    RunResult result;
    result.rollout = GetRollout(rollout_id);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto round_start = std::chrono::steady_clock::now();
      v1::Rollout before = result.rollout;
      FleetSimulator::RoundStats stats = sim.Round();
      ++result.rounds;
      max_round_ms_ = std::max<int64_t>(max_round_ms_, stats.duration.count());
      result.rollout = GetRollout(rollout_id);
      if (observe) observe(before, result.rollout, sim.rounds());
      if (done(result.rollout)) {
        result.done = true;
        return result;
      }
      std::this_thread::sleep_until(round_start + period);
    }
    return result;
  }

  static inline int counter_ = 0;
  std::string db_, database_url_, admin_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
  std::map<std::string, std::string> digests_;
  int64_t max_round_ms_ = 0;
};

// ------------------------------------------------------------------------------------------
// 1. 1,000 devices, three stages, all the way.

TEST_F(FleetE2E, ThousandDevicesThreeStageRolloutCompletesWithStickyCohorts) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  auto sim = MakeFleet(1000);
  ASSERT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kOld, 1000}}));

  // Without a rollout every device is told to keep what it runs.
  FleetSimulator::RoundStats idle = sim->Round();
  std::printf("[fleet] idle round of 1000 check-ins: %lld ms\n", static_cast<long long>(idle.duration.count()));
  EXPECT_EQ(idle.check_ins, 1000);
  EXPECT_EQ(idle.errors, 0) << idle.first_error;
  EXPECT_EQ(idle.assignments, 0);
  EXPECT_LT(idle.duration, 3000ms) << "a round of 1,000 idle check-ins should take well under a second";

  v1::Rollout rollout;
  // A soak of 3 s spans several rounds, so every stage is seen at the end of some round even
  // on a loaded machine (with 1 s, stage 0 could start and finish within the first round).
  grpc::Status s = CreateRollout(RolloutRequest({10, 50, 100}, 0.9, 3), &rollout);
  ASSERT_TRUE(s.ok()) << Describe(s);
  ASSERT_EQ(rollout.state(), v1::ROLLOUT_STATE_RUNNING);
  const std::string id = rollout.rollout_id();

  std::map<int, double> cutoff_of_stage{{0, rollout.cohort_cutoff()}};
  std::map<int, uint32_t> cohort_size_of_stage{{0, rollout.progress().devices()}};
  std::map<int, int> stage_of_round;  // the stage during the whole round (only rounds without a change)
  std::map<int, std::set<int>> assigned_by_end_of_stage;
  auto result = RunUntil(
      *sim, id, [](const v1::Rollout& r) { return r.state() == v1::ROLLOUT_STATE_COMPLETED; }, 90s, 300ms,
      [&](const v1::Rollout& before, const v1::Rollout& after, int round) {
        cutoff_of_stage.try_emplace(static_cast<int>(after.current_stage()), after.cohort_cutoff());
        cohort_size_of_stage.try_emplace(static_cast<int>(after.current_stage()), after.progress().devices());
        if (before.current_stage() == after.current_stage() && before.state() == after.state()) {
          stage_of_round[round] = static_cast<int>(before.current_stage());
        }
        // The rollout was at this stage (or an earlier one) while everything so far was assigned.
        auto& assigned = assigned_by_end_of_stage[static_cast<int>(after.current_stage())];
        assigned.clear();
        for (int i = 0; i < sim->size(); ++i) {
          if (EverAssigned(sim->device(i))) assigned.insert(i);
        }
      });
  ASSERT_TRUE(result.done) << "rollout still " << StateName(result.rollout.state()) << " at stage "
                           << result.rollout.current_stage() << ": " << result.rollout.state_reason();
  std::printf("[fleet] 3-stage rollout over 1000 devices: %d rounds, slowest round %lld ms\n", result.rounds,
              static_cast<long long>(max_round_ms_));

  // A last round to let the stragglers of the last stage (threshold 0.9) finish.
  for (int i = 0; i < 5 && sim->CountByVersion()[kNew] < 1000; ++i) sim->Round();
  EXPECT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kNew, 1000}}));
  EXPECT_EQ(sim->Pending(), 0);
  v1::Rollout final_rollout = GetRollout(id);
  EXPECT_EQ(final_rollout.state(), v1::ROLLOUT_STATE_COMPLETED);
  EXPECT_EQ(final_rollout.current_stage(), 2u);
  ASSERT_EQ(final_rollout.devices_by_step().size(), 1u);
  EXPECT_EQ(final_rollout.devices_by_step().at("ACTIVATED"), 1000u);

  for (const auto& [stage, cutoff] : cutoff_of_stage) {
    std::printf("[fleet] stage %d: cutoff %.6f, cohort %u devices, %zu assigned by its end\n", stage, cutoff,
                cohort_size_of_stage[stage], assigned_by_end_of_stage[stage].size());
  }
  // Sticky cohorts: the cutoffs only grow, the server's cohort sizes agree with the bucket
  // formula computed here, and whatever a stage assigned is inside every later stage's cohort.
  ASSERT_EQ(cutoff_of_stage.size(), 3u);
  EXPECT_LE(cutoff_of_stage[0], cutoff_of_stage[1]);
  EXPECT_LE(cutoff_of_stage[1], cutoff_of_stage[2]);
  EXPECT_EQ(cutoff_of_stage[2], 1.0);
  std::vector<double> buckets;
  for (int i = 0; i < sim->size(); ++i) buckets.push_back(Bucket(sim->device(i).device_id, id));
  for (int stage = 0; stage < 3; ++stage) {
    uint32_t inside = 0;
    for (double b : buckets) inside += b < cutoff_of_stage[stage] ? 1 : 0;
    EXPECT_EQ(inside, cohort_size_of_stage[stage]) << "stage " << stage << ": server and cohort.h formula disagree";
  }
  // A stage holds exactly ceil(percent% of the target) devices (rollout_manager.h).
  EXPECT_EQ(cohort_size_of_stage[0], 100u);
  EXPECT_EQ(cohort_size_of_stage[1], 500u);
  EXPECT_EQ(cohort_size_of_stage[2], 1000u);
  for (int stage = 0; stage < 3; ++stage) {
    const auto& assigned = assigned_by_end_of_stage[stage];
    EXPECT_FALSE(assigned.empty()) << "stage " << stage;
    for (int i : assigned) {
      ASSERT_LT(buckets[static_cast<size_t>(i)], cutoff_of_stage[stage])
          << "device " << i << " was assigned during stage " << stage << " but is outside its cohort";
      for (int later = stage + 1; later < 3; ++later) {
        EXPECT_LT(buckets[static_cast<size_t>(i)], cutoff_of_stage[later]) << "cohort of stage " << later
                                                                           << " lost device " << i;
      }
    }
    if (stage > 0) {
      const auto& previous = assigned_by_end_of_stage[stage - 1];
      EXPECT_TRUE(std::includes(assigned.begin(), assigned.end(), previous.begin(), previous.end()))
          << "stage " << stage << " does not contain stage " << stage - 1;
    }
  }
  // No device was assigned before its stage, and each device had exactly one deployment.
  for (int i = 0; i < sim->size(); ++i) {
    const auto& d = sim->device(i);
    int first = FirstAssignedRound(d);
    ASSERT_GT(first, 0) << "device " << i << " never assigned";
    if (auto it = stage_of_round.find(first); it != stage_of_round.end()) {
      EXPECT_LT(buckets[static_cast<size_t>(i)], cutoff_of_stage[it->second])
          << "device " << i << " assigned in round " << first << " during stage " << it->second;
    }
    EXPECT_EQ(AssignedDeployments(d, false).size(), 1u) << "device " << i;
    EXPECT_TRUE(AssignedDeployments(d, true).empty()) << "device " << i;
  }

  // Events: created, two stage advances, completed, each exactly once and in order.
  auto events = Events(id);
  EXPECT_EQ(Kinds(events), (std::vector<std::string>{"created", "stage_advanced", "stage_advanced", "completed"}));
  for (const auto& e : events) {
    if (e.kind() != "created") {
      EXPECT_EQ(e.actor(), "controller") << e.kind();
    }
  }
}

// ------------------------------------------------------------------------------------------
// 2. A failure-ratio gate pauses the rollout by itself.

TEST_F(FleetE2E, FailureGatePausesRolloutAndLaterStagesNeverGetAssignments) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  auto sim = MakeFleet(300);
  v1::CreateRolloutRequest req = RolloutRequest({10, 100}, 0.9, 0);
  req.mutable_stages(0)->mutable_gates()->set_max_failure_ratio(0.1);
  v1::Rollout rollout;
  grpc::Status s = CreateRollout(req, &rollout);
  ASSERT_TRUE(s.ok()) << Describe(s);
  const std::string id = rollout.rollout_id();

  // The first stage's cohort, from the bucket formula; every fifth of it (by bucket) fails.
  std::vector<std::pair<double, int>> cohort;
  for (int i = 0; i < sim->size(); ++i) {
    double b = Bucket(sim->device(i).device_id, id);
    if (b < rollout.cohort_cutoff()) cohort.emplace_back(b, i);
  }
  std::sort(cohort.begin(), cohort.end());
  ASSERT_EQ(cohort.size(), rollout.progress().devices());
  ASSERT_GE(cohort.size(), 30u);
  std::set<int> in_cohort, failing;
  for (size_t k = 0; k < cohort.size(); ++k) {
    in_cohort.insert(cohort[k].second);
    if (k % 5 == 0) failing.insert(cohort[k].second);
  }
  sim->SetFailurePolicy([&](int device, const v1::Assignment&) -> std::optional<std::string> {
    if (failing.count(device)) return "self-test failed: output mismatch";
    return std::nullopt;
  });

  auto result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; }, 30s);
  ASSERT_TRUE(result.done);
  EXPECT_EQ(result.rollout.state(), v1::ROLLOUT_STATE_PAUSED) << result.rollout.state_reason();
  EXPECT_NE(result.rollout.state_reason().find("failure ratio"), std::string::npos) << result.rollout.state_reason();
  EXPECT_EQ(result.rollout.current_stage(), 0u);
  EXPECT_GT(result.rollout.progress().failed(), 0u);

  // A few more rounds: still paused, nothing outside the first stage moves.
  for (int i = 0; i < 3; ++i) {
    sim->Round();
    std::this_thread::sleep_for(250ms);
  }
  v1::Rollout paused = GetRollout(id);
  EXPECT_EQ(paused.state(), v1::ROLLOUT_STATE_PAUSED);
  EXPECT_EQ(paused.current_stage(), 0u);

  auto events = Events(id);
  int by_gate = 0;
  for (const auto& e : events) {
    if (e.actor() == "gate:stage-0") {
      ++by_gate;
      EXPECT_EQ(e.kind(), "gate_paused");
      EXPECT_NE(e.reason().find("failure ratio"), std::string::npos) << e.reason();
    }
  }
  EXPECT_EQ(by_gate, 1) << ::testing::PrintToString(Kinds(events));
  EXPECT_EQ(Kinds(events), (std::vector<std::string>{"created", "gate_paused"}));

  int outside_assigned = 0, failed_reports = 0;
  for (int i = 0; i < sim->size(); ++i) {
    const auto& d = sim->device(i);
    if (!in_cohort.count(i)) {
      outside_assigned += EverAssigned(d) ? 1 : 0;
      EXPECT_EQ(d.running_version, kOld);
    }
    if (failing.count(i) && EverAssigned(d)) {
      EXPECT_EQ(d.running_version, kOld) << "a device whose deployment failed keeps its version";
    }
    for (const auto& r : d.reports) failed_reports += r.step == v1::DEPLOYMENT_STEP_FAILED && r.code == grpc::StatusCode::OK;
  }
  EXPECT_EQ(outside_assigned, 0) << "devices outside the first stage got assignments";
  EXPECT_EQ(static_cast<uint32_t>(failed_reports), paused.progress().failed());
  EXPECT_GT(static_cast<double>(paused.progress().failed()) / paused.progress().devices(), 0.1);

  // The operator fixes the cause, retries the failed devices and resumes: the rollout finishes,
  // the retried devices reuse their deployment.
  sim->SetFailurePolicy(nullptr);
  v1::Rollout retried;
  s = Act(&v1::FleetService::Stub::RetryFailed, id, &retried);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(retried.progress().failed(), 0u);
  s = Act(&v1::FleetService::Stub::ResumeRollout, id);
  ASSERT_TRUE(s.ok()) << Describe(s);
  result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; }, 30s);
  ASSERT_TRUE(result.done);
  EXPECT_EQ(result.rollout.state(), v1::ROLLOUT_STATE_COMPLETED) << result.rollout.state_reason();
  for (int i = 0; i < 5 && (sim->CountByVersion()[kNew] < sim->size() || sim->Pending() > 0); ++i) sim->Round();
  EXPECT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kNew, 300}}));
  for (int i : failing) {
    EXPECT_EQ(AssignedDeployments(sim->device(i), false).size(), 1u) << "device " << i;
  }
  EXPECT_EQ(Kinds(Events(id)), (std::vector<std::string>{"created", "gate_paused", "retry_failed", "resumed",
                                                         "stage_advanced", "completed"}));
}

// ------------------------------------------------------------------------------------------
// 3. Telemetry gates: p95 latency of the new version above the limit.

class TelemetryGate : public FleetE2E {
 protected:
  // The new version is slow: p95 120 ms against a limit of 50 ms.
  void Run(bool auto_rollback) {
    ASSERT_NO_FATAL_FAILURE(SetUpFleet());
    sim_ = MakeFleet(200);
    sim_->SetTelemetryPolicy([](int device, const std::string& version) {
      devsim::SimTelemetry t;
      t.inferences = 40;
      t.errors = 0;
      t.p95_ms = version == kNew ? 120 + device % 7 : 20;
      t.histogram = {{"empty", 30}, {"sitting", 10}};
      return t;
    });
    v1::CreateRolloutRequest req = RolloutRequest({20, 100}, 0.9, 0);
    req.set_auto_rollback(auto_rollback);
    auto* gates = req.mutable_stages(0)->mutable_gates();
    gates->set_max_p95_latency_ms(50);
    gates->set_min_inferences(100);
    grpc::Status s = CreateRollout(req, &rollout_);
    ASSERT_TRUE(s.ok()) << Describe(s);
    for (int i = 0; i < sim_->size(); ++i) {
      if (Bucket(sim_->device(i).device_id, rollout_.rollout_id()) < rollout_.cohort_cutoff()) cohort_.insert(i);
    }
    ASSERT_EQ(cohort_.size(), rollout_.progress().devices());
    result_ = RunUntil(*sim_, rollout_.rollout_id(),
                       [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; }, 30s);
    ASSERT_TRUE(result_.done) << "still running: " << result_.rollout.progress().ShortDebugString();
  }

  void ExpectNothingOutsideTheFirstStageMoved() {
    for (int i = 0; i < sim_->size(); ++i) {
      if (cohort_.count(i)) continue;
      EXPECT_FALSE(EverAssigned(sim_->device(i))) << "device " << i << " is outside the first stage";
    }
  }

  std::unique_ptr<FleetSimulator> sim_;
  v1::Rollout rollout_;
  std::set<int> cohort_;
  RunResult result_;
};

TEST_F(TelemetryGate, SlowNewVersionPausesTheRollout) {
  ASSERT_NO_FATAL_FAILURE(Run(false));
  EXPECT_EQ(result_.rollout.state(), v1::ROLLOUT_STATE_PAUSED) << result_.rollout.state_reason();
  EXPECT_NE(result_.rollout.state_reason().find("p95 latency"), std::string::npos) << result_.rollout.state_reason();
  EXPECT_GE(result_.rollout.progress().inferences(), 100u);
  EXPECT_GT(result_.rollout.progress().p95_latency_ms(), 50.0);
  EXPECT_LT(result_.rollout.progress().p95_latency_ms(), 130.0);
  auto events = Events(rollout_.rollout_id());
  ASSERT_EQ(Kinds(events), (std::vector<std::string>{"created", "gate_paused"}));
  EXPECT_EQ(events[1].actor(), "gate:stage-0");
  // Paused: the activated devices stay on the new version, nobody else moves.
  for (int i = 0; i < 2; ++i) sim_->Round();
  EXPECT_EQ(GetRollout(rollout_.rollout_id()).state(), v1::ROLLOUT_STATE_PAUSED);
  ExpectNothingOutsideTheFirstStageMoved();
  EXPECT_GT(sim_->CountByVersion()[kNew], 0);
}

TEST_F(TelemetryGate, SlowNewVersionWithAutoRollbackRollsBack) {
  ASSERT_NO_FATAL_FAILURE(Run(true));
  EXPECT_EQ(result_.rollout.state(), v1::ROLLOUT_STATE_ROLLED_BACK) << result_.rollout.state_reason();
  EXPECT_NE(result_.rollout.state_reason().find("p95 latency"), std::string::npos) << result_.rollout.state_reason();
  auto events = Events(rollout_.rollout_id());
  ASSERT_EQ(Kinds(events), (std::vector<std::string>{"created", "gate_rolled_back"}));
  EXPECT_EQ(events[1].actor(), "gate:stage-0");

  // The devices that moved go back to 1.0.0 by themselves.
  std::set<int> moved;
  for (int i = 0; i < sim_->size(); ++i) {
    if (!AssignedDeployments(sim_->device(i), false).empty()) moved.insert(i);
  }
  EXPECT_FALSE(moved.empty());
  for (int i = 0; i < 15 && sim_->CountByVersion()[kOld] < sim_->size(); ++i) {
    sim_->Round();
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(sim_->CountByVersion(), (std::map<std::string, int>{{kOld, 200}}));
  for (int i : moved) {
    EXPECT_EQ(AssignedDeployments(sim_->device(i), true).size(), 1u) << "device " << i;
    EXPECT_EQ(sim_->device(i).running_digest, digests_[kOld]);
  }
  ExpectNothingOutsideTheFirstStageMoved();
}

// ------------------------------------------------------------------------------------------
// 4. An admin rolls back after two stages.

TEST_F(FleetE2E, RollbackReturnsMovedDevicesAndLeavesTheOthersAlone) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  // Deployments take three rounds, so some are under way when the rollout is rolled back.
  auto sim = MakeFleet(300, /*steps_per_round=*/2);
  v1::Rollout rollout;
  // A success threshold of 1: a stage advances only once all of it has activated, so the 90
  // devices of the 30% stage have all moved before the third stage starts (with 0.9 it could
  // start at 81 of them, and the count below depended on timing).
  grpc::Status s = CreateRollout(RolloutRequest({10, 30, 60, 100}, 1.0, 1), &rollout);
  ASSERT_TRUE(s.ok()) << Describe(s);
  const std::string id = rollout.rollout_id();
  auto result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.current_stage() >= 2; }, 40s);
  ASSERT_TRUE(result.done) << StateName(result.rollout.state()) << " " << result.rollout.state_reason();
  for (int i = 0; i < 5 && sim->Pending() == 0; ++i) {
    sim->Round();  // the third stage starts moving
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_GT(sim->Pending(), 0);
  std::set<int> interrupted;
  for (int i = 0; i < sim->size(); ++i) {
    if (sim->device(i).pending) interrupted.insert(i);
  }

  v1::Rollout rolled;
  s = Act(&v1::FleetService::Stub::RollbackRollout, id, &rolled);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(rolled.state(), v1::ROLLOUT_STATE_ROLLED_BACK);

  std::set<int> moved, untouched;
  for (int i = 0; i < sim->size(); ++i) {
    (sim->device(i).running_version == kNew ? moved : untouched).insert(i);
  }
  ASSERT_GE(moved.size(), 90u);
  ASSERT_GE(untouched.size(), 90u);
  const int rounds_before = sim->rounds();
  for (int i = 0; i < 15 && sim->CountByVersion()[kOld] < sim->size(); ++i) {
    sim->Round();
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kOld, 300}}));
  EXPECT_EQ(sim->Pending(), 0);
  for (int i : moved) {
    const auto& d = sim->device(i);
    EXPECT_EQ(d.running_version, kOld) << "device " << i;
    EXPECT_EQ(d.running_digest, digests_[kOld]) << "device " << i;
    EXPECT_EQ(AssignedDeployments(d, true).size(), 1u) << "device " << i;
  }
  for (int i : interrupted) {
    // Its forward deployment was cancelled: it stays where it is.
    EXPECT_EQ(sim->device(i).running_version, kOld) << "device " << i;
    bool refused = false;
    for (const auto& r : sim->device(i).reports) refused |= r.round > rounds_before && r.code == grpc::StatusCode::FAILED_PRECONDITION;
    EXPECT_TRUE(refused) << "device " << i << " could finish a deployment of a rolled-back rollout";
  }
  for (int i : untouched) {
    const auto& d = sim->device(i);
    EXPECT_TRUE(AssignedDeployments(d, true).empty())
        << "device " << i << " never moved but was rolled back (rollback in round " << rounds_before << ")\n"
        << Trace(d);
    int told_otherwise = 0;
    for (const Answer& a : d.answers) told_otherwise += a.round > rounds_before && a.kind != Answer::Kind::kKeep;
    EXPECT_EQ(told_otherwise, 0) << Trace(d);
  }
  v1::Rollout final_rollout = GetRollout(id);
  EXPECT_EQ(final_rollout.state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  auto events = Events(id);
  ASSERT_EQ(Kinds(events), (std::vector<std::string>{"created", "stage_advanced", "stage_advanced", "rolled_back"}));
  EXPECT_NE(events.back().actor().find("bootstrap"), std::string::npos) << events.back().actor();
}

// ------------------------------------------------------------------------------------------
// 5. The server dies (SIGKILL) mid-rollout; a new one on the same database finishes it.

TEST_F(FleetE2E, ServerKilledMidRolloutLosesNoAcknowledgedReport) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  auto sim = MakeFleet(400, /*steps_per_round=*/2);
  v1::Rollout rollout;
  grpc::Status s = CreateRollout(RolloutRequest({20, 60, 100}, 0.9, 1), &rollout);
  ASSERT_TRUE(s.ok()) << Describe(s);
  const std::string id = rollout.rollout_id();
  auto result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.current_stage() >= 1; }, 40s);
  ASSERT_TRUE(result.done) << StateName(result.rollout.state()) << " " << result.rollout.state_reason();
  for (int i = 0; i < 8 && sim->Pending() == 0; ++i) {
    sim->Round();  // the second stage's deployments get under way
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_GT(sim->Pending(), 0);

  // Kill the server in the middle of a round.
  auto round = std::async(std::launch::async, [&] { return sim->Round(); });
  std::this_thread::sleep_for(60ms);
  servers_[0]->process().Signal(SIGKILL);
  FleetSimulator::RoundStats killed_round = round.get();
  std::printf("[fleet] round during SIGKILL: %d check-ins, %d reports, %d errors\n", killed_round.check_ins,
              killed_round.reports, killed_round.errors);
  EXPECT_GT(sim->Pending(), 0) << "no deployment was under way at the kill";

  // Every report acknowledged before the kill, per device: the deployment and its last step.
  std::map<std::string, std::pair<std::string, v1::DeploymentStep>> acked;  // device id -> (deployment, step)
  int acked_activations = 0;
  for (int i = 0; i < sim->size(); ++i) {
    const auto& d = sim->device(i);
    for (const auto& r : d.reports) {
      if (r.code == grpc::StatusCode::OK) acked[d.device_id] = {r.deployment_id, r.step};
    }
    auto it = acked.find(d.device_id);
    acked_activations += it != acked.end() && it->second.second == v1::DEPLOYMENT_STEP_ACTIVATED;
  }
  EXPECT_GT(acked_activations, 50);

  servers_[0].reset();
  ASSERT_NO_FATAL_FAILURE(StartServer());
  UseServer(1);
  sim->SetAddresses(Addresses());

  // Before any device speaks again: nothing acknowledged is lost.
  auto ordinal = [](v1::DeploymentStep step) { return static_cast<int>(step); };  // ASSIGNED..ACTIVATED ascend
  int checked = 0;
  for (const v1::Device& device : AllDevices()) {
    auto it = acked.find(device.device_id());
    if (it == acked.end()) continue;
    ++checked;
    EXPECT_EQ(device.current_deployment_id(), it->second.first) << device.device_id();
    if (it->second.second == v1::DEPLOYMENT_STEP_ACTIVATED) {
      EXPECT_EQ(device.current_deployment_step(), v1::DEPLOYMENT_STEP_ACTIVATED) << device.device_id();
    } else {
      EXPECT_GE(ordinal(device.current_deployment_step()), ordinal(it->second.second))
          << device.device_id() << " acknowledged " << devsim::StepShortName(it->second.second) << " but is "
          << devsim::StepShortName(device.current_deployment_step());
    }
  }
  EXPECT_EQ(checked, static_cast<int>(acked.size()));

  result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; }, 60s);
  ASSERT_TRUE(result.done);
  ASSERT_EQ(result.rollout.state(), v1::ROLLOUT_STATE_COMPLETED) << result.rollout.state_reason();
  for (int i = 0; i < 8 && (sim->CountByVersion()[kNew] < sim->size() || sim->Pending() > 0); ++i) sim->Round();
  EXPECT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kNew, 400}}));
  v1::Rollout done = GetRollout(id);
  EXPECT_EQ(done.devices_by_step().size(), 1u) << done.ShortDebugString();
  EXPECT_EQ(done.devices_by_step().count("ACTIVATED") ? done.devices_by_step().at("ACTIVATED") : 0u, 400u);
  // The activations acknowledged before the kill are the very same deployments now.
  for (const v1::Device& device : AllDevices()) {
    auto it = acked.find(device.device_id());
    if (it == acked.end() || it->second.second != v1::DEPLOYMENT_STEP_ACTIVATED) continue;
    EXPECT_EQ(device.current_deployment_id(), it->second.first);
    EXPECT_EQ(device.current_deployment_step(), v1::DEPLOYMENT_STEP_ACTIVATED);
  }
  EXPECT_EQ(Kinds(Events(id)), (std::vector<std::string>{"created", "stage_advanced", "stage_advanced", "completed"}));
}

// ------------------------------------------------------------------------------------------
// 6. Two replicas on one database.

TEST_F(FleetE2E, TwoReplicasOneRolloutNoFlippedAssignments) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_EQ(servers_.size(), 2u);
  // Devices alternate between the replicas from round to round, and take three rounds to
  // deploy, so each one meets both replicas while its deployment is under way.
  auto sim = MakeFleet(400, /*steps_per_round=*/2, /*rotate=*/true);
  v1::Rollout rollout;
  // A soak of 3 s spans several rounds, so every stage is seen at the end of some round even
  // on a loaded machine (with 1 s, stage 0 could start and finish within the first round).
  grpc::Status s = CreateRollout(RolloutRequest({10, 50, 100}, 0.9, 3), &rollout);
  ASSERT_TRUE(s.ok()) << Describe(s);
  const std::string id = rollout.rollout_id();
  // Rounds at the pace the server asks for (next_check_in_seconds >= 0.75 s).
  auto result = RunUntil(*sim, id, [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; }, 90s, 750ms);
  ASSERT_TRUE(result.done);
  ASSERT_EQ(result.rollout.state(), v1::ROLLOUT_STATE_COMPLETED) << result.rollout.state_reason();
  for (int i = 0; i < 8 && (sim->CountByVersion()[kNew] < sim->size() || sim->Pending() > 0); ++i) sim->Round();
  EXPECT_EQ(sim->CountByVersion(), (std::map<std::string, int>{{kNew, 400}}));

  // Per device: once assigned (deployment D, version X), every answer until its activation is
  // acknowledged is the same assignment, from either replica; afterwards only keep_current.
  std::map<int, int> answers_by_replica, assignments_by_replica;
  int flips = 0;
  std::string first_flip;
  for (int i = 0; i < sim->size(); ++i) {
    const auto& d = sim->device(i);
    int activated_round = 0;
    for (const auto& r : d.reports) {
      if (r.step == v1::DEPLOYMENT_STEP_ACTIVATED && r.code == grpc::StatusCode::OK) activated_round = r.round;
    }
    ASSERT_GT(activated_round, 0) << "device " << i;
    std::optional<Answer> assigned;
    for (const Answer& a : d.answers) {
      ++answers_by_replica[a.address_index];
      EXPECT_NE(a.kind, Answer::Kind::kError) << "device " << i << " round " << a.round << " code " << static_cast<int>(a.code);
      if (a.kind == Answer::Kind::kAssignment) ++assignments_by_replica[a.address_index];
      bool flip = false;
      if (!assigned) {
        if (a.kind == Answer::Kind::kAssignment) assigned = a;
      } else if (a.round <= activated_round) {
        flip = a.kind != Answer::Kind::kAssignment || a.deployment_id != assigned->deployment_id ||
               a.version != assigned->version;
      } else {
        flip = a.kind != Answer::Kind::kKeep;
      }
      if (flip && flips++ == 0) {
        first_flip = "device " + std::to_string(i) + " assigned " + assigned->deployment_id + " by replica " +
                     std::to_string(assigned->address_index) + " in round " + std::to_string(assigned->round) +
                     ", then in round " + std::to_string(a.round) + " replica " + std::to_string(a.address_index) +
                     (a.kind == Answer::Kind::kKeep ? " said keep_current" : " assigned " + a.deployment_id);
      }
    }
  }
  EXPECT_EQ(flips, 0) << first_flip;
  EXPECT_GT(assignments_by_replica[0], 0);
  EXPECT_GT(assignments_by_replica[1], 0);
  EXPECT_GT(answers_by_replica[0], 0);
  EXPECT_GT(answers_by_replica[1], 0);

  // Each transition happened once, whichever replica's controller made it; one controller led.
  auto events = Events(id);
  EXPECT_EQ(Kinds(events), (std::vector<std::string>{"created", "stage_advanced", "stage_advanced", "completed"}));
  int leaders = 0;
  for (const auto& server : servers_) leaders += server->Log().find("this replica leads") != std::string::npos;
  EXPECT_EQ(leaders, 1);
}

// ------------------------------------------------------------------------------------------
// Targets: the in-memory selector (check-ins) and its SQL (cohorts, listings) pick the same
// devices; rollouts of disjoint targets run side by side, an overlapping one is refused.

TEST_F(FleetE2E, TargetsSelectByAttributesAndDisjointRolloutsRunSideBySide) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  auto sim = MakeFleet(200);
  // DefaultAttributes: berlin = even devices, hardware_revision "3" = devices 2, 3 mod 4.
  auto berlin_rev3 = [](int i) { return i % 4 == 2; };
  auto paris = [](int i) { return i % 2 == 1; };
  v1::CreateRolloutRequest first = RolloutRequest({50, 100}, 1.0, 0);
  first.set_target("site = \"berlin\" AND hw_rev in (3)");
  v1::Rollout a, b, refused;
  grpc::Status s = CreateRollout(first, &a);
  ASSERT_TRUE(s.ok()) << Describe(s);
  v1::CreateRolloutRequest second = RolloutRequest({100}, 1.0, 0);
  second.set_target("site = \"paris\"");
  s = CreateRollout(second, &b);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(a.progress().devices(), 25u);   // 50% of the 50 berlin rev-3 devices
  EXPECT_EQ(b.progress().devices(), 100u);  // every paris device
  v1::CreateRolloutRequest overlapping = RolloutRequest({100}, 1.0, 0);
  overlapping.set_target("hardware_revision = \"3\"");
  s = CreateRollout(overlapping, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);

  auto done = RunUntil(*sim, a.rollout_id(), [](const v1::Rollout& r) { return r.state() != v1::ROLLOUT_STATE_RUNNING; },
                       30s);
  ASSERT_TRUE(done.done);
  EXPECT_EQ(done.rollout.state(), v1::ROLLOUT_STATE_COMPLETED) << done.rollout.state_reason();
  EXPECT_EQ(done.rollout.progress().devices(), 50u);
  for (int i = 0; i < 10 && GetRollout(b.rollout_id()).state() == v1::ROLLOUT_STATE_RUNNING; ++i) {
    sim->Round();
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(GetRollout(b.rollout_id()).state(), v1::ROLLOUT_STATE_COMPLETED);
  sim->Round();
  for (int i = 0; i < sim->size(); ++i) {
    const auto& d = sim->device(i);
    const bool targeted = berlin_rev3(i) || paris(i);
    EXPECT_EQ(d.running_version, targeted ? kNew : kOld) << Trace(d);
    if (!targeted) {
      EXPECT_FALSE(EverAssigned(d)) << Trace(d);
    } else {
      ASSERT_EQ(AssignedDeployments(d, false).size(), 1u) << Trace(d);
      for (const Answer& x : d.answers) {
        if (x.kind == Answer::Kind::kAssignment) {
          EXPECT_EQ(x.rollout_id, berlin_rev3(i) ? a.rollout_id() : b.rollout_id()) << Trace(d);
        }
      }
    }
  }
  // The listing agrees with what the devices report (written behind: allow a flush).
  std::this_thread::sleep_for(500ms);
  grpc::ClientContext ctx;
  Authorize(ctx, admin_);
  v1::ListDevicesRequest req;
  req.set_filter("running = \"mat-person@1.1.0\" AND site = \"berlin\"");
  req.set_page_size(1000);
  v1::ListDevicesResponse resp;
  s = fleet_->ListDevices(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << Describe(s);
  std::set<std::string> listed, expected;
  for (const auto& d : resp.devices()) listed.insert(d.hardware_id());
  for (int i = 0; i < sim->size(); ++i) {
    if (berlin_rev3(i)) expected.insert(sim->device(i).hardware_id);
  }
  EXPECT_EQ(listed, expected);
}

// ------------------------------------------------------------------------------------------
// 7. Who may do what.

class FleetAuthorization : public FleetE2E {
 protected:
  struct Enrolled {
    grpc::Status status;
    std::string device_id, token;
  };
  Enrolled Enroll(v1::DeviceService::Stub& stub, const std::string& enrollment_token, const std::string& hw) {
    grpc::ClientContext ctx;
    v1::EnrollRequest req;
    req.set_enrollment_token(enrollment_token);
    req.set_hardware_id(hw);
    *req.mutable_attributes() = FleetSimulator::DefaultAttributes(0);
    v1::EnrollResponse resp;
    Enrolled e;
    e.status = stub.Enroll(&ctx, req, &resp);
    e.device_id = resp.device_id();
    e.token = resp.device_token();
    return e;
  }
  grpc::Status CheckIn(v1::DeviceService::Stub& stub, const std::string& token, v1::CheckInResponse* resp) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::CheckInRequest req;
    auto* running = req.add_running();
    running->set_model(kModel);
    running->set_version(kOld);
    running->set_digest(digests_[kOld]);
    return stub.CheckIn(&ctx, req, resp);
  }
  grpc::Status Report(v1::DeviceService::Stub& stub, const std::string& token, const std::string& deployment,
                      v1::DeploymentStep step, std::string* field = nullptr) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::DeploymentReport req;
    req.set_deployment_id(deployment);
    req.set_step(step);
    v1::ReportDeploymentResponse resp;
    grpc::Status s = stub.ReportDeployment(&ctx, req, &resp);
    if (field) *field = FieldOf(ctx);
    return s;
  }
  v1::Device GetDevice(const std::string& device_id) {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::GetDeviceRequest req;
    req.set_device_id(device_id);
    v1::Device d;
    grpc::Status s = fleet_->GetDevice(&ctx, req, &d);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return d;
  }
  // Checks in until the server (its rollout snapshot may lag a moment) hands out an assignment.
  std::optional<v1::Assignment> WaitForAssignment(v1::DeviceService::Stub& stub, const std::string& token) {
    for (int i = 0; i < 50; ++i) {
      v1::CheckInResponse resp;
      grpc::Status s = CheckIn(stub, token, &resp);
      EXPECT_TRUE(s.ok()) << Describe(s);
      if (resp.has_assignment()) return resp.assignment();
      std::this_thread::sleep_for(100ms);
    }
    return std::nullopt;
  }
};

TEST_F(FleetAuthorization, DevicesPublishersAndEnrollmentTokensStayInTheirLane) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  auto device_stub = v1::DeviceService::NewStub(servers_[0]->Channel());

  // Enrollment tokens: used up after max_uses, useless once revoked.
  auto limited = EnrollmentToken("two-uses", 2);
  Enrolled a = Enroll(*device_stub, limited.token(), "hw-a");
  ASSERT_TRUE(a.status.ok()) << Describe(a.status);
  Enrolled b = Enroll(*device_stub, limited.token(), "hw-b");
  ASSERT_TRUE(b.status.ok()) << Describe(b.status);
  Enrolled c = Enroll(*device_stub, limited.token(), "hw-c");
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(c.status);
  auto revoked = EnrollmentToken("revoked");
  {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::RevokeEnrollmentTokenRequest req;
    req.set_id(revoked.id());
    v1::EnrollmentToken t;
    grpc::Status s = fleet_->RevokeEnrollmentToken(&ctx, req, &t);
    ASSERT_TRUE(s.ok()) << Describe(s);
  }
  Enrolled d = Enroll(*device_stub, revoked.token(), "hw-d");
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(d.status);
  EXPECT_EQ(Enroll(*device_stub, "mfe_" + std::string(64, '0'), "hw-e").status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // A device credential is for DeviceService (and downloads) only.
  {
    grpc::ClientContext ctx;
    Authorize(ctx, a.token);
    v1::ListDevicesResponse resp;
    EXPECT_EQ(fleet_->ListDevices(&ctx, v1::ListDevicesRequest(), &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, a.token);
    v1::Rollout r;
    EXPECT_EQ(fleet_->CreateRollout(&ctx, RolloutRequest({100}), &r).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    const std::string bytes = testing::PatternBytes(1024, 9);
    grpc::Status s = Push(testing::ManifestFor(kModel, "2.0.0", bytes), bytes, a.token);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, a.token);
    v1::CreateTokenRequest req;
    req.set_name("escalate");
    req.set_role(v1::ROLE_ADMIN);
    v1::CreateTokenResponse resp;
    EXPECT_EQ(admin_stub_->CreateToken(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }

  // Publishers may create rollouts only where the server allows it.
  const std::string publisher = TokenFor(v1::ROLE_PUBLISHER, "ci");
  v1::Rollout rollout;
  grpc::Status s = CreateRollout(RolloutRequest({100}, 1.0, 0), &rollout, publisher);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
  {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::ListRolloutsResponse list;
    ASSERT_TRUE(fleet_->ListRollouts(&ctx, v1::ListRolloutsRequest(), &list).ok());
    EXPECT_EQ(list.rollouts_size(), 0);
  }
  ASSERT_NO_FATAL_FAILURE(StartServer({"--allow-publisher-rollouts"}));
  UseServer(1);
  s = CreateRollout(RolloutRequest({100}, 1.0, 0), &rollout, publisher);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_NE(rollout.created_by().find("ci"), std::string::npos) << rollout.created_by();
  UseServer(0);

  // Deployments belong to their device.
  auto dep_a = WaitForAssignment(*device_stub, a.token);
  auto dep_b = WaitForAssignment(*device_stub, b.token);
  ASSERT_TRUE(dep_a && dep_b);
  ASSERT_NE(dep_a->deployment_id(), dep_b->deployment_id());
  std::string field;
  s = Report(*device_stub, b.token, dep_a->deployment_id(), v1::DEPLOYMENT_STEP_DOWNLOADING, &field);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(s);
  EXPECT_EQ(field, "deployment_id");
  s = Report(*device_stub, b.token, dep_a->deployment_id(), v1::DEPLOYMENT_STEP_FAILED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(s);
  EXPECT_EQ(Report(*device_stub, a.token, "dep-987654321", v1::DEPLOYMENT_STEP_DOWNLOADING).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A device downloads what it was assigned, and nothing else (not by alias either).
  auto first_chunk = [&](const std::string& token, const v1::VersionRef& ref) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::DownloadRequest req;
    *req.mutable_ref() = ref;
    req.set_length(16);
    auto reader = registry_->Download(&ctx, req);
    v1::DownloadChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  v1::VersionRef assigned;
  assigned.set_model(kModel);
  assigned.set_version(dep_a->download_version());
  s = first_chunk(a.token, assigned);
  EXPECT_TRUE(s.ok()) << Describe(s);
  v1::VersionRef other = assigned;
  other.set_version(kOld);
  ASSERT_NE(other.version(), assigned.version());
  s = first_chunk(a.token, other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
  EXPECT_NE(s.error_message().find(std::string(kModel) + "@" + kOld), std::string::npos) << s.error_message();
  v1::VersionRef by_alias;
  by_alias.set_model(kModel);
  by_alias.set_alias("production");
  s = first_chunk(a.token, by_alias);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
  s = first_chunk(admin_, other);
  EXPECT_TRUE(s.ok()) << "admins download any version: " << Describe(s);

  v1::Device device_a = GetDevice(a.device_id);
  EXPECT_EQ(device_a.current_deployment_id(), dep_a->deployment_id());
  EXPECT_EQ(device_a.current_deployment_step(), v1::DEPLOYMENT_STEP_ASSIGNED) << "another device changed it";

  // The deployment state machine (deployment_state.cc).
  using S = v1::DeploymentStep;
  const std::string dep = dep_a->deployment_id();
  struct Case {
    S step;
    grpc::StatusCode expected;
  };
  const Case cases[] = {
      {S::DEPLOYMENT_STEP_INSTALLING, grpc::StatusCode::FAILED_PRECONDITION},    // ASSIGNED -> INSTALLING
      {S::DEPLOYMENT_STEP_SELF_TESTING, grpc::StatusCode::FAILED_PRECONDITION},  // ASSIGNED -> SELF_TESTING
      {S::DEPLOYMENT_STEP_ASSIGNED, grpc::StatusCode::INVALID_ARGUMENT},         // the server's to set
      {S::DEPLOYMENT_STEP_TIMED_OUT, grpc::StatusCode::INVALID_ARGUMENT},
      {S::DEPLOYMENT_STEP_DOWNLOADING, grpc::StatusCode::OK},
      {S::DEPLOYMENT_STEP_DOWNLOADING, grpc::StatusCode::OK},                    // progress
      {S::DEPLOYMENT_STEP_SELF_TESTING, grpc::StatusCode::FAILED_PRECONDITION},  // skips VERIFYING, INSTALLING
      {S::DEPLOYMENT_STEP_ACTIVATED, grpc::StatusCode::FAILED_PRECONDITION},     // from DOWNLOADING
      {S::DEPLOYMENT_STEP_VERIFYING, grpc::StatusCode::OK},
      {S::DEPLOYMENT_STEP_DOWNLOADING, grpc::StatusCode::FAILED_PRECONDITION},   // backwards
      {S::DEPLOYMENT_STEP_INSTALLING, grpc::StatusCode::OK},
      {S::DEPLOYMENT_STEP_SELF_TESTING, grpc::StatusCode::OK},
      {S::DEPLOYMENT_STEP_ACTIVATED, grpc::StatusCode::OK},
      {S::DEPLOYMENT_STEP_ACTIVATED, grpc::StatusCode::FAILED_PRECONDITION},     // terminal
      {S::DEPLOYMENT_STEP_FAILED, grpc::StatusCode::FAILED_PRECONDITION},        // terminal
      {S::DEPLOYMENT_STEP_DOWNLOADING, grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const Case& c : cases) {
    s = Report(*device_stub, a.token, dep, c.step);
    EXPECT_EQ(s.error_code(), c.expected) << devsim::StepShortName(c.step) << ": " << Describe(s);
  }
  EXPECT_EQ(GetDevice(a.device_id).current_deployment_step(), v1::DEPLOYMENT_STEP_ACTIVATED);

  // A rejected device's credential stops working; its unfinished deployment is cancelled.
  auto other_replica = v1::DeviceService::NewStub(servers_[1]->Channel());
  {
    v1::CheckInResponse warm;  // the other replica now has b's credential in its caches
    s = CheckIn(*other_replica, b.token, &warm);
    ASSERT_TRUE(s.ok()) << Describe(s);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, admin_);
    v1::SetDeviceAdmissionRequest req;
    req.set_device_id(b.device_id);
    req.set_admission(v1::DEVICE_ADMISSION_REJECTED);
    req.set_reason("stolen");
    v1::Device out;
    s = fleet_->SetDeviceAdmission(&ctx, req, &out);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(out.admission(), v1::DEVICE_ADMISSION_REJECTED);
  }
  v1::CheckInResponse resp;
  s = CheckIn(*device_stub, b.token, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(s);
  s = Report(*device_stub, b.token, dep_b->deployment_id(), v1::DEPLOYMENT_STEP_DOWNLOADING);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(s);
  // ... also on the other replica (its token cache may hold it for up to 5 s).
  grpc::StatusCode on_other = grpc::StatusCode::OK;
  for (int i = 0; i < 70 && on_other == grpc::StatusCode::OK; ++i) {
    v1::CheckInResponse r;
    on_other = CheckIn(*other_replica, b.token, &r).error_code();
    if (on_other == grpc::StatusCode::OK) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(on_other, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetDevice(b.device_id).current_deployment_step(), v1::DEPLOYMENT_STEP_CANCELLED);
  // ... and it cannot enroll its way back in.
  auto fresh = EnrollmentToken("fresh");
  Enrolled again = Enroll(*device_stub, fresh.token(), "hw-b");
  EXPECT_EQ(again.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(again.status);
  // The accepted device still works.
  s = CheckIn(*device_stub, a.token, &resp);
  EXPECT_TRUE(s.ok()) << Describe(s);
}

// ------------------------------------------------------------------------------------------
// 8. Bad rollout requests create nothing.

TEST_F(FleetE2E, InvalidRolloutRequestsNameTheFieldAndCreateNothing) {
  ASSERT_NO_FATAL_FAILURE(SetUpFleet());
  struct Case {
    std::string name;
    std::function<void(v1::CreateRolloutRequest&)> mutate;
    grpc::StatusCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"unknown version", [](auto& r) { r.set_version("9.9.9"); }, grpc::StatusCode::NOT_FOUND, "version"},
      {"unknown model", [](auto& r) { r.set_model("no-such-model"); }, grpc::StatusCode::NOT_FOUND, "model"},
      {"empty target", [](auto& r) { r.set_target(""); }, grpc::StatusCode::INVALID_ARGUMENT, "target"},
      {"blank target", [](auto& r) { r.set_target("   "); }, grpc::StatusCode::INVALID_ARGUMENT, "target"},
      {"unparsable target", [](auto& r) { r.set_target("site = "); }, grpc::StatusCode::INVALID_ARGUMENT, "target"},
      {"unknown target field", [](auto& r) { r.set_target("color = \"red\""); }, grpc::StatusCode::INVALID_ARGUMENT,
       "target"},
      {"filter-only target field", [](auto& r) { r.set_target("admission = ACCEPTED"); },
       grpc::StatusCode::INVALID_ARGUMENT, "target"},
      {"no stages", [](auto& r) { r.clear_stages(); }, grpc::StatusCode::INVALID_ARGUMENT, "stages"},
      {"percent out of order", [](auto& r) { r.mutable_stages(1)->set_percent(5); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stages[1].percent"},
      {"percent repeated", [](auto& r) { r.mutable_stages(1)->set_percent(10); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stages[1].percent"},
      {"percent above 100", [](auto& r) { r.mutable_stages(2)->set_percent(150); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stages[2].percent"},
      {"percent zero", [](auto& r) { r.mutable_stages(0)->set_percent(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "stages[0].percent"},
      {"success_threshold 0", [](auto& r) { r.mutable_stages(0)->set_success_threshold(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "stages[0].success_threshold"},
      {"success_threshold 1.5", [](auto& r) { r.mutable_stages(1)->set_success_threshold(1.5); },
       grpc::StatusCode::INVALID_ARGUMENT, "stages[1].success_threshold"},
      {"max_failure_ratio 2", [](auto& r) { r.mutable_stages(0)->mutable_gates()->set_max_failure_ratio(2); },
       grpc::StatusCode::INVALID_ARGUMENT, "stages[0].gates.max_failure_ratio"},
      {"max_error_ratio -0.1", [](auto& r) { r.mutable_stages(2)->mutable_gates()->set_max_error_ratio(-0.1); },
       grpc::StatusCode::INVALID_ARGUMENT, "stages[2].gates.max_error_ratio"},
      {"max_p95_latency_ms NaN",
       [](auto& r) { r.mutable_stages(0)->mutable_gates()->set_max_p95_latency_ms(std::numeric_limits<double>::quiet_NaN()); },
       grpc::StatusCode::INVALID_ARGUMENT, "stages[0].gates.max_p95_latency_ms"},
      {"deployment timeout 8 days", [](auto& r) { r.set_deployment_timeout_seconds(8 * 24 * 3600); },
       grpc::StatusCode::INVALID_ARGUMENT, "deployment_timeout_seconds"},
      {"bad version syntax", [](auto& r) { r.set_version("one"); }, grpc::StatusCode::INVALID_ARGUMENT, "version"},
  };
  for (const Case& c : cases) {
    v1::CreateRolloutRequest req = RolloutRequest({10, 50, 100});
    c.mutate(req);
    std::string field;
    grpc::Status s = CreateRollout(req, nullptr, "", &field);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << Describe(s);
    EXPECT_EQ(field, c.field) << c.name << ": " << Describe(s);
    if (c.code == grpc::StatusCode::INVALID_ARGUMENT) {
      EXPECT_NE(s.error_message().find(c.field), std::string::npos) << c.name << ": " << s.error_message();
    }
  }
  grpc::ClientContext ctx;
  Authorize(ctx, admin_);
  v1::ListRolloutsResponse list;
  grpc::Status s = fleet_->ListRollouts(&ctx, v1::ListRolloutsRequest(), &list);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(list.rollouts_size(), 0) << list.ShortDebugString();

  // The same request, valid, is accepted (so the cases above failed for their one defect).
  v1::Rollout rollout;
  s = CreateRollout(RolloutRequest({10, 50, 100}), &rollout);
  EXPECT_TRUE(s.ok()) << Describe(s);
}

}  // namespace
}  // namespace modelfleet
