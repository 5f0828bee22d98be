// Unit tests of the agent's update flow: the declared state table (every legal transition is
// accepted and persisted, every other refused), the durable record, resuming a download from the
// bytes of a partial file, the free-space check, the verifier, and the model store's atomic
// pointer switch, the Updater with fakes (verification failures, probation, the after-persist
// test hook).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "agent/update/downloader.h"
#include "agent/update/fs_util.h"
#include "agent/update/model_store.h"
#include "agent/update/update_state.h"
#include "agent/update/updater.h"
#include "agent/update/verifier.h"
#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "process.h"
#include "test_data.h"

namespace modelfleet::agent::update {
namespace {

constexpr std::array<UpdateState, 8> kAll = {
    UpdateState::kIdle,        UpdateState::kDownloading, UpdateState::kVerifying,
    UpdateState::kInstalling,  UpdateState::kSelfTesting, UpdateState::kActivated,
    UpdateState::kFailed,      UpdateState::kRolledBack};

// A store already in state `s` (reached through legal transitions only).
UpdateStateStore StoreIn(const std::filesystem::path& dir, UpdateState s) {
  auto store = UpdateStateStore::Open(dir);
  EXPECT_TRUE(store.has_value());
  v1::Assignment a;
  a.set_deployment_id("dep-1");
  const std::vector<UpdateState> path_to = [&]() -> std::vector<UpdateState> {
    using U = UpdateState;
    switch (s) {
      case U::kIdle: return {};
      case U::kDownloading: return {U::kDownloading};
      case U::kVerifying: return {U::kDownloading, U::kVerifying};
      case U::kInstalling: return {U::kDownloading, U::kVerifying, U::kInstalling};
      case U::kSelfTesting: return {U::kDownloading, U::kVerifying, U::kInstalling, U::kSelfTesting};
      case U::kActivated: return {U::kDownloading, U::kVerifying, U::kInstalling, U::kSelfTesting, U::kActivated};
      case U::kFailed: return {U::kDownloading, U::kFailed};
      case U::kRolledBack:
        return {U::kDownloading, U::kVerifying, U::kInstalling, U::kSelfTesting, U::kActivated, U::kRolledBack};
    }
    return {};
  }();
  for (size_t i = 0; i < path_to.size(); ++i) {
    Status st = i == 0 ? store->Begin(a) : store->Transition(path_to[i]);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  return std::move(*store);
}

TEST(UpdateStateTable, EveryPairIsLegalExactlyWhenDeclared) {
  int legal = 0;
  for (UpdateState from : kAll) {
    for (UpdateState to : kAll) {
      testing::TempDir dir("agent-update");
      UpdateStateStore store = StoreIn(dir.path(), from);
      ASSERT_EQ(store.state(), from);
      const bool declared = IsLegalUpdateTransition(from, to);
      Status s = (from == UpdateState::kIdle && to == UpdateState::kDownloading)
                     ? store.Begin(v1::Assignment())
                     : store.Transition(to, "why");
      SCOPED_TRACE(std::string(UpdateStateName(from)) + " -> " + std::string(UpdateStateName(to)));
      if (declared) {
        ++legal;
        EXPECT_TRUE(s.ok()) << s.ToString();
        EXPECT_EQ(store.state(), to);
        // Persisted: a fresh open sees the new state.
        auto again = UpdateStateStore::Open(dir.path());
        ASSERT_TRUE(again.has_value());
        EXPECT_EQ(again->state(), to);
      } else {
        EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
        EXPECT_EQ(store.state(), from);
        auto again = UpdateStateStore::Open(dir.path());
        ASSERT_TRUE(again.has_value());
        EXPECT_EQ(again->state(), from);
      }
    }
  }
  EXPECT_EQ(legal, static_cast<int>(kUpdateTransitions.size()));
}

TEST(UpdateStateTable, TerminalStatesAndReportedSteps) {
  EXPECT_TRUE(IsTerminalUpdateState(UpdateState::kActivated));
  EXPECT_TRUE(IsTerminalUpdateState(UpdateState::kFailed));
  EXPECT_TRUE(IsTerminalUpdateState(UpdateState::kRolledBack));
  EXPECT_FALSE(IsTerminalUpdateState(UpdateState::kSelfTesting));
  EXPECT_EQ(ReportedStep(UpdateState::kDownloading), v1::DEPLOYMENT_STEP_DOWNLOADING);
  EXPECT_EQ(ReportedStep(UpdateState::kFailed), v1::DEPLOYMENT_STEP_FAILED);
  EXPECT_EQ(ReportedStep(UpdateState::kActivated), v1::DEPLOYMENT_STEP_ACTIVATED);
  for (UpdateState s : kAll) EXPECT_EQ(UpdateStateFromName(UpdateStateName(s)), s);
  // Every non-idle state has a way to a terminal state, and every terminal state back to Idle.
  for (UpdateState s : kAll) {
    if (s == UpdateState::kIdle) continue;
    if (IsTerminalUpdateState(s)) {
      EXPECT_TRUE(IsLegalUpdateTransition(s, UpdateState::kIdle));
    } else {
      EXPECT_TRUE(IsLegalUpdateTransition(s, UpdateState::kFailed)) << UpdateStateName(s);
    }
  }
}

TEST(UpdateStateTable, RecordRoundTripsAndIdleRemembersTheDeployment) {
  testing::TempDir dir("agent-update");
  UpdateStateStore store = StoreIn(dir.path(), UpdateState::kVerifying);
  ASSERT_TRUE(store.Transition(UpdateState::kFailed, "bad\nsignature").ok());
  auto again = UpdateStateStore::Open(dir.path());
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->record().reason, "bad signature");
  EXPECT_EQ(again->record().assignment.deployment_id(), "dep-1");
  ASSERT_TRUE(again->Transition(UpdateState::kIdle).ok());
  auto idle = UpdateStateStore::Open(dir.path());
  EXPECT_EQ(idle->state(), UpdateState::kIdle);
  EXPECT_EQ(idle->record().last_finished_deployment, "dep-1");
  // Begin refuses while an update is under way.
  UpdateStateStore busy = StoreIn(dir.path(), UpdateState::kDownloading);
  EXPECT_EQ(busy.Begin(v1::Assignment()).code(), StatusCode::kFailedPrecondition);
}

TEST(UpdateStateTable, CorruptRecordIsDataLoss) {
  testing::TempDir dir("agent-update");
  ASSERT_TRUE(AtomicWriteFile(dir.path() / "update.state", "garbage").ok());
  auto store = UpdateStateStore::Open(dir.path());
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), StatusCode::kDataLoss);
}

// Serves `bytes`, recording the offsets asked for; can fail after `fail_after` bytes.
class FakeFetcher : public ChunkFetcher {
 public:
  explicit FakeFetcher(std::string bytes, size_t chunk = 1000) : bytes_(std::move(bytes)), chunk_(chunk) {}
  Status Fetch(uint64_t offset, uint64_t length, const Sink& sink) override {
    offsets.push_back(offset);
    const uint64_t end = length == 0 ? bytes_.size() : std::min<uint64_t>(bytes_.size(), offset + length);
    v1::DownloadChunk first;
    first.mutable_manifest()->set_digest(Sha256Hex(bytes_));
    MF_RETURN_IF_ERROR(sink(first));
    for (uint64_t o = offset; o < end; o += chunk_) {
      if (served_ >= fail_after) return Unavailable("connection lost");
      v1::DownloadChunk c;
      c.set_offset(o);
      c.set_data(bytes_.substr(o, std::min<uint64_t>(chunk_, end - o)));
      served_ += c.data().size();
      MF_RETURN_IF_ERROR(sink(c));
    }
    return Status::Ok();
  }
  std::vector<uint64_t> offsets;
  uint64_t fail_after = UINT64_MAX;
  uint64_t served_ = 0;

 private:
  std::string bytes_;
  size_t chunk_;
};

TEST(Download, ResumesFromThePartialFile) {
  testing::TempDir dir("agent-update");
  const std::string bytes = testing::PatternBytes(25000, 7);
  const std::string digest = Sha256Hex(bytes);
  const auto part = dir.path() / "partial" / (digest + ".part");
  ASSERT_TRUE(EnsureDir(part.parent_path()).ok());
  {
    std::ofstream out(part, std::ios::binary);
    out << bytes.substr(0, 10000);  // what a killed agent left behind
  }
  FakeFetcher fetcher(bytes);
  std::vector<uint64_t> progress;
  auto r = DownloadToPartial(fetcher, digest, bytes.size(), part, {.request_bytes = 4096}, [&](uint64_t d) {
    progress.push_back(d);
  });
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->resumed_from, 10000u);
  EXPECT_EQ(r->bytes_fetched, bytes.size() - 10000u);
  EXPECT_EQ(r->bytes_done, bytes.size());
  ASSERT_FALSE(fetcher.offsets.empty());
  EXPECT_EQ(fetcher.offsets.front(), 10000u);  // only the missing bytes were asked for
  EXPECT_EQ(fetcher.offsets, (std::vector<uint64_t>{10000, 14096, 18192, 22288}));
  EXPECT_EQ(progress.front(), 10000u);
  EXPECT_EQ(progress.back(), bytes.size());
  EXPECT_EQ(*ReadWholeFile(part), bytes);
}

TEST(Download, InterruptedThenResumedGivesTheSameBytes) {
  testing::TempDir dir("agent-update");
  const std::string bytes = testing::PatternBytes(30000, 9);
  const std::string digest = Sha256Hex(bytes);
  const auto part = dir.path() / "partial" / (digest + ".part");
  FakeFetcher broken(bytes);
  broken.fail_after = 12000;
  auto r1 = DownloadToPartial(broken, digest, bytes.size(), part, {}, nullptr);
  ASSERT_FALSE(r1.has_value());
  EXPECT_EQ(r1.error().code(), StatusCode::kUnavailable);
  const uint64_t kept = FileSizeOrZero(part);
  EXPECT_EQ(kept, 12000u);
  FakeFetcher ok(bytes);
  auto r2 = DownloadToPartial(ok, digest, bytes.size(), part, {}, nullptr);
  ASSERT_TRUE(r2.has_value()) << r2.error().ToString();
  EXPECT_EQ(r2->resumed_from, kept);
  EXPECT_EQ(ok.offsets, std::vector<uint64_t>{kept});
  v1::Manifest m = testing::ManifestFor("m", "1.0.0", bytes);
  EXPECT_TRUE(VerifyArtifactFile(part, m).ok());
}

TEST(Download, OversizedPartialStartsOverAndWrongDigestIsDataLoss) {
  testing::TempDir dir("agent-update");
  const std::string bytes = testing::PatternBytes(5000, 3);
  const std::string digest = Sha256Hex(bytes);
  const auto part = dir.path() / "partial" / (digest + ".part");
  ASSERT_TRUE(EnsureDir(part.parent_path()).ok());
  ASSERT_TRUE(AtomicWriteFile(part, std::string(9000, 'x')).ok());
  FakeFetcher fetcher(bytes);
  auto r = DownloadToPartial(fetcher, digest, bytes.size(), part, {}, nullptr);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->resumed_from, 0u);
  FakeFetcher other(testing::PatternBytes(5000, 4));
  auto bad = DownloadToPartial(other, digest, bytes.size(), dir.path() / "partial" / "x.part", {}, nullptr);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), StatusCode::kDataLoss);
}

TEST(Download, RefusesWithoutDiskSpace) {
  testing::TempDir dir("agent-update");
  const std::string bytes = testing::PatternBytes(100, 3);
  FakeFetcher fetcher(bytes);
  auto r = DownloadToPartial(fetcher, Sha256Hex(bytes), bytes.size(), dir.path() / "partial" / "a.part",
                             {.reserve_bytes = UINT64_MAX / 2}, nullptr);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(fetcher.offsets.empty());
}

TEST(Verifier, SignatureAgainstPinnedKeysAndAntiRollback) {
  const std::string bytes = testing::PatternBytes(1000, 1);
  v1::Manifest m = testing::ManifestFor("m", "1.2.0", bytes);
  m.set_version_counter(5);
  const Ed25519KeyPair k1 = GenerateEd25519KeyPair(), k2 = GenerateEd25519KeyPair(), k3 = GenerateEd25519KeyPair();
  std::vector<PinnedKey> pinned = {{"", k1.public_key, "k1"}, {"ci", k2.public_key, "k2"}};
  EXPECT_EQ(VerifyManifestTrust(m, pinned).code(), StatusCode::kPermissionDenied);  // unsigned
  ASSERT_TRUE(SignManifest(m, "ci", k2.private_key).ok());
  EXPECT_TRUE(VerifyManifestTrust(m, pinned).ok());
  v1::Manifest wrong_id = m;
  ASSERT_TRUE(SignManifest(wrong_id, "other", k2.private_key).ok());
  EXPECT_EQ(VerifyManifestTrust(wrong_id, pinned).code(), StatusCode::kPermissionDenied);
  v1::Manifest unknown = m;
  ASSERT_TRUE(SignManifest(unknown, "ci", k3.private_key).ok());
  EXPECT_EQ(VerifyManifestTrust(unknown, pinned).code(), StatusCode::kPermissionDenied);
  v1::Manifest tampered = m;
  tampered.set_version("9.9.9");
  EXPECT_EQ(VerifyManifestTrust(tampered, pinned).code(), StatusCode::kPermissionDenied);

  EXPECT_TRUE(VerifyVersionCounter(m, std::nullopt, false).ok());
  EXPECT_TRUE(VerifyVersionCounter(m, 5, false).ok());
  EXPECT_EQ(VerifyVersionCounter(m, 6, false).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(VerifyVersionCounter(m, 6, true).ok());
}

TEST(Verifier, ArtifactWithOtherBytesOrSizeIsDataLossNamingTheDigests) {
  testing::TempDir dir("agent-update");
  const std::string bytes = testing::PatternBytes(3000, 5);
  const v1::Manifest m = testing::ManifestFor("m", "1.0.0", bytes);
  const auto file = dir.path() / "a.part";
  ASSERT_TRUE(AtomicWriteFile(file, bytes).ok());
  EXPECT_TRUE(VerifyArtifactFile(file, m).ok());

  std::string flipped = bytes;
  flipped[1234] = static_cast<char>(~flipped[1234]);  // same size, other digest
  ASSERT_TRUE(AtomicWriteFile(file, flipped).ok());
  Status bad_digest = VerifyArtifactFile(file, m);
  EXPECT_EQ(bad_digest.code(), StatusCode::kDataLoss);
  EXPECT_NE(bad_digest.message().find(Sha256Hex(flipped)), std::string::npos) << bad_digest.message();
  EXPECT_NE(bad_digest.message().find(m.digest()), std::string::npos) << bad_digest.message();

  ASSERT_TRUE(AtomicWriteFile(file, bytes.substr(0, 2999)).ok());
  Status short_file = VerifyArtifactFile(file, m);
  EXPECT_EQ(short_file.code(), StatusCode::kDataLoss);
  EXPECT_NE(short_file.message().find("2999 bytes"), std::string::npos) << short_file.message();

  EXPECT_EQ(VerifyArtifactFile(dir.path() / "missing.part", m).code(), StatusCode::kDataLoss);
}

TEST(Verifier, SignatureOverOtherFieldsOrByAnUnpinnedKeyIsRefused) {
  const std::string bytes = testing::PatternBytes(1000, 2);
  v1::Manifest m = testing::ManifestFor("m", "2.0.0", bytes);
  const Ed25519KeyPair pinned = GenerateEd25519KeyPair(), stranger = GenerateEd25519KeyPair();
  const std::vector<PinnedKey> keys = {{"ci-1", pinned.public_key, "ci-1.pem"}};
  ASSERT_TRUE(SignManifest(m, "ci-1", pinned.private_key).ok());
  EXPECT_TRUE(VerifyManifestTrust(m, keys).ok());
  // The signed manifest with another digest (an artifact swapped under a valid signature).
  v1::Manifest swapped = m;
  swapped.set_digest(Sha256Hex("other bytes"));
  Status s = VerifyManifestTrust(swapped, keys);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("does not verify with any of the 1 pinned"), std::string::npos) << s.message();
  // Signature bytes damaged.
  v1::Manifest damaged = m;
  std::string sig = damaged.signature().signature();
  sig[0] = static_cast<char>(~sig[0]);
  damaged.mutable_signature()->set_signature(sig);
  EXPECT_EQ(VerifyManifestTrust(damaged, keys).code(), StatusCode::kPermissionDenied);
  // A key the agent does not pin, under the pinned key's id.
  v1::Manifest unknown = m;
  ASSERT_TRUE(SignManifest(unknown, "ci-1", stranger.private_key).ok());
  EXPECT_EQ(VerifyManifestTrust(unknown, keys).code(), StatusCode::kPermissionDenied);
  // No pinned key at all verifies nothing.
  EXPECT_EQ(VerifyManifestTrust(m, {}).code(), StatusCode::kPermissionDenied);
  // Rotation: the old and the new key both pinned, either signature passes.
  const std::vector<PinnedKey> rotating = {{"ci-1", pinned.public_key, "old"}, {"ci-2", stranger.public_key, "new"}};
  v1::Manifest by_new = m;
  ASSERT_TRUE(SignManifest(by_new, "ci-2", stranger.private_key).ok());
  EXPECT_TRUE(VerifyManifestTrust(m, rotating).ok());
  EXPECT_TRUE(VerifyManifestTrust(by_new, rotating).ok());
}

TEST(Verifier, DowngradeOnlyAsASignedRollback) {
  v1::Manifest m = testing::ManifestFor("m", "1.0.0", testing::PatternBytes(10, 1));
  m.set_version_counter(3);
  Status s = VerifyVersionCounter(m, 4, /*is_rollback=*/false);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("anti-rollback: version_counter 3 of 1.0.0 is lower than the running 4"),
            std::string::npos) << s.message();
  EXPECT_TRUE(VerifyVersionCounter(m, 4, /*is_rollback=*/true).ok());
  EXPECT_TRUE(VerifyVersionCounter(m, 3, false).ok());   // the same counter (a re-install)
  EXPECT_TRUE(VerifyVersionCounter(m, 2, false).ok());   // an upgrade
  EXPECT_TRUE(VerifyVersionCounter(m, std::nullopt, false).ok());  // nothing runs yet
}

TEST(ModelStore, InstallActivateKeepsLastKnownGood) {
  testing::TempDir dir("agent-update");
  ModelStore store(dir.path());
  ASSERT_TRUE(store.Init().ok());
  std::vector<v1::Manifest> ms;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::string bytes = testing::PatternBytes(2000, seed);
    v1::Manifest m = testing::ManifestFor("m", "1.0." + std::to_string(seed), bytes);
    ASSERT_TRUE(AtomicWriteFile(store.PartPath(m.digest()), bytes).ok());
    ASSERT_TRUE(store.Install(m).ok());
    ASSERT_TRUE(store.Install(m).ok());  // idempotent
    EXPECT_TRUE(store.IsInstalled(m.digest()));
    EXPECT_FALSE(std::filesystem::exists(store.PartPath(m.digest())));
    ASSERT_TRUE(store.Activate(m.digest()).ok());
    ASSERT_TRUE(store.Activate(m.digest()).ok());  // idempotent: last_good unchanged
    ms.push_back(m);
  }
  EXPECT_EQ(store.ActiveDigest(), ms[2].digest());
  EXPECT_EQ(store.LastGoodDigest(), ms[1].digest());
  EXPECT_EQ(store.LoadManifest(ms[2].digest())->version(), "1.0.3");
  EXPECT_GE(store.CollectGarbage(), 2000u);  // ms[0] (model + manifest): neither active nor last good
  EXPECT_FALSE(store.IsInstalled(ms[0].digest()));
  ASSERT_TRUE(store.RollBack().ok());
  EXPECT_EQ(store.ActiveDigest(), ms[1].digest());
  EXPECT_EQ(store.Discard(ms[1].digest()), 0u);  // the active model is never discarded
  EXPECT_EQ(store.Activate(std::string(64, 'a')).code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------- the Updater, with fakes

class FakeModel : public runtime::LoadedModel {
 public:
  explicit FakeModel(std::vector<float> scores) : scores_(std::move(scores)) {}
  Expected<runtime::InferenceResult> Run(std::span<const float>, const std::vector<int64_t>&) override {
    auto r = runtime::ResultFromOutputs(scores_);
    if (r) {
      r->latency = std::chrono::microseconds(100);
    }
    return r;
  }

 private:
  std::vector<float> scores_;
};

// Every model file loads as a model answering `scores`.
class FakeRuntime : public runtime::ModelRuntime {
 public:
  std::string Name() const override { return "fake"; }
  Expected<std::unique_ptr<runtime::LoadedModel>> Load(const std::filesystem::path& file) override {
    if (!std::filesystem::exists(file)) return Fail(NotFound(file.string()));
    return std::unique_ptr<runtime::LoadedModel>(std::make_unique<FakeModel>(scores));
  }
  std::vector<float> scores = {0.1f, 0.2f, 0.3f, 0.4f};
};

class FakeReporter : public DeploymentReporter {
 public:
  Status Report(const v1::DeploymentReport& r) override {
    if (down) return Unavailable("server away");
    reports.push_back(r);
    return Status::Ok();
  }
  std::vector<std::string> Steps() const {
    std::vector<std::string> out;
    for (const auto& r : reports) {
      std::string n = v1::DeploymentStep_Name(r.step());
      out.push_back(n.substr(std::string("DEPLOYMENT_STEP_").size()));
    }
    // Consecutive DOWNLOADING progress reports count once.
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }
  bool down = false;
  std::vector<v1::DeploymentReport> reports;
};

class UpdaterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(store_.Init().ok());
    key_ = GenerateEd25519KeyPair();
    options_.keys = {{"", key_.public_key, "test"}};
    options_.self_test = {.warmup_runs = 1, .timed_runs = 1};
  }
  // A signed assignment of `bytes` with the self-test the fake model passes.
  v1::Assignment MakeAssignment(const std::string& bytes, const std::string& version, uint64_t counter,
                                bool sign = true) {
    v1::Assignment a;
    a.set_deployment_id("dep-" + version);
    v1::Manifest m = testing::ManifestFor("m", version, bytes);
    m.mutable_input_spec()->clear_shape();
    for (int64_t d : {1, 4}) m.mutable_input_spec()->add_shape(d);
    m.mutable_input_spec()->set_layout("NC");
    for (float x : {1.f, 2.f, 3.f, 4.f}) m.mutable_self_test()->add_reference_input(x);
    for (float x : {0.1f, 0.2f, 0.3f, 0.4f}) m.mutable_self_test()->add_reference_output(x);
    m.mutable_self_test()->set_tolerance(0.01);
    m.set_version_counter(counter);
    if (sign) {
      EXPECT_TRUE(SignManifest(m, "k", key_.private_key).ok());
    }
    *a.mutable_manifest() = m;
    artifacts_[version] = bytes;
    return a;
  }
  std::unique_ptr<Updater> MakeUpdater(UpdateStateStore& state) {
    return std::make_unique<Updater>(
        state, store_, runtime_, reporter_,
        [this](const v1::Assignment& a) -> std::unique_ptr<ChunkFetcher> {
          ++fetchers_made_;
          return std::make_unique<FakeFetcher>(artifacts_[a.manifest().version()], 700);
        },
        options_,
        [this](const v1::Manifest& m, std::unique_ptr<runtime::LoadedModel>) { activated_.push_back(m.version()); },
        [this](const v1::Manifest& m, std::unique_ptr<runtime::LoadedModel>) { rolled_back_to_.push_back(m.version()); });
  }

  testing::TempDir dir_{"agent-updater"};
  ModelStore store_{dir_.path()};
  FakeRuntime runtime_;
  FakeReporter reporter_;
  UpdaterOptions options_;
  Ed25519KeyPair key_;
  std::map<std::string, std::string> artifacts_;
  std::vector<std::string> activated_, rolled_back_to_;
  int fetchers_made_ = 0;
};

TEST_F(UpdaterTest, GoodAssignmentIsActivatedWithEveryStepReported) {
  auto state = UpdateStateStore::Open(dir_.path());
  ASSERT_TRUE(state.has_value());
  auto updater = MakeUpdater(*state);
  const v1::Assignment a = MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1);
  ASSERT_TRUE(updater->Start(a).ok());
  EXPECT_EQ(state->state(), UpdateState::kIdle);
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "VERIFYING", "INSTALLING",
                                                         "SELF_TESTING", "ACTIVATED"}));
  EXPECT_EQ(store_.ActiveDigest(), a.manifest().digest());
  EXPECT_EQ(activated_, std::vector<std::string>{"1.0.0"});
  EXPECT_EQ(state->record().last_finished_deployment, "dep-1.0.0");
}

TEST_F(UpdaterTest, UnsignedOrLowerCounterOrBadSelfTestFailsAndCleansUp) {
  auto state = UpdateStateStore::Open(dir_.path());
  auto updater = MakeUpdater(*state);
  ASSERT_TRUE(updater->Start(MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 5)).ok());
  const std::string running = *store_.ActiveDigest();

  reporter_.reports.clear();
  ASSERT_TRUE(updater->Start(MakeAssignment(testing::PatternBytes(5000, 2), "1.1.0", 6, /*sign=*/false)).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "FAILED"}));
  EXPECT_NE(reporter_.reports.back().reason().find("unsigned"), std::string::npos);

  reporter_.reports.clear();
  ASSERT_TRUE(updater->Start(MakeAssignment(testing::PatternBytes(5000, 3), "0.9.0", 4)).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "FAILED"}));
  EXPECT_NE(reporter_.reports.back().reason().find("anti-rollback"), std::string::npos);

  reporter_.reports.clear();
  runtime_.scores = {0.4f, 0.3f, 0.2f, 0.1f};  // the self-test fails
  const v1::Assignment bad = MakeAssignment(testing::PatternBytes(5000, 4), "1.2.0", 7);
  ASSERT_TRUE(updater->Start(bad).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "VERIFYING", "INSTALLING",
                                                         "SELF_TESTING", "FAILED"}));
  EXPECT_NE(reporter_.reports.back().reason().find("deleted 5"), std::string::npos)
      << reporter_.reports.back().reason();
  EXPECT_FALSE(store_.IsInstalled(bad.manifest().digest()));
  EXPECT_EQ(store_.ActiveDigest(), running);
  EXPECT_EQ(state->state(), UpdateState::kIdle);
}

TEST_F(UpdaterTest, NoDiskSpaceFailsTheDeploymentWithoutFetching) {
  auto state = UpdateStateStore::Open(dir_.path());
  options_.download.reserve_bytes = UINT64_MAX / 2;
  auto updater = MakeUpdater(*state);
  ASSERT_TRUE(updater->Start(MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1)).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "FAILED"}));
  EXPECT_NE(reporter_.reports.back().reason().find("not enough disk space"), std::string::npos);
  EXPECT_EQ(state->state(), UpdateState::kIdle);
  EXPECT_FALSE(store_.ActiveDigest().has_value());
}

TEST_F(UpdaterTest, ServerAwayKeepsStateAndContinueFinishes) {
  auto state = UpdateStateStore::Open(dir_.path());
  auto updater = MakeUpdater(*state);
  reporter_.down = true;
  Status s = updater->Start(MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(state->state(), UpdateState::kDownloading);
  // A "restart": a new store and updater from the persisted record.
  reporter_.down = false;
  auto state2 = UpdateStateStore::Open(dir_.path());
  ASSERT_EQ(state2->state(), UpdateState::kDownloading);
  auto updater2 = MakeUpdater(*state2);
  ASSERT_TRUE(updater2->Continue().ok());
  EXPECT_EQ(state2->state(), UpdateState::kIdle);
  EXPECT_EQ(reporter_.Steps().back(), "ACTIVATED");
}

TEST_F(UpdaterTest, ProbationFailureRollsBackToLastKnownGood) {
  auto state = UpdateStateStore::Open(dir_.path());
  ProbationVerdict verdict{ProbationVerdict::Kind::kPassed, ""};
  options_.probation = [&] { return verdict; };
  auto updater = MakeUpdater(*state);
  const v1::Assignment first = MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1);
  ASSERT_TRUE(updater->Start(first).ok());
  reporter_.reports.clear();
  verdict = {ProbationVerdict::Kind::kPending, ""};
  const v1::Assignment second = MakeAssignment(testing::PatternBytes(5000, 2), "1.1.0", 2);
  ASSERT_TRUE(updater->Start(second).ok());
  EXPECT_EQ(state->state(), UpdateState::kActivated);  // waiting for the verdict
  EXPECT_EQ(store_.ActiveDigest(), second.manifest().digest());
  ASSERT_TRUE(updater->Continue().ok());
  EXPECT_EQ(state->state(), UpdateState::kActivated);
  verdict = {ProbationVerdict::Kind::kFailed, "15 of the first 20 inferences failed"};
  ASSERT_TRUE(updater->Continue().ok());
  EXPECT_EQ(state->state(), UpdateState::kIdle);
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "VERIFYING", "INSTALLING",
                                                         "SELF_TESTING", "ACTIVATED", "ROLLED_BACK"}));
  EXPECT_NE(reporter_.reports.back().reason().find("15 of the first 20"), std::string::npos);
  EXPECT_EQ(store_.ActiveDigest(), first.manifest().digest());
  EXPECT_EQ(rolled_back_to_, std::vector<std::string>{"1.0.0"});
}

TEST_F(UpdaterTest, CorruptedBytesOnDiskFailAtVerifyingNamingTheDigest) {
  auto state = UpdateStateStore::Open(dir_.path());
  const v1::Assignment a = MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1);
  const std::string digest = a.manifest().digest();
  // Between the download and the verification a byte of the partial file changes (flash
  // corruption, tampering): the hook runs right after Verifying was persisted.
  options_.after_persist = [&](UpdateState s, uint64_t) {
    if (s != UpdateState::kVerifying) return;
    std::string bytes = *ReadWholeFile(store_.PartPath(digest));
    bytes[4000] = static_cast<char>(~bytes[4000]);
    ASSERT_TRUE(AtomicWriteFile(store_.PartPath(digest), bytes).ok());
  };
  auto updater = MakeUpdater(*state);
  ASSERT_TRUE(updater->Start(a).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "VERIFYING", "FAILED"}));
  const std::string reason = reporter_.reports.back().reason();
  EXPECT_NE(reason.find("DATA_LOSS"), std::string::npos) << reason;
  EXPECT_NE(reason.find("differs from the manifest's " + digest), std::string::npos) << reason;
  EXPECT_NE(reason.find("deleted 5000 bytes"), std::string::npos) << reason;
  EXPECT_FALSE(std::filesystem::exists(store_.PartPath(digest)));
  EXPECT_FALSE(store_.IsInstalled(digest));
  EXPECT_FALSE(store_.ActiveDigest().has_value());
  EXPECT_TRUE(activated_.empty());
}

TEST_F(UpdaterTest, UnknownKeyFailsBeforeAnythingIsFetched) {
  auto state = UpdateStateStore::Open(dir_.path());
  options_.keys = {{"", GenerateEd25519KeyPair().public_key, "another.pem"}};
  auto updater = MakeUpdater(*state);
  const v1::Assignment a = MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1);
  ASSERT_TRUE(updater->Start(a).ok());
  EXPECT_EQ(reporter_.Steps(), (std::vector<std::string>{"DOWNLOADING", "FAILED"}));
  EXPECT_NE(reporter_.reports.back().reason().find("PERMISSION_DENIED"), std::string::npos);
  EXPECT_EQ(fetchers_made_, 0);
  EXPECT_FALSE(std::filesystem::exists(store_.PartPath(a.manifest().digest())));
  EXPECT_EQ(state->state(), UpdateState::kIdle);
}

TEST_F(UpdaterTest, AfterPersistHookSeesEveryPersistedStateInOrder) {
  auto state = UpdateStateStore::Open(dir_.path());
  std::vector<std::pair<UpdateState, uint64_t>> seen;
  options_.after_persist = [&](UpdateState s, uint64_t bytes) {
    // Whatever the hook sees is already durable: a restart here would re-enter `s`.
    auto persisted = UpdateStateStore::Open(dir_.path());
    ASSERT_TRUE(persisted.has_value());
    EXPECT_EQ(persisted->state(), s);
    seen.emplace_back(s, bytes);
  };
  options_.download.request_bytes = 2000;
  auto updater = MakeUpdater(*state);
  ASSERT_TRUE(updater->Start(MakeAssignment(testing::PatternBytes(5000, 1), "1.0.0", 1)).ok());
  using U = UpdateState;
  EXPECT_EQ(seen, (std::vector<std::pair<U, uint64_t>>{{U::kDownloading, 0},
                                                       {U::kDownloading, 0},  // the download starts
                                                       {U::kDownloading, 2000},
                                                       {U::kDownloading, 4000},
                                                       {U::kDownloading, 5000},
                                                       {U::kVerifying, 5000},
                                                       {U::kInstalling, 5000},
                                                       {U::kSelfTesting, 0},  // moved into models/
                                                       {U::kActivated, 0},
                                                       {U::kIdle, 0}}));
}

}  // namespace
}  // namespace modelfleet::agent::update
