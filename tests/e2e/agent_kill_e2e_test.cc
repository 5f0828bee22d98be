// "Killed in every state": modelfleet-agent is SIGKILLed at each step of applying an assignment
// and restarted; it must always end with the new model verified, installed, self-tested and
// active (ACTIVATED on the server), and a resumed download must fetch only the missing bytes.
// The mat runs 1.0.0 first; it is killed while applying 1.1.0. At every kill `active` must name
// a model whose installed bytes have its digest (1.0.0 until the switch, 1.1.0 after): the mat
// is never left without a model it can run.
//
// The agent is stopped at a precise point with its test hook MODELFLEET_AGENT_PAUSE_AT
// (client/agent/app/test_hooks.h): it pauses right after persisting the named state (or, for
// Downloading@N, once N bytes are fsynced in the partial file), logs that it did, and the test
// kills it there. One test per state (TEST_P):
//   Downloading   three kills: right after Downloading was persisted (0 bytes), then at a
//                 random byte offset, then at a later random offset; every restart must ask
//                 the server for the bytes from the partial file's size on ("downloading <d>
//                 from byte <kept>") and the last one must fetch exactly size - kept bytes;
//   Verifying     all bytes on disk, not verified yet;
//   Installing    verified, not installed;
//   SelfTesting   installed in models/<digest>, not self-tested;
//   Activated     `active` switched, ACTIVATED not yet reported (the server still says
//                 SELF_TESTING).
// After the last restart: ACTIVATED on the server with the device running the new digest, the
// file in models/<digest> hashing to it, no partial file left, the model loading in libtorch
// and passing the manifest's self-test (checked here, in the test process, too), inferences
// counted in the telemetry, and nothing downloaded again once the download had completed.
// Each kill's pause point (the random offsets) and what the partial file held are printed.
#include <random>

#include "agent/runtime/self_test.h"
#include "agent/runtime/torch_runtime.h"
#include "agent_e2e_fixture.h"

namespace modelfleet::agent_e2e {
namespace {

// Where the server's record of the deployment stands when the agent pauses in `state`: the
// agent reports a step when it starts running it, and the hook fires before that.
v1::DeploymentStep ServerStepWhenPausedIn(const std::string& state) {
  if (state == "Verifying") return v1::DEPLOYMENT_STEP_DOWNLOADING;
  if (state == "Installing") return v1::DEPLOYMENT_STEP_VERIFYING;
  if (state == "SelfTesting") return v1::DEPLOYMENT_STEP_INSTALLING;
  if (state == "Activated") return v1::DEPLOYMENT_STEP_SELF_TESTING;
  return v1::DEPLOYMENT_STEP_UNSPECIFIED;
}

std::string StepName(v1::DeploymentStep step) { return v1::DeploymentStep_Name(step); }

class AgentKilledInEveryState : public AgentE2E, public ::testing::WithParamInterface<std::string> {};

// The digest `active` names, if its installed file really has that digest (a model the agent
// can run); "" otherwise.
std::string VerifiedActive(const AgentProc& a) {
  const std::string active = a.Active();
  if (active.empty()) return "";
  return Sha256Hex(testing::ReadFileOrEmpty(a.state / "models" / active / "model.pt")) == active ? active
                                                                                                 : "";
}

TEST_P(AgentKilledInEveryState, RestartEndsWithTheNewModelActiveAndSelfTested) {
  const std::string state = GetParam();
  const v1::Manifest old = Push(Model(), "1.0.0", 1);
  const fs::path dir = Model({"--seed", "2"});
  ASSERT_FALSE(HasFailure());
  const v1::Manifest m = Push(dir, "1.1.0", 2);
  ASSERT_FALSE(HasFailure());
  const uint64_t size = m.size_bytes();
  ASSERT_GT(size, 8 * 1024u) << "the test model should span several 1 KiB download requests";
  const std::string pause_variable = "MODELFLEET_AGENT_PAUSE_AT";

  // The mat runs 1.0.0 (installed without the hook), then is restarted with the hook.
  // 1 KiB per Download request: the partial file grows (and is fsynced) in 1 KiB steps.
  AgentProc& a = NewAgent("mat", {"download_chunk_bytes = 1024"});
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s)) << a.Log();
  Rollout("1.0.0");
  ASSERT_TRUE(WaitFor(
      [&] { return StepOf(a) == v1::DEPLOYMENT_STEP_ACTIVATED && a.PersistedState() == "Idle"; }, 60s))
      << a.Log();
  ASSERT_EQ(a.proc->Stop(10s), 0);
  ASSERT_EQ(VerifiedActive(a), old.digest());

  std::mt19937_64 rng(std::random_device{}());
  std::string pause = state;
  ASSERT_NO_FATAL_FAILURE(Start(a, {{pause_variable, pause}}));
  Rollout("1.1.0");

  // Kill, (for Downloading: restart and kill again at later offsets,) and remember what the
  // partial file held at the last kill.
  uint64_t kept = 0;
  for (int kill = 0;; ++kill) {
    SCOPED_TRACE("pause at " + pause);
    const std::string paused = "test hook " + pause_variable + "=" + pause + ": paused in " + state;
    ASSERT_TRUE(WaitFor([&] { return a.Log().find(paused) != std::string::npos; }, 60s))
        << "the agent did not pause at " << pause;
    EXPECT_EQ(a.PersistedState(), state);
    if (const auto expected = ServerStepWhenPausedIn(state); expected != v1::DEPLOYMENT_STEP_UNSPECIFIED) {
      EXPECT_EQ(StepName(StepOf(a)), StepName(expected));
    }
    // Whenever the power goes, the mat has a verified model to run: the old one until the
    // switch, the new one from then on.
    EXPECT_EQ(VerifiedActive(a), state == "Activated" ? m.digest() : old.digest());
    ASSERT_NO_FATAL_FAILURE(Kill(a));

    const uint64_t on_disk = fs::exists(a.PartFile(m.digest())) ? fs::file_size(a.PartFile(m.digest())) : 0;
    std::printf("killed with %s: %ju of %ju bytes in the partial file\n", pause.c_str(),
                static_cast<uintmax_t>(on_disk), static_cast<uintmax_t>(size));
    if (state != "Downloading") break;
    // A kill never loses what was fsynced, and the hook fired at its offset or just after.
    EXPECT_GE(on_disk, kept);
    if (const size_t at = pause.find('@'); at != std::string::npos) {
      EXPECT_GE(on_disk, std::stoull(pause.substr(at + 1)));
      EXPECT_LE(on_disk, size);
    }
    kept = on_disk;
    if (kill == 2 || kept + 1 >= size) break;
    // The next kill at a random offset beyond what is on disk: 1..size/2 the first time.
    const uint64_t lo = kept + 1, hi = kill == 0 ? size / 2 : size;
    pause = "Downloading@" + std::to_string(std::uniform_int_distribution<uint64_t>(lo, hi)(rng));
    ASSERT_NO_FATAL_FAILURE(Start(a, {{pause_variable, pause}}));
    // The restart asks for the bytes from what the partial file holds on.
    ASSERT_TRUE(WaitFor(
        [&] {
          return a.Log().find("downloading " + m.digest() + " from byte " + std::to_string(kept) + " ") !=
                 std::string::npos;
        },
        60s))
        << a.Log();
  }

  // The last restart, without the hook.
  ASSERT_NO_FATAL_FAILURE(Start(a));
  const bool activated =
      WaitFor([&] { return StepOf(a) == v1::DEPLOYMENT_STEP_ACTIVATED && a.Active() == m.digest(); }, 90s);
  ASSERT_TRUE(activated) << "step " << StepName(StepOf(a)) << ", active '" << a.Active() << "'";
  const std::string log = a.Log();
  EXPECT_NE(log.find("resuming deployment"), std::string::npos);
  EXPECT_NE(log.find("in state " + state), std::string::npos);

  std::smatch done;
  const bool downloaded = std::regex_search(
      log, done,
      std::regex("download of " + m.digest() + " complete: ([0-9]+) bytes were on disk, ([0-9]+) fetched"));
  if (state == "Downloading") {
    // Only the missing bytes came over the network.
    ASSERT_TRUE(downloaded) << log;
    EXPECT_EQ(std::stoull(done[1].str()), kept);
    EXPECT_EQ(std::stoull(done[2].str()), size - kept);
  } else {
    // The download had completed before the kill: nothing is fetched again.
    EXPECT_FALSE(downloaded) << log;
    EXPECT_EQ(log.find("downloading " + m.digest()), std::string::npos) << log;
  }

  // On disk: the verified bytes, active, the old model kept as last-known-good, nothing
  // partial left.
  const fs::path installed = a.state / "models" / m.digest() / "model.pt";
  EXPECT_EQ(VerifiedActive(a), m.digest());
  EXPECT_EQ(Trimmed(testing::ReadFileOrEmpty(a.state / "last_good")), old.digest());
  EXPECT_FALSE(fs::exists(a.PartFile(m.digest())));
  // Idle once the probation of its first inferences is over.
  EXPECT_TRUE(WaitFor([&] { return a.PersistedState() == "Idle"; }, 30s)) << a.PersistedState();

  // The model loads and passes its self-test (here too, not only in the agent).
  auto runtime = agent::runtime::TorchRuntime::Create();
  ASSERT_TRUE(runtime.has_value()) << runtime.error().ToString();
  auto model = (*runtime)->Load(installed);
  ASSERT_TRUE(model.has_value()) << model.error().ToString();
  Status self_test = agent::runtime::RunSelfTest(**model, m);
  EXPECT_TRUE(self_test.ok()) << self_test.ToString();

  // The server sees the device on the new version, the agent runs it on frames.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto d = GetDevice(a.DeviceId());
        return d && d->running_size() == 1 && d->running(0).digest() == m.digest();
      },
      20s));
  const auto device = GetDevice(a.DeviceId());
  ASSERT_TRUE(device.has_value());
  EXPECT_NE(DeploymentHistory(a).find(device->current_deployment_id() + " ACTIVATED"), std::string::npos)
      << DeploymentHistory(a);
  EXPECT_TRUE(WaitFor([&] { return a.TelemetryWithInferences("1.1.0") > 0; }, 20s)) << a.Log();
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

INSTANTIATE_TEST_SUITE_P(States, AgentKilledInEveryState,
                         ::testing::Values("Downloading", "Verifying", "Installing", "SelfTesting",
                                           "Activated"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace modelfleet::agent_e2e
