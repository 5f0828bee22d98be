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
#include "blob/local_blob_store.h"
#include "db/migrations.h"
#include "fleet/check_in.h"
#include "modelfleet/crypto.h"
#include "fleet/cohort.h"
#include "fleet/deployment_state.h"
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

class FleetCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Cluster(), nullptr);
    static int counter = 0;
    std::string db = "fleet_core_" + std::to_string(++counter);
    ASSERT_TRUE(Cluster()->CreateDatabase(db)) << Cluster()->last_error();
    auto pool = db::Pool::Open({.conninfo = Cluster()->conninfo(db), .size = 4});
    ASSERT_TRUE(pool) << pool.error().ToString();
    pool_ = std::move(*pool);
    ASSERT_TRUE(db::ApplyMigrations(*pool_, db::EmbeddedMigrations()).ok());
    auto store = blob::LocalBlobStore::Open(dir_.path() / "blobs");
    ASSERT_TRUE(store);
    store_ = std::move(*store);
    cache_ = std::make_unique<registry::ArtifactCache>(*store_, dir_.path() / "cache", 1 << 20);
    registry_ = std::make_unique<registry::Registry>(*pool_, *store_, *cache_, registry::RegistryOptions{});
    rollouts_ = std::make_unique<RolloutManager>(*pool_, RolloutOptions{});

    v1::CreateModelRequest create;
    create.mutable_model()->set_name("mat-person");
    ASSERT_TRUE(registry_->CreateModel(create, admin_));
    for (const char* version : {"1.0.0", "1.1.0"}) {
      std::string bytes = testing::PatternBytes(1000, version[2]);
      bool sent = false;
      auto pushed = registry_->PushVersion(
          testing::ManifestFor("mat-person", version, bytes),
          [&]() -> Expected<std::optional<std::string>> {
            if (sent) return std::optional<std::string>();
            sent = true;
            return std::optional<std::string>(bytes);
          },
          admin_);
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
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

  auth::Principal admin_{1, "admin", v1::ROLE_ADMIN};
  testing::TempDir dir_{"fleet-core"};
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<blob::BlobStore> store_;
  std::unique_ptr<registry::ArtifactCache> cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<RolloutManager> rollouts_;
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
  b.InvalidateRollouts();
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
  fresh.InvalidateRollouts();
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

  ASSERT_TRUE(issuer.Revoke(ids[3]));
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
