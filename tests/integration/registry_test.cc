// Integration tests of the registry core (server/registry/registry.h) against a real
// PostgreSQL cluster, a real LocalBlobStore and a real ArtifactCache. Each test gets a fresh
// database and a fresh blob directory; the cluster is shared by the whole binary.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "registry_fixture.h"
#include "libpq_leak_suppression.h"


namespace modelfleet::registry {
namespace {

using ::modelfleet::testing::Chunks;
using ::modelfleet::testing::Cluster;
using ::modelfleet::testing::DirEntries;
using ::modelfleet::testing::DownloadAll;
using ::modelfleet::testing::DownloadOf;
using ::modelfleet::testing::FlipByte;
using ::modelfleet::testing::ManifestFor;
using ::modelfleet::testing::PatternBytes;
using ::modelfleet::testing::ReaderOf;
using ::modelfleet::testing::ReaderOfBytes;

[[maybe_unused]] ::testing::Environment* const g_environment =
    ::testing::AddGlobalTestEnvironment(new ::modelfleet::testing::PostgresEnvironment);

class RegistryTest : public ::modelfleet::testing::RegistryFixture {
 protected:
  // After a failed push: no version row, no object in the store besides `keys_before`, no
  // upload left in the store's tmp dir, and the version does not exist.
  void ExpectNothingRemains(const std::vector<std::string>& keys_before, int64_t rows_before,
                            const std::string& model, const std::string& version) {
    EXPECT_EQ(VersionRows(), rows_before);
    EXPECT_EQ(StoreKeys(), keys_before);
    EXPECT_TRUE(DirEntries(store_tmp_dir()).empty())
        << "left in tmp: " << ::testing::PrintToString(DirEntries(store_tmp_dir()));
    auto got = GetVersion(model, version);
    EXPECT_FALSE(got) << "the version exists after a failed push";
    if (ValidateSemVer(version, "version").ok()) MF_EXPECT_CODE(got, StatusCode::kNotFound);
  }

  // Pushes `manifest` with `reader`, expects `code` (and `field` if non-empty) and nothing left.
  void ExpectPushFailsCleanly(const v1::Manifest& manifest, const registry::ChunkReader& reader,
                              StatusCode code, const std::string& field) {
    std::vector<std::string> keys_before = StoreKeys();
    int64_t rows_before = VersionRows();
    auto pushed = reg().PushVersion(manifest, reader, caller_);
    ASSERT_FALSE(pushed) << "push unexpectedly succeeded";
    EXPECT_EQ(pushed.error().code(), code) << pushed.error().ToString();
    if (!field.empty()) {
      EXPECT_EQ(pushed.error().field(), field) << pushed.error().ToString();
    }
    ExpectNothingRemains(keys_before, rows_before, manifest.model(), manifest.version());
  }
};

// =========================================================================== models

TEST_F(RegistryTest, CreateAndGetModel) {
  v1::CreateModelRequest req;
  auto* m = req.mutable_model();
  m->set_name("mat-detector");
  m->set_description("pressure mat person detector");
  m->set_task("person-detection");
  m->add_class_labels("empty");
  m->add_class_labels("lying_full");
  m->mutable_input_spec()->add_shape(1);
  m->mutable_input_spec()->add_shape(16);
  m->mutable_input_spec()->set_dtype("float32");
  m->mutable_input_spec()->set_layout("NC");
  m->set_archived(true);            // ignored
  m->set_created_by("someone-else");  // ignored
  auto created = reg().CreateModel(req, caller_);
  ASSERT_TRUE(created) << created.error().ToString();
  EXPECT_EQ(created->name(), "mat-detector");
  EXPECT_FALSE(created->archived());
  EXPECT_EQ(created->created_by(), caller_.Actor());
  EXPECT_GT(created->create_time().seconds(), 0);

  v1::GetModelRequest get;
  get.set_name("mat-detector");
  auto got = reg().GetModel(get);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->description(), "pressure mat person detector");
  EXPECT_EQ(got->task(), "person-detection");
  ASSERT_EQ(got->class_labels_size(), 2);
  EXPECT_EQ(got->class_labels(1), "lying_full");
  EXPECT_EQ(got->input_spec().shape_size(), 2);
  EXPECT_EQ(got->input_spec().layout(), "NC");
  EXPECT_EQ(got->created_by(), "ci-bot#42");
  EXPECT_FALSE(got->archived());

  get.set_name("no-such-model");
  MF_EXPECT_CODE(reg().GetModel(get), StatusCode::kNotFound);
}

TEST_F(RegistryTest, DuplicateModelNameIsAlreadyExists) {
  CreateModel("dup");
  v1::CreateModelRequest req;
  req.mutable_model()->set_name("dup");
  req.mutable_model()->set_description("second");
  MF_EXPECT_CODE(reg().CreateModel(req, caller_), StatusCode::kAlreadyExists);
  EXPECT_EQ(QueryInt("SELECT count(*) FROM models"), 1);
}

TEST_F(RegistryTest, InvalidModelNameIsInvalidArgument) {
  for (const std::string& name :
       std::vector<std::string>{"", "Upper", "-leading-dash", "has space", "a/b", std::string(64, 'a')}) {
    v1::CreateModelRequest req;
    req.mutable_model()->set_name(name);
    auto created = reg().CreateModel(req, caller_);
    ASSERT_FALSE(created) << "'" << name << "' was accepted";
    EXPECT_EQ(created.error().code(), StatusCode::kInvalidArgument) << name;
    EXPECT_EQ(created.error().field(), "model.name") << name << ": " << created.error().ToString();
  }
  EXPECT_EQ(QueryInt("SELECT count(*) FROM models"), 0);
}

TEST_F(RegistryTest, ListModelsKeysetPagination) {
  for (const char* name : {"delta", "alpha", "echo", "charlie", "bravo"}) CreateModel(name);
  std::vector<std::vector<std::string>> pages;
  std::string token;
  do {
    v1::ListModelsRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    auto resp = reg().ListModels(req);
    ASSERT_TRUE(resp) << resp.error().ToString();
    pages.emplace_back();
    for (const auto& m : resp->models()) pages.back().push_back(m.name());
    token = resp->next_page_token();
    ASSERT_LE(pages.size(), 5u) << "pagination does not terminate";
  } while (!token.empty());
  std::vector<std::vector<std::string>> expected{{"alpha", "bravo"}, {"charlie", "delta"}, {"echo"}};
  EXPECT_EQ(pages, expected);
}

TEST_F(RegistryTest, ListModelsExactPageHasNoDanglingToken) {
  for (const char* name : {"m1", "m2", "m3", "m4"}) CreateModel(name);
  v1::ListModelsRequest req;
  req.set_page_size(2);
  auto first = reg().ListModels(req);
  ASSERT_TRUE(first);
  ASSERT_FALSE(first->next_page_token().empty());
  req.set_page_token(first->next_page_token());
  auto second = reg().ListModels(req);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->models_size(), 2);
  EXPECT_TRUE(second->next_page_token().empty()) << "a page ending exactly at the end needs no next token";
}

TEST_F(RegistryTest, ListModelsBadPageTokenIsInvalidArgument) {
  for (const char* name : {"a1", "a2", "a3"}) CreateModel(name);
  v1::ListModelsRequest req;
  req.set_page_size(1);
  for (const std::string& token :
       std::vector<std::string>{"zz-not-hex", "abc", "6d6f64656c737c", HexEncode("versions|active|a1")}) {
    req.set_page_token(token);
    auto resp = reg().ListModels(req);
    ASSERT_FALSE(resp) << "token '" << token << "' was accepted";
    EXPECT_EQ(resp.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(resp.error().field(), "page_token") << resp.error().ToString();
  }
  // A token is bound to its query: one from include_archived=false does not serve =true.
  req.set_page_token("");
  auto first = reg().ListModels(req);
  ASSERT_TRUE(first);
  ASSERT_FALSE(first->next_page_token().empty());
  req.set_page_token(first->next_page_token());
  req.set_include_archived(true);
  auto other = reg().ListModels(req);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().field(), "page_token");
}

TEST_F(RegistryTest, ListModelsHidesArchivedUnlessAsked) {
  for (const char* name : {"keep", "gone"}) CreateModel(name);
  v1::ArchiveModelRequest archive;
  archive.set_name("gone");
  ASSERT_TRUE(reg().ArchiveModel(archive, caller_));
  v1::ListModelsRequest req;
  auto active = reg().ListModels(req);
  ASSERT_TRUE(active);
  ASSERT_EQ(active->models_size(), 1);
  EXPECT_EQ(active->models(0).name(), "keep");
  req.set_include_archived(true);
  auto all = reg().ListModels(req);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->models_size(), 2);
}

TEST_F(RegistryTest, ArchiveModelAndPushToArchivedModel) {
  CreateModel("old");
  v1::ArchiveModelRequest archive;
  archive.set_name("old");
  auto archived = reg().ArchiveModel(archive, caller_);
  ASSERT_TRUE(archived) << archived.error().ToString();
  EXPECT_TRUE(archived->archived());
  auto again = reg().ArchiveModel(archive, caller_);
  ASSERT_TRUE(again) << "archiving twice must be OK: " << again.error().ToString();
  EXPECT_TRUE(again->archived());

  v1::GetModelRequest get;
  get.set_name("old");
  auto got = reg().GetModel(get);
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->archived());

  archive.set_name("never-existed");
  MF_EXPECT_CODE(reg().ArchiveModel(archive, caller_), StatusCode::kNotFound);

  std::string bytes = PatternBytes(5000, 1);
  auto calls = std::make_shared<std::atomic<int>>(0);
  ExpectPushFailsCleanly(ManifestFor("old", "1.0.0", bytes), ReaderOfBytes(bytes, 4096, calls),
                         StatusCode::kFailedPrecondition, "");
  EXPECT_EQ(calls->load(), 0) << "bytes were read although the model is archived";
}

// =========================================================================== push

TEST_F(RegistryTest, PushStoresReadyVersionUnderContentAddress) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 2);
  v1::Manifest m = ManifestFor("det", "1.0.0", bytes);
  auto pushed = Push(m, bytes, 3000);  // 4 chunks, the last one short
  ASSERT_TRUE(pushed) << pushed.error().ToString();
  EXPECT_EQ(pushed->state(), v1::VERSION_STATE_READY);
  EXPECT_EQ(pushed->manifest().digest(), Sha256Hex(bytes));
  EXPECT_EQ(pushed->manifest().size_bytes(), 10000u);
  EXPECT_EQ(pushed->created_by(), caller_.Actor());
  EXPECT_EQ(pushed->manifest().SerializeAsString(), m.SerializeAsString());
  EXPECT_EQ(pushed->aliases_size(), 0);

  std::string key = "sha256/" + Sha256Hex(bytes);
  EXPECT_EQ(StoreKeys(), std::vector<std::string>{key});
  auto info = store_->Stat(key);
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->size, bytes.size());
  EXPECT_EQ(::modelfleet::testing::ReadWholeFile(ObjectPath(Sha256Hex(bytes))), bytes);
  EXPECT_TRUE(DirEntries(store_tmp_dir()).empty());

  auto got = GetVersion("det", "1.0.0");
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->state(), v1::VERSION_STATE_READY);
  EXPECT_EQ(got->manifest().SerializeAsString(), m.SerializeAsString());
  EXPECT_EQ(QueryInt("SELECT count(*) FROM model_versions WHERE state = 'READY' AND blob_key = $1", {key}), 1);
}

TEST_F(RegistryTest, PushToUnknownModelIsNotFound) {
  std::string bytes = PatternBytes(100, 3);
  ExpectPushFailsCleanly(ManifestFor("ghost", "1.0.0", bytes), ReaderOfBytes(bytes),
                         StatusCode::kNotFound, "");
}

TEST_F(RegistryTest, PushInvalidManifestIsInvalidArgument) {
  CreateModel("det");
  std::string bytes = PatternBytes(100, 3);
  v1::Manifest m = ManifestFor("det", "not-semver", bytes);
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes), StatusCode::kInvalidArgument, "manifest.version");
  m = ManifestFor("det", "1.0.0", bytes);
  m.set_digest("ABC");
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes), StatusCode::kInvalidArgument, "manifest.digest");
}

TEST_F(RegistryTest, PushIdenticalAgainReturnsSameVersionWithoutReading) {
  CreateModel("det");
  std::string bytes = PatternBytes(9000, 4);
  v1::Manifest m = ManifestFor("det", "1.2.3", bytes);
  auto first = Push(m, bytes);
  ASSERT_TRUE(first) << first.error().ToString();

  auto calls = std::make_shared<std::atomic<int>>(0);
  auto second = reg().PushVersion(m, ReaderOfBytes(bytes, 4096, calls), caller_);
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(calls->load(), 0) << "an idempotent retry must not consume the stream";
  EXPECT_EQ(second->SerializeAsString(), first->SerializeAsString());
  EXPECT_EQ(VersionRows(), 1);
  EXPECT_EQ(StoreKeys().size(), 1u);
}

TEST_F(RegistryTest, PushSameVersionOtherBytesIsAlreadyExists) {
  CreateModel("det");
  std::string bytes = PatternBytes(9000, 5);
  PushOk("det", "1.0.0", bytes);
  std::vector<std::string> keys_before = StoreKeys();

  std::string other = PatternBytes(9000, 6);
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto pushed = reg().PushVersion(ManifestFor("det", "1.0.0", other), ReaderOfBytes(other, 4096, calls), caller_);
  ASSERT_FALSE(pushed);
  EXPECT_EQ(pushed.error().code(), StatusCode::kAlreadyExists) << pushed.error().ToString();
  EXPECT_EQ(calls->load(), 0);
  EXPECT_EQ(StoreKeys(), keys_before);
  EXPECT_EQ(VersionRows(), 1);
  auto got = GetVersion("det", "1.0.0");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->manifest().digest(), Sha256Hex(bytes));
}

TEST_F(RegistryTest, PushWrongDigestLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 7);
  v1::Manifest m = ManifestFor("det", "1.0.0", bytes);
  m.set_digest(Sha256Hex("something else"));
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes), StatusCode::kInvalidArgument, "manifest.digest");
}

TEST_F(RegistryTest, PushTooFewBytesLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 8);
  v1::Manifest m = ManifestFor("det", "1.0.0", bytes);
  // The stream ends early: the declared size is not reached.
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes.substr(0, 9999)), StatusCode::kInvalidArgument,
                         "manifest.size_bytes");
}

TEST_F(RegistryTest, PushTooManyBytesLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 9);
  v1::Manifest m = ManifestFor("det", "1.0.0", bytes);
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes + "x"), StatusCode::kInvalidArgument, "");
  // Declared size smaller than the digest's bytes (digest correct for the whole stream).
  m.set_size_bytes(bytes.size() - 1);
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes), StatusCode::kInvalidArgument, "");
}

TEST_F(RegistryTest, PushEmptyChunkLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 10);
  std::vector<std::string> chunks = Chunks(bytes, 4000);
  chunks.insert(chunks.begin() + 1, std::string());
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes), ReaderOf(chunks), StatusCode::kInvalidArgument,
                         "chunk");
}

TEST_F(RegistryTest, PushOversizedChunkLeavesNothing) {
  RegistryOptions options;
  options.max_chunk_bytes = 1024;
  MakeRegistry(options);
  CreateModel("det");
  std::string bytes = PatternBytes(5000, 11);
  std::vector<std::string> chunks{bytes.substr(0, 1024), bytes.substr(1024, 1025), bytes.substr(2049)};
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes), ReaderOf(chunks), StatusCode::kInvalidArgument,
                         "chunk");
  // Exactly max_chunk_bytes is fine.
  auto ok = reg().PushVersion(ManifestFor("det", "1.0.0", bytes), ReaderOfBytes(bytes, 1024), caller_);
  EXPECT_TRUE(ok) << ok.error().ToString();
}

TEST_F(RegistryTest, PushReaderErrorMidwayLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(20000, 12);
  auto calls = std::make_shared<std::atomic<int>>(0);
  Status gone(StatusCode::kCancelled, "client went away");
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes),
                         ReaderOf(Chunks(bytes, 4096), calls, std::make_pair(size_t{2}, gone)),
                         StatusCode::kCancelled, "");
  EXPECT_EQ(calls->load(), 3) << "the push must stop at the reader's error";
  // A client sending a second manifest is an INVALID_ARGUMENT from the reader: passed through.
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes),
                         ReaderOf(Chunks(bytes, 4096), nullptr,
                                  std::make_pair(size_t{1}, InvalidArgument("manifest", "sent twice"))),
                         StatusCode::kInvalidArgument, "manifest");
  // The version is not poisoned: a correct push succeeds afterwards.
  auto ok = Push(ManifestFor("det", "1.0.0", bytes), bytes);
  EXPECT_TRUE(ok) << ok.error().ToString();
}

TEST_F(RegistryTest, FailedPushOfBytesAnotherVersionSharesKeepsThatBlob) {
  CreateModel("det");
  std::string bytes = PatternBytes(20000, 13);
  PushOk("det", "1.0.0", bytes);
  // Same bytes as 1.0.0, but the stream breaks midway.
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.1", bytes),
                         ReaderOf(Chunks(bytes, 4096), nullptr,
                                  std::make_pair(size_t{3}, Status(StatusCode::kUnavailable, "network"))),
                         StatusCode::kUnavailable, "");
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

TEST_F(RegistryTest, VersionsWithIdenticalBytesShareOneBlob) {
  CreateModel("det");
  CreateModel("other");
  std::string bytes = PatternBytes(7000, 14);
  PushOk("det", "1.0.0", bytes);
  PushOk("det", "1.0.1", bytes);
  PushOk("other", "0.1.0", bytes);
  EXPECT_EQ(VersionRows(), 3);
  EXPECT_EQ(StoreKeys(), std::vector<std::string>{"sha256/" + Sha256Hex(bytes)});
  EXPECT_EQ(QueryInt("SELECT count(DISTINCT blob_key) FROM model_versions"), 1);
}

TEST_F(RegistryTest, ConcurrentIdenticalPushesCreateOneVersion) {
  CreateModel("det");
  std::string bytes = PatternBytes(50000, 15);
  v1::Manifest m = ManifestFor("det", "2.0.0", bytes);
  constexpr int kThreads = 6;
  std::vector<Expected<v1::ModelVersion>> results(kThreads, Fail(Internal("not run")));
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = reg().PushVersion(m, ReaderOfBytes(bytes, 1000), caller_);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(results[i]) << i << ": " << results[i].error().ToString();
    EXPECT_EQ(results[i]->manifest().digest(), m.digest());
    EXPECT_EQ(results[i]->create_time().SerializeAsString(), results[0]->create_time().SerializeAsString());
  }
  EXPECT_EQ(VersionRows(), 1);
  EXPECT_EQ(StoreKeys().size(), 1u);
  EXPECT_TRUE(DirEntries(store_tmp_dir()).empty());
  auto d = DownloadAll(reg(), DownloadOf("det", "2.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

// =========================================================================== signatures

class SignedPushTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (HasFatalFailure()) return;
    keys_ = GenerateEd25519KeyPair();
    v1::AddPublisherKeyRequest add;
    add.set_key_id("ci-key-1");
    add.set_public_key(keys_.public_key);
    auto added = reg().AddPublisherKey(add, caller_);
    ASSERT_TRUE(added) << added.error().ToString();
    EXPECT_EQ(added->key_id(), "ci-key-1");
    EXPECT_EQ(added->public_key(), keys_.public_key);
    EXPECT_EQ(added->added_by(), caller_.Actor());
    CreateModel("det");
  }

  v1::Manifest Signed(const std::string& version, const std::string& bytes,
                      const std::string& key_id = "ci-key-1") {
    v1::Manifest m = ManifestFor("det", version, bytes);
    Status s = SignManifest(m, key_id, keys_.private_key);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return m;
  }

  Ed25519KeyPair keys_;
};

TEST_F(SignedPushTest, SignedManifestWithTrustedKeyIsAccepted) {
  std::string bytes = PatternBytes(3000, 20);
  v1::Manifest m = Signed("1.0.0", bytes);
  auto pushed = Push(m, bytes);
  ASSERT_TRUE(pushed) << pushed.error().ToString();
  auto got = GetVersion("det", "1.0.0");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->manifest().signature().key_id(), "ci-key-1");
  EXPECT_EQ(got->manifest().signature().signature(), m.signature().signature());
  MF_EXPECT_OK(VerifyManifestSignature(got->manifest(), keys_.public_key));
}

TEST_F(SignedPushTest, TamperedManifestIsPermissionDenied) {
  std::string bytes = PatternBytes(3000, 21);
  v1::Manifest m = Signed("1.0.0", bytes);
  (*m.mutable_metrics())["accuracy"] = 0.99;  // changed after signing
  auto calls = std::make_shared<std::atomic<int>>(0);
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes, 4096, calls), StatusCode::kPermissionDenied, "");
  EXPECT_EQ(calls->load(), 0);
}

TEST_F(SignedPushTest, UnknownKeyIdIsPermissionDenied) {
  std::string bytes = PatternBytes(3000, 22);
  ExpectPushFailsCleanly(Signed("1.0.0", bytes, "unknown-key"), ReaderOfBytes(bytes),
                         StatusCode::kPermissionDenied, "");
}

TEST_F(SignedPushTest, SignatureByAnotherKeyUnderTrustedIdIsPermissionDenied) {
  std::string bytes = PatternBytes(3000, 23);
  v1::Manifest m = ManifestFor("det", "1.0.0", bytes);
  MF_ASSERT_OK(SignManifest(m, "ci-key-1", GenerateEd25519KeyPair().private_key));
  ExpectPushFailsCleanly(m, ReaderOfBytes(bytes), StatusCode::kPermissionDenied, "");
}

TEST_F(SignedPushTest, RevokedKeyIsPermissionDenied) {
  std::string bytes = PatternBytes(3000, 24);
  PushOk("det", "1.0.0", bytes, [&](v1::Manifest& m) { MF_EXPECT_OK(SignManifest(m, "ci-key-1", keys_.private_key)); });
  v1::RevokePublisherKeyRequest revoke;
  revoke.set_key_id("ci-key-1");
  auto revoked = reg().RevokePublisherKey(revoke, caller_);
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  EXPECT_GT(revoked->revoke_time().seconds(), 0);
  auto keys = reg().ListPublisherKeys();
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->keys_size(), 1);
  EXPECT_TRUE(keys->keys(0).has_revoke_time());

  std::string bytes2 = PatternBytes(3000, 25);
  ExpectPushFailsCleanly(Signed("1.0.1", bytes2), ReaderOfBytes(bytes2), StatusCode::kPermissionDenied, "");
  // The version pushed before the revocation is still there.
  EXPECT_TRUE(GetVersion("det", "1.0.0"));

  revoke.set_key_id("never-added");
  MF_EXPECT_CODE(reg().RevokePublisherKey(revoke, caller_), StatusCode::kNotFound);
}

TEST_F(SignedPushTest, RequireSignaturesRejectsUnsigned) {
  RegistryOptions options;
  options.require_signatures = true;
  MakeRegistry(options);
  std::string bytes = PatternBytes(3000, 26);
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes), ReaderOfBytes(bytes),
                         StatusCode::kFailedPrecondition, "");
  auto pushed = Push(Signed("1.0.0", bytes), bytes);
  EXPECT_TRUE(pushed) << pushed.error().ToString();
}

TEST_F(SignedPushTest, AddPublisherKeyValidation) {
  v1::AddPublisherKeyRequest add;
  add.set_key_id("short-key");
  add.set_public_key(std::string(31, 'k'));
  auto added = reg().AddPublisherKey(add, caller_);
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(added.error().field(), "public_key") << added.error().ToString();

  add.set_key_id("bad key id");
  add.set_public_key(GenerateEd25519KeyPair().public_key);
  MF_EXPECT_CODE(reg().AddPublisherKey(add, caller_), StatusCode::kInvalidArgument);

  add.set_key_id("ci-key-1");  // already added in SetUp
  MF_EXPECT_CODE(reg().AddPublisherKey(add, caller_), StatusCode::kAlreadyExists);

  auto keys = reg().ListPublisherKeys();
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->keys_size(), 1);
}

// =========================================================================== list versions

class ListVersionsTest : public RegistryTest {
 protected:
  // 1.0.0 acc 0.80 hw rev2
  // 1.1.0 acc 0.91 hw rev3   (alias production)
  // 1.2.0 acc 0.95 hw rev3   (archived)
  // 1.3.0 acc 0.97 hw rev2   (alias staging)
  // 1.4.0 acc 0.90 hw rev3   format onnx-fp32
  void SetUp() override {
    RegistryTest::SetUp();
    if (HasFatalFailure()) return;
    CreateModel("det");
    struct Spec {
      const char* version;
      double accuracy;
      const char* hw;
      const char* format;
    };
    uint32_t seed = 100;
    for (const Spec& s : {Spec{"1.0.0", 0.80, "rev2", "torchscript-int8"}, Spec{"1.1.0", 0.91, "rev3", "torchscript-int8"},
                          Spec{"1.2.0", 0.95, "rev3", "torchscript-int8"}, Spec{"1.3.0", 0.97, "rev2", "torchscript-int8"},
                          Spec{"1.4.0", 0.90, "rev3", "onnx-fp32"}}) {
      PushOk("det", s.version, PatternBytes(1000, ++seed), [&](v1::Manifest& m) {
        (*m.mutable_metrics())["accuracy"] = s.accuracy;
        (*m.mutable_labels())["hw"] = s.hw;
        m.set_format(s.format);
      });
    }
    ASSERT_TRUE(SetAlias("det", "production", "1.1.0"));
    ASSERT_TRUE(SetAlias("det", "staging", "1.3.0"));
    ASSERT_TRUE(ArchiveVersion("det", "1.2.0"));
  }

  using Versions = std::vector<std::string>;
};

TEST_F(ListVersionsTest, NoFilterListsAllNewestFirst) {
  EXPECT_EQ(ListAllVersions("det"), (Versions{"1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"}));
  v1::ListVersionsRequest req;
  req.set_model("det");
  auto resp = reg().ListVersions(req);
  ASSERT_TRUE(resp);
  ASSERT_EQ(resp->versions_size(), 5);
  EXPECT_EQ(resp->versions(1).aliases_size(), 1);
  EXPECT_EQ(resp->versions(1).aliases(0), "staging");
  EXPECT_EQ(resp->versions(2).state(), v1::VERSION_STATE_ARCHIVED);
  EXPECT_TRUE(resp->versions(2).has_archive_time());
  EXPECT_TRUE(resp->next_page_token().empty());
}

TEST_F(ListVersionsTest, Filters) {
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy >= 0.9"), (Versions{"1.4.0", "1.3.0", "1.2.0", "1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy > 0.9"), (Versions{"1.3.0", "1.2.0", "1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy < 0.9"), (Versions{"1.0.0"}));
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy = 0.97"), (Versions{"1.3.0"}));
  EXPECT_EQ(ListAllVersions("det", "metrics.latency_ms < 100"), Versions{});
  EXPECT_EQ(ListAllVersions("det", "labels.hw = \"rev3\""), (Versions{"1.4.0", "1.2.0", "1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "labels.hw != \"rev3\""), (Versions{"1.3.0", "1.0.0"}));
  EXPECT_EQ(ListAllVersions("det", "labels.site != \"x\""), (Versions{"1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"}));
  EXPECT_EQ(ListAllVersions("det", "alias = \"production\""), (Versions{"1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "alias != \"production\""), (Versions{"1.4.0", "1.3.0", "1.2.0", "1.0.0"}));
  EXPECT_EQ(ListAllVersions("det", "state = ARCHIVED"), (Versions{"1.2.0"}));
  EXPECT_EQ(ListAllVersions("det", "state = READY"), (Versions{"1.4.0", "1.3.0", "1.1.0", "1.0.0"}));
  EXPECT_EQ(ListAllVersions("det", "format = \"onnx-fp32\""), (Versions{"1.4.0"}));
  EXPECT_EQ(ListAllVersions("det", "version = \"1.3.0\""), (Versions{"1.3.0"}));
  // Combined with AND (any case).
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy >= 0.9 AND labels.hw = \"rev3\""),
            (Versions{"1.4.0", "1.2.0", "1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy >= 0.9 and labels.hw = \"rev3\" AND state = READY"),
            (Versions{"1.4.0", "1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "labels.hw = \"rev3\" AND alias = \"production\" AND metrics.accuracy >= 0.9"),
            (Versions{"1.1.0"}));
  EXPECT_EQ(ListAllVersions("det", "state = ARCHIVED AND alias = \"production\""), Versions{});
  // Filters combine with pagination.
  EXPECT_EQ(ListAllVersions("det", "metrics.accuracy >= 0.9", 1), (Versions{"1.4.0", "1.3.0", "1.2.0", "1.1.0"}));
}

TEST_F(ListVersionsTest, AliasFilterFollowsMoves) {
  ASSERT_TRUE(SetAlias("det", "production", "1.3.0"));
  EXPECT_EQ(ListAllVersions("det", "alias = \"production\""), (Versions{"1.3.0"}));
}

TEST_F(ListVersionsTest, BadFilterIsInvalidArgument) {
  for (const std::string filter :
       {"metrics.accuracy >>= 0.9", "bogus = 1", "state = DELETED", "labels.hw = rev3", "metrics.accuracy >= abc",
        "metrics.accuracy >= 0.9 AND", "metrics.accuracy >= 0.9 OR state = READY", "labels.hw < \"rev3\"",
        "alias = \"unterminated"}) {
    v1::ListVersionsRequest req;
    req.set_model("det");
    req.set_filter(filter);
    auto resp = reg().ListVersions(req);
    ASSERT_FALSE(resp) << "filter '" << filter << "' was accepted";
    EXPECT_EQ(resp.error().code(), StatusCode::kInvalidArgument) << filter;
    EXPECT_EQ(resp.error().field(), "filter") << filter << ": " << resp.error().ToString();
  }
}

TEST_F(ListVersionsTest, UnknownModelIsNotFound) {
  v1::ListVersionsRequest req;
  req.set_model("ghost");
  MF_EXPECT_CODE(reg().ListVersions(req), StatusCode::kNotFound);
}

TEST_F(ListVersionsTest, TokenReusedWithOtherFilterIsInvalidArgument) {
  v1::ListVersionsRequest req;
  req.set_model("det");
  req.set_page_size(1);
  req.set_filter("metrics.accuracy >= 0.9");
  auto first = reg().ListVersions(req);
  ASSERT_TRUE(first);
  ASSERT_FALSE(first->next_page_token().empty());
  req.set_page_token(first->next_page_token());
  auto same = reg().ListVersions(req);
  ASSERT_TRUE(same) << same.error().ToString();
  EXPECT_EQ(same->versions(0).manifest().version(), "1.3.0");

  for (const std::string filter : {"", "metrics.accuracy >= 0.8", "labels.hw = \"rev3\""}) {
    req.set_filter(filter);
    auto other = reg().ListVersions(req);
    ASSERT_FALSE(other) << "token accepted with filter '" << filter << "'";
    EXPECT_EQ(other.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(other.error().field(), "page_token") << other.error().ToString();
  }
  // Nor for another model.
  CreateModel("other");
  req.set_model("other");
  req.set_filter("metrics.accuracy >= 0.9");
  auto other_model = reg().ListVersions(req);
  ASSERT_FALSE(other_model);
  EXPECT_EQ(other_model.error().field(), "page_token");
  // Garbage.
  req.set_model("det");
  req.set_page_token("not a token");
  auto garbage = reg().ListVersions(req);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().field(), "page_token");
}

class VersionPaginationTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (HasFatalFailure()) return;
    CreateModel("det");
    for (int i = 0; i < 10; ++i) {
      std::string version = "1.0." + std::to_string(i);
      PushOk("det", version, PatternBytes(500 + i, 200 + i));
      original_.insert(original_.begin(), version);  // newest first
    }
  }
  std::vector<std::string> original_;
};

TEST_F(VersionPaginationTest, PageSizeThreeReturnsEachOnceNewestFirst) {
  std::vector<int> page_sizes;
  std::vector<std::string> seen;
  std::string token;
  do {
    v1::ListVersionsRequest req;
    req.set_model("det");
    req.set_page_size(3);
    req.set_page_token(token);
    auto resp = reg().ListVersions(req);
    ASSERT_TRUE(resp) << resp.error().ToString();
    page_sizes.push_back(resp->versions_size());
    for (const auto& v : resp->versions()) seen.push_back(v.manifest().version());
    token = resp->next_page_token();
    ASSERT_LE(page_sizes.size(), 10u);
  } while (!token.empty());
  EXPECT_EQ(page_sizes, (std::vector<int>{3, 3, 3, 1}));
  EXPECT_EQ(seen, original_);
}

TEST_F(VersionPaginationTest, PaginationStaysCorrectWhileOthersWrite) {
  v1::ListVersionsRequest req;
  req.set_model("det");
  req.set_page_size(3);
  auto first = reg().ListVersions(req);
  ASSERT_TRUE(first) << first.error().ToString();
  std::vector<std::string> seen;
  for (const auto& v : first->versions()) seen.push_back(v.manifest().version());
  std::string token = first->next_page_token();
  ASSERT_FALSE(token.empty());

  // Five writers push new versions concurrently: page 2 is read while they run, the rest of
  // the pages after all of them committed (their rows are newer than the token's position).
  std::atomic<int> pushed_ok{0};
  std::latch start(6);
  std::vector<std::thread> writers;
  for (int i = 0; i < 5; ++i) {
    writers.emplace_back([&, i] {
      start.arrive_and_wait();
      std::string bytes = PatternBytes(700 + i, 300 + i);
      auto r = reg().PushVersion(ManifestFor("det", "2.0." + std::to_string(i), bytes), ReaderOfBytes(bytes, 100),
                                 caller_);
      if (r) ++pushed_ok;
    });
  }
  start.arrive_and_wait();
  std::vector<std::string> rest;
  auto next_page = [&]() -> bool {
    req.set_page_token(token);
    auto resp = reg().ListVersions(req);
    EXPECT_TRUE(resp) << resp.error().ToString();
    if (!resp) return false;
    for (const auto& v : resp->versions()) rest.push_back(v.manifest().version());
    token = resp->next_page_token();
    return rest.size() <= 20;
  };
  EXPECT_TRUE(next_page());  // no ASSERT: the writers must be joined
  for (auto& t : writers) t.join();
  EXPECT_EQ(pushed_ok.load(), 5);
  while (!token.empty()) ASSERT_TRUE(next_page());
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_EQ(seen, original_) << "each original version exactly once, newest first, nothing new mixed in";
  std::set<std::string> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), seen.size()) << "duplicates";
  // And a fresh listing sees all 15.
  EXPECT_EQ(ListAllVersions("det", "", 4).size(), 15u);
}

TEST_F(VersionPaginationTest, InvalidPageSizeIsInvalidArgument) {
  v1::ListVersionsRequest req;
  req.set_model("det");
  req.set_page_size(-1);
  auto resp = reg().ListVersions(req);
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().field(), "page_size");
  req.set_page_size(1001);
  MF_EXPECT_CODE(reg().ListVersions(req), StatusCode::kInvalidArgument);
}

// =========================================================================== aliases

class AliasTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (HasFatalFailure()) return;
    CreateModel("det");
    PushOk("det", "1.0.0", PatternBytes(800, 400));
    PushOk("det", "1.1.0", PatternBytes(800, 401));
    PushOk("det", "1.2.0", PatternBytes(800, 402));
  }

  std::vector<v1::AliasChange> History(const std::string& alias = "", int page_size = 0) {
    std::vector<v1::AliasChange> out;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      v1::ListAliasHistoryRequest req;
      req.set_model("det");
      req.set_alias(alias);
      req.set_page_size(page_size);
      req.set_page_token(token);
      auto resp = reg().ListAliasHistory(req);
      EXPECT_TRUE(resp) << resp.error().ToString();
      if (!resp) return out;
      out.insert(out.end(), resp->changes().begin(), resp->changes().end());
      token = resp->next_page_token();
      if (token.empty()) return out;
    }
    ADD_FAILURE() << "history pagination did not terminate";
    return out;
  }

  int64_t HistoryRows() { return QueryInt("SELECT count(*) FROM alias_history"); }
};

TEST_F(AliasTest, SetMoveResolveDeleteWithHistory) {
  auto set = SetAlias("det", "production", "1.0.0", "first release");
  ASSERT_TRUE(set) << set.error().ToString();
  EXPECT_EQ(set->version(), "1.0.0");
  EXPECT_EQ(set->updated_by(), caller_.Actor());
  auto resolved = Resolve("det", "production");
  ASSERT_TRUE(resolved) << resolved.error().ToString();
  EXPECT_EQ(resolved->manifest().version(), "1.0.0");
  EXPECT_EQ(resolved->aliases_size(), 1);

  auth::Principal releaser{7, "release-manager", v1::ROLE_ADMIN};
  v1::SetAliasRequest move;
  move.set_model("det");
  move.set_alias("production");
  move.set_version("1.1.0");
  move.set_reason("better accuracy");
  auto moved = reg().SetAlias(move, releaser);
  ASSERT_TRUE(moved) << moved.error().ToString();
  EXPECT_EQ(moved->updated_by(), releaser.Actor());
  resolved = Resolve("det", "production");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->manifest().version(), "1.1.0");
  // The old version no longer lists the alias.
  auto old = GetVersion("det", "1.0.0");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->aliases_size(), 0);

  // Same version again: no history row.
  int64_t rows = HistoryRows();
  ASSERT_TRUE(SetAlias("det", "production", "1.1.0", "no-op"));
  EXPECT_EQ(HistoryRows(), rows);

  v1::DeleteAliasRequest del;
  del.set_model("det");
  del.set_alias("production");
  del.set_reason("rollout halted");
  MF_ASSERT_OK(reg().DeleteAlias(del, caller_));
  MF_EXPECT_CODE(Resolve("det", "production"), StatusCode::kNotFound);
  MF_EXPECT_CODE(reg().DeleteAlias(del, caller_), StatusCode::kNotFound);

  auto history = History("production");
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].from_version(), "1.1.0");
  EXPECT_EQ(history[0].to_version(), "");
  EXPECT_EQ(history[0].actor(), caller_.Actor());
  EXPECT_EQ(history[0].reason(), "rollout halted");
  EXPECT_EQ(history[1].from_version(), "1.0.0");
  EXPECT_EQ(history[1].to_version(), "1.1.0");
  EXPECT_EQ(history[1].actor(), releaser.Actor());
  EXPECT_EQ(history[1].reason(), "better accuracy");
  EXPECT_EQ(history[2].from_version(), "");
  EXPECT_EQ(history[2].to_version(), "1.0.0");
  EXPECT_EQ(history[2].actor(), caller_.Actor());
  EXPECT_EQ(history[2].reason(), "first release");
  for (const auto& c : history) {
    EXPECT_EQ(c.model(), "det");
    EXPECT_EQ(c.alias(), "production");
    EXPECT_GT(c.time().seconds(), 0);
  }
  EXPECT_GE(history[0].time().seconds(), history[2].time().seconds());
}

TEST_F(AliasTest, HistoryOfAllAliasesAndPagination) {
  ASSERT_TRUE(SetAlias("det", "production", "1.0.0", "p1"));
  ASSERT_TRUE(SetAlias("det", "staging", "1.1.0", "s1"));
  ASSERT_TRUE(SetAlias("det", "production", "1.2.0", "p2"));
  ASSERT_TRUE(SetAlias("det", "staging", "1.2.0", "s2"));
  ASSERT_TRUE(SetAlias("det", "production", "1.1.0", "p3"));

  auto reasons = [](const std::vector<v1::AliasChange>& changes) {
    std::vector<std::string> out;
    for (const auto& c : changes) out.push_back(c.reason());
    return out;
  };
  EXPECT_EQ(reasons(History()), (std::vector<std::string>{"p3", "s2", "p2", "s1", "p1"}));
  EXPECT_EQ(reasons(History("", 2)), (std::vector<std::string>{"p3", "s2", "p2", "s1", "p1"}));
  EXPECT_EQ(reasons(History("production", 1)), (std::vector<std::string>{"p3", "p2", "p1"}));
  EXPECT_EQ(reasons(History("staging")), (std::vector<std::string>{"s2", "s1"}));

  // A history token is bound to its alias.
  v1::ListAliasHistoryRequest req;
  req.set_model("det");
  req.set_alias("production");
  req.set_page_size(1);
  auto first = reg().ListAliasHistory(req);
  ASSERT_TRUE(first);
  req.set_alias("staging");
  req.set_page_token(first->next_page_token());
  auto other = reg().ListAliasHistory(req);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().field(), "page_token");
}

TEST_F(AliasTest, ExpectedCurrentVersion) {
  // "-": the alias must not exist yet.
  auto created = SetAlias("det", "production", "1.0.0", "create", "-");
  ASSERT_TRUE(created) << created.error().ToString();
  int64_t rows = HistoryRows();
  MF_EXPECT_CODE(SetAlias("det", "production", "1.1.0", "race", "-"), StatusCode::kAborted);
  // Mismatch: ABORTED, nothing changes.
  MF_EXPECT_CODE(SetAlias("det", "production", "1.1.0", "race", "1.2.0"), StatusCode::kAborted);
  EXPECT_EQ(HistoryRows(), rows);
  auto resolved = Resolve("det", "production");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->manifest().version(), "1.0.0");
  // Match: moves.
  auto moved = SetAlias("det", "production", "1.1.0", "cas", "1.0.0");
  ASSERT_TRUE(moved) << moved.error().ToString();
  resolved = Resolve("det", "production");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->manifest().version(), "1.1.0");
  EXPECT_EQ(HistoryRows(), rows + 1);
  // A non-existing alias with an expected version: ABORTED.
  MF_EXPECT_CODE(SetAlias("det", "canary", "1.1.0", "", "1.0.0"), StatusCode::kAborted);
  MF_EXPECT_CODE(Resolve("det", "canary"), StatusCode::kNotFound);
  // Invalid expected version.
  MF_EXPECT_CODE(SetAlias("det", "canary", "1.1.0", "", "latest"), StatusCode::kInvalidArgument);
}

TEST_F(AliasTest, AliasOnArchivedVersionIsFailedPrecondition) {
  ASSERT_TRUE(ArchiveVersion("det", "1.0.0"));
  int64_t rows = HistoryRows();
  MF_EXPECT_CODE(SetAlias("det", "production", "1.0.0"), StatusCode::kFailedPrecondition);
  MF_EXPECT_CODE(Resolve("det", "production"), StatusCode::kNotFound);
  EXPECT_EQ(HistoryRows(), rows);
  MF_EXPECT_CODE(SetAlias("det", "production", "9.9.9"), StatusCode::kNotFound);
  MF_EXPECT_CODE(SetAlias("ghost", "production", "1.0.0"), StatusCode::kNotFound);
  auto bad = SetAlias("det", "Production", "1.1.0");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "alias");
}

TEST_F(AliasTest, ArchiveWhileAliasedIsFailedPrecondition) {
  ASSERT_TRUE(SetAlias("det", "production", "1.0.0"));
  MF_EXPECT_CODE(ArchiveVersion("det", "1.0.0"), StatusCode::kFailedPrecondition);
  auto got = GetVersion("det", "1.0.0");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state(), v1::VERSION_STATE_READY);
  // Once the alias moves away, archiving works, and is idempotent.
  ASSERT_TRUE(SetAlias("det", "production", "1.1.0"));
  auto archived = ArchiveVersion("det", "1.0.0");
  ASSERT_TRUE(archived) << archived.error().ToString();
  EXPECT_EQ(archived->state(), v1::VERSION_STATE_ARCHIVED);
  EXPECT_TRUE(archived->has_archive_time());
  auto again = ArchiveVersion("det", "1.0.0");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->archive_time().SerializeAsString(), archived->archive_time().SerializeAsString());
  MF_EXPECT_CODE(ArchiveVersion("det", "9.9.9"), StatusCode::kNotFound);
}

TEST_F(AliasTest, ResolveUnknownAliasIsNotFound) {
  MF_EXPECT_CODE(Resolve("det", "production"), StatusCode::kNotFound);
  MF_EXPECT_CODE(Resolve("ghost", "production"), StatusCode::kNotFound);
  MF_EXPECT_CODE(Resolve("det", "Bad Alias"), StatusCode::kInvalidArgument);
  v1::GetVersionRequest get;
  get.mutable_ref()->set_model("det");
  get.mutable_ref()->set_alias("production");
  MF_EXPECT_CODE(reg().GetVersion(get), StatusCode::kNotFound);
}

TEST_F(AliasTest, AliasesAreScopedToTheirModel) {
  CreateModel("other");
  PushOk("other", "1.0.0", PatternBytes(800, 499));
  ASSERT_TRUE(SetAlias("det", "production", "1.2.0"));
  MF_EXPECT_CODE(Resolve("other", "production"), StatusCode::kNotFound);
  ASSERT_TRUE(SetAlias("other", "production", "1.0.0"));
  auto det = Resolve("det", "production");
  ASSERT_TRUE(det);
  EXPECT_EQ(det->manifest().version(), "1.2.0");
  EXPECT_EQ(det->manifest().model(), "det");
}

// =========================================================================== archive / purge

TEST_F(RegistryTest, PurgeReadyVersionIsFailedPrecondition) {
  CreateModel("det");
  std::string bytes = PatternBytes(2000, 500);
  PushOk("det", "1.0.0", bytes);
  MF_EXPECT_CODE(PurgeVersion("det", "1.0.0"), StatusCode::kFailedPrecondition);
  EXPECT_EQ(VersionRows(), 1);
  EXPECT_EQ(StoreKeys().size(), 1u);
  MF_EXPECT_CODE(PurgeVersion("det", "9.9.9"), StatusCode::kNotFound);
}

TEST_F(RegistryTest, PurgeArchivedVersionDeletesRowAndBlob) {
  CreateModel("det");
  std::string bytes = PatternBytes(2000, 501);
  PushOk("det", "1.0.0", bytes);
  // Download once so the cache holds it too.
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_ASSERT_OK(d.status);
  ASSERT_TRUE(ArchiveVersion("det", "1.0.0"));
  MF_EXPECT_CODE(DownloadAll(reg(), DownloadOf("det", "1.0.0")).status, StatusCode::kFailedPrecondition);
  auto purged = PurgeVersion("det", "1.0.0");
  ASSERT_TRUE(purged) << purged.error().ToString();
  EXPECT_TRUE(purged->blob_deleted());
  EXPECT_EQ(VersionRows(), 0);
  EXPECT_TRUE(StoreKeys().empty());
  EXPECT_FALSE(std::filesystem::exists(ObjectPath(Sha256Hex(bytes))));
  MF_EXPECT_CODE(GetVersion("det", "1.0.0"), StatusCode::kNotFound);
  MF_EXPECT_CODE(PurgeVersion("det", "1.0.0"), StatusCode::kNotFound);
  // The same version can be pushed again afterwards and downloads.
  PushOk("det", "1.0.0", bytes);
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

TEST_F(RegistryTest, PurgeKeepsBlobSharedWithAnotherVersion) {
  CreateModel("det");
  std::string bytes = PatternBytes(3000, 502);
  PushOk("det", "1.0.0", bytes);
  PushOk("det", "1.0.1", bytes);
  ASSERT_TRUE(ArchiveVersion("det", "1.0.0"));
  auto purged = PurgeVersion("det", "1.0.0");
  ASSERT_TRUE(purged) << purged.error().ToString();
  EXPECT_FALSE(purged->blob_deleted());
  EXPECT_EQ(VersionRows(), 1);
  EXPECT_EQ(StoreKeys(), std::vector<std::string>{"sha256/" + Sha256Hex(bytes)});
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.1"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
  // Purging the last one deletes the blob.
  ASSERT_TRUE(ArchiveVersion("det", "1.0.1"));
  purged = PurgeVersion("det", "1.0.1");
  ASSERT_TRUE(purged) << purged.error().ToString();
  EXPECT_TRUE(purged->blob_deleted());
  EXPECT_TRUE(StoreKeys().empty());
}

// =========================================================================== download

class DownloadTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (HasFatalFailure()) return;
    RegistryOptions options;
    options.download_chunk_bytes = 1000;
    MakeRegistry(options);
    CreateModel("det");
    bytes_ = PatternBytes(10500, 600);
    manifest_ = ManifestFor("det", "1.0.0", bytes_);
    auto pushed = Push(manifest_, bytes_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
  }

  // Messages must be contiguous from `offset`, only the first carrying the manifest.
  void ExpectWellFormed(const ::modelfleet::testing::Downloaded& d, uint64_t offset) {
    ASSERT_FALSE(d.messages.empty());
    EXPECT_TRUE(d.messages[0].has_manifest());
    EXPECT_EQ(d.messages[0].manifest().SerializeAsString(), manifest_.SerializeAsString());
    uint64_t pos = offset;
    for (size_t i = 0; i < d.messages.size(); ++i) {
      if (i > 0) {
        EXPECT_FALSE(d.messages[i].has_manifest()) << "message " << i;
      }
      EXPECT_EQ(d.messages[i].offset(), pos) << "message " << i;
      EXPECT_LE(d.messages[i].data().size(), 1000u);
      pos += d.messages[i].data().size();
    }
  }

  std::string bytes_;
  v1::Manifest manifest_;
};

TEST_F(DownloadTest, Whole) {
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_ASSERT_OK(d.status);
  ExpectWellFormed(d, 0);
  EXPECT_EQ(d.messages.size(), 11u);
  EXPECT_EQ(d.data.size(), bytes_.size());
  EXPECT_EQ(Sha256Hex(d.data), manifest_.digest());
  EXPECT_EQ(d.data, bytes_);
  // Again (now from the cache), and by alias.
  ASSERT_TRUE(SetAlias("det", "production", "1.0.0"));
  v1::DownloadRequest by_alias;
  by_alias.mutable_ref()->set_model("det");
  by_alias.mutable_ref()->set_alias("production");
  auto again = DownloadAll(reg(), by_alias);
  MF_ASSERT_OK(again.status);
  EXPECT_EQ(again.data, bytes_);
  EXPECT_EQ(cache_->stats().store_fetches, 1u);
}

TEST_F(DownloadTest, FromOffset) {
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 1234));
  MF_ASSERT_OK(d.status);
  ExpectWellFormed(d, 1234);
  EXPECT_EQ(d.data, bytes_.substr(1234));
}

TEST_F(DownloadTest, OffsetAndLength) {
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 100, 2500));
  MF_ASSERT_OK(d.status);
  ExpectWellFormed(d, 100);
  EXPECT_EQ(d.data, bytes_.substr(100, 2500));
  // Up to exactly the end.
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 10000, 500));
  MF_ASSERT_OK(d.status);
  EXPECT_EQ(d.data, bytes_.substr(10000));
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 0, 1));
  MF_ASSERT_OK(d.status);
  EXPECT_EQ(d.data, bytes_.substr(0, 1));
}

TEST_F(DownloadTest, OffsetAtEndSendsOnlyTheManifest) {
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0", bytes_.size()));
  MF_ASSERT_OK(d.status);
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_TRUE(d.messages[0].has_manifest());
  EXPECT_EQ(d.messages[0].manifest().digest(), manifest_.digest());
  EXPECT_TRUE(d.messages[0].data().empty());
  EXPECT_EQ(d.messages[0].offset(), bytes_.size());
}

TEST_F(DownloadTest, PastTheEndIsOutOfRange) {
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0", bytes_.size() + 1));
  MF_EXPECT_CODE(d.status, StatusCode::kOutOfRange);
  EXPECT_TRUE(d.messages.empty());
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 100, bytes_.size()));
  MF_EXPECT_CODE(d.status, StatusCode::kOutOfRange);
  EXPECT_TRUE(d.messages.empty());
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0", UINT64_MAX, UINT64_MAX));
  MF_EXPECT_CODE(d.status, StatusCode::kOutOfRange);
  EXPECT_TRUE(d.messages.empty());
}

TEST_F(DownloadTest, UnknownVersionIsNotFound) {
  MF_EXPECT_CODE(DownloadAll(reg(), DownloadOf("det", "9.9.9")).status, StatusCode::kNotFound);
  MF_EXPECT_CODE(DownloadAll(reg(), DownloadOf("ghost", "1.0.0")).status, StatusCode::kNotFound);
  v1::DownloadRequest no_selector;
  no_selector.mutable_ref()->set_model("det");
  MF_EXPECT_CODE(DownloadAll(reg(), no_selector).status, StatusCode::kInvalidArgument);
}

TEST_F(DownloadTest, CorruptObjectIsDataLossAndSendsNothing) {
  FlipByte(ObjectPath(manifest_.digest()), 5000);
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_CODE(d.status, StatusCode::kDataLoss);
  EXPECT_TRUE(d.messages.empty()) << "bytes were delivered before verification";
  // Also for a range that does not include the corrupt byte.
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0", 0, 100));
  MF_EXPECT_CODE(d.status, StatusCode::kDataLoss);
  EXPECT_TRUE(d.messages.empty());
  // Truncated object.
  std::filesystem::resize_file(ObjectPath(manifest_.digest()), bytes_.size() - 1);
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_CODE(d.status, StatusCode::kDataLoss);
  EXPECT_TRUE(d.messages.empty());
}

TEST_F(DownloadTest, MissingObjectIsDataLoss) {
  ASSERT_TRUE(std::filesystem::remove(ObjectPath(manifest_.digest())));
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_CODE(d.status, StatusCode::kDataLoss);
  EXPECT_TRUE(d.messages.empty());
}

TEST_F(DownloadTest, WriterErrorStopsTheDownload) {
  int calls = 0;
  Status s = reg().Download(DownloadOf("det", "1.0.0"), [&](const v1::DownloadChunk&) -> Status {
    return ++calls == 2 ? Status(StatusCode::kCancelled, "client gone") : Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  EXPECT_EQ(calls, 2);
}

// =========================================================================== store and database faults

TEST_F(RegistryTest, BlobCommitFailureLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 800);
  store_->before_commit = [] { return Unavailable("injected: object store unreachable at commit"); };
  ExpectPushFailsCleanly(ManifestFor("det", "1.0.0", bytes), ReaderOfBytes(bytes), StatusCode::kUnavailable, "");
  store_->before_commit = nullptr;
  auto ok = Push(ManifestFor("det", "1.0.0", bytes), bytes);
  EXPECT_TRUE(ok) << ok.error().ToString();
}

TEST_F(RegistryTest, DatabaseLostAfterBlobCommitRemovesTheBlob) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 801);
  int64_t terminated = 0;
  // The blob is committed, then the database connection of the push breaks before its row
  // commits: the push fails, and the blob it published must be removed again.
  store_->after_commit = [&] {
    store_->after_commit = nullptr;
    terminated = TerminateDatabaseConnections();
  };
  std::vector<std::string> keys_before = StoreKeys();
  auto pushed = Push(ManifestFor("det", "1.0.0", bytes), bytes);
  ASSERT_GE(terminated, 1) << "no connection was terminated";
  ASSERT_FALSE(pushed) << "the push succeeded although its transaction was killed";
  EXPECT_TRUE(pushed.error().code() == StatusCode::kUnavailable || pushed.error().code() == StatusCode::kUnknown)
      << pushed.error().ToString();
  ExpectNothingRemains(keys_before, 0, "det", "1.0.0");
  // And the registry works again.
  auto ok = Push(ManifestFor("det", "1.0.0", bytes), bytes);
  ASSERT_TRUE(ok) << ok.error().ToString();
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

TEST_F(RegistryTest, DatabaseLostAfterCommitOfSharedBlobKeepsIt) {
  CreateModel("det");
  std::string bytes = PatternBytes(10000, 802);
  PushOk("det", "1.0.0", bytes);
  store_->after_commit = [&] {
    store_->after_commit = nullptr;
    TerminateDatabaseConnections();
  };
  auto pushed = Push(ManifestFor("det", "1.0.1", bytes), bytes);
  ASSERT_FALSE(pushed);
  EXPECT_EQ(VersionRows(), 1);
  EXPECT_EQ(StoreKeys(), std::vector<std::string>{"sha256/" + Sha256Hex(bytes)}) << "1.0.0 still needs the blob";
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

TEST_F(RegistryTest, PurgeBlobDeleteFailureKeepsTheRow) {
  CreateModel("det");
  std::string bytes = PatternBytes(3000, 803);
  PushOk("det", "1.0.0", bytes);
  ASSERT_TRUE(ArchiveVersion("det", "1.0.0"));
  store_->fail_delete = Unavailable("injected: object store unreachable");
  MF_EXPECT_CODE(PurgeVersion("det", "1.0.0"), StatusCode::kUnavailable);
  EXPECT_EQ(VersionRows(), 1) << "the row must stay when its blob could not be deleted";
  auto got = GetVersion("det", "1.0.0");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state(), v1::VERSION_STATE_ARCHIVED);
  store_->fail_delete.reset();
  auto purged = PurgeVersion("det", "1.0.0");
  ASSERT_TRUE(purged) << purged.error().ToString();
  EXPECT_TRUE(purged->blob_deleted());
  EXPECT_TRUE(StoreKeys().empty());
}

TEST_F(RegistryTest, DownloadWithStoreUnavailableIsUnavailable) {
  CreateModel("det");
  std::string bytes = PatternBytes(3000, 804);
  PushOk("det", "1.0.0", bytes);
  store_->fail_read = Unavailable("injected: object store unreachable");
  auto d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_CODE(d.status, StatusCode::kUnavailable);
  EXPECT_TRUE(d.messages.empty());
  store_->fail_read.reset();
  d = DownloadAll(reg(), DownloadOf("det", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

// =========================================================================== concurrency

TEST_F(RegistryTest, ConcurrentPurgeAndPushOfTheSameBytes) {
  CreateModel("det");
  for (int i = 0; i < 6; ++i) {
    std::string bytes = PatternBytes(20000, 900 + i);
    std::string old_version = "1." + std::to_string(i) + ".0";
    std::string new_version = "1." + std::to_string(i) + ".1";
    PushOk("det", old_version, bytes);
    ASSERT_TRUE(DownloadAll(reg(), DownloadOf("det", old_version)).status.ok());  // cached too
    ASSERT_TRUE(ArchiveVersion("det", old_version));
    Expected<v1::PurgeVersionResponse> purged = Fail(Internal("not run"));
    Expected<v1::ModelVersion> pushed = Fail(Internal("not run"));
    std::latch start(2);
    std::thread purger([&] {
      start.arrive_and_wait();
      purged = PurgeVersion("det", old_version);
    });
    std::thread pusher([&] {
      start.arrive_and_wait();
      pushed = reg().PushVersion(ManifestFor("det", new_version, bytes), ReaderOfBytes(bytes, 2000), caller_);
    });
    purger.join();
    pusher.join();
    ASSERT_TRUE(purged) << purged.error().ToString();
    ASSERT_TRUE(pushed) << pushed.error().ToString();
    auto d = DownloadAll(reg(), DownloadOf("det", new_version));
    MF_ASSERT_OK(d.status);
    EXPECT_EQ(d.data, bytes) << "iteration " << i;
    EXPECT_TRUE(std::filesystem::exists(ObjectPath(Sha256Hex(bytes)))) << "iteration " << i;
  }
}

TEST_F(AliasTest, ConcurrentCompareAndSetHasOneWinner) {
  constexpr int kThreads = 8;
  std::vector<Status> results(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  const std::vector<std::string> versions{"1.0.0", "1.1.0", "1.2.0"};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = StatusOf(SetAlias("det", "production", versions[i % 3], "t" + std::to_string(i), "-"));
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (const Status& s : results) {
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(HistoryRows(), 1);
}

// Installs a trigger in this test's database that sleeps before each write to `table`, to
// widen a race window deterministically (the race exists without it, only narrower).
void SlowDownWrites(db::Pool& pool, const std::string& table, double seconds) {
  Status s = pool.Write([&](db::Tx& tx) -> Status {
    return StatusOf(tx.ExecScript(
        "CREATE FUNCTION test_slow_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(" +
        std::to_string(seconds) + "); RETURN NEW; END $$; "
        "CREATE TRIGGER test_slow_write BEFORE INSERT OR UPDATE ON " + table +
        " FOR EACH ROW EXECUTE FUNCTION test_slow_write()"));
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
}

// Regression: server/registry/registry.cc, Registry::ArchiveVersion used to check
// row.version.aliases_size() (line 575) without taking any lock that SetAlias takes: SetAlias
// locks the models row FOR UPDATE (line 636) and checks target.state (line 641) without
// locking the version row; the aliases FK only takes FOR KEY SHARE on the version, which does
// not conflict with ArchiveVersion's non-key UPDATE. A SetAlias that has passed its READY check
// and an ArchiveVersion that runs before the alias row commits both succeed, leaving the alias
// on an ARCHIVED version (ResolveAlias then returns an ARCHIVED version, Download by alias
// fails FAILED_PRECONDITION, PurgeVersion hits the aliases FK). Fix: ArchiveVersion should
// LoadModelIdentity(tx, model, /*for_update=*/true) before LoadVersion, like SetAlias, so the
// two serialise per model. (Fixed: ArchiveVersion now locks the model row.)
TEST_F(AliasTest, ArchiveRacingWithSetAliasNeverLeavesAliasOnArchivedVersion) {
  // Invariant (registry.h: SetAlias targets READY versions only; ArchiveVersion refuses while an
  // alias points at the version): an alias never points at an ARCHIVED version. So of a
  // concurrent SetAlias(production -> 1.0.0) and ArchiveVersion(1.0.0) at most one may win.
  SlowDownWrites(*pool_, "aliases", 0.5);
  if (HasFatalFailure()) return;
  Expected<v1::Alias> set = Fail(Internal("not run"));
  std::thread setter([&] { set = SetAlias("det", "production", "1.0.0", "race"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // SetAlias has checked the state
  auto archived = ArchiveVersion("det", "1.0.0");
  setter.join();
  EXPECT_FALSE(set && archived) << "both SetAlias and ArchiveVersion succeeded";
  auto resolved = Resolve("det", "production");
  if (resolved) {
    EXPECT_EQ(resolved->state(), v1::VERSION_STATE_READY)
        << "alias 'production' points at an ARCHIVED version";
  }
}

// =========================================================================== filter values

TEST_F(RegistryTest, FilterMatchesEscapedLabelsAndExtremeMetrics) {
  CreateModel("det");
  PushOk("det", "1.0.0", PatternBytes(500, 950), [](v1::Manifest& m) {
    (*m.mutable_labels())["note"] = "say \"hi\" \\ bye";
    (*m.mutable_metrics())["tiny"] = 1e-05;
    (*m.mutable_metrics())["huge"] = 1e+20;
    (*m.mutable_metrics())["neg"] = -0.5;
  });
  PushOk("det", "1.0.1", PatternBytes(500, 951), [](v1::Manifest& m) {
    (*m.mutable_labels())["note"] = "plain";
    (*m.mutable_metrics())["tiny"] = 0.5;
    (*m.mutable_metrics())["huge"] = 1;
    (*m.mutable_metrics())["neg"] = 0;
  });
  using Versions = std::vector<std::string>;
  EXPECT_EQ(ListAllVersions("det", "labels.note = \"say \\\"hi\\\" \\\\ bye\""), Versions{"1.0.0"});
  EXPECT_EQ(ListAllVersions("det", "metrics.tiny < 0.001"), Versions{"1.0.0"});
  EXPECT_EQ(ListAllVersions("det", "metrics.huge >= 1e19"), Versions{"1.0.0"});
  EXPECT_EQ(ListAllVersions("det", "metrics.neg < 0"), Versions{"1.0.0"});
  EXPECT_EQ(ListAllVersions("det", "metrics.neg >= -0.5"), (Versions{"1.0.1", "1.0.0"}));
}

// =========================================================================== database restart

// Its own suite so that it runs last: it restarts the cluster every test shares.
class DatabaseRestartTest : public RegistryTest {};

TEST_F(DatabaseRestartTest, CallsSucceedAfterDatabaseRestart) {
  CreateModel("before");
  std::string bytes = PatternBytes(4000, 700);
  PushOk("before", "1.0.0", bytes);
  ASSERT_TRUE(Cluster()->Restart()) << Cluster()->last_error();

  v1::GetModelRequest get;
  get.set_name("before");
  auto got = reg().GetModel(get);
  ASSERT_TRUE(got) << "first call after restart: " << got.error().ToString();
  // Every pooled connection was broken by the restart; more calls still succeed.
  for (int i = 0; i < 6; ++i) {
    auto v = GetVersion("before", "1.0.0");
    ASSERT_TRUE(v) << "call " << i << ": " << v.error().ToString();
  }
  CreateModel("after");
  PushOk("after", "1.0.0", bytes);
  auto d = DownloadAll(reg(), DownloadOf("after", "1.0.0"));
  MF_EXPECT_OK(d.status);
  EXPECT_EQ(d.data, bytes);
}

TEST_F(DatabaseRestartTest, DatabaseDownDuringPushLeavesNothing) {
  CreateModel("det");
  std::string bytes = PatternBytes(20000, 990);
  std::vector<std::string> keys_before = StoreKeys();
  bool stopped = false;
  // The database goes away while the bytes stream in.
  auto chunks = Chunks(bytes, 4000);
  size_t index = 0;
  registry::ChunkReader reader = [&]() -> Expected<std::optional<std::string>> {
    if (index == 2 && !stopped) stopped = Cluster()->Stop();
    if (index >= chunks.size()) return std::optional<std::string>();
    return std::optional<std::string>(chunks[index++]);
  };
  auto pushed = reg().PushVersion(ManifestFor("det", "1.0.0", bytes), reader, caller_);
  ASSERT_TRUE(stopped) << Cluster()->last_error();
  ASSERT_TRUE(Cluster()->StartAgain()) << Cluster()->last_error();
  ASSERT_FALSE(pushed) << "the push succeeded with the database down";
  EXPECT_EQ(pushed.error().code(), StatusCode::kUnavailable) << pushed.error().ToString();
  ExpectNothingRemains(keys_before, 0, "det", "1.0.0");
  auto ok = Push(ManifestFor("det", "1.0.0", bytes), bytes);
  EXPECT_TRUE(ok) << ok.error().ToString();
}

}  // namespace
}  // namespace modelfleet::registry
