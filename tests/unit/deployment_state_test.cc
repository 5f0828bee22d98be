// The deployment state machine (server/fleet/deployment_state.h), checked transition by
// transition against the table in its header comment.
#include "fleet/deployment_state.h"

#include <gtest/gtest.h>

namespace modelfleet::fleet {
namespace {

using S = v1::DeploymentStep;
constexpr auto kDevice = TransitionBy::kDevice;
constexpr auto kServer = TransitionBy::kServer;

TEST(DeploymentState, TheHappyPathIsLegalStepByStep) {
  const S path[] = {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_VERIFYING,
                    S::DEPLOYMENT_STEP_INSTALLING, S::DEPLOYMENT_STEP_SELF_TESTING, S::DEPLOYMENT_STEP_ACTIVATED};
  for (size_t i = 0; i + 1 < std::size(path); ++i) {
    EXPECT_TRUE(IsLegalTransition(path[i], path[i + 1], kDevice)) << StepName(path[i]) << " -> " << StepName(path[i + 1]);
    EXPECT_FALSE(IsLegalTransition(path[i + 1], path[i], kDevice)) << "backwards " << StepName(path[i + 1]);
  }
  EXPECT_TRUE(IsLegalTransition(S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_DOWNLOADING, kDevice));
}

TEST(DeploymentState, SkippingVerificationOrInstallIsIllegal) {
  EXPECT_FALSE(IsLegalTransition(S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_ACTIVATED, kDevice));
  EXPECT_FALSE(IsLegalTransition(S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_INSTALLING, kDevice));
  EXPECT_FALSE(IsLegalTransition(S::DEPLOYMENT_STEP_VERIFYING, S::DEPLOYMENT_STEP_ACTIVATED, kDevice));
}

TEST(DeploymentState, DevicesFailOrRollBackOnlyWhileUnderWay) {
  for (S from : {S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_VERIFYING,
                 S::DEPLOYMENT_STEP_INSTALLING, S::DEPLOYMENT_STEP_SELF_TESTING}) {
    EXPECT_TRUE(IsLegalTransition(from, S::DEPLOYMENT_STEP_FAILED, kDevice)) << StepName(from);
    EXPECT_TRUE(IsLegalTransition(from, S::DEPLOYMENT_STEP_TIMED_OUT, kServer)) << StepName(from);
    EXPECT_FALSE(IsLegalTransition(from, S::DEPLOYMENT_STEP_TIMED_OUT, kDevice)) << StepName(from);
    EXPECT_FALSE(IsTerminal(from));
  }
  // A device rolls back an activated model by itself; nothing else leaves a terminal state.
  EXPECT_TRUE(IsLegalTransition(S::DEPLOYMENT_STEP_ACTIVATED, S::DEPLOYMENT_STEP_ROLLED_BACK, kDevice));
  for (S from : {S::DEPLOYMENT_STEP_FAILED, S::DEPLOYMENT_STEP_TIMED_OUT, S::DEPLOYMENT_STEP_CANCELLED,
                 S::DEPLOYMENT_STEP_ROLLED_BACK}) {
    EXPECT_TRUE(IsTerminal(from));
    EXPECT_TRUE(IsFailure(from));
    for (int to = v1::DeploymentStep_MIN; to <= v1::DeploymentStep_MAX; ++to) {
      EXPECT_FALSE(IsLegalTransition(from, static_cast<S>(to), kDevice)) << StepName(from) << " -> " << to;
    }
    // Only the server's "retry failed" brings them back.
    EXPECT_TRUE(IsLegalTransition(from, S::DEPLOYMENT_STEP_ASSIGNED, kServer));
  }
  EXPECT_FALSE(IsFailure(S::DEPLOYMENT_STEP_ACTIVATED));
  EXPECT_TRUE(IsTerminal(S::DEPLOYMENT_STEP_ACTIVATED));
}

TEST(DeploymentState, LegalSourcesAgreeWithTheTable) {
  auto sources = LegalSources(S::DEPLOYMENT_STEP_VERIFYING, kDevice);
  EXPECT_EQ(sources, (std::vector<S>{S::DEPLOYMENT_STEP_ASSIGNED, S::DEPLOYMENT_STEP_DOWNLOADING}));
  for (int to = v1::DeploymentStep_MIN; to <= v1::DeploymentStep_MAX; ++to) {
    for (S from : LegalSources(static_cast<S>(to), kServer)) {
      EXPECT_TRUE(IsLegalTransition(from, static_cast<S>(to), kServer));
    }
  }
}

TEST(DeploymentState, InProgressSqlListIsTheNonTerminalSteps) {
  std::string expected = "(";
  for (int i = v1::DeploymentStep_MIN; i <= v1::DeploymentStep_MAX; ++i) {
    const S step = static_cast<S>(i);
    if (!v1::DeploymentStep_IsValid(i) || step == S::DEPLOYMENT_STEP_UNSPECIFIED || IsTerminal(step)) continue;
    if (expected.size() > 1) expected += ", ";
    expected += "'" + std::string(StepName(step)) + "'";
  }
  expected += ")";
  EXPECT_EQ(std::string(MF_IN_PROGRESS_STEPS_SQL), expected);
}

TEST(DeploymentState, NamesRoundTrip) {
  for (int i = v1::DeploymentStep_MIN + 1; i <= v1::DeploymentStep_MAX; ++i) {
    S step = static_cast<S>(i);
    EXPECT_EQ(StepFromName(StepName(step)), step);
  }
  EXPECT_EQ(StepName(S::DEPLOYMENT_STEP_DOWNLOADING), "DOWNLOADING");
  EXPECT_EQ(StepFromName("NOT_A_STEP"), S::DEPLOYMENT_STEP_UNSPECIFIED);
}

}  // namespace
}  // namespace modelfleet::fleet
