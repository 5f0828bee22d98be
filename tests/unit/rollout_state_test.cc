// The rollout state machine (server/fleet/rollout_state.h): the table is well formed, the names
// are the database's, and every SQL list of states or steps equals the C++ predicate it stands for.
#include "fleet/rollout_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "db/migrations.h"
#include "fleet/deployment_state.h"

namespace modelfleet::fleet {
namespace {

using S = v1::RolloutState;

constexpr RolloutVerb kAllVerbs[] = {
    RolloutVerb::kStart,     RolloutVerb::kAwaitApproval, RolloutVerb::kAdvance,  RolloutVerb::kComplete,
    RolloutVerb::kGatePause, RolloutVerb::kGateRollback,  RolloutVerb::kApprove,  RolloutVerb::kPause,
    RolloutVerb::kResume,    RolloutVerb::kAbort,         RolloutVerb::kRollback, RolloutVerb::kRetry,
};

std::string Name(S s) { return std::string(RolloutStateName(s)); }

std::vector<std::string> Names(const std::vector<S>& states) {
  std::vector<std::string> out;
  for (S s : states) out.push_back(Name(s));
  return out;
}

TEST(RolloutState, EveryVerbHasRowsAndAtMostOneRowPerStateAndVerb) {
  std::set<std::pair<S, RolloutVerb>> seen;
  for (const RolloutTransition& t : kRolloutTransitions) {
    EXPECT_TRUE(seen.insert({t.from, t.verb}).second)
        << Name(t.from) << " " << RolloutVerbName(t.verb) << " twice";
    EXPECT_NE(t.from, v1::ROLLOUT_STATE_UNSPECIFIED);
    EXPECT_NE(t.to, v1::ROLLOUT_STATE_UNSPECIFIED);
  }
  std::set<std::string_view> verb_names;
  for (RolloutVerb verb : kAllVerbs) {
    EXPECT_FALSE(AllowedSources(verb).empty()) << RolloutVerbName(verb);
    EXPECT_TRUE(verb_names.insert(RolloutVerbName(verb)).second) << RolloutVerbName(verb);
  }
}

TEST(RolloutState, AllowedSourcesAndNextFollowTheTable) {
  for (RolloutVerb verb : kAllVerbs) {
    std::set<S> sources;
    for (const RolloutTransition& t : kRolloutTransitions) {
      if (t.verb == verb) sources.insert(t.from);
    }
    EXPECT_EQ(AllowedSources(verb), std::vector<S>(sources.begin(), sources.end())) << RolloutVerbName(verb);
    for (S from : AllRolloutStates()) {
      auto to = Next(from, verb);
      if (sources.count(from)) {
        ASSERT_TRUE(to) << Name(from) << " " << RolloutVerbName(verb);
        auto row = std::find_if(std::begin(kRolloutTransitions), std::end(kRolloutTransitions),
                                [&](const RolloutTransition& t) { return t.from == from && t.verb == verb; });
        EXPECT_EQ(*to, row->to);
      } else {
        ASSERT_FALSE(to) << Name(from) << " " << RolloutVerbName(verb);
        EXPECT_EQ(to.error().code(), StatusCode::kFailedPrecondition);
      }
    }
  }
}

TEST(RolloutState, RefusalNamesTheStateTheVerbAndWhereItApplies) {
  auto to = Next(v1::ROLLOUT_STATE_COMPLETED, RolloutVerb::kPause, "rollout ro-7");
  ASSERT_FALSE(to);
  EXPECT_EQ(to.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(to.error().message(), "rollout ro-7 is COMPLETED; pause applies to RUNNING, WAITING_APPROVAL");
  EXPECT_FALSE(Next(v1::ROLLOUT_STATE_UNSPECIFIED, RolloutVerb::kAbort));
  EXPECT_FALSE(Next(static_cast<S>(99), RolloutVerb::kAbort));
}

TEST(RolloutState, TerminalStatesAreExactlyThoseNothingLeaves) {
  for (S s : AllRolloutStates()) {
    const bool has_exit = std::any_of(std::begin(kRolloutTransitions), std::end(kRolloutTransitions),
                                      [&](const RolloutTransition& t) { return t.from == s; });
    EXPECT_EQ(IsTerminal(s), !has_exit) << Name(s);
    EXPECT_FALSE(IsTerminal(s) && IsActive(s)) << Name(s);
  }
  EXPECT_EQ(Names(RolloutStatesWhere(IsTerminal)), (std::vector<std::string>{"ABORTED", "ROLLED_BACK"}));
  // COMPLETED is finished without being terminal: it may still be rolled back.
  EXPECT_FALSE(IsActive(v1::ROLLOUT_STATE_COMPLETED));
  EXPECT_FALSE(IsTerminal(v1::ROLLOUT_STATE_COMPLETED));
  EXPECT_EQ(Next(v1::ROLLOUT_STATE_COMPLETED, RolloutVerb::kRollback).value_or(S{}),
            v1::ROLLOUT_STATE_ROLLED_BACK);
}

std::set<S> ReachableFrom(std::set<S> reached) {
  for (bool grew = true; grew;) {
    grew = false;
    for (const RolloutTransition& t : kRolloutTransitions) {
      if (reached.count(t.from) && reached.insert(t.to).second) grew = true;
    }
  }
  return reached;
}

TEST(RolloutState, EveryStateIsReachableFromWhatCreateStores) {
  const std::vector<S> initial = RolloutStatesWhere(IsInitial);
  EXPECT_EQ(Names(initial), (std::vector<std::string>{"QUEUED", "RUNNING", "WAITING_APPROVAL"}));
  for (S s : initial) EXPECT_TRUE(IsActive(s)) << Name(s);
  // From QUEUED alone, in fact: the other initial states are where a dequeued rollout goes.
  const std::set<S> reached = ReachableFrom({v1::ROLLOUT_STATE_QUEUED});
  for (S s : AllRolloutStates()) EXPECT_TRUE(reached.count(s)) << Name(s) << " is unreachable";
}

TEST(RolloutState, PredicatesAgreeWithTheVerbs) {
  // Abort applies to every active state, and to nothing else.
  EXPECT_EQ(AllowedSources(RolloutVerb::kAbort), RolloutStatesWhere(IsActive));
  // The states that claim devices are the active ones past the queue.
  for (S s : AllRolloutStates()) {
    EXPECT_EQ(ClaimsDevices(s), IsActive(s) && s != v1::ROLLOUT_STATE_QUEUED) << Name(s);
    // New devices are assigned only where the rollout goes on forward.
    if (AssignsNewDevices(s)) {
      EXPECT_FALSE(IsTerminal(s)) << Name(s);
    }
  }
  // Controller verbs start from what the controller watches; admin verbs are named as the RPCs.
  EXPECT_EQ(Names(MovedByController()), (std::vector<std::string>{"QUEUED", "RUNNING"}));
  EXPECT_FALSE(IsControllerVerb(RolloutVerb::kPause));
  EXPECT_TRUE(IsControllerVerb(RolloutVerb::kGatePause));
}

TEST(RolloutState, NamesRoundTripAndMatchTheProtoEnum) {
  EXPECT_EQ(AllRolloutStates().size(), 7u);
  for (S s : AllRolloutStates()) {
    EXPECT_EQ(RolloutStateFromName(RolloutStateName(s)), s) << Name(s);
    EXPECT_EQ("ROLLOUT_STATE_" + Name(s), v1::RolloutState_Name(s));
  }
  EXPECT_EQ(RolloutStateName(v1::ROLLOUT_STATE_WAITING_APPROVAL), "WAITING_APPROVAL");
  EXPECT_EQ(RolloutStateName(v1::ROLLOUT_STATE_UNSPECIFIED), "UNSPECIFIED");
  EXPECT_EQ(RolloutStateName(static_cast<S>(99)), "UNSPECIFIED");
}

TEST(RolloutState, UnknownTextIsRefusedWithoutThrowing) {
  for (std::string_view text :
       std::initializer_list<std::string_view>{"", "UNSPECIFIED", "running", "ROLLOUT_STATE_RUNNING",
                                               "RUNNING ", "DONE", std::string_view("RUNNING\0", 8)}) {
    EXPECT_FALSE(RolloutStateFromName(text).has_value()) << text;
  }
}

TEST(RolloutState, SqlArraysAreThePredicates) {
  // The lists the queries bind, pinned to what they were when they were literals.
  EXPECT_EQ(RolloutStatesSqlArray(RolloutStatesWhere(ClaimsDevices)), "{RUNNING,WAITING_APPROVAL,PAUSED}");
  EXPECT_EQ(RolloutStatesSqlArray(RolloutStatesWhere(AssignsNewDevices)), "{RUNNING,COMPLETED}");
  EXPECT_EQ(RolloutStatesSqlArray(MovedByController()), "{QUEUED,RUNNING}");
  EXPECT_EQ(RolloutStatesSqlArray(AllowedSources(RolloutVerb::kRollback)),
            "{RUNNING,WAITING_APPROVAL,PAUSED,COMPLETED}");
  EXPECT_EQ(RolloutStatesSqlArray(std::vector<S>{}), "{}");
}

TEST(RolloutState, RetriedStepsAreTheFailures) {
  // RetryFailed assigns again the deployments the server may move back to ASSIGNED.
  const auto retried = LegalSources(v1::DEPLOYMENT_STEP_ASSIGNED, TransitionBy::kServer);
  std::vector<v1::DeploymentStep> failures;
  for (int i = v1::DeploymentStep_MIN; i <= v1::DeploymentStep_MAX; ++i) {
    if (v1::DeploymentStep_IsValid(i) && IsFailure(static_cast<v1::DeploymentStep>(i))) {
      failures.push_back(static_cast<v1::DeploymentStep>(i));
    }
  }
  EXPECT_EQ(retried, failures);
  EXPECT_EQ(StepsSqlArray(retried), "{FAILED,ROLLED_BACK,TIMED_OUT,CANCELLED}");
}

// The quoted names of the first "IN ('A', 'B')" list after `anchor` in `sql`.
std::vector<std::string> QuotedListAfter(const std::string& sql, const std::string& anchor) {
  size_t at = sql.find(anchor);
  if (at == std::string::npos || (at = sql.find("IN (", at)) == std::string::npos) return {};
  const size_t end = sql.find(')', at);
  std::vector<std::string> names;
  for (size_t q = sql.find('\'', at); q < end; q = sql.find('\'', q + 1)) {
    const size_t close = sql.find('\'', q + 1);
    names.push_back(sql.substr(q + 1, close - q - 1));
    q = close;
  }
  return names;
}

// The migrations spell state names in SQL that may never be edited; they must be the C++ names.
// If a later migration redefines the constraint or the index, point these anchors at it.
TEST(RolloutState, MigrationsListTheSameStates) {
  std::string sql;
  for (const auto& m : db::EmbeddedMigrations()) sql += m.sql + "\n";
  const size_t table = sql.find("CREATE TABLE rollouts (");
  ASSERT_NE(table, std::string::npos);
  EXPECT_EQ(QuotedListAfter(sql.substr(table), "CHECK (state"), Names(AllRolloutStates()));
  EXPECT_EQ(QuotedListAfter(sql, "CREATE INDEX rollouts_active ON rollouts (state) WHERE state"),
            Names(RolloutStatesWhere(IsActive)));
}

}  // namespace
}  // namespace modelfleet::fleet
