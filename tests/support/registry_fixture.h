// Test helpers for the registry core (server/registry): status assertions, manifests for given
// bytes, chunk readers, download collectors, and a fixture with one PostgreSQL cluster per test
// binary, a fresh database per test, a real LocalBlobStore and a real ArtifactCache.
//
// Header-only. A binary that uses RegistryFixture registers PostgresEnvironment with
// ::testing::AddGlobalTestEnvironment; the plain helpers need no database.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <span>
#include <utility>
#include <vector>

#include "auth/principal.h"
#include "blob/local_blob_store.h"
#include "db/migrations.h"
#include "db/pool.h"
#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/status.h"
#include "modelfleet/validation.h"
#include "modelfleet/v1/registry.pb.h"
#include "process.h"
#include "registry/artifact_cache.h"
#include "registry/registry.h"
#include "postgres_environment.h"
#include "temp_postgres.h"
#include "test_data.h"

#define MF_ASSERT_OK(expr)                                                \
  do {                                                                    \
    ::modelfleet::Status mf_assert_ok_ = ::modelfleet::testing::AsStatus(expr); \
    ASSERT_TRUE(mf_assert_ok_.ok()) << mf_assert_ok_.ToString();          \
  } while (0)

#define MF_EXPECT_OK(expr)                                                \
  do {                                                                    \
    ::modelfleet::Status mf_expect_ok_ = ::modelfleet::testing::AsStatus(expr); \
    EXPECT_TRUE(mf_expect_ok_.ok()) << mf_expect_ok_.ToString();          \
  } while (0)

// Asserts that `expr` (a Status or an Expected) failed with `code`.
#define MF_EXPECT_CODE(expr, expected_code)                               \
  do {                                                                    \
    ::modelfleet::Status mf_expect_code_ = ::modelfleet::testing::AsStatus(expr); \
    EXPECT_EQ(mf_expect_code_.code(), (expected_code)) << mf_expect_code_.ToString(); \
  } while (0)

namespace modelfleet {
// Readable status codes in gtest failure messages.
inline void PrintTo(StatusCode code, std::ostream* os) { *os << StatusCodeName(code); }
}  // namespace modelfleet

namespace modelfleet::testing {

inline Status AsStatus(const Status& s) { return s; }
template <typename T>
Status AsStatus(const Expected<T>& e) {
  return StatusOf(e);
}

inline std::string CodeName(StatusCode code) { return std::string(StatusCodeName(code)); }

// Splits `bytes` into chunks of at most `chunk_size`.
inline std::vector<std::string> Chunks(const std::string& bytes, size_t chunk_size) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < bytes.size(); pos += chunk_size) out.push_back(bytes.substr(pos, chunk_size));
  return out;
}

// A ChunkReader that yields `chunks`, then end-of-stream. Counts its calls in *calls (if
// non-null). If `error` is set, the call with index `error->first` returns error->second
// instead of a chunk.
inline registry::ChunkReader ReaderOf(std::vector<std::string> chunks,
                                      std::shared_ptr<std::atomic<int>> calls = nullptr,
                                      std::optional<std::pair<size_t, Status>> error = std::nullopt) {
  auto state = std::make_shared<size_t>(0);
  auto data = std::make_shared<std::vector<std::string>>(std::move(chunks));
  return [state, data, calls, error]() -> Expected<std::optional<std::string>> {
    size_t index = (*state)++;
    if (calls) ++*calls;
    if (error && index == error->first) return Fail(error->second);
    if (index >= data->size()) return std::optional<std::string>();
    return std::optional<std::string>((*data)[index]);
  };
}

inline registry::ChunkReader ReaderOfBytes(const std::string& bytes, size_t chunk_size = 4096,
                                           std::shared_ptr<std::atomic<int>> calls = nullptr) {
  return ReaderOf(Chunks(bytes, chunk_size), std::move(calls));
}

// Everything a download delivered.
struct Downloaded {
  std::vector<v1::DownloadChunk> messages;
  std::string data;
  Status status;
};

inline Downloaded DownloadAll(registry::Registry& reg, const v1::DownloadRequest& request) {
  Downloaded out;
  out.status = reg.Download(request, [&](const v1::DownloadChunk& chunk) -> Status {
    out.messages.push_back(chunk);
    out.data += chunk.data();
    return Status::Ok();
  });
  return out;
}

inline v1::DownloadRequest DownloadOf(const std::string& model, const std::string& version,
                                      uint64_t offset = 0, uint64_t length = 0) {
  v1::DownloadRequest r;
  r.mutable_ref()->set_model(model);
  r.mutable_ref()->set_version(version);
  r.set_offset(offset);
  r.set_length(length);
  return r;
}

inline std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteWholeFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Flips one bit of the byte at `pos` of the file, in place.
inline void FlipByte(const std::filesystem::path& path, size_t pos) {
  std::string bytes = ReadWholeFile(path);
  ASSERT_LT(pos, bytes.size()) << path;
  bytes[pos] = static_cast<char>(bytes[pos] ^ 0x01);
  WriteWholeFile(path, bytes);
}

inline std::vector<std::string> DirEntries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  return out;
}

// ------------------------------------------------------------------------- store decorator

// Forwards to a real BlobStore; tests can make the next Commit / Delete / Read fail, or run
// code right after a Commit (e.g. to break the database connection at that moment). Hooks are
// set from the test thread while no call is in progress.
class FaultInjectingBlobStore final : public blob::BlobStore {
 public:
  explicit FaultInjectingBlobStore(std::unique_ptr<blob::BlobStore> inner) : inner_(std::move(inner)) {}

  blob::BlobStore& inner() { return *inner_; }

  // If set and returning non-OK, Commit aborts the upload and returns that status.
  std::function<Status()> before_commit;
  // Runs after a successful Commit.
  std::function<void()> after_commit;
  // If set, Delete / Read return it without touching the store.
  std::optional<Status> fail_delete;
  std::optional<Status> fail_read;

  std::string Describe() const override { return "faulty(" + inner_->Describe() + ")"; }

  Expected<std::unique_ptr<blob::BlobWriter>> Create(const std::string& key) override {
    auto writer = inner_->Create(key);
    if (!writer) return Fail(writer.error());
    return std::unique_ptr<blob::BlobWriter>(new Writer(this, std::move(*writer)));
  }
  Status Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
              const blob::BlobSink& sink) override {
    if (fail_read) return *fail_read;
    return inner_->Read(key, offset, length, sink);
  }
  Expected<blob::BlobInfo> Stat(const std::string& key) override { return inner_->Stat(key); }
  Status Delete(const std::string& key) override {
    if (fail_delete) return *fail_delete;
    return inner_->Delete(key);
  }
  Expected<std::vector<std::string>> List(const std::string& prefix) override { return inner_->List(prefix); }

 private:
  class Writer final : public blob::BlobWriter {
   public:
    Writer(FaultInjectingBlobStore* store, std::unique_ptr<blob::BlobWriter> inner)
        : store_(store), inner_(std::move(inner)) {}
    Status Append(std::span<const uint8_t> bytes) override { return inner_->Append(bytes); }
    Status Commit() override {
      if (store_->before_commit) {
        Status s = store_->before_commit();
        if (!s.ok()) {
          inner_->Abort();
          return s;
        }
      }
      Status s = inner_->Commit();
      if (s.ok() && store_->after_commit) store_->after_commit();
      return s;
    }
    void Abort() override { inner_->Abort(); }

   private:
    FaultInjectingBlobStore* store_;
    std::unique_ptr<blob::BlobWriter> inner_;
  };

  std::unique_ptr<blob::BlobStore> inner_;
};

// ------------------------------------------------------------------------- PostgreSQL cluster

// Per test: a fresh database with the schema, a blob store and a cache in a temp directory,
// and a Registry over them.
class RegistryFixture : public ::testing::Test {
 protected:
  static constexpr uint64_t kCacheCapacity = 64ull << 20;

  void SetUp() override {
    ASSERT_NE(Cluster(), nullptr) << "the PostgreSQL cluster did not start";
    static int database_counter = 0;
    std::string name = "registry_" + std::to_string(++database_counter);
    ASSERT_TRUE(Cluster()->CreateDatabase(name)) << Cluster()->last_error();
    db_name_ = name;
    conninfo_ = Cluster()->conninfo(name);
    auto pool = db::Pool::Open({.conninfo = conninfo_, .size = 4});
    ASSERT_TRUE(pool) << pool.error().ToString();
    pool_ = std::move(*pool);
    MF_ASSERT_OK(db::ApplyMigrations(*pool_, db::EmbeddedMigrations()));

    dir_ = std::make_unique<TempDir>("registry-test");
    auto store = blob::LocalBlobStore::Open(dir_->path() / "blobs");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::make_unique<FaultInjectingBlobStore>(std::move(*store));
    cache_ = std::make_unique<registry::ArtifactCache>(*store_, dir_->path() / "cache", kCacheCapacity);
    MakeRegistry(registry::RegistryOptions{});
  }

  void MakeRegistry(registry::RegistryOptions options) {
    options_ = options;
    registry_ = std::make_unique<registry::Registry>(*pool_, *store_, *cache_, options);
  }

  registry::Registry& reg() { return *registry_; }
  blob::LocalBlobStore& local_store() { return static_cast<blob::LocalBlobStore&>(store_->inner()); }
  std::filesystem::path store_tmp_dir() const { return dir_->path() / "blobs" / "tmp"; }
  std::filesystem::path ObjectPath(const std::string& digest) {
    return local_store().ObjectPath("sha256/" + digest);
  }

  // Keys in the blob store (all of them).
  std::vector<std::string> StoreKeys() {
    auto keys = store_->List("");
    EXPECT_TRUE(keys) << keys.error().ToString();
    if (!keys) return {};
    std::sort(keys->begin(), keys->end());
    return *keys;
  }

  int64_t QueryInt(const std::string& sql, const std::vector<db::Param>& params = {}) {
    int64_t value = -1;
    Status s = pool_->Read([&](db::Tx& tx) -> Status {
      auto rows = tx.Exec(sql, params);
      if (!rows) return rows.error();
      value = (*rows)[0].Int(0);
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << sql << ": " << s.ToString();
    return value;
  }
  // Terminates every server process connected to this test's database (the registry's pooled
  // connections), waiting until they are gone. Returns how many were terminated.
  int64_t TerminateDatabaseConnections() {
    auto admin = db::Pool::Open({.conninfo = Cluster()->conninfo("postgres"), .size = 1});
    EXPECT_TRUE(admin) << admin.error().ToString();
    if (!admin) return -1;
    int64_t terminated = -1;
    Status s = (*admin)->Write([&](db::Tx& tx) -> Status {
      auto rows = tx.Exec("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                          "WHERE datname = $1 AND pid <> pg_backend_pid()",
                          {db_name_});
      if (!rows) return rows.error();
      terminated = (*rows)[0].Int(0);
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return terminated;
  }

  int64_t VersionRows() { return QueryInt("SELECT count(*) FROM model_versions"); }

  v1::Model CreateModel(const std::string& name) {
    v1::CreateModelRequest req;
    req.mutable_model()->set_name(name);
    req.mutable_model()->set_description("model " + name);
    req.mutable_model()->set_task("person-detection");
    auto created = reg().CreateModel(req, caller_);
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? *created : v1::Model();
  }

  Expected<v1::ModelVersion> Push(const v1::Manifest& manifest, const std::string& bytes,
                                  size_t chunk_size = 4096) {
    return reg().PushVersion(manifest, ReaderOfBytes(bytes, chunk_size), caller_);
  }

  // Pushes a version with `bytes` and a manifest from ManifestFor(), adjusted by `adjust`.
  v1::ModelVersion PushOk(const std::string& model, const std::string& version, const std::string& bytes,
                          const std::function<void(v1::Manifest&)>& adjust = nullptr) {
    v1::Manifest m = ManifestFor(model, version, bytes);
    if (adjust) adjust(m);
    auto pushed = Push(m, bytes);
    EXPECT_TRUE(pushed) << version << ": " << pushed.error().ToString();
    return pushed ? *pushed : v1::ModelVersion();
  }

  Expected<v1::ModelVersion> GetVersion(const std::string& model, const std::string& version) {
    v1::GetVersionRequest req;
    req.mutable_ref()->set_model(model);
    req.mutable_ref()->set_version(version);
    return reg().GetVersion(req);
  }

  Expected<v1::ModelVersion> ArchiveVersion(const std::string& model, const std::string& version) {
    v1::ArchiveVersionRequest req;
    req.set_model(model);
    req.set_version(version);
    return reg().ArchiveVersion(req, caller_);
  }

  Expected<v1::PurgeVersionResponse> PurgeVersion(const std::string& model, const std::string& version) {
    v1::PurgeVersionRequest req;
    req.set_model(model);
    req.set_version(version);
    return reg().PurgeVersion(req, caller_);
  }

  Expected<v1::Alias> SetAlias(const std::string& model, const std::string& alias, const std::string& version,
                               const std::string& reason = "", const std::string& expected = "") {
    v1::SetAliasRequest req;
    req.set_model(model);
    req.set_alias(alias);
    req.set_version(version);
    req.set_reason(reason);
    req.set_expected_current_version(expected);
    return reg().SetAlias(req, caller_);
  }

  Expected<v1::ModelVersion> Resolve(const std::string& model, const std::string& alias) {
    v1::ResolveAliasRequest req;
    req.set_model(model);
    req.set_alias(alias);
    return reg().ResolveAlias(req);
  }

  // Every version of `model` matching `filter`, following next_page_token, newest first.
  std::vector<std::string> ListAllVersions(const std::string& model, const std::string& filter = "",
                                           int page_size = 0) {
    std::vector<std::string> out;
    std::string token;
    for (int page = 0; page < 1000; ++page) {
      v1::ListVersionsRequest req;
      req.set_model(model);
      req.set_filter(filter);
      req.set_page_size(page_size);
      req.set_page_token(token);
      auto resp = reg().ListVersions(req);
      EXPECT_TRUE(resp) << filter << ": " << resp.error().ToString();
      if (!resp) return out;
      for (const auto& v : resp->versions()) out.push_back(v.manifest().version());
      token = resp->next_page_token();
      if (token.empty()) return out;
    }
    ADD_FAILURE() << "pagination did not terminate";
    return out;
  }

  const auth::Principal caller_{42, "ci-bot", v1::ROLE_PUBLISHER};
  std::string db_name_;
  std::string conninfo_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<FaultInjectingBlobStore> store_;
  std::unique_ptr<registry::ArtifactCache> cache_;
  registry::RegistryOptions options_;
  std::unique_ptr<registry::Registry> registry_;
};

}  // namespace modelfleet::testing
