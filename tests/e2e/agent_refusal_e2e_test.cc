// modelfleet-agent refusing what it must not run, end to end (real server, PostgreSQL, s3rver,
// real int8 models from tests/models/make_test_model.py):
//
//   CorruptedArtifactIsNeverInstalled  (a) on the device: the agent is paused (test hook
//       MODELFLEET_AGENT_PAUSE_AT=Verifying) with the whole artifact in its partial file, one
//       byte of it is flipped, and the restarted agent refuses it at verification: FAILED with
//       a reason naming the digest, the bytes deleted, nothing installed or active. (b) in the
//       blob store: the stored object of another version is altered in s3rver; the server
//       refuses to serve it (DATA_LOSS, it never sends unverified bytes) and the agent reports
//       FAILED naming the digest, with nothing on disk.
//   UnknownKeyOrUnsignedIsRefusedBeforeDownload  an unsigned manifest (the server accepts it
//       without --require-signatures) fails on every agent; a manifest signed by the server's
//       trusted key fails on an agent that pins another key under the same key id, and
//       activates on one that pins it. Refused versions are not downloaded at all.
//   TooSlowModelIsNeverActivated  a --slow model (its self-test takes ~6x the manifest's
//       latency budget) fails its self-test: FAILED with the latency in the reason, never active.
//   RollsBackLocallyWhenTheNewModelMisbehavesOnLiveFrames  1.0.0 runs; 1.1.0 passes its
//       self-test but raises on live frames (--live-fault error), 1.2.0 passes it but is far
//       over its latency budget on live frames (--live-fault slow): each time the agent goes
//       back to 1.0.0 by itself within its first inferences and reports ROLLED_BACK; the server
//       sees it running 1.0.0 again.
// (A model that fails its self-test on the output: agent_e2e_test RolloutActivatesThenBrokenModelFails.)
#include "agent_e2e_fixture.h"

namespace modelfleet::agent_e2e {
namespace {

std::string StepName(v1::DeploymentStep step) { return v1::DeploymentStep_Name(step); }

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// The file under `root` holding exactly `bytes` (s3rver keeps each object in a file of its own).
std::optional<fs::path> FindFileWithContent(const fs::path& root, const std::string& bytes) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && it->file_size() == bytes.size() &&
        testing::ReadFileOrEmpty(it->path()) == bytes) {
      return it->path();
    }
  }
  return std::nullopt;
}

// Flips the bits of the byte at `offset` in place (same size, other digest).
void FlipByte(const fs::path& file, uint64_t offset) {
  std::string bytes = testing::ReadFileOrEmpty(file);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(~bytes[offset]);
  WriteFile(file, bytes);
}

class AgentRefusesE2E : public AgentE2E {
 protected:
  // The device's current deployment on the server ("" if none).
  std::string DeploymentOf(AgentProc& a) {
    auto d = GetDevice(a.DeviceId());
    return d ? d->current_deployment_id() : "";
  }
  // Waits until the device's current deployment is in `step` (and is not `previous`: a
  // deployment the test saw end before).
  ::testing::AssertionResult WaitForStep(AgentProc& a, v1::DeploymentStep step, std::chrono::seconds timeout,
                                         const std::string& previous = "") {
    if (WaitFor([&] { return StepOf(a) == step && DeploymentOf(a) != previous; }, timeout)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << a.dir.filename() << "'s deployment " << DeploymentOf(a) << " is in " << StepName(StepOf(a))
           << ", expected a deployment other than '" << previous << "' in " << StepName(step);
  }
};

TEST_F(AgentRefusesE2E, CorruptedArtifactIsNeverInstalled) {
  const v1::Manifest m = Push(Model(), "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  AgentProc& a = NewAgent("mat");

  // (a) The bytes on the device are altered after the download, before verification.
  ASSERT_NO_FATAL_FAILURE(Start(a, {{"MODELFLEET_AGENT_PAUSE_AT", "Verifying"}}));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s)) << a.Log();
  Rollout("1.0.0");
  ASSERT_TRUE(WaitFor([&] { return a.Log().find(": paused in Verifying") != std::string::npos; }, 60s))
      << a.Log();
  ASSERT_NO_FATAL_FAILURE(Kill(a));
  ASSERT_EQ(fs::file_size(a.PartFile(m.digest())), m.size_bytes());
  ASSERT_NO_FATAL_FAILURE(FlipByte(a.PartFile(m.digest()), m.size_bytes() / 2));
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitForStep(a, v1::DEPLOYMENT_STEP_FAILED, 60s));
  std::string history = DeploymentHistory(a);
  EXPECT_NE(history.find("FAILED"), std::string::npos) << history;
  EXPECT_NE(history.find("differs from the manifest's " + m.digest()), std::string::npos) << history;
  EXPECT_NE(history.find("deleted " + std::to_string(m.size_bytes()) + " bytes"), std::string::npos)
      << history;
  EXPECT_FALSE(fs::exists(a.PartFile(m.digest())));
  EXPECT_FALSE(fs::exists(a.state / "models" / m.digest()));
  EXPECT_EQ(a.Active(), "");
  EXPECT_EQ(a.Log().find("self-test of"), std::string::npos) << "a corrupted artifact was loaded";

  // (b) The bytes in the blob store are altered: the server refuses to serve them.
  const fs::path other_dir = Model({"--seed", "2"});
  const v1::Manifest other = Push(other_dir, "1.1.0", 2);
  ASSERT_FALSE(HasFailure());
  const auto object = FindFileWithContent(testing::S3Peer()->data_dir() / bucket_,
                                          testing::ReadFileOrEmpty(other_dir / "model.pt"));
  ASSERT_TRUE(object.has_value()) << "the object of 1.1.0 is not in s3rver's "
                                  << (testing::S3Peer()->data_dir() / bucket_);
  ASSERT_NO_FATAL_FAILURE(FlipByte(*object, 100));
  const size_t failures_before = history.size();
  Rollout("1.1.0");
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string h = DeploymentHistory(a);
        return h.size() > failures_before && h.find(other.digest()) != std::string::npos;
      },
      60s))
      << DeploymentHistory(a);
  history = DeploymentHistory(a);
  EXPECT_NE(history.find("DATA_LOSS"), std::string::npos) << history;
  EXPECT_EQ(StepName(StepOf(a)), StepName(v1::DEPLOYMENT_STEP_FAILED));
  EXPECT_FALSE(fs::exists(a.PartFile(other.digest())));
  EXPECT_FALSE(fs::exists(a.state / "models" / other.digest()));
  EXPECT_EQ(a.Active(), "");
  ASSERT_TRUE(a.proc->Running()) << "the agent died";
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

TEST_F(AgentRefusesE2E, UnknownKeyOrUnsignedIsRefusedBeforeDownload) {
  // The stranger pins another key under the id the server's key uses: the signature is "ci-1"'s
  // but does not verify with what the agent pins.
  const Ed25519KeyPair other_key = GenerateEd25519KeyPair();
  WriteFile(work_.path() / "other.pem", PublicKeyPem(other_key.public_key));
  AgentProc& trusting = NewAgent("trusting");
  AgentProc& stranger =
      NewAgent("stranger", {"publisher_key = ci-1=" + (work_.path() / "other.pem").string()});
  for (AgentProc* a : {&trusting, &stranger}) ASSERT_NO_FATAL_FAILURE(Start(*a));
  ASSERT_TRUE(WaitFor([&] { return !trusting.DeviceId().empty() && !stranger.DeviceId().empty(); }, 30s));

  const v1::Manifest unsigned_m = Push(Model(), "1.0.0", 1, /*sign=*/false);
  ASSERT_FALSE(HasFailure());
  Rollout("1.0.0");
  for (AgentProc* a : {&trusting, &stranger}) {
    ASSERT_TRUE(WaitForStep(*a, v1::DEPLOYMENT_STEP_FAILED, 60s));
    const std::string history = DeploymentHistory(*a);
    EXPECT_NE(history.find("PERMISSION_DENIED"), std::string::npos) << history;
    EXPECT_NE(history.find("is unsigned"), std::string::npos) << history;
  }

  const v1::Manifest signed_m = Push(Model({"--seed", "2"}), "1.1.0", 2);
  ASSERT_FALSE(HasFailure());
  Rollout("1.1.0");
  ASSERT_TRUE(WaitFor([&] { return StepOf(trusting) == v1::DEPLOYMENT_STEP_ACTIVATED; }, 60s));
  EXPECT_EQ(trusting.Active(), signed_m.digest());
  // Its second FAILED deployment.
  ASSERT_TRUE(WaitFor([&] { return Count(DeploymentHistory(stranger), " FAILED: ") == 2; }, 60s))
      << DeploymentHistory(stranger);
  const std::string history = DeploymentHistory(stranger);
  EXPECT_NE(history.find("signature (key id 'ci-1') does not verify with any of the 1 pinned publisher keys"),
            std::string::npos)
      << history;
  EXPECT_EQ(stranger.Active(), "");
  // Refused before a byte was fetched.
  for (const auto& digest : {unsigned_m.digest(), signed_m.digest()}) {
    EXPECT_EQ(stranger.AllLogs().find("downloading " + digest), std::string::npos);
    EXPECT_FALSE(fs::exists(stranger.PartFile(digest)));
    EXPECT_FALSE(fs::exists(stranger.state / "models" / digest));
  }
  EXPECT_EQ(trusting.AllLogs().find("downloading " + unsigned_m.digest()), std::string::npos);
}

TEST_F(AgentRefusesE2E, TooSlowModelIsNeverActivated) {
  const v1::Manifest slow = Push(Model({"--slow"}), "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  AgentProc& a = NewAgent("mat");
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s)) << a.Log();
  Rollout("1.0.0");
  ASSERT_TRUE(WaitForStep(a, v1::DEPLOYMENT_STEP_FAILED, 90s));
  const std::string history = DeploymentHistory(a);
  EXPECT_NE(history.find("exceeds the budget of 50 ms"), std::string::npos) << history;
  EXPECT_EQ(a.Active(), "");
  EXPECT_FALSE(fs::exists(a.state / "models" / slow.digest()));
  EXPECT_EQ(a.Log().find("ACTIVATED"), std::string::npos);
  auto d = GetDevice(a.DeviceId());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->running_size(), 0);
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

TEST_F(AgentRefusesE2E, RollsBackLocallyWhenTheNewModelMisbehavesOnLiveFrames) {
  const v1::Manifest good = Push(Model(), "1.0.0", 1);
  ASSERT_FALSE(HasFailure());
  AgentProc& a = NewAgent("mat", {"rollback_window = 10"});
  ASSERT_NO_FATAL_FAILURE(Start(a));
  ASSERT_TRUE(WaitFor([&] { return !a.DeviceId().empty(); }, 30s)) << a.Log();
  Rollout("1.0.0");
  ASSERT_TRUE(WaitFor(
      [&] { return StepOf(a) == v1::DEPLOYMENT_STEP_ACTIVATED && a.Active() == good.digest(); }, 60s));

  struct Case {
    std::vector<std::string> args;
    std::string version;
    uint64_t counter;
    std::string reason;  // in the ROLLED_BACK report
  };
  const std::vector<Case> cases = {
      {{"--seed", "3", "--live-fault", "error"},
       "1.1.0",
       2,
       "inferences failed or exceeded the latency budget"},
      {{"--seed", "4", "--live-fault", "slow"},
       "1.2.0",
       3,
       "inferences failed or exceeded the latency budget"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.version);
    const v1::Manifest bad = Push(Model(c.args), c.version, c.counter);
    ASSERT_FALSE(HasFailure());
    const size_t log_at = a.Log().size();
    const std::string previous = DeploymentOf(a);
    Rollout(c.version);
    ASSERT_TRUE(WaitForStep(a, v1::DEPLOYMENT_STEP_ROLLED_BACK, 90s, previous));
    const std::string log = a.Log().substr(log_at);
    // It was activated (self-test passed), then rolled back by the agent itself.
    EXPECT_NE(log.find("self-test of mat-person@" + c.version + " passed"), std::string::npos) << log;
    EXPECT_NE(log.find("ACTIVATED: mat-person@" + c.version), std::string::npos) << log;
    EXPECT_NE(log.find("rolling back mat-person@" + c.version + " to mat-person@1.0.0"), std::string::npos)
        << log;
    EXPECT_EQ(a.Active(), good.digest());
    const std::string history = DeploymentHistory(a);
    EXPECT_NE(history.find("ROLLED_BACK: local rollback: "), std::string::npos) << history;
    EXPECT_NE(history.find(c.reason), std::string::npos) << history;
    // The server sees the device back on 1.0.0, and 1.0.0 runs again.
    EXPECT_TRUE(WaitFor(
        [&] {
          auto d = GetDevice(a.DeviceId());
          return d && d->running_size() == 1 && d->running(0).version() == "1.0.0" &&
                 d->running(0).digest() == good.digest();
        },
        20s));
    const size_t runs = a.TelemetryWithInferences("1.0.0");
    EXPECT_TRUE(WaitFor([&] { return a.TelemetryWithInferences("1.0.0") > runs + 1; }, 20s));
    EXPECT_NE(a.Active(), bad.digest());
  }
  EXPECT_EQ(a.proc->Stop(10s), 0);
}

}  // namespace
}  // namespace modelfleet::agent_e2e
