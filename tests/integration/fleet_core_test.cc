// The fleet core against a real PostgreSQL 15: cohort buckets computed in SQL equal the ones
// computed in C++, stage cohorts are sticky supersets, conflicting rollouts are refused or
// queued, transitions happen exactly once under races, bad requests create nothing, and the
// check-in path's caches (devices, credentials) are loaded at start and follow changes made
// through another replica.
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "auth/token_store.h"
#include "core_fixture.h"
#include "fleet/check_in.h"
#include "modelfleet/crypto.h"
#include "fleet/cohort.h"
#include "fleet/deployment_state.h"
#include "fleet/device_registry.h"
#include "fleet/device_selector.h"
#include "fleet/rollout_manager.h"
#include "fleet/write_behind.h"
#include "libpq_leak_suppression.h"
#include "postgres_environment.h"
#include "process.h"
#include "registry/registry.h"
#include "test_data.h"

namespace modelfleet::fleet {
namespace {

using testing::Cluster;

[[maybe_unused]] ::testing::Environment* const kPostgres =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

class FleetCoreTest : public testing::CoreFixture {
 protected:
  FleetCoreTest() : CoreFixture("fleet_core") {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(CoreFixture::SetUp());
    ASSERT_NO_FATAL_FAILURE(CreateMatPerson());
  }

  // Inserts `n` accepted devices "dev-<i>" at `site`; returns their device ids.
  std::vector<std::string> AddDevices(int n, const std::string& site, int first = 0) {
    std::vector<std::string> ids;
    Status s = pool_->Write([&](db::Tx& tx) -> Status {
      for (int i = first; i < first + n; ++i) {
        std::string id = "dev-" + site + "-" + std::to_string(i);
        MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
            "INSERT INTO devices (device_id, hardware_id, admission, site) VALUES ($1, $2, 'ACCEPTED', $3)",
            {id, "hw-" + id, site})));
        ids.push_back(id);
      }
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ids;
  }

  // Inserts `n` accepted devices "dev-<site>-<i>" with a device credential each (an api_tokens
  // row; the secret is never needed: CheckInService is handed the principal directly) and
  // their attributes as reported; returns their principals.
  std::vector<auth::Principal> AddDevicesWithCredentials(int n, const std::string& site) {
    std::vector<auth::Principal> principals;
    Status s = pool_->Write([&](db::Tx& tx) -> Status {
      for (int i = 0; i < n; ++i) {
        std::string id = "dev-" + site + "-" + std::to_string(i);
        MF_ASSIGN_OR_RETURN(auto token, tx.Exec(
            "INSERT INTO api_tokens (name, role, token_hash, created_by) VALUES ($1, 'device', $2, 'test') RETURNING id",
            {id, Sha256Hex(id)}));
        v1::DeviceAttributes attributes;
        attributes.set_site(site);
        MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
            "INSERT INTO devices (device_id, hardware_id, admission, site, attributes, token_id) "
            "VALUES ($1, $2, 'ACCEPTED', $3, $4, $5)",
            {id, "hw-" + id, site, db::Bytes{attributes.SerializeAsString()}, token[0].Int(0)})));
        principals.push_back({token[0].Int(0), id, v1::ROLE_DEVICE});
      }
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return principals;
  }

  // Moves a RUNNING rollout from stage 0 to stage 1 as the controller would; the rollout after.
  std::optional<v1::Rollout> AdvanceFromStage0(const v1::Rollout& rollout) {
    auto row_id = RolloutManager::ParseRolloutId(rollout.rollout_id(), "rollout_id");
    if (!row_id) return std::nullopt;
    auto advanced = rollouts_->Transition(
        *row_id, 0, {RolloutVerb::kAdvance, {v1::ROLLOUT_STATE_RUNNING}, "stage_advanced", "test", "", true});
    if (!advanced || !*advanced) return std::nullopt;
    auto after = rollouts_->Get(rollout.rollout_id());
    if (!after) return std::nullopt;
    return *after;
  }

  v1::CreateRolloutRequest Request(const std::string& target, std::vector<std::pair<double, uint32_t>> stages) {
    v1::CreateRolloutRequest r;
    r.set_model("mat-person");
    r.set_version("1.1.0");
    r.set_target(target);
    for (auto [percent, min_devices] : stages) {
      auto* s = r.add_stages();
      s->set_percent(percent);
      s->set_min_devices(min_devices);
      s->set_success_threshold(0.9);
    }
    return r;
  }

  // device_id -> devices.id, for every device.
  std::map<std::string, int64_t> DeviceRowIds() {
    std::map<std::string, int64_t> out;
    Status s = pool_->Read([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT device_id, id FROM devices"));
      for (const auto& r : rows) out[r.Str(0)] = r.Int(1);
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  int64_t CountRollouts() {
    int64_t n = -1;
    EXPECT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT count(*) FROM rollouts"));
                  n = rows[0].Int(0);
                  return Status::Ok();
                }).ok());
    return n;
  }

};

TEST_F(FleetCoreTest, BucketsInSqlEqualBucketsInCpp) {
  std::vector<std::string> ids = AddDevices(300, "berlin");
  for (const std::string rollout : {"ro-1", "ro-42", "ro-9999999"}) {
    std::map<std::string, double> in_sql;
    ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT d.device_id, " +
                                                         CohortBucketSql("d.device_id", "$1::text") + " FROM devices d",
                                                         {rollout}));
                  for (const auto& row : rows) in_sql[row.Str(0)] = row.Double(1);
                  return Status::Ok();
                }).ok());
    ASSERT_EQ(in_sql.size(), ids.size());
    double min = 1, max = 0;
    for (const auto& id : ids) {
      double bucket = CohortBucket(id, rollout);
      EXPECT_EQ(in_sql[id], bucket) << id << " in " << rollout;  // exactly, not approximately
      min = std::min(min, bucket);
      max = std::max(max, bucket);
    }
    // Spread over [0, 1): not all in one corner.
    EXPECT_LT(min, 0.05);
    EXPECT_GT(max, 0.95);
  }
}

TEST_F(FleetCoreTest, StageCohortsHonourMinimumsAndAreStickySupersets) {
  std::vector<std::string> berlin = AddDevices(200, "berlin");
  AddDevices(50, "paris");
  auto created = rollouts_->Create(Request("site = \"berlin\"", {{10, 30}, {50, 0}, {100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  ASSERT_EQ(created->state(), v1::ROLLOUT_STATE_RUNNING);
  auto members = [&](double cutoff) {
    std::set<std::string> in;
    for (const auto& id : berlin) {
      if (CohortBucket(id, created->rollout_id()) < cutoff) in.insert(id);
    }
    return in;
  };
  // Stage 0: 10% of 200 is 20, but at least 30 devices.
  std::set<std::string> stage0 = members(created->cohort_cutoff());
  EXPECT_EQ(stage0.size(), 30u);
  EXPECT_EQ(created->progress().devices(), 30u);  // the SQL count agrees with the C++ membership

  std::optional<v1::Rollout> stage1 = AdvanceFromStage0(*created);
  ASSERT_TRUE(stage1);
  std::set<std::string> members1 = members(stage1->cohort_cutoff());
  EXPECT_EQ(members1.size(), 100u);
  EXPECT_EQ(stage1->progress().devices(), 100u);
  EXPECT_TRUE(std::includes(members1.begin(), members1.end(), stage0.begin(), stage0.end()));

  // A device enrolling later lands in its own bucket: inside iff below the cutoff.
  std::vector<std::string> late = AddDevices(40, "berlin", 1000);
  size_t late_inside = 0;
  for (const auto& id : late) late_inside += CohortBucket(id, created->rollout_id()) < stage1->cohort_cutoff();
  auto after = rollouts_->Get(created->rollout_id());
  ASSERT_TRUE(after);
  EXPECT_EQ(after->progress().devices(), 100u + late_inside);
}

TEST_F(FleetCoreTest, TransitionsHappenExactlyOnceUnderRaces) {
  AddDevices(100, "berlin");
  auto created = rollouts_->Create(Request("*", {{20, 0}, {100, 0}}), admin_);
  ASSERT_TRUE(created);
  int64_t row_id = *RolloutManager::ParseRolloutId(created->rollout_id(), "rollout_id");
  std::atomic<int> made{0};
  std::vector<std::thread> racers;
  for (int i = 0; i < 8; ++i) {
    racers.emplace_back([&] {
      auto r = rollouts_->Transition(
          row_id, 0, {RolloutVerb::kAdvance, {v1::ROLLOUT_STATE_RUNNING}, "stage_advanced", "racer", "", true});
      if (r && *r) ++made;
    });
  }
  for (auto& t : racers) t.join();
  EXPECT_EQ(made.load(), 1);
  auto events = rollouts_->EventsAfter(created->rollout_id(), 0);
  ASSERT_TRUE(events);
  int advances = 0;
  for (const auto& [id, e] : *events) advances += e.kind() == "stage_advanced";
  EXPECT_EQ(advances, 1);
  auto now = rollouts_->Get(created->rollout_id());
  ASSERT_TRUE(now);
  EXPECT_EQ(now->current_stage(), 1u);
}

TEST_F(FleetCoreTest, OverlappingRolloutsAreRefusedOrQueued) {
  AddDevices(20, "berlin");
  AddDevices(20, "paris");
  auto first = rollouts_->Create(Request("site = \"berlin\"", {{100, 0}}), admin_);
  ASSERT_TRUE(first);
  auto clash = rollouts_->Create(Request("site in (\"berlin\", \"paris\")", {{100, 0}}), admin_);
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(clash.error().message().find(first->rollout_id()), std::string::npos) << clash.error().message();
  auto other_site = rollouts_->Create(Request("site = \"paris\"", {{100, 0}}), admin_);
  ASSERT_TRUE(other_site) << other_site.error().ToString();
  auto queue_request = Request("*", {{100, 0}});
  queue_request.set_queue_if_conflicting(true);
  auto queued = rollouts_->Create(queue_request, admin_);
  ASSERT_TRUE(queued) << queued.error().ToString();
  EXPECT_EQ(queued->state(), v1::ROLLOUT_STATE_QUEUED);
  EXPECT_EQ(queued->progress().devices(), 0u);
}

TEST_F(FleetCoreTest, BadRolloutRequestsCreateNothing) {
  AddDevices(5, "berlin");
  struct Bad {
    std::string name;
    v1::CreateRolloutRequest request;
    StatusCode code;
    std::string field;
  };
  std::vector<Bad> bad;
  auto base = Request("*", {{10, 0}, {100, 0}});
  {
    auto r = base;
    r.set_version("9.9.9");
    bad.push_back({"unknown version", r, StatusCode::kNotFound, "version"});
  }
  {
    auto r = base;
    r.set_target("");
    bad.push_back({"empty target", r, StatusCode::kInvalidArgument, "target"});
  }
  {
    auto r = base;
    r.set_target("site = ");
    bad.push_back({"selector does not parse", r, StatusCode::kInvalidArgument, "target"});
  }
  {
    auto r = base;
    r.mutable_stages(1)->set_percent(5);
    bad.push_back({"percentages out of order", r, StatusCode::kInvalidArgument, "stages[1].percent"});
  }
  {
    auto r = base;
    r.mutable_stages(1)->set_percent(120);
    bad.push_back({"percentage above 100", r, StatusCode::kInvalidArgument, "stages[1].percent"});
  }
  {
    auto r = base;
    r.mutable_stages(0)->set_success_threshold(1.5);
    bad.push_back({"threshold above 1", r, StatusCode::kInvalidArgument, "stages[0].success_threshold"});
  }
  {
    auto r = base;
    r.mutable_stages(0)->mutable_gates()->set_max_failure_ratio(2);
    bad.push_back({"failure ratio above 1", r, StatusCode::kInvalidArgument, "stages[0].gates.max_failure_ratio"});
  }
  {
    auto r = base;
    r.clear_stages();
    bad.push_back({"no stages", r, StatusCode::kInvalidArgument, "stages"});
  }
  for (const Bad& b : bad) {
    auto result = rollouts_->Create(b.request, admin_);
    ASSERT_FALSE(result) << b.name;
    EXPECT_EQ(result.error().code(), b.code) << b.name << ": " << result.error().ToString();
    EXPECT_EQ(result.error().field(), b.field) << b.name << ": " << result.error().ToString();
  }
  EXPECT_EQ(CountRollouts(), 0);
}

}  // namespace
}  // namespace modelfleet::fleet

namespace modelfleet::fleet {
namespace {

bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

TEST_F(FleetCoreTest, CheckInCacheIsLoadedAtStartAndFollowsChangesFromOtherReplicas) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(60, "berlin");
  CheckInOptions options;
  options.device_poll_interval = std::chrono::milliseconds(100);
  CheckInService a(*pool_, options);  // two replicas on one database
  CheckInService b(*pool_, options);
  ASSERT_TRUE(Eventually([&] { return a.Stats().devices_preloaded && b.Stats().devices_preloaded; }));
  EXPECT_EQ(b.Stats().devices, devices.size());

  // Every first check-in after the start is served from the loaded cache.
  for (const auto& d : devices) {
    auto answer = b.CheckIn(d, {});
    ASSERT_TRUE(answer) << answer.error().ToString();
    EXPECT_TRUE(answer->keep_current());
  }
  EXPECT_EQ(b.Stats().device_misses, 0u);
  EXPECT_EQ(b.Stats().device_hits, devices.size());

  // A device reports new attributes to replica a; replica b, which cached the old ones, puts
  // it into a rollout targeting the new site without waiting for a cache TTL.
  auto created = rollouts_->Create(Request("site = \"munich\"", {{100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  b.RolloutsChanged();
  auto before = b.CheckIn(devices[0], {});
  ASSERT_TRUE(before);
  EXPECT_TRUE(before->keep_current()) << "berlin is not targeted yet";
  v1::CheckInRequest moved;
  moved.mutable_attributes()->set_site("munich");
  ASSERT_TRUE(a.CheckIn(devices[0], moved));
  v1::CheckInResponse after;
  ASSERT_TRUE(Eventually([&] {
    auto r = b.CheckIn(devices[0], {});
    if (r) after = *r;
    return r && r->has_assignment();
  })) << "replica b never saw the new site";
  EXPECT_EQ(after.assignment().rollout_id(), created->rollout_id());
  EXPECT_EQ(after.assignment().download_version(), "1.1.0");
  // Asked again, the same deployment (read, not created twice).
  auto again = b.CheckIn(devices[0], {});
  ASSERT_TRUE(again && again->has_assignment());
  EXPECT_EQ(again->assignment().deployment_id(), after.assignment().deployment_id());

  // An admission change made elsewhere (here: straight in the database) reaches the cache too.
  ASSERT_TRUE(pool_->Write([&](db::Tx& tx) -> Status {
                return StatusOf(tx.Exec("UPDATE devices SET admission = 'REJECTED' WHERE token_id = $1",
                                        {devices[1].token_id}));
              }).ok());
  ASSERT_TRUE(Eventually([&] {
    auto r = b.CheckIn(devices[1], {});
    return r && r->admission() == v1::DEVICE_ADMISSION_REJECTED && r->keep_current();
  })) << "replica b kept serving a rejected device from its cache";
}

TEST_F(FleetCoreTest, EnrolmentsAndAdmissionChangesTouchOnlyTheirOwnCacheEntry) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(50, "berlin");
  CheckInOptions options;
  options.device_poll_interval = std::chrono::hours(1);  // only this replica's own changes count here
  CheckInService check_in(*pool_, options);
  auth::TokenStore tokens(*pool_);
  DeviceRegistry registry(*pool_, tokens);
  registry.SetDeviceListener([&](int64_t device_row_id) { check_in.DeviceChanged(device_row_id); });
  ASSERT_TRUE(Eventually([&] { return check_in.Stats().devices_preloaded; }));
  for (const auto& d : devices) ASSERT_TRUE(check_in.CheckIn(d, {}));
  ASSERT_EQ(check_in.Stats().device_misses, 0u);

  // A new mat enrolls: it is cached at once, and no other device leaves the cache.
  v1::CreateEnrollmentTokenRequest token_request;
  token_request.set_name("line-3");
  token_request.set_auto_accept(true);
  auto enrollment = registry.CreateEnrollmentToken(token_request, admin_);
  ASSERT_TRUE(enrollment) << enrollment.error().ToString();
  v1::EnrollRequest enroll;
  enroll.set_enrollment_token(enrollment->token());
  enroll.set_hardware_id("hw-new-mat");
  enroll.mutable_attributes()->set_site("berlin");
  auto enrolled = registry.Enroll(enroll);
  ASSERT_TRUE(enrolled) << enrolled.error().ToString();
  auto principal = tokens.Authenticate(enrolled->device_token());
  ASSERT_TRUE(principal) << principal.error().ToString();
  auto first = check_in.CheckIn(*principal, {});
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->admission(), v1::DEVICE_ADMISSION_ACCEPTED);
  for (const auto& d : devices) ASSERT_TRUE(check_in.CheckIn(d, {}));
  EXPECT_EQ(check_in.Stats().device_misses, 0u) << "an enrolment sent devices back to the database";
  EXPECT_EQ(check_in.Stats().devices, devices.size() + 1);

  // Rejecting it drops its entry (its credential is revoked) and only its entry.
  v1::SetDeviceAdmissionRequest reject;
  reject.set_device_id(enrolled->device_id());
  reject.set_admission(v1::DEVICE_ADMISSION_REJECTED);
  ASSERT_TRUE(registry.SetAdmission(reject, admin_));
  auto after = check_in.CheckIn(*principal, {});
  ASSERT_FALSE(after) << "a rejected device was served from the cache";
  EXPECT_EQ(after.error().code(), StatusCode::kPermissionDenied);
  for (const auto& d : devices) ASSERT_TRUE(check_in.CheckIn(d, {}));
  EXPECT_EQ(check_in.Stats().device_misses, 1u);
  EXPECT_EQ(check_in.Stats().devices, devices.size());
}

TEST_F(FleetCoreTest, DevicesNewToAReplicaAreReadInBatches) {
  CheckInOptions options;
  options.device_poll_interval = std::chrono::hours(1);
  CheckInService check_in(*pool_, options);
  ASSERT_TRUE(Eventually([&] { return check_in.Stats().devices_preloaded; }));
  // Added after the load: every first check-in is a miss.
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(320, "berlin");
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < devices.size(); i += 32) {
        auto answer = check_in.CheckIn(devices[i], {});
        if (!answer || answer->admission() != v1::DEVICE_ADMISSION_ACCEPTED) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  const auto stats = check_in.Stats();
  EXPECT_EQ(stats.device_misses, devices.size());
  EXPECT_LT(stats.device_miss_reads, stats.device_misses) << "concurrent misses were read one by one";
  EXPECT_GE(stats.device_miss_reads, 1u);
  // Each is cached now.
  for (const auto& d : devices) ASSERT_TRUE(check_in.CheckIn(d, {}));
  EXPECT_EQ(check_in.Stats().device_misses, devices.size());
}

TEST_F(FleetCoreTest, DeploymentsUnderWayAreAnsweredFromMemoryOnEveryReplica) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(40, "berlin");
  auto created = rollouts_->Create(Request("*", {{100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  CheckInOptions options;
  options.device_poll_interval = std::chrono::milliseconds(100);
  CheckInService a(*pool_, options);  // two replicas on one database
  CheckInService b(*pool_, options);
  ASSERT_TRUE(Eventually([&] {
    return a.Stats().deployments_loaded && b.Stats().deployments_loaded && a.Stats().devices_preloaded &&
           b.Stats().devices_preloaded;
  }));
  v1::CheckInRequest on_old;
  on_old.add_running()->set_model("mat-person");
  on_old.mutable_running(0)->set_version("1.0.0");
  std::map<std::string, std::string> deployment_of;  // device -> deployment id
  for (const auto& d : devices) {
    auto answer = a.CheckIn(d, on_old);
    ASSERT_TRUE(answer) << answer.error().ToString();
    ASSERT_TRUE(answer->has_assignment());
    deployment_of[d.name] = answer->assignment().deployment_id();
  }
  // Asked again on either replica: the same deployments, from memory.
  ASSERT_TRUE(Eventually([&] { return b.Stats().deployments >= devices.size(); })) << "replica b never saw them";
  for (auto* replica : {&a, &b}) {
    for (const auto& d : devices) {
      auto answer = replica->CheckIn(d, on_old);
      ASSERT_TRUE(answer && answer->has_assignment());
      EXPECT_EQ(answer->assignment().deployment_id(), deployment_of[d.name]);
    }
    EXPECT_EQ(replica->Stats().deployment_reads, 0u);
  }

  // A device fails on replica b: replica a stops handing its assignment out.
  v1::DeploymentReport failed;
  failed.set_deployment_id(deployment_of[devices[0].name]);
  failed.set_step(v1::DEPLOYMENT_STEP_FAILED);
  failed.set_reason("self-test failed");
  ASSERT_TRUE(b.ReportDeployment(devices[0], failed).ok());
  auto on_b = b.CheckIn(devices[0], on_old);
  ASSERT_TRUE(on_b);
  EXPECT_TRUE(on_b->keep_current()) << "the replica that took the report must know at once";
  ASSERT_TRUE(Eventually([&] {
    auto r = a.CheckIn(devices[0], on_old);
    return r && r->keep_current();
  })) << "replica a kept handing out a failed deployment";

  // An abort on this replica's manager cancels the rest; once told, check-ins stop at once.
  rollouts_->SetListeners({.rollouts_changed = [&] { a.RolloutsChanged(); },
                           .deployments_changed = [&] { a.DeploymentsChanged(); }});
  v1::RolloutActionRequest abort;
  abort.set_rollout_id(created->rollout_id());
  ASSERT_TRUE(rollouts_->Abort(abort, admin_));
  auto after_abort = a.CheckIn(devices[1], on_old);
  ASSERT_TRUE(after_abort);
  EXPECT_TRUE(after_abort->keep_current());
  EXPECT_EQ(a.Stats().deployment_reads, 0u);
  rollouts_->SetListeners({});
}

TEST_F(FleetCoreTest, LaggingReplicaKeepsGivingAnAssignmentUnderWay) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(80, "berlin");
  auto created = rollouts_->Create(Request("*", {{10, 0}, {100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  CheckInOptions fresh_options;
  CheckInOptions lagging_options;
  lagging_options.refresh_interval = std::chrono::hours(1);  // never notices the stage change
  CheckInService fresh(*pool_, fresh_options);
  CheckInService lagging(*pool_, lagging_options);
  ASSERT_TRUE(lagging.CheckIn(devices[0], {}));  // loads its snapshot: stage 0

  std::optional<v1::Rollout> stage1 = AdvanceFromStage0(*created);
  ASSERT_TRUE(stage1);
  // A device that joined with stage 1 (outside stage 0's cohort).
  const auth::Principal* joined = nullptr;
  for (const auto& d : devices) {
    double bucket = CohortBucket(d.name, created->rollout_id());
    if (bucket >= created->cohort_cutoff() && bucket < stage1->cohort_cutoff()) {
      joined = &d;
      break;
    }
  }
  ASSERT_NE(joined, nullptr);
  fresh.RolloutsChanged();
  auto assigned = fresh.CheckIn(*joined, {});
  ASSERT_TRUE(assigned) << assigned.error().ToString();
  ASSERT_TRUE(assigned->has_assignment());

  // The device, busy downloading, next checks in on the lagging replica: same assignment.
  v1::CheckInRequest busy;
  busy.set_agent_state(v1::AGENT_STATE_DOWNLOADING);
  auto on_lagging = lagging.CheckIn(*joined, busy);
  ASSERT_TRUE(on_lagging) << on_lagging.error().ToString();
  ASSERT_TRUE(on_lagging->has_assignment()) << "the lagging replica told a device mid-deployment to keep its model";
  EXPECT_EQ(on_lagging->assignment().deployment_id(), assigned->assignment().deployment_id());
  EXPECT_EQ(on_lagging->assignment().download_version(), assigned->assignment().download_version());
  EXPECT_EQ(on_lagging->assignment().manifest().digest(), assigned->assignment().manifest().digest());
  EXPECT_EQ(on_lagging->assignment().rollout_id(), created->rollout_id());
  EXPECT_EQ(on_lagging->assignment().timeout_seconds(), assigned->assignment().timeout_seconds());
}

TEST_F(FleetCoreTest, TokenCacheIsLoadedAtStartAndRevocationsReachOtherReplicas) {
  auth::TokenStore issuer(*pool_);
  std::vector<std::string> secrets;
  std::vector<int64_t> ids;
  for (int i = 0; i < 40; ++i) {
    v1::CreateTokenRequest request;
    request.set_name("device-" + std::to_string(i));
    request.set_role(v1::ROLE_DEVICE);
    auto created = issuer.Create(request, "test");
    ASSERT_TRUE(created) << created.error().ToString();
    secrets.push_back(created->secret());
    ids.push_back(created->token().id());
  }
  auth::TokenStore replica(*pool_, std::chrono::minutes(10));
  replica.StartCacheSync(std::chrono::milliseconds(100));
  ASSERT_TRUE(Eventually([&] { return replica.Stats().preloaded; }));
  for (const auto& secret : secrets) ASSERT_TRUE(replica.Authenticate(secret));
  EXPECT_EQ(replica.Stats().misses, 0u);
  EXPECT_EQ(replica.Stats().hits, secrets.size());

  ASSERT_TRUE(issuer.Revoke(ids[3], "test"));
  ASSERT_TRUE(Eventually([&] { return !replica.Authenticate(secrets[3]); }))
      << "a token revoked on another replica kept working";
  auto refused = replica.Authenticate(secrets[3]);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(replica.Authenticate(secrets[4])) << "revoking one token dropped another";
}

// ---------------------------------------------------------------------------------------------
// What devices send: validated at the edge, written behind, one device never blinds the others

v1::VersionTelemetry Telemetry(const std::string& version, uint64_t inferences) {
  v1::VersionTelemetry t;
  t.set_model("mat-person");
  t.set_version(version);
  t.set_inference_count(inferences);
  t.mutable_latency()->set_p50_ms(1);
  t.mutable_latency()->set_p95_ms(2);
  t.mutable_latency()->set_p99_ms(3);
  t.set_mean_confidence(0.9);
  (*t.mutable_class_histogram())["empty"] = inferences;
  return t;
}

google::protobuf::RepeatedPtrField<v1::VersionTelemetry> One(const v1::VersionTelemetry& t) {
  google::protobuf::RepeatedPtrField<v1::VersionTelemetry> out;
  *out.Add() = t;
  return out;
}

// Regression: a device whose telemetry the database refused (bigint out of range) made every
// batch fail and be re-queued forever, so no device's status or telemetry was written again.
TEST_F(FleetCoreTest, WriteBehindDropsARowTheDatabaseRefusesAndWritesTheRest) {
  std::vector<std::string> ids = AddDevices(41, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  // The poisoned device already sits near bigint's limit: adding anything overflows.
  ASSERT_TRUE(pool_->Write([&](db::Tx& tx) -> Status {
                return StatusOf(tx.Exec(
                    "INSERT INTO version_telemetry (device_id, model, version, inference_count, error_count, "
                    "p95_weighted_ms, class_histogram, confidence_sum) VALUES ($1, 'mat-person', '1.0.0', $2, 0, 0, "
                    "'{}', 0)",
                    {row_of[ids[7]], std::numeric_limits<int64_t>::max() - 5}));
              }).ok());
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::hours(1)});  // flushed by hand
  for (const std::string& id : ids) {
    writer.Record(row_of[id], id, {"mat-person", "1.0.0", "", "IDLE"}, One(Telemetry("1.0.0", 10)));
  }
  Status flushed = writer.Flush();
  EXPECT_TRUE(flushed.ok()) << flushed.ToString();
  WriteBehind::Stats stats = writer.GetStats();
  EXPECT_EQ(stats.rows_dropped, 1u);
  EXPECT_EQ(stats.pending_telemetry, 0u);
  EXPECT_EQ(stats.pending_statuses, 0u);
  int64_t written = 0, seen = 0, poisoned = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT count(*) FROM version_telemetry WHERE inference_count = 10"));
                written = rows[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto seen_rows, tx.Exec(
                    "SELECT count(*) FROM devices WHERE last_seen IS NOT NULL AND agent_state = 'IDLE'"));
                seen = seen_rows[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto p, tx.Exec("SELECT inference_count FROM version_telemetry WHERE device_id = $1",
                                                    {row_of[ids[7]]}));
                poisoned = p[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(written, 40);  // every other device's telemetry
  EXPECT_EQ(seen, 41);     // and every status, the poisoned device's too
  EXPECT_EQ(poisoned, std::numeric_limits<int64_t>::max() - 5);
  // Dropped, not retried: the next flush has nothing to do.
  EXPECT_TRUE(writer.Flush().ok());
  EXPECT_EQ(writer.GetStats().rows_dropped, 1u);
}

TEST_F(FleetCoreTest, WriteBehindKeepsRowsWhileTheDatabaseIsDownAndBoundsItsMemory) {
  std::vector<std::string> ids = AddDevices(30, "paris");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::hours(1), .max_pending_telemetry = 20});
  ASSERT_TRUE(Cluster()->Stop()) << Cluster()->last_error();
  for (const std::string& id : ids) {  // oldest first
    writer.Record(row_of[id], id, {"mat-person", "1.0.0", "", "IDLE"}, One(Telemetry("1.0.0", 5)));
  }
  // Records that land while the flush fails merge with what it puts back.
  writer.Record(row_of[ids.back()], ids.back(), {"mat-person", "1.0.0", "", "IDLE"}, One(Telemetry("1.0.0", 5)));
  Status down = writer.Flush();
  ASSERT_TRUE(Cluster()->StartAgain()) << Cluster()->last_error();
  EXPECT_EQ(down.code(), StatusCode::kUnavailable) << down.ToString();
  WriteBehind::Stats stats = writer.GetStats();
  EXPECT_EQ(stats.pending_statuses, 30u);  // statuses are one per device: never dropped
  EXPECT_LE(stats.pending_telemetry, 20u);
  EXPECT_GE(stats.telemetry_dropped, 10u);
  EXPECT_EQ(stats.rows_dropped, 0u);

  Status flushed = writer.Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  int64_t devices_with_telemetry = 0, summed = 0, oldest_kept = 0, newest = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT count(*), coalesce(sum(inference_count), 0) FROM version_telemetry"));
                devices_with_telemetry = rows[0].Int(0);
                summed = rows[0].Int(1);
                MF_ASSIGN_OR_RETURN(auto first, tx.Exec(
                    "SELECT count(*) FROM version_telemetry vt JOIN devices d ON d.id = vt.device_id WHERE d.device_id = $1",
                    {ids[0]}));
                oldest_kept = first[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto last, tx.Exec(
                    "SELECT inference_count FROM version_telemetry vt JOIN devices d ON d.id = vt.device_id "
                    "WHERE d.device_id = $1", {ids.back()}));
                newest = last.empty() ? 0 : last[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(devices_with_telemetry, static_cast<int64_t>(stats.pending_telemetry));
  EXPECT_EQ(summed, devices_with_telemetry * 5 + 5);
  EXPECT_EQ(newest, 10) << "the newest device's two records, merged";
  EXPECT_EQ(oldest_kept, 0) << "the oldest telemetry should have gone first";
  // Per-device entries were dropped to bound memory; the windows kept every record.
  int64_t in_windows = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT coalesce(sum(inference_count), 0) FROM telemetry_windows"));
                in_windows = rows[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(in_windows, 31 * 5);
}

// Telemetry windows: several devices and several replicas add to the same few rows, each
// number once, per rollout arm.
TEST_F(FleetCoreTest, WriteBehindWindowsSumAcrossDevicesAndReplicasWithoutDoubleCounting) {
  std::vector<std::string> ids = AddDevices(40, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  WriteBehind a(*pool_, {.flush_interval = std::chrono::hours(1)});  // two replicas, flushed by hand
  WriteBehind b(*pool_, {.flush_interval = std::chrono::hours(1)});
  const std::vector<std::pair<std::string, int64_t>> in_rollout_7 = {{"other-model", 3}, {"mat-person", 7}};
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < ids.size(); ++i) {
      WriteBehind& replica = (i + static_cast<size_t>(round)) % 2 ? a : b;  // devices move between replicas
      google::protobuf::RepeatedPtrField<v1::VersionTelemetry> telemetry;
      v1::VersionTelemetry t = Telemetry(i % 4 == 0 ? "1.1.0" : "1.0.0", 10);
      t.set_error_count(1);
      *telemetry.Add() = t;
      replica.Record(row_of[ids[i]], ids[i], {"mat-person", "1.0.0", "", "IDLE"}, telemetry,
                     i < 20 ? in_rollout_7 : std::vector<std::pair<std::string, int64_t>>{});
    }
    // Flushing one replica in the middle of the other's records changes nothing.
    ASSERT_TRUE(a.Flush().ok());
  }
  ASSERT_TRUE(a.Flush().ok());
  ASSERT_TRUE(b.Flush().ok());
  ASSERT_TRUE(b.Flush().ok());  // nothing left: adds nothing

  struct Sums {
    int64_t inferences, errors, reports, empty, windows;
    double p95;
  };
  std::map<std::pair<int64_t, std::string>, Sums> by_arm;
  int64_t per_device = 0, per_device_rows = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
                    "SELECT rollout_id, version, sum(inference_count)::bigint, sum(error_count)::bigint, "
                    "sum(reports)::bigint, sum((class_histogram->>'empty')::bigint)::bigint, count(*), "
                    "sum(p95_weighted_ms) / sum(inference_count) FROM telemetry_windows WHERE model = 'mat-person' "
                    "GROUP BY 1, 2"));
                for (const auto& r : rows) {
                  by_arm[{r.Int(0), r.Str(1)}] = {r.Int(2), r.Int(3), r.Int(4), r.Int(5), r.Int(6), r.Double(7)};
                }
                MF_ASSIGN_OR_RETURN(auto devices, tx.Exec(
                    "SELECT coalesce(sum(inference_count), 0)::bigint, count(*) FROM version_telemetry"));
                per_device = devices[0].Int(0);
                per_device_rows = devices[0].Int(1);
                return Status::Ok();
              }).ok());
  // Devices 0-19 in rollout 7's arm (5 of them on 1.1.0), 20-39 in arm 0 (5 on 1.1.0); three
  // rounds of 10 inferences and 1 error each.
  ASSERT_EQ(by_arm.size(), 4u);
  for (int64_t arm : {int64_t{0}, int64_t{7}}) {
    const Sums& old_version = by_arm[{arm, "1.0.0"}];
    const Sums& new_version = by_arm[{arm, "1.1.0"}];
    EXPECT_EQ(old_version.inferences, 15 * 3 * 10) << "arm " << arm;
    EXPECT_EQ(old_version.errors, 15 * 3) << "arm " << arm;
    EXPECT_EQ(old_version.reports, 15 * 3) << "arm " << arm;
    EXPECT_EQ(old_version.empty, 15 * 3 * 10) << "arm " << arm;
    EXPECT_EQ(new_version.inferences, 5 * 3 * 10) << "arm " << arm;
    EXPECT_DOUBLE_EQ(new_version.p95, 2.0) << "arm " << arm;
    // One row per minute the test spanned (normally one), not one per device or report.
    EXPECT_LE(old_version.windows, 2) << "arm " << arm;
  }
  EXPECT_EQ(per_device, 40 * 3 * 10);
  EXPECT_EQ(per_device_rows, 40);
}

// The per-device rows (status and version_telemetry) are written with the status: a new or
// changed status at the next flush, an unchanged one only after status_refresh; the windows
// on every flush.
TEST_F(FleetCoreTest, WriteBehindWritesADevicesRowsOnlyWithItsStatus) {
  std::vector<std::string> ids = AddDevices(10, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  constexpr auto kRefresh = std::chrono::seconds(3);
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::milliseconds(20), .status_refresh = kRefresh});
  const WriteBehind::DeviceStatus idle{"mat-person", "1.0.0", "", "IDLE"};
  auto record_all = [&] {
    for (const auto& id : ids) writer.Record(row_of[id], id, idle, One(Telemetry("1.0.0", 10)));
  };
  auto written = [&](const std::string& sql) {
    int64_t n = -1;
    EXPECT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                  MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(sql));
                  n = rows[0].Int(0);
                  return Status::Ok();
                }).ok());
    return n;
  };
  const auto first = std::chrono::steady_clock::now();
  record_all();  // first sight: written at the next flush
  ASSERT_TRUE(Eventually([&] { return writer.GetStats().telemetry_rows_written == 10; }));
  EXPECT_EQ(writer.GetStats().statuses_written, 10u);

  for (int i = 0; i < 4; ++i) {  // unchanged, well within status_refresh
    record_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  // (Windows leave the pending map before their transaction commits: wait for the rows.)
  ASSERT_TRUE(Eventually([&] {
    return writer.GetStats().pending_windows == 0 &&
           written("SELECT coalesce(sum(inference_count), 0) FROM telemetry_windows") == 500;
  })) << "windows are written every flush";
  ASSERT_LT(std::chrono::steady_clock::now() - first, kRefresh) << "the machine is too slow for this test";
  WriteBehind::Stats steady = writer.GetStats();
  EXPECT_EQ(steady.statuses_written, 10u);
  EXPECT_EQ(steady.telemetry_rows_written, 10u) << "a device's telemetry was written without its status";
  EXPECT_EQ(steady.pending_telemetry, 10u);
  EXPECT_EQ(steady.records, 50u);
  EXPECT_EQ(written("SELECT sum(inference_count) FROM version_telemetry"), 100);

  // A changed status goes at the next flush, with that device's telemetry only.
  writer.Record(row_of[ids[0]], ids[0], {"mat-person", "1.0.0", "", "DOWNLOADING"}, One(Telemetry("1.0.0", 10)));
  // (Statuses and telemetry are two transactions of one flush: wait for both.)
  ASSERT_TRUE(Eventually([&] {
    const auto stats = writer.GetStats();
    return stats.statuses_written == 11 && stats.telemetry_rows_written >= 11;
  }));
  EXPECT_EQ(writer.GetStats().telemetry_rows_written, 11u);
  EXPECT_EQ(written("SELECT count(*) FROM devices WHERE agent_state = 'DOWNLOADING'"), 1);
  EXPECT_EQ(written("SELECT inference_count FROM version_telemetry WHERE device_id = " + std::to_string(row_of[ids[0]])),
            60);

  // Once status_refresh has passed, the next check-in writes status and telemetry again (for
  // ids[0], IDLE again, because it changed). The telemetry of the devices silent since their
  // status was written may have gone a moment earlier, with the sweep for idle devices.
  std::this_thread::sleep_until(first + kRefresh + std::chrono::milliseconds(100));
  record_all();
  // (Statuses and telemetry are two transactions of one flush, and telemetry leaves the
  // pending map before its transaction commits: wait for what is counted after the commit.)
  ASSERT_TRUE(Eventually([&] {
    const auto stats = writer.GetStats();
    return stats.statuses_written == 21 && stats.telemetry_rows_written >= 21 && stats.pending_telemetry == 0;
  }));
  EXPECT_EQ(written("SELECT sum(inference_count) FROM version_telemetry"), 610);

  // Flush writes everything, due or not.
  record_all();
  ASSERT_TRUE(writer.Flush().ok());
  EXPECT_EQ(writer.GetStats().pending_telemetry, 0u);
  EXPECT_EQ(written("SELECT sum(inference_count) FROM version_telemetry"), 710);
  EXPECT_EQ(written("SELECT sum(inference_count) FROM telemetry_windows"), 710);
}

// A replica that loaded the devices' statuses does not rewrite an unchanged one on the
// device's first visit; a changed one, or one older than status_refresh, it does.
TEST_F(FleetCoreTest, WriteBehindKnowWrittenSuppressesRewritingAnUnchangedStatus) {
  std::vector<std::string> ids = AddDevices(4, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::hours(1), .status_refresh = std::chrono::seconds(600)});
  const WriteBehind::DeviceStatus idle{"mat-person", "1.0.0", "", "IDLE"};
  const auto now = std::chrono::system_clock::now();
  writer.KnowWritten(row_of[ids[0]], idle, now - std::chrono::seconds(30));  // fresh, same status
  writer.KnowWritten(row_of[ids[1]], idle, now - std::chrono::seconds(700));  // older than status_refresh
  writer.KnowWritten(row_of[ids[2]], {"mat-person", "0.9.0", "", "IDLE"}, now - std::chrono::seconds(30));
  // ids[3]: nothing known.
  for (const auto& id : ids) writer.Record(row_of[id], id, idle, One(Telemetry("1.0.0", 10)));
  EXPECT_EQ(writer.GetStats().pending_statuses, 3u);
  // Older knowledge than what was just queued does not undo it.
  writer.KnowWritten(row_of[ids[2]], {"mat-person", "0.9.0", "", "IDLE"}, now - std::chrono::seconds(60));
  writer.Record(row_of[ids[2]], ids[2], idle, One(Telemetry("1.0.0", 10)));
  ASSERT_TRUE(writer.Flush().ok());
  std::set<std::string> seen;
  int64_t telemetry = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT device_id FROM devices WHERE last_seen IS NOT NULL"));
                for (const auto& r : rows) seen.insert(r.Str(0));
                MF_ASSIGN_OR_RETURN(auto t, tx.Exec("SELECT sum(inference_count) FROM version_telemetry"));
                telemetry = t[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(seen, (std::set<std::string>{ids[1], ids[2], ids[3]}));
  EXPECT_EQ(telemetry, 50) << "Flush writes every device's telemetry, status written or not";
  EXPECT_EQ(writer.GetStats().statuses_written, 3u);
}

// Poison rows stay isolated in every table: a window the database refuses is dropped alone,
// and so is one device's telemetry row; everything else is written.
TEST_F(FleetCoreTest, WriteBehindDropsAWindowTheDatabaseRefusesAndWritesTheRest) {
  std::vector<std::string> ids = AddDevices(12, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  // The windows of 1.0.0 (arm 0) for this minute and the next already sit near bigint's limit.
  ASSERT_TRUE(pool_->Write([&](db::Tx& tx) -> Status {
                MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
                    "INSERT INTO telemetry_windows (model, version, window_start, inference_count) "
                    "SELECT 'mat-person', '1.0.0', date_trunc('minute', now()) + m * interval '1 minute', $1 "
                    "FROM generate_series(0, 1) AS m",
                    {std::numeric_limits<int64_t>::max() - 5})));
                return StatusOf(tx.Exec(
                    "INSERT INTO version_telemetry (device_id, model, version, inference_count) "
                    "VALUES ($1, 'mat-person', '1.1.0', $2)",
                    {row_of[ids[3]], std::numeric_limits<int64_t>::max() - 5}));
              }).ok());
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::hours(1)});
  for (const auto& id : ids) {
    google::protobuf::RepeatedPtrField<v1::VersionTelemetry> telemetry;
    *telemetry.Add() = Telemetry("1.0.0", 10);
    *telemetry.Add() = Telemetry("1.1.0", 10);
    writer.Record(row_of[id], id, {"mat-person", "1.1.0", "", "IDLE"}, telemetry, {{"mat-person", 5}});
    writer.Record(row_of[id], id, {"mat-person", "1.1.0", "", "IDLE"}, One(Telemetry("1.0.0", 10)));
  }
  Status flushed = writer.Flush();
  EXPECT_TRUE(flushed.ok()) << flushed.ToString();
  EXPECT_EQ(writer.GetStats().rows_dropped, 2u);  // the arm-0 window of 1.0.0, and ids[3]'s 1.1.0 row
  int64_t arm5 = 0, arm0_rows = 0, seen = 0, per_device = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto a, tx.Exec(
                    "SELECT sum(inference_count) FROM telemetry_windows WHERE rollout_id = 5"));
                arm5 = a[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto z, tx.Exec(
                    "SELECT count(*) FROM telemetry_windows WHERE rollout_id = 0 AND inference_count < 1000"));
                arm0_rows = z[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto d, tx.Exec("SELECT count(*) FROM devices WHERE last_seen IS NOT NULL"));
                seen = d[0].Int(0);
                MF_ASSIGN_OR_RETURN(auto t, tx.Exec(
                    "SELECT count(*) FROM version_telemetry WHERE inference_count = 20 AND version = '1.0.0' "
                    "OR inference_count = 10 AND version = '1.1.0'"));
                per_device = t[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(arm5, 12 * 20);    // rollout 5's windows of both versions
  EXPECT_EQ(arm0_rows, 0);     // arm 0 only had 1.0.0, whose window was refused
  EXPECT_EQ(seen, 12);         // every status
  EXPECT_EQ(per_device, 12 + 11);  // every device's 1.0.0 row, and all but ids[3]'s 1.1.0 row
  EXPECT_TRUE(writer.Flush().ok());
  EXPECT_EQ(writer.GetStats().rows_dropped, 2u) << "dropped rows are not retried";
}

// The stage figures come from the rollout's arm of the windows: the new version's telemetry
// from its cohort, compared with what the same cohort ran before; other arms do not count.
TEST_F(FleetCoreTest, RolloutProgressReadsTheRolloutsArmOfTheTelemetryWindows) {
  std::vector<std::string> ids = AddDevices(20, "berlin");
  std::map<std::string, int64_t> row_of = DeviceRowIds();
  auto created = rollouts_->Create(Request("*", {{100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  const int64_t rollout = *RolloutManager::ParseRolloutId(created->rollout_id(), "rollout_id");
  WriteBehind writer(*pool_, {.flush_interval = std::chrono::hours(1)});
  auto entry = [](const std::string& version, uint64_t inferences, uint64_t errors, double p95,
                  std::map<std::string, uint64_t> histogram) {
    v1::VersionTelemetry t = Telemetry(version, inferences);
    t.set_error_count(errors);
    t.mutable_latency()->set_p95_ms(p95);
    t.mutable_class_histogram()->clear();
    for (const auto& [k, v] : histogram) (*t.mutable_class_histogram())[k] = v;
    return t;
  };
  for (size_t i = 0; i < 10; ++i) {  // the cohort: before, then on the new version
    const std::string& id = ids[i];
    writer.Record(row_of[id], id, {"mat-person", "1.0.0", "", "IDLE"},
                  One(entry("1.0.0", 100, 0, 10, {{"empty", 50}, {"sitting", 50}})), {{"mat-person", rollout}});
    writer.Record(row_of[id], id, {"mat-person", "1.1.0", "", "IDLE"},
                  One(entry("1.1.0", 100, i < 5 ? 10 : 0, i < 5 ? 30 : 10, {{"empty", 100}})),
                  {{"mat-person", rollout}});
  }
  for (size_t i = 10; i < 20; ++i) {  // outside the cohort, even on 1.1.0: not this rollout's figures
    writer.Record(row_of[ids[i]], ids[i], {"mat-person", "1.1.0", "", "IDLE"},
                  One(entry("1.1.0", 1000, 1000, 500, {{"lying", 1000}})));
  }
  ASSERT_TRUE(writer.Flush().ok());
  auto got = rollouts_->Get(created->rollout_id());
  ASSERT_TRUE(got) << got.error().ToString();
  const v1::StageProgress& p = got->progress();
  EXPECT_EQ(p.inferences(), 1000u);
  EXPECT_DOUBLE_EQ(p.error_ratio(), 50.0 / 1000);
  EXPECT_DOUBLE_EQ(p.p95_latency_ms(), 20.0);
  EXPECT_DOUBLE_EQ(p.class_shift(), 0.5);  // all "empty" against half "empty", half "sitting"
}

TEST_F(FleetCoreTest, CheckInWithoutBlockingAnswersFromMemoryOrDoesNothing) {
  CheckInOptions options;
  options.device_poll_interval = std::chrono::hours(1);
  CheckInService check_in(*pool_, options);
  ASSERT_TRUE(Eventually([&] { return check_in.Stats().devices_preloaded && check_in.Stats().deployments_loaded; }));
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(2, "berlin");  // after the load: not cached
  v1::CheckInRequest request;
  request.add_running()->set_model("mat-person");
  request.mutable_running(0)->set_version("1.0.0");
  *request.add_telemetry() = Telemetry("1.0.0", 10);
  auto records = [&] { return check_in.Stats().write_behind.records; };

  // Not cached: no answer, and nothing happened.
  EXPECT_FALSE(check_in.CheckInWithoutBlocking(devices[0], request).has_value());
  EXPECT_EQ(check_in.Stats().device_misses, 0u);
  EXPECT_EQ(records(), 0u);
  // The blocking form reads it; from then on it is answered from memory.
  ASSERT_TRUE(check_in.CheckIn(devices[0], request));
  EXPECT_EQ(records(), 1u);
  auto fast = check_in.CheckInWithoutBlocking(devices[0], request);
  ASSERT_TRUE(fast.has_value());
  ASSERT_TRUE(*fast) << fast->error().ToString();
  EXPECT_TRUE((*fast)->keep_current());
  EXPECT_EQ(records(), 2u);

  // A deployment to create: no answer, nothing created, nothing recorded.
  auto created = rollouts_->Create(Request("*", {{100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  check_in.RolloutsChanged();
  EXPECT_FALSE(check_in.CheckInWithoutBlocking(devices[0], request).has_value()) << "the snapshot must reload first";
  ASSERT_TRUE(check_in.CheckIn(devices[1], request));  // reloads it (and creates devices[1]'s)
  const uint64_t before = records();
  const uint64_t hits = check_in.Stats().device_hits;
  EXPECT_FALSE(check_in.CheckInWithoutBlocking(devices[0], request).has_value());
  EXPECT_EQ(records(), before);
  EXPECT_EQ(check_in.Stats().device_hits, hits) << "a check-in that did not happen was counted";
  int64_t deployments = -1;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT count(*) FROM deployments"));
                deployments = rows[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(deployments, 1);
  // Once created, handing it out again needs no database.
  auto assigned = check_in.CheckIn(devices[0], request);
  ASSERT_TRUE(assigned && assigned->has_assignment());
  auto again = check_in.CheckInWithoutBlocking(devices[0], request);
  ASSERT_TRUE(again.has_value() && *again && (*again)->has_assignment());
  EXPECT_EQ((*again)->assignment().deployment_id(), assigned->assignment().deployment_id());
}

TEST_F(FleetCoreTest, CheckInKeepsAnUnknownAgentStateAndDropsOnlyTheBadTelemetry) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(2, "berlin");
  CheckInService check_in(*pool_, {});
  v1::CheckInRequest request;
  request.set_agent_state(static_cast<v1::AgentState>(99));  // an agent newer than this server
  auto* running = request.add_running();
  running->set_model("mat-person");
  running->set_version("1.0.0");
  *request.add_telemetry() = Telemetry("1.0.0", 10);
  v1::VersionTelemetry bad = Telemetry("1.1.0", 10);
  bad.mutable_latency()->set_p95_ms(1e308);
  *request.add_telemetry() = bad;
  auto answer = check_in.CheckIn(devices[0], request);
  ASSERT_TRUE(answer) << answer.error().ToString();
  EXPECT_TRUE(answer->keep_current());
  EXPECT_EQ(check_in.Stats().telemetry_rejected, 1u);
  ASSERT_TRUE(check_in.Flush().ok());
  std::string state;
  int64_t rows = 0;
  ASSERT_TRUE(pool_->Read([&](db::Tx& tx) -> Status {
                MF_ASSIGN_OR_RETURN(auto r, tx.Exec("SELECT agent_state FROM devices WHERE device_id = $1", {devices[0].name}));
                state = r[0].Str(0);
                MF_ASSIGN_OR_RETURN(auto t, tx.Exec("SELECT count(*) FROM version_telemetry"));
                rows = t[0].Int(0);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(state, "UNKNOWN");
  EXPECT_EQ(rows, 1);  // 1.0.0's entry; 1.1.0's was dropped
}

// A seeded mutation loop over what devices send (the fuzz target of the check-in and report
// handlers' input, bounded for CI): valid requests with extreme numbers, unknown enum values,
// long strings, and bytes flipped in their wire form. Every answer must be a clean OK or a
// named error, and nothing a device sent may make the write-behind fail afterwards.
TEST_F(FleetCoreTest, MutatedCheckInsAndReportsGetCleanAnswersAndNeverPoisonTheWriteBehind) {
  std::vector<auth::Principal> devices = AddDevicesWithCredentials(40, "berlin");
  auto created = rollouts_->Create(Request("*", {{100, 0}}), admin_);
  ASSERT_TRUE(created) << created.error().ToString();
  CheckInService check_in(*pool_, {.flush_interval = std::chrono::hours(1)});
  // Real deployment ids to aim reports at.
  std::vector<std::string> deployments;
  for (const auto& d : devices) {
    auto a = check_in.CheckIn(d, {});
    ASSERT_TRUE(a) << a.error().ToString();
    if (a->has_assignment()) deployments.push_back(a->assignment().deployment_id());
  }
  ASSERT_FALSE(deployments.empty());

  std::mt19937_64 rng(20261203);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const double doubles[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-320, 1e308, -1e308, 3.6e6, 3.6e6 + 1,
                            std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                            std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::denorm_min()};
  const uint64_t counts[] = {0, 1, 10, 999'999'999, 1'000'000'000, 1'000'000'001, uint64_t{1} << 53,
                             static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), ~uint64_t{0}};
  const std::string strings[] = {"", "1.0.0", "1.1.0", "mat-person", std::string(5000, 'x'), "1.0.0\n",
                                 std::string("a\0b", 3), "\xff\xfe", "'; DROP TABLE devices; --", "9.9.9-rc.1+b"};
  auto mutate_telemetry = [&](v1::VersionTelemetry& t) {
    switch (pick(9)) {
      case 0: t.set_inference_count(counts[pick(std::size(counts))]); break;
      case 1: t.set_error_count(counts[pick(std::size(counts))]); break;
      case 2: t.mutable_latency()->set_p95_ms(doubles[pick(std::size(doubles))]); break;
      case 3: t.mutable_latency()->set_p50_ms(doubles[pick(std::size(doubles))]); break;
      case 4: t.set_mean_confidence(doubles[pick(std::size(doubles))]); break;
      case 5: (*t.mutable_class_histogram())[strings[pick(std::size(strings))]] = counts[pick(std::size(counts))]; break;
      case 6: t.set_version(strings[pick(std::size(strings))]); break;
      case 7: t.set_model(strings[pick(std::size(strings))]); break;
      default: t.mutable_latency()->set_p99_ms(doubles[pick(std::size(doubles))]); break;
    }
  };
  auto flip_bytes = [&](auto& message) {
    std::string wire = message.SerializeAsString();
    if (wire.empty()) return;
    for (size_t n = 1 + pick(4); n > 0; --n) wire[pick(wire.size())] ^= static_cast<char>(1 + pick(255));
    std::remove_reference_t<decltype(message)> parsed;
    if (parsed.ParseFromString(wire)) message = parsed;
  };

  int ok = 0, refused = 0;
  const auto stop_at = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 3000 && std::chrono::steady_clock::now() < stop_at; ++i) {
    const auth::Principal& device = devices[pick(devices.size())];
    v1::CheckInRequest request;
    auto* running = request.add_running();
    running->set_model("mat-person");
    running->set_version(pick(2) ? "1.0.0" : "1.1.0");
    request.set_agent_state(static_cast<v1::AgentState>(static_cast<int>(pick(12)) - 2));
    for (size_t n = pick(4); n > 0; --n) {
      v1::VersionTelemetry t = Telemetry(pick(2) ? "1.0.0" : "1.1.0", 1 + pick(100));
      for (size_t m = pick(3); m > 0; --m) mutate_telemetry(t);
      *request.add_telemetry() = t;
    }
    if (pick(4) == 0) running->set_version(strings[pick(std::size(strings))]);
    if (pick(3) == 0) flip_bytes(request);
    auto answer = check_in.CheckIn(device, request);
    if (answer) {
      ++ok;
    } else {
      ++refused;
      EXPECT_EQ(answer.error().code(), StatusCode::kInvalidArgument) << answer.error().ToString();
      EXPECT_FALSE(answer.error().field().empty()) << answer.error().ToString();
    }

    v1::DeploymentReport report;
    report.set_deployment_id(pick(5) ? deployments[pick(deployments.size())] : strings[pick(std::size(strings))]);
    report.set_step(static_cast<v1::DeploymentStep>(static_cast<int>(pick(14)) - 2));
    report.set_bytes_done(counts[pick(std::size(counts))]);
    if (pick(2)) report.set_reason(strings[pick(std::size(strings))]);
    if (pick(3) == 0) flip_bytes(report);
    Status reported = check_in.ReportDeployment(device, report);
    const StatusCode code = reported.code();
    EXPECT_TRUE(code == StatusCode::kOk || code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ||
                code == StatusCode::kFailedPrecondition)
        << reported.ToString();
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(refused, 100);
  EXPECT_GT(check_in.Stats().telemetry_rejected, 100u);
  Status flushed = check_in.Flush();
  EXPECT_TRUE(flushed.ok()) << flushed.ToString();
  EXPECT_EQ(check_in.Stats().write_behind.rows_dropped, 0u) << "the edge let a value through that the database refuses";
}

TEST(PrefixedIdTest, ParsesOnlyItsOwnPrefixAndPositiveNumbers) {
  EXPECT_EQ(DeploymentId(42), "dep-42");
  auto ok = ParseDeploymentId("dep-42", "deployment_id");
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 42);
  EXPECT_EQ(*RolloutManager::ParseRolloutId(RolloutManager::RolloutId(7), "rollout_id"), 7);
  for (const char* bad : {"ro-42", "dep-", "dep-0", "dep--1", "dep-+1", "dep-01", "dep-4x", "dep-99999999999999999999",
                          " dep-1", "DEP-1"}) {
    auto parsed = ParseDeploymentId(bad, "deployment_id");
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.error().ToString().find("deployment_id"), std::string::npos) << parsed.error().ToString();
  }
  EXPECT_FALSE(RolloutManager::ParseRolloutId("dep-3", "rollout_id"));
}

}  // namespace
}  // namespace modelfleet::fleet
