// The events outbox against a real PostgreSQL 15: changes made through the cores write exactly
// the events documented in server/events/event_types.h (type, subject, actor, payload keys), a
// failed change writes none, concurrent writers committing out of order never make a reader
// that resumes "after id" miss one, each role reads only its families, the notifier wakes
// waiters at commit, and retention prunes by age.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "auth/token_store.h"
#include "core_fixture.h"
#include "events/event_log.h"
#include "events/event_notifier.h"
#include "events/event_types.h"
#include "fleet/device_registry.h"
#include "fleet/rollout_controller.h"
#include "fleet/rollout_manager.h"
#include "libpq_leak_suppression.h"
#include "postgres_environment.h"
#include "process.h"
#include "registry/registry.h"
#include "test_data.h"

namespace modelfleet::events {
namespace {

using testing::Cluster;

[[maybe_unused]] ::testing::Environment* const kPostgres =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

std::vector<std::string> Keys(const v1::Event& e) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : e.payload().fields()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  return keys;
}

EventFilter Filter(std::vector<std::string> types, std::string kind = "", std::string id = "") {
  EventFilter filter;
  filter.types = std::move(types);
  filter.subject_kind = std::move(kind);
  filter.subject_id = std::move(id);
  return filter;
}

std::string Str(const v1::Event& e, const std::string& key) {
  auto it = e.payload().fields().find(key);
  return it == e.payload().fields().end() ? "<missing>" : it->second.string_value();
}

class EventsTest : public testing::CoreFixture {
 protected:
  EventsTest() : CoreFixture("events", 6) {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(CoreFixture::SetUp());
    tokens_ = std::make_unique<auth::TokenStore>(*pool_);
    log_ = std::make_unique<EventLog>(*pool_);
  }

  void Push(const std::string& model, const std::string& version) { PushVersion(model, version, publisher_); }

  // Every event after `after` that `role` may read.
  std::vector<v1::Event> All(int64_t after = 0, v1::Role role = v1::ROLE_ADMIN, const EventFilter& filter = {}) {
    std::vector<v1::Event> out;
    for (int i = 0; i < 1000; ++i) {
      auto page = log_->List(after, filter, role, 100);
      EXPECT_TRUE(page) << page.error().ToString();
      if (!page) return out;
      out.insert(out.end(), page->events.begin(), page->events.end());
      if (page->events.size() < 100) return out;
      after = page->next_after_id;
    }
    return out;
  }

  std::vector<std::string> Types(const std::vector<v1::Event>& events) {
    std::vector<std::string> types;
    for (const auto& e : events) types.push_back(e.type());
    return types;
  }

  int64_t Head() {
    auto head = log_->Head();
    EXPECT_TRUE(head) << head.error().ToString();
    return head.value_or(-1);
  }

  std::unique_ptr<auth::TokenStore> tokens_;
  std::unique_ptr<EventLog> log_;
  const auth::Principal publisher_{2, "ci", v1::ROLE_PUBLISHER};
};

TEST_F(EventsTest, RegistryChangesWriteTheirEventsAndIdempotentRepeatsWriteNone) {
  CreateModel("mat-person");
  Push("mat-person", "1.0.0");
  Push("mat-person", "1.0.0");  // an idempotent retry: no second event
  Push("mat-person", "1.1.0");
  v1::SetAliasRequest alias;
  alias.set_model("mat-person");
  alias.set_alias("prod");
  alias.set_version("1.0.0");
  alias.set_reason("first release");
  ASSERT_TRUE(registry_->SetAlias(alias, publisher_));
  ASSERT_TRUE(registry_->SetAlias(alias, publisher_));  // not moved: no event
  v1::DeleteAliasRequest del;
  del.set_model("mat-person");
  del.set_alias("prod");
  ASSERT_TRUE(registry_->DeleteAlias(del, admin_).ok());
  v1::ArchiveVersionRequest archive;
  archive.set_model("mat-person");
  archive.set_version("1.0.0");
  ASSERT_TRUE(registry_->ArchiveVersion(archive, admin_));
  ASSERT_TRUE(registry_->ArchiveVersion(archive, admin_));  // twice: one event
  v1::PurgeVersionRequest purge;
  purge.set_model("mat-person");
  purge.set_version("1.0.0");
  ASSERT_TRUE(registry_->PurgeVersion(purge, admin_));

  const auto events = All();
  EXPECT_EQ(Types(events), (std::vector<std::string>{"model.created", "version.pushed", "version.pushed", "alias.moved",
                                                      "alias.deleted", "version.archived", "version.purged"}));
  ASSERT_EQ(events.size(), 7u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].id(), static_cast<int64_t>(i + 1)) << "ids are gap-free from 1";
    EXPECT_EQ(events[i].subject_kind(), "model");
    EXPECT_EQ(events[i].subject_id(), "mat-person");
    EXPECT_GT(events[i].time().seconds(), 0);
  }
  EXPECT_EQ(events[0].actor(), "admin#1");
  EXPECT_EQ(events[1].actor(), "ci#2");
  EXPECT_EQ(Keys(events[1]),
            (std::vector<std::string>{"digest", "format", "signature_key_id", "size_bytes", "state", "version"}));
  EXPECT_EQ(Str(events[1], "version"), "1.0.0");
  EXPECT_EQ(Str(events[2], "version"), "1.1.0");
  EXPECT_EQ(Keys(events[3]), (std::vector<std::string>{"alias", "from_version", "reason", "to_version"}));
  EXPECT_EQ(Str(events[3], "to_version"), "1.0.0");
  EXPECT_EQ(Str(events[3], "reason"), "first release");
  EXPECT_EQ(Str(events[4], "from_version"), "1.0.0");
  EXPECT_EQ(events[4].actor(), "admin#1");
  EXPECT_EQ(Str(events[5], "version"), "1.0.0");
  EXPECT_EQ(Keys(events[6]), (std::vector<std::string>{"blob_deleted", "digest", "version"}));
  EXPECT_TRUE(events[6].payload().fields().at("blob_deleted").bool_value());
}

// A change that fails writes no event: the event is in the change's transaction.
TEST_F(EventsTest, AFailedChangeWritesNoEvent) {
  CreateModel("mat-person");
  Push("mat-person", "1.0.0");
  v1::SetAliasRequest alias;
  alias.set_model("mat-person");
  alias.set_alias("prod");
  alias.set_version("1.0.0");
  ASSERT_TRUE(registry_->SetAlias(alias, publisher_));
  const int64_t before = Head();

  alias.set_expected_current_version("9.9.9");  // compare-and-set that fails
  EXPECT_EQ(registry_->SetAlias(alias, publisher_).error().code(), StatusCode::kAborted);
  v1::ArchiveVersionRequest archive;  // an alias points at it
  archive.set_model("mat-person");
  archive.set_version("1.0.0");
  EXPECT_EQ(registry_->ArchiveVersion(archive, admin_).error().code(), StatusCode::kFailedPrecondition);
  v1::CreateModelRequest again;
  again.mutable_model()->set_name("mat-person");
  EXPECT_EQ(registry_->CreateModel(again, admin_).error().code(), StatusCode::kAlreadyExists);
  v1::CreateTokenRequest bad_token;
  bad_token.set_name("not a name!");
  bad_token.set_role(v1::ROLE_VIEWER);
  EXPECT_FALSE(tokens_->Create(bad_token, "admin#1"));
  // A rollback after the event was appended takes the event with it.
  Status rolled_back = pool_->Write([&](db::Tx& tx) -> Status {
    MF_RETURN_IF_ERROR(StatusOf(AppendEvent(tx, {"model.archived", "test", "model", "x", Payload()})));
    return Internal("changed my mind");
  });
  EXPECT_EQ(rolled_back.code(), StatusCode::kInternal);

  EXPECT_EQ(Head(), before);
  EXPECT_EQ(All(before).size(), 0u);
  // An unknown type is a programming error, refused before anything is written.
  Status unknown = pool_->Write([&](db::Tx& tx) -> Status {
    return StatusOf(AppendEvent(tx, {"model.exploded", "test", "model", "x", Payload()}));
  });
  EXPECT_EQ(unknown.code(), StatusCode::kInternal);
}

TEST_F(EventsTest, RolloutTransitionsAndGateVerdictsAreRecorded) {
  CreateModel("mat-person");
  Push("mat-person", "1.0.0");
  const int64_t start = Head();
  v1::CreateRolloutRequest create;
  create.set_model("mat-person");
  create.set_version("1.0.0");
  create.set_target("*");
  for (double percent : {50.0, 100.0}) {
    auto* stage = create.add_stages();
    stage->set_percent(percent);
    stage->set_success_threshold(1);
  }
  auto rollout = rollouts_->Create(create, admin_);
  ASSERT_TRUE(rollout) << rollout.error().ToString();
  auto row_id = fleet::RolloutManager::ParseRolloutId(rollout->rollout_id(), "rollout_id");
  ASSERT_TRUE(row_id);
  v1::RolloutActionRequest action;
  action.set_rollout_id(rollout->rollout_id());
  action.set_reason("looking");
  ASSERT_TRUE(rollouts_->Pause(action, admin_));
  ASSERT_TRUE(rollouts_->Resume(action, admin_));
  // The controller's judgements, as RolloutController makes them.
  ASSERT_TRUE(*rollouts_->Transition(*row_id, 0,
                                     {fleet::RolloutVerb::kAdvance, {v1::ROLLOUT_STATE_RUNNING}, "stage_advanced",
                                      "controller", "1 of 1 devices activated", true}));
  ASSERT_TRUE(*rollouts_->Transition(*row_id, 1,
                                     {fleet::RolloutVerb::kGatePause, {v1::ROLLOUT_STATE_RUNNING}, "gate_paused",
                                      "gate:stage-1", "failure ratio 0.5 > 0.1", false}));
  EXPECT_FALSE(rollouts_->Pause(action, admin_));  // already paused: refused, no event
  ASSERT_TRUE(rollouts_->Abort(action, admin_));

  const auto events = All(start);
  EXPECT_EQ(Types(events),
            (std::vector<std::string>{"rollout.created", "rollout.paused", "rollout.resumed", "rollout.gate_verdict",
                                      "rollout.stage_advanced", "rollout.gate_verdict", "rollout.paused",
                                      "rollout.aborted"}));
  ASSERT_EQ(events.size(), 8u);
  for (const auto& e : events) {
    EXPECT_EQ(e.subject_kind(), "rollout");
    EXPECT_EQ(e.subject_id(), rollout->rollout_id());
  }
  EXPECT_EQ(Keys(events[0]),
            (std::vector<std::string>{"auto_rollback", "model", "stages", "state", "target", "version"}));
  EXPECT_EQ(events[1].actor(), "admin#1");
  EXPECT_EQ(Keys(events[1]), (std::vector<std::string>{"from_state", "model", "reason", "stage", "to_state", "version"}));
  EXPECT_EQ(Str(events[1], "from_state"), "RUNNING");
  EXPECT_EQ(Str(events[1], "to_state"), "PAUSED");
  EXPECT_EQ(Str(events[1], "reason"), "looking");
  EXPECT_EQ(events[3].actor(), "gate:stage-0");
  EXPECT_EQ(Str(events[3], "verdict"), "passed");
  EXPECT_EQ(events[4].actor(), "controller");
  EXPECT_EQ(events[4].payload().fields().at("stage").number_value(), 1);
  EXPECT_EQ(Str(events[5], "verdict"), "failed");
  EXPECT_EQ(Str(events[5], "detail"), "failure ratio 0.5 > 0.1");
  EXPECT_EQ(events[6].actor(), "gate:stage-1");
  EXPECT_EQ(Str(events[7], "to_state"), "ABORTED");
}

TEST_F(EventsTest, DeviceTokenKeyAndTimeoutEventsAreRecorded) {
  fleet::DeviceRegistry devices(*pool_, *tokens_);
  v1::CreateEnrollmentTokenRequest enroll_token;
  enroll_token.set_name("factory");
  auto secret = devices.CreateEnrollmentToken(enroll_token, admin_);
  ASSERT_TRUE(secret) << secret.error().ToString();
  v1::EnrollRequest enroll;
  enroll.set_enrollment_token(secret->token());
  enroll.set_hardware_id("hw-1");
  auto enrolled = devices.Enroll(enroll);
  ASSERT_TRUE(enrolled) << enrolled.error().ToString();
  v1::SetDeviceAdmissionRequest admit;
  admit.set_device_id(enrolled->device_id());
  admit.set_admission(v1::DEVICE_ADMISSION_ACCEPTED);
  ASSERT_TRUE(devices.SetAdmission(admit, admin_));
  admit.set_admission(v1::DEVICE_ADMISSION_DECOMMISSIONED);
  admit.set_reason("broken mat");
  ASSERT_TRUE(devices.SetAdmission(admit, admin_));

  v1::CreateTokenRequest token;
  token.set_name("dashboard");
  token.set_role(v1::ROLE_VIEWER);
  auto created = tokens_->Create(token, "admin#1");
  ASSERT_TRUE(created);
  ASSERT_TRUE(tokens_->Revoke(created->token().id(), "admin#1"));
  ASSERT_TRUE(tokens_->Revoke(created->token().id(), "admin#1"));  // twice: one event
  v1::AddPublisherKeyRequest key;
  key.set_key_id("ci-key");
  key.set_public_key(std::string(32, 'k'));
  ASSERT_TRUE(registry_->AddPublisherKey(key, admin_));
  v1::RevokePublisherKeyRequest revoke_key;
  revoke_key.set_key_id("ci-key");
  ASSERT_TRUE(registry_->RevokePublisherKey(revoke_key, admin_));

  // Deployments that showed no progress: one deployment.timed_out per rollout and tick.
  CreateModel("mat-person");
  Push("mat-person", "1.0.0");
  v1::CreateRolloutRequest create;
  create.set_model("mat-person");
  create.set_version("1.0.0");
  create.set_target("*");
  create.set_deployment_timeout_seconds(60);
  create.add_stages()->set_percent(100);
  create.mutable_stages(0)->set_success_threshold(1);
  auto rollout = rollouts_->Create(create, admin_);
  ASSERT_TRUE(rollout) << rollout.error().ToString();
  Status inserted = pool_->Write([&](db::Tx& tx) -> Status {
    for (int i = 0; i < 3; ++i) {
      MF_ASSIGN_OR_RETURN(auto device, tx.Exec(
          "INSERT INTO devices (device_id, hardware_id, admission) VALUES ($1, $1, 'ACCEPTED') RETURNING id",
          {"dev-stuck-" + std::to_string(i)}));
      MF_RETURN_IF_ERROR(StatusOf(tx.Exec(
          "INSERT INTO deployments (rollout_id, device_id, target_version, step, updated_at) "
          "VALUES ($1, $2, '1.0.0', 'DOWNLOADING', now() - interval '1 hour')",
          {*fleet::RolloutManager::ParseRolloutId(rollout->rollout_id(), "r"), device[0].Int(0)})));
    }
    return Status::Ok();
  });
  ASSERT_TRUE(inserted.ok()) << inserted.ToString();
  const int64_t before_tick = Head();
  fleet::RolloutController controller(*pool_, *rollouts_, std::chrono::seconds(60));
  ASSERT_TRUE(controller.Tick());

  const auto events = All();
  std::vector<std::string> types = Types(events);
  EXPECT_EQ(std::vector<std::string>(types.begin(), types.begin() + 8),
            (std::vector<std::string>{"device.enrolled", "device.accepted", "device.decommissioned", "token.created",
                                      "token.revoked", "publisher_key.added", "publisher_key.revoked",
                                      "model.created"}));
  EXPECT_EQ(events[0].subject_kind(), "device");
  EXPECT_EQ(events[0].subject_id(), enrolled->device_id());
  EXPECT_EQ(events[0].actor(), "enrollment-token:factory");
  EXPECT_EQ(Keys(events[0]), (std::vector<std::string>{"admission", "hardware_id", "re_enrolled"}));
  EXPECT_EQ(Str(events[0], "admission"), "PENDING");
  EXPECT_EQ(Str(events[1], "from_admission"), "PENDING");
  EXPECT_EQ(Str(events[2], "reason"), "broken mat");
  EXPECT_EQ(events[3].subject_kind(), "token");
  EXPECT_EQ(events[3].subject_id(), std::to_string(created->token().id()));
  EXPECT_EQ(Str(events[3], "role"), "viewer");
  EXPECT_EQ(events[5].subject_id(), "ci-key");

  const auto ticked = All(before_tick);
  std::vector<v1::Event> timed_out;
  for (const auto& e : ticked) {
    if (e.type() == "deployment.timed_out") timed_out.push_back(e);
  }
  ASSERT_EQ(timed_out.size(), 1u) << "one event for the rollout's batch";
  EXPECT_EQ(timed_out[0].subject_id(), rollout->rollout_id());
  EXPECT_EQ(timed_out[0].actor(), "controller");
  EXPECT_EQ(timed_out[0].payload().fields().at("count").number_value(), 3);
  EXPECT_EQ(timed_out[0].payload().fields().at("device_ids").list_value().values_size(), 3);
}

// Regression guard for the outbox's central promise. With ids from a sequence, a writer that
// took id n and commits after the writer of n+1 is skipped by a reader that already resumed
// after n+1. Writers here hold their transaction open for a while after appending.
TEST_F(EventsTest, ConcurrentWritersCommittingLateNeverMakeAResumingReaderMissAnEvent) {
  constexpr int kWriters = 4, kEach = 15;
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        Status s = pool_->Write([&](db::Tx& tx) -> Status {
          MF_RETURN_IF_ERROR(StatusOf(AppendEvent(
              tx, {"model.created", "writer-" + std::to_string(w), "model", "m" + std::to_string(i), Payload()})));
          // Commit late: (i + w) % 3 ms after the event took its id.
          std::this_thread::sleep_for(std::chrono::milliseconds((i + w) % 3));
          return Status::Ok();
        });
        EXPECT_TRUE(s.ok()) << s.ToString();
      }
    });
  }
  std::vector<int64_t> seen;
  int64_t after = 0;
  std::thread reader([&] {
    while (true) {
      const bool last_round = done.load();
      auto page = log_->List(after, {}, v1::ROLE_VIEWER, 7);
      ASSERT_TRUE(page) << page.error().ToString();
      for (const auto& e : page->events) seen.push_back(e.id());
      after = page->next_after_id;
      if (last_round && page->events.empty()) return;
    }
  });
  for (auto& t : writers) t.join();
  done = true;
  reader.join();
  ASSERT_EQ(seen.size(), static_cast<size_t>(kWriters * kEach));
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i + 1));
}

TEST_F(EventsTest, EachRoleReadsOnlyTheFamiliesItMay) {
  Status s = pool_->Write([&](db::Tx& tx) -> Status {
    for (const EventTypeInfo& info : kEventTypes) {
      MF_RETURN_IF_ERROR(StatusOf(AppendEvent(tx, {info.type, "test", "x", "y", Payload()})));
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto families_read = [&](v1::Role role) {
    std::set<std::string> families;
    for (const auto& e : All(0, role)) families.insert(std::string(FamilyOf(e.type())));
    return families;
  };
  using Set = std::set<std::string>;
  EXPECT_EQ(families_read(v1::ROLE_ADMIN), (Set{"alias", "deployment", "device", "model", "publisher_key", "rollout",
                                                "token", "version", "webhook"}));
  EXPECT_EQ(families_read(v1::ROLE_VIEWER), (Set{"alias", "deployment", "device", "model", "rollout", "version"}));
  EXPECT_EQ(families_read(v1::ROLE_PUBLISHER), (Set{"alias", "model", "rollout", "version"}));
  EXPECT_EQ(families_read(v1::ROLE_DEVICE), Set{});
  // The SQL filter and the C++ predicate agree.
  for (v1::Role role : {v1::ROLE_ADMIN, v1::ROLE_PUBLISHER, v1::ROLE_VIEWER, v1::ROLE_DEVICE}) {
    for (const auto& e : All(0, v1::ROLE_ADMIN)) {
      EXPECT_EQ(MayRead(role, e.type()), families_read(role).count(std::string(FamilyOf(e.type()))) == 1)
          << e.type() << " for role " << role;
    }
  }
  // A reader skipping what it may not read still advances past it.
  auto page = log_->List(0, {}, v1::ROLE_DEVICE, 10);
  ASSERT_TRUE(page);
  EXPECT_TRUE(page->events.empty());
  EXPECT_EQ(page->next_after_id, static_cast<int64_t>(std::size(kEventTypes)));
  // Filters: a family, an exact type, a subject.
  EXPECT_EQ(All(0, v1::ROLE_ADMIN, Filter({"token.*"})).size(), 2u);
  EXPECT_EQ(All(0, v1::ROLE_ADMIN, Filter({"rollout.paused", "device.accepted"})).size(), 2u);
  EXPECT_EQ(All(0, v1::ROLE_PUBLISHER, Filter({"token.*"})).size(), 0u);
  EXPECT_EQ(All(0, v1::ROLE_ADMIN, Filter({}, "x", "y")).size(), std::size(kEventTypes));
  EXPECT_EQ(All(0, v1::ROLE_ADMIN, Filter({}, "x", "z")).size(), 0u);
  EXPECT_EQ(log_->List(0, Filter({"rollout.nope"}), v1::ROLE_ADMIN, 10).error().field(), "filter.types[0]");
  EXPECT_EQ(log_->List(0, Filter({}, "", "y"), v1::ROLE_ADMIN, 10).error().field(), "filter.subject_id");
}

TEST_F(EventsTest, TheNotifierWakesWaitersAtCommitAndFollowDeliversInOrder) {
  EventNotifier notifier(*log_, conninfo_, std::chrono::seconds(30));  // polling too slow to matter
  notifier.Start();
  const int64_t head = Head();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Status s = pool_->Write([&](db::Tx& tx) -> Status {
      return StatusOf(AppendEvent(tx, {"model.created", "test", "model", "woken", Payload()}));
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
  });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(notifier.WaitForNewerThan(head, started + std::chrono::seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5)) << "woken by NOTIFY, not polling";
  writer.join();

  std::vector<std::string> subjects;
  std::thread more([&] {
    for (const char* subject : {"a", "b"}) {
      Status s = pool_->Write([&](db::Tx& tx) -> Status {
        return StatusOf(AppendEvent(tx, {"model.created", "test", "model", subject, Payload()}));
      });
      EXPECT_TRUE(s.ok());
    }
  });
  Status followed = FollowEvents(
      *log_, notifier, head, {}, v1::ROLE_VIEWER,
      [&](const v1::Event& e) -> Status {
        subjects.push_back(e.subject_id());
        return subjects.size() == 3 ? Status(StatusCode::kCancelled, "enough") : Status::Ok();
      },
      [] { return false; });
  more.join();
  EXPECT_EQ(followed.code(), StatusCode::kCancelled);
  EXPECT_EQ(subjects, (std::vector<std::string>{"woken", "a", "b"}));

  // Stop ends a follow that waits for more, with UNAVAILABLE (resume elsewhere).
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    notifier.Stop();
  });
  Status stopped = FollowEvents(*log_, notifier, -1, {}, v1::ROLE_VIEWER, [](const v1::Event&) { return Status::Ok(); },
                                [] { return false; });
  stopper.join();
  EXPECT_EQ(stopped.code(), StatusCode::kUnavailable) << stopped.ToString();
}

TEST_F(EventsTest, PruneDeletesOnlyEventsOlderThanTheRetention) {
  Status s = pool_->Write([&](db::Tx& tx) -> Status {
    for (int i = 0; i < 5; ++i) {
      MF_RETURN_IF_ERROR(StatusOf(AppendEvent(tx, {"model.created", "test", "model", std::to_string(i), Payload()})));
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(pool_->Write([&](db::Tx& tx) -> Status {
                return StatusOf(tx.Exec("UPDATE events SET occurred_at = now() - interval '3 days' WHERE id <= 3"));
              }).ok());
  auto pruned = log_->Prune(std::chrono::hours(48));
  ASSERT_TRUE(pruned) << pruned.error().ToString();
  EXPECT_EQ(*pruned, 3);
  const auto left = All();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].id(), 4);  // a reader resuming before the pruned ones gets the oldest kept
  EXPECT_EQ(*log_->Prune(std::chrono::hours(48)), 0);
  EXPECT_EQ(Head(), 5) << "ids continue after pruning";
}

}  // namespace
}  // namespace modelfleet::events
