// End-to-end tests of modelfleet-agent: the built agent and server binaries over real gRPC, a
// real PostgreSQL cluster, s3rver as the blob store, and a real int8 TorchScript model made by
// tests/models/make_test_model.py (skipped when /usr/bin/python3 cannot import torch); the
// fixture is agent_e2e_fixture.h. The kill tests are in agent_kill_e2e_test.cc, the refusals
// and the local rollback in agent_refusal_e2e_test.cc.
//
//   RolloutActivatesThenBrokenModelFails  3 agents enroll with no model; a signed good 1.0.0
//       rolled out to 100% ends ACTIVATED on all of them (digest active on disk, presence JSON
//       lines on stdout); a signed --broken 1.1.0 fails its self-test: FAILED, 1.0.0 keeps running.
//   KeepsRunningWhileServerIsAway  with the server frozen (SIGSTOP) check-ins fail and back
//       off, inference goes on; once it is back the telemetry of the whole gap arrives.
//   KilledMidDownloadResumes  an agent with a throttled download is SIGKILLed with a partial
//       file on disk; restarted, it resumes from those bytes and ends ACTIVATED.
#include "agent_e2e_fixture.h"

namespace modelfleet::agent_e2e {
namespace {

TEST_F(AgentE2E, RolloutActivatesThenBrokenModelFails) {
  const v1::Manifest good = Push(Model(), "1.0.0", 1);
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
  const v1::Manifest broken = Push(Model({"--seed", "2", "--broken"}), "1.1.0", 2);
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
  const v1::Manifest good = Push(Model(), "1.0.0", 1);
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
  const v1::Manifest good = Push(Model(), "1.0.0", 1);
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
}  // namespace modelfleet::agent_e2e
