// The check-in decision as a pure function: every branch, no database.
#include "fleet/check_in_decision.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "fleet/cohort.h"

namespace modelfleet::fleet {
namespace {

using Action = CheckInDecision::Action;
using Known = DeploymentStore::Known;

constexpr const char* kDevice = "dev-00000000000000aa";
constexpr const char* kDigestV2 = "2222222222222222222222222222222222222222222222222222222222222222";

RolloutView Rollout(int64_t row_id, v1::RolloutState state, const std::string& model, const std::string& version,
                    const std::string& target = "*", double cutoff = 1.0) {
  RolloutView r;
  r.row_id = row_id;
  r.rollout_id = "ro-" + std::to_string(row_id);
  r.state = state;
  r.model = model;
  r.version = version;
  r.manifest.set_digest(kDigestV2);
  auto selector = DeviceSelector::Parse(target, SelectorKind::kRolloutTarget, "target");
  EXPECT_TRUE(selector.has_value()) << target;
  r.target = std::move(*selector);
  r.cutoff = cutoff;
  r.timeout_seconds = 600;
  return r;
}

v1::CheckInRequest Running(const std::string& model, const std::string& version, const std::string& digest = "") {
  v1::CheckInRequest request;
  auto* m = request.add_running();
  m->set_model(model);
  m->set_version(version);
  m->set_digest(digest);
  request.set_agent_state(v1::AGENT_STATE_IDLE);
  return request;
}

// The device's deployments, as the store would hold them; a rollout in `unknown` is not held.
struct Deployments {
  std::map<std::pair<int64_t, bool>, DeploymentEntry> rows;
  std::vector<int64_t> unknown;
  int lookups = 0;
  DeploymentLookup Lookup() {
    return [this](int64_t rollout, bool is_rollback, DeploymentEntry* entry) {
      ++lookups;
      if (std::find(unknown.begin(), unknown.end(), rollout) != unknown.end()) return Known::kUnknown;
      auto it = rows.find({rollout, is_rollback});
      if (it == rows.end()) return Known::kNo;
      *entry = it->second;
      return Known::kYes;
    };
  }
};

struct Fixture : ::testing::Test {
  v1::DeviceAttributes attributes;
  RolloutSnapshot snapshot;
  Deployments deployments;
  CheckInDecision Decide(const v1::CheckInRequest& request, const std::vector<int64_t>& settled = {}) {
    return DecideCheckIn(request, RolloutsHolding(kDevice, attributes, snapshot), deployments.Lookup(), settled);
  }
};

TEST_F(Fixture, NoRolloutKeepsTheDeviceWhereItIs) {
  CheckInDecision d = Decide(Running("mat-person", "1.0.0"));
  EXPECT_EQ(d.action, Action::kKeep);
  EXPECT_EQ(deployments.lookups, 0);
}

TEST_F(Fixture, DeviceOutsideTheCohortOrTargetIsLeftAlone) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0", "*", 0.0));  // empty cohort
  snapshot.rollouts.push_back(Rollout(2, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0", "site = \"elsewhere\""));
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep);
  EXPECT_EQ(deployments.lookups, 0);
}

TEST_F(Fixture, CohortCutoffIsTheDevicesBucket) {
  const double bucket = CohortBucket(kDevice, "ro-1");
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0", "*", bucket));
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep) << "a bucket equal to the cutoff is outside";
  snapshot.rollouts[0].cutoff = std::nextafter(bucket, 1.0);
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kCreateForward);
}

TEST_F(Fixture, NewDeviceInARunningRolloutGetsADeploymentCreated) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  CheckInDecision d = Decide(Running("mat-person", "1.0.0"));
  ASSERT_EQ(d.action, Action::kCreateForward);
  EXPECT_EQ(d.rollout->row_id, 1);
  EXPECT_EQ(d.download_version, "2.0.0");
  EXPECT_EQ(d.previous_model, "mat-person");
  EXPECT_EQ(d.previous_version, "1.0.0");
  // A device that runs nothing of the model replaces nothing.
  d = Decide(Running("other-model", "1.0.0"));
  ASSERT_EQ(d.action, Action::kCreateForward);
  EXPECT_EQ(d.previous_model, "");
  EXPECT_EQ(d.previous_version, "");
}

TEST_F(Fixture, DeviceThatRunsTheVersionHasNothingToDoUnlessTheDigestDiffers) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0")).action, Action::kKeep);
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0", kDigestV2)).action, Action::kKeep);
  EXPECT_EQ(deployments.lookups, 0);
  const std::string other(64, 'f');
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0", other)).action, Action::kCreateForward)
      << "same version, other bytes: it must be deployed";
}

TEST_F(Fixture, AssignmentUnderWayIsHandedOutAgain) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_DOWNLOADING, "1.0.0"};
  CheckInDecision d = Decide(Running("mat-person", "1.0.0"));
  ASSERT_EQ(d.action, Action::kAssign);
  EXPECT_EQ(d.deployment_id, 41);
  EXPECT_FALSE(d.is_rollback);
  EXPECT_EQ(d.download_version, "2.0.0");
}

TEST_F(Fixture, TerminalDeploymentLeavesTheDeviceAlone) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  for (auto step : {v1::DEPLOYMENT_STEP_FAILED, v1::DEPLOYMENT_STEP_TIMED_OUT, v1::DEPLOYMENT_STEP_CANCELLED,
                    v1::DEPLOYMENT_STEP_ROLLED_BACK, v1::DEPLOYMENT_STEP_ACTIVATED}) {
    deployments.rows[{1, false}] = {41, step, "1.0.0"};
    EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep) << v1::DeploymentStep_Name(step);
  }
}

TEST_F(Fixture, CompletedRolloutStillTakesDevicesThatJoinItsTarget) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_COMPLETED, "mat-person", "2.0.0"));
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kCreateForward);
}

TEST_F(Fixture, PausedOrWaitingRolloutAssignsNoNewDeviceButKeepsThoseUnderWay) {
  for (auto state : {v1::ROLLOUT_STATE_PAUSED, v1::ROLLOUT_STATE_WAITING_APPROVAL}) {
    snapshot.rollouts = {Rollout(1, state, "mat-person", "2.0.0")};
    deployments.rows.clear();
    EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep) << v1::RolloutState_Name(state);
    deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_INSTALLING, "1.0.0"};
    EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kAssign) << v1::RolloutState_Name(state);
  }
}

TEST_F(Fixture, AbortedRolloutLeavesDevicesWhereTheyAre) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_ABORTED, "mat-person", "2.0.0"));
  deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_DOWNLOADING, "1.0.0"};
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep);
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0")).action, Action::kKeep);
}

TEST_F(Fixture, RollbackSendsDevicesOnTheRolledBackVersionToWhatTheyRanBefore) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_ROLLED_BACK, "mat-person", "2.0.0"));
  // A device that never got the version has nothing to do, and costs no lookup.
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0")).action, Action::kKeep);
  EXPECT_EQ(deployments.lookups, 0);
  // On the rolled-back version with no forward deployment (installed some other way): nothing.
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0")).action, Action::kKeep);
  // Its forward deployment replaced nothing: nothing to go back to.
  deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_ACTIVATED, ""};
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0")).action, Action::kKeep);
  // It replaced 1.0.0: create the rollback deployment.
  deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_ACTIVATED, "1.0.0"};
  CheckInDecision d = Decide(Running("mat-person", "2.0.0"));
  ASSERT_EQ(d.action, Action::kCreateRollback);
  EXPECT_TRUE(d.is_rollback);
  EXPECT_EQ(d.download_version, "1.0.0");
  EXPECT_EQ(d.previous_version, "2.0.0");
  // Under way: hand it out; finished: nothing.
  deployments.rows[{1, true}] = {42, v1::DEPLOYMENT_STEP_VERIFYING, ""};
  d = Decide(Running("mat-person", "2.0.0"));
  ASSERT_EQ(d.action, Action::kAssign);
  EXPECT_EQ(d.deployment_id, 42);
  EXPECT_TRUE(d.is_rollback);
  EXPECT_EQ(d.download_version, "1.0.0");
  deployments.rows[{1, true}] = {42, v1::DEPLOYMENT_STEP_FAILED, ""};
  EXPECT_EQ(Decide(Running("mat-person", "2.0.0")).action, Action::kKeep);
}

TEST_F(Fixture, TheNewestRolloutOfAModelDecidesAndOtherModelsAreDecidedApart) {
  // Newest first: rollout 3 of mat-person (done for this device), 2 of mat-person (older), 1 of other.
  snapshot.rollouts.push_back(Rollout(3, v1::ROLLOUT_STATE_RUNNING, "mat-person", "3.0.0"));
  snapshot.rollouts.push_back(Rollout(2, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-seat", "1.1.0"));
  v1::CheckInRequest request = Running("mat-person", "3.0.0");
  auto* seat = request.add_running();
  seat->set_model("mat-seat");
  seat->set_version("1.0.0");
  CheckInDecision d = Decide(request);
  ASSERT_EQ(d.action, Action::kCreateForward) << "rollout 2 must not pull the device back from 3.0.0";
  EXPECT_EQ(d.rollout->row_id, 1);
  EXPECT_EQ(d.rollout->model, "mat-seat");
  // The arms its telemetry counts in: one rollout per model, the newest.
  std::vector<const RolloutView*> holding = RolloutsHolding(kDevice, attributes, snapshot);
  ASSERT_EQ(holding.size(), 2u);
  EXPECT_EQ(holding[0]->row_id, 3);
  EXPECT_EQ(holding[1]->row_id, 1);
}

TEST_F(Fixture, SettledRolloutsCountAsDecided) {
  snapshot.rollouts.push_back(Rollout(2, v1::ROLLOUT_STATE_RUNNING, "mat-person", "3.0.0"));
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  EXPECT_EQ(Decide(Running("mat-person", "1.0.0"), {2}).action, Action::kKeep)
      << "a settled rollout still decides its model: the older one must not step in";
}

TEST_F(Fixture, DeploymentTheStoreCannotAnswerForIsRead) {
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  deployments.unknown = {1};
  CheckInDecision d = Decide(Running("mat-person", "1.0.0"));
  ASSERT_EQ(d.action, Action::kReadDeployment);
  EXPECT_EQ(d.rollout->row_id, 1);
}

TEST_F(Fixture, DeviceThatSaysItIsApplyingSomethingAsksTheDatabase) {
  v1::CheckInRequest request = Running("mat-person", "1.0.0");
  for (auto state : {v1::AGENT_STATE_DOWNLOADING, v1::AGENT_STATE_VERIFYING, v1::AGENT_STATE_INSTALLING,
                     v1::AGENT_STATE_SELF_TESTING}) {
    request.set_agent_state(state);
    EXPECT_EQ(Decide(request).action, Action::kLookUpUnderWay) << v1::AgentState_Name(state);
  }
  for (auto state : {v1::AGENT_STATE_IDLE, v1::AGENT_STATE_UNSPECIFIED}) {
    request.set_agent_state(state);
    EXPECT_EQ(Decide(request).action, Action::kKeep) << v1::AgentState_Name(state);
  }
  // A rollout that gives it its assignment answers without the database.
  snapshot.rollouts.push_back(Rollout(1, v1::ROLLOUT_STATE_RUNNING, "mat-person", "2.0.0"));
  deployments.rows[{1, false}] = {41, v1::DEPLOYMENT_STEP_DOWNLOADING, "1.0.0"};
  request.set_agent_state(v1::AGENT_STATE_DOWNLOADING);
  EXPECT_EQ(Decide(request).action, Action::kAssign);
}

}  // namespace
}  // namespace modelfleet::fleet
