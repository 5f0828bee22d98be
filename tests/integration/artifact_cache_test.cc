// Integration tests of ArtifactCache (server/registry/artifact_cache.h) over a real
// LocalBlobStore. A small decorator counts (and can delay or fail) the reads that reach the
// store; everything else is the real thing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "blob/local_blob_store.h"
#include "modelfleet/crypto.h"
#include "process.h"
#include "registry/artifact_cache.h"
#include "registry_fixture.h"

namespace modelfleet::registry {
namespace {

using ::modelfleet::testing::DirEntries;
using ::modelfleet::testing::FlipByte;
using ::modelfleet::testing::PatternBytes;
using ::modelfleet::testing::TempDir;

// Forwards to a real BlobStore, counting Read calls. Optionally sleeps inside Read (to make
// concurrent callers overlap) or fails the next reads with a given status.
class CountingBlobStore final : public blob::BlobStore {
 public:
  explicit CountingBlobStore(blob::BlobStore& inner) : inner_(inner) {}

  std::string Describe() const override { return "counting(" + inner_.Describe() + ")"; }
  Expected<std::unique_ptr<blob::BlobWriter>> Create(const std::string& key) override { return inner_.Create(key); }
  Status Read(const std::string& key, uint64_t offset, std::optional<uint64_t> length,
              const blob::BlobSink& sink) override {
    ++reads_;
    if (read_delay_.count() > 0) std::this_thread::sleep_for(read_delay_);
    if (fail_reads_ > 0) {
      --fail_reads_;
      return Unavailable("injected: store unreachable");
    }
    return inner_.Read(key, offset, length, sink);
  }
  Expected<blob::BlobInfo> Stat(const std::string& key) override { return inner_.Stat(key); }
  Status Delete(const std::string& key) override { return inner_.Delete(key); }
  Expected<std::vector<std::string>> List(const std::string& prefix) override { return inner_.List(prefix); }

  int reads() const { return reads_.load(); }
  void set_read_delay(std::chrono::milliseconds d) { read_delay_ = d; }
  void fail_next_reads(int n) { fail_reads_ = n; }

 private:
  blob::BlobStore& inner_;
  std::atomic<int> reads_{0};
  std::chrono::milliseconds read_delay_{0};
  std::atomic<int> fail_reads_{0};
};

std::string ReadAll(const VerifiedArtifact& a) {
  std::string out(a.size(), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(a.fd(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

class ArtifactCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("artifact-cache-test");
    auto store = blob::LocalBlobStore::Open(dir_->path() / "blobs");
    ASSERT_TRUE(store) << store.error().ToString();
    local_ = std::move(*store);
    counting_ = std::make_unique<CountingBlobStore>(*local_);
  }

  std::filesystem::path cache_dir() const { return dir_->path() / "cache"; }
  std::unique_ptr<ArtifactCache> NewCache(uint64_t capacity) {
    return std::make_unique<ArtifactCache>(*counting_, cache_dir(), capacity);
  }

  // Stores `bytes` under sha256/<digest>; returns the digest.
  std::string Put(const std::string& bytes) {
    std::string digest = Sha256Hex(bytes);
    auto writer = local_->Create(Key(digest));
    EXPECT_TRUE(writer) << writer.error().ToString();
    if (!writer) return digest;
    MF_EXPECT_OK((*writer)->Append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
    MF_EXPECT_OK((*writer)->Commit());
    return digest;
  }
  static std::string Key(const std::string& digest) { return "sha256/" + digest; }
  std::filesystem::path ObjectPath(const std::string& digest) {
    return static_cast<blob::LocalBlobStore&>(*local_).ObjectPath(Key(digest));
  }

  Expected<std::shared_ptr<VerifiedArtifact>> Get(ArtifactCache& cache, const std::string& bytes) {
    std::string digest = Sha256Hex(bytes);
    return cache.Get(digest, bytes.size(), Key(digest));
  }

  // Files in the cache directory that are not temp files.
  std::vector<std::string> CacheFiles() { return DirEntries(cache_dir()); }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<blob::BlobStore> local_;
  std::unique_ptr<CountingBlobStore> counting_;
};

TEST_F(ArtifactCacheTest, GetReturnsVerifiedBytesAndCachesThem) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(300 * 1024, 1);  // more than one store read piece
  Put(bytes);
  auto a = Get(*cache, bytes);
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_EQ((*a)->size(), bytes.size());
  EXPECT_EQ(ReadAll(**a), bytes);
  EXPECT_EQ(counting_->reads(), 1);
  EXPECT_EQ(CacheFiles(), std::vector<std::string>{Sha256Hex(bytes)});

  auto b = Get(*cache, bytes);
  ASSERT_TRUE(b);
  EXPECT_EQ(ReadAll(**b), bytes);
  EXPECT_EQ(counting_->reads(), 1) << "a cached artifact must not be read again";
  auto stats = cache->stats();
  EXPECT_EQ(stats.store_fetches, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.cached_bytes, bytes.size());
  EXPECT_EQ(stats.verify_failures, 0u);
}

TEST_F(ArtifactCacheTest, SingleFlightForConcurrentGets) {
  auto cache = NewCache(16 << 20);
  std::string bytes = PatternBytes(1 << 20, 2);
  Put(bytes);
  counting_->set_read_delay(std::chrono::milliseconds(300));  // all 16 arrive while the fetch runs

  constexpr int kThreads = 16;
  std::vector<Expected<std::shared_ptr<VerifiedArtifact>>> results(kThreads, Fail(Internal("not run")));
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = Get(*cache, bytes);
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(counting_->reads(), 1) << "concurrent Gets of one digest must share one store read";
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(results[i]) << i << ": " << results[i].error().ToString();
    EXPECT_EQ((*results[i])->size(), bytes.size());
    EXPECT_EQ(ReadAll(**results[i]), bytes) << "thread " << i;
  }
  auto stats = cache->stats();
  EXPECT_EQ(stats.store_fetches, 1u);
  EXPECT_EQ(stats.hits, static_cast<uint64_t>(kThreads - 1));

  counting_->set_read_delay(std::chrono::milliseconds(0));
  for (int i = 0; i < 3; ++i) {
    auto later = Get(*cache, bytes);
    ASSERT_TRUE(later);
    EXPECT_EQ(ReadAll(**later), bytes);
  }
  EXPECT_EQ(counting_->reads(), 1);
  EXPECT_EQ(cache->stats().hits, static_cast<uint64_t>(kThreads - 1 + 3));
}

TEST_F(ArtifactCacheTest, SingleFlightFailureIsSharedAndNotCached) {
  auto cache = NewCache(16 << 20);
  std::string bytes = PatternBytes(100000, 3);
  std::string digest = Put(bytes);
  FlipByte(ObjectPath(digest), 777);
  counting_->set_read_delay(std::chrono::milliseconds(300));
  constexpr int kThreads = 8;
  std::vector<Status> results(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = StatusOf(Get(*cache, bytes));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counting_->reads(), 1);
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(results[i].code(), StatusCode::kDataLoss) << results[i].ToString();
  EXPECT_TRUE(CacheFiles().empty()) << ::testing::PrintToString(CacheFiles());
}

TEST_F(ArtifactCacheTest, LruEvictionByBytes) {
  std::string a = PatternBytes(10000, 10), b = PatternBytes(10000, 11), c = PatternBytes(10000, 12);
  for (const auto* x : {&a, &b, &c}) Put(*x);
  auto cache = NewCache(20000);  // room for two
  ASSERT_TRUE(Get(*cache, a));
  ASSERT_TRUE(Get(*cache, b));
  ASSERT_TRUE(Get(*cache, c));  // evicts a
  EXPECT_EQ(counting_->reads(), 3);
  EXPECT_LE(cache->stats().cached_bytes, 20000u);
  EXPECT_EQ(CacheFiles().size(), 2u);
  ASSERT_TRUE(Get(*cache, b));
  ASSERT_TRUE(Get(*cache, c));
  EXPECT_EQ(counting_->reads(), 3) << "b and c are cached";
  auto again = Get(*cache, a);  // re-fetched, evicts b (least recently used)
  ASSERT_TRUE(again);
  EXPECT_EQ(ReadAll(**again), a);
  EXPECT_EQ(counting_->reads(), 4) << "a was evicted and must be fetched again";
  ASSERT_TRUE(Get(*cache, c));
  EXPECT_EQ(counting_->reads(), 4) << "c was used more recently than b and must still be cached";
  ASSERT_TRUE(Get(*cache, b));
  EXPECT_EQ(counting_->reads(), 5) << "b was the least recently used";
  EXPECT_LE(cache->stats().cached_bytes, 20000u);
}

TEST_F(ArtifactCacheTest, HitRefreshesRecency) {
  std::string a = PatternBytes(10000, 20), b = PatternBytes(10000, 21), c = PatternBytes(10000, 22);
  for (const auto* x : {&a, &b, &c}) Put(*x);
  auto cache = NewCache(20000);
  ASSERT_TRUE(Get(*cache, a));
  ASSERT_TRUE(Get(*cache, b));
  ASSERT_TRUE(Get(*cache, a));  // a is now the most recently used
  ASSERT_TRUE(Get(*cache, c));  // evicts b
  EXPECT_EQ(counting_->reads(), 3);
  ASSERT_TRUE(Get(*cache, a));
  EXPECT_EQ(counting_->reads(), 3);
  ASSERT_TRUE(Get(*cache, b));
  EXPECT_EQ(counting_->reads(), 4);
}

TEST_F(ArtifactCacheTest, EvictedArtifactStaysReadableByItsHolder) {
  std::string a = PatternBytes(10000, 30), b = PatternBytes(10000, 31), c = PatternBytes(10000, 32);
  for (const auto* x : {&a, &b, &c}) Put(*x);
  auto cache = NewCache(20000);
  auto held = Get(*cache, a);
  ASSERT_TRUE(held);
  ASSERT_TRUE(Get(*cache, b));
  ASSERT_TRUE(Get(*cache, c));  // a's file is unlinked
  EXPECT_FALSE(std::filesystem::exists(cache_dir() / Sha256Hex(a)));
  EXPECT_EQ(ReadAll(**held), a);
}

TEST_F(ArtifactCacheTest, ArtifactLargerThanCapacityIsStillServed) {
  auto cache = NewCache(4096);
  std::string big = PatternBytes(50000, 40);
  Put(big);
  auto got = Get(*cache, big);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ((*got)->size(), big.size());
  EXPECT_EQ(ReadAll(**got), big);
  EXPECT_EQ(cache->stats().cached_bytes, 0u);
  EXPECT_TRUE(CacheFiles().empty()) << ::testing::PrintToString(CacheFiles());
  auto again = Get(*cache, big);
  ASSERT_TRUE(again);
  EXPECT_EQ(ReadAll(**again), big);
  EXPECT_EQ(counting_->reads(), 2) << "too large to keep: fetched each time";
  // The first holder still reads its copy.
  EXPECT_EQ(ReadAll(**got), big);
  // A small one is still cached next to it.
  std::string small = PatternBytes(1000, 41);
  Put(small);
  ASSERT_TRUE(Get(*cache, small));
  ASSERT_TRUE(Get(*cache, small));
  EXPECT_EQ(counting_->reads(), 3);
}

TEST_F(ArtifactCacheTest, CorruptObjectIsDataLossAndNotCached) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(20000, 50);
  std::string digest = Put(bytes);
  std::string original = ::modelfleet::testing::ReadWholeFile(ObjectPath(digest));
  FlipByte(ObjectPath(digest), 12345);

  auto bad = Get(*cache, bytes);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), StatusCode::kDataLoss) << bad.error().ToString();
  EXPECT_EQ(cache->stats().verify_failures, 1u);
  EXPECT_EQ(cache->stats().cached_bytes, 0u);
  EXPECT_TRUE(CacheFiles().empty()) << "temp file left: " << ::testing::PrintToString(CacheFiles());
  // Still corrupt: fetched (and rejected) again, not served from a cache.
  MF_EXPECT_CODE(Get(*cache, bytes), StatusCode::kDataLoss);
  EXPECT_EQ(counting_->reads(), 2);

  // Repaired: succeeds.
  ::modelfleet::testing::WriteWholeFile(ObjectPath(digest), original);
  auto good = Get(*cache, bytes);
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_EQ(ReadAll(**good), bytes);
  EXPECT_EQ(counting_->reads(), 3);
}

// Downloads now go out in 1 MiB messages and S3 reads arrive in 512 KiB pieces: an artifact
// spanning several of each, corrupt only in its very last byte, must still be refused as a
// whole (no verified artifact, nothing left in the cache) before any of it could be served.
TEST_F(ArtifactCacheTest, CorruptLastByteOfAMultiMessageArtifactIsNeverHandedOut) {
  auto cache = NewCache(64 << 20);
  std::string bytes = PatternBytes((3 << 20) + 12345, 54);
  std::string digest = Put(bytes);
  FlipByte(ObjectPath(digest), bytes.size() - 1);
  auto bad = Get(*cache, bytes);
  ASSERT_FALSE(bad) << "a corrupt artifact was handed out";
  EXPECT_EQ(bad.error().code(), StatusCode::kDataLoss) << bad.error().ToString();
  EXPECT_TRUE(CacheFiles().empty()) << ::testing::PrintToString(CacheFiles());
  EXPECT_EQ(cache->stats().cached_bytes, 0u);
}

TEST_F(ArtifactCacheTest, WrongSizeIsDataLoss) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(20000, 51);
  std::string digest = Put(bytes);
  // Longer than the manifest says.
  MF_EXPECT_CODE(cache->Get(digest, bytes.size() - 1, Key(digest)), StatusCode::kDataLoss);
  // Shorter.
  MF_EXPECT_CODE(cache->Get(digest, bytes.size() + 1, Key(digest)), StatusCode::kDataLoss);
  // Truncated object.
  std::filesystem::resize_file(ObjectPath(digest), bytes.size() - 10);
  MF_EXPECT_CODE(cache->Get(digest, bytes.size(), Key(digest)), StatusCode::kDataLoss);
  EXPECT_TRUE(CacheFiles().empty()) << ::testing::PrintToString(CacheFiles());
  EXPECT_EQ(cache->stats().cached_bytes, 0u);
}

TEST_F(ArtifactCacheTest, MissingObjectIsDataLoss) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(2000, 52);
  std::string digest = Sha256Hex(bytes);  // never stored
  auto got = cache->Get(digest, bytes.size(), Key(digest));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), StatusCode::kDataLoss) << got.error().ToString();
  EXPECT_TRUE(CacheFiles().empty());
}

TEST_F(ArtifactCacheTest, UnavailableStoreIsUnavailableAndNotCached) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(2000, 53);
  Put(bytes);
  counting_->fail_next_reads(1);
  auto got = Get(*cache, bytes);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), StatusCode::kUnavailable) << got.error().ToString();
  EXPECT_EQ(cache->stats().verify_failures, 0u);
  EXPECT_TRUE(CacheFiles().empty());
  auto ok = Get(*cache, bytes);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ReadAll(**ok), bytes);
}

TEST_F(ArtifactCacheTest, ForgetDropsTheEntry) {
  auto cache = NewCache(1 << 20);
  std::string bytes = PatternBytes(2000, 54);
  std::string digest = Put(bytes);
  auto held = Get(*cache, bytes);
  ASSERT_TRUE(held);
  cache->Forget(digest);
  EXPECT_EQ(cache->stats().cached_bytes, 0u);
  EXPECT_TRUE(CacheFiles().empty());
  EXPECT_EQ(ReadAll(**held), bytes);
  ASSERT_TRUE(Get(*cache, bytes));
  EXPECT_EQ(counting_->reads(), 2);
  cache->Forget(Sha256Hex("not cached"));  // no-op
}

TEST_F(ArtifactCacheTest, ConstructionEmptiesTheDirectory) {
  std::filesystem::create_directories(cache_dir());
  std::string bytes = PatternBytes(2000, 55);
  std::string digest = Put(bytes);
  // A stale file under the digest's name with the wrong content must not be trusted.
  ::modelfleet::testing::WriteWholeFile(cache_dir() / digest, "stale");
  ::modelfleet::testing::WriteWholeFile(cache_dir() / (digest + ".part-abc"), "junk");
  auto cache = NewCache(1 << 20);
  EXPECT_TRUE(CacheFiles().empty()) << ::testing::PrintToString(CacheFiles());
  auto got = Get(*cache, bytes);
  ASSERT_TRUE(got);
  EXPECT_EQ(ReadAll(**got), bytes);
  EXPECT_EQ(counting_->reads(), 1);
}

TEST_F(ArtifactCacheTest, ManyDigestsConcurrently) {
  auto cache = NewCache(5 * 20000);
  std::vector<std::string> blobs;
  for (int i = 0; i < 8; ++i) {
    blobs.push_back(PatternBytes(20000, 60 + i));
    Put(blobs.back());
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        const std::string& bytes = blobs[(t + round) % blobs.size()];
        auto got = Get(*cache, bytes);
        if (!got || ReadAll(**got) != bytes) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(cache->stats().cached_bytes, 5u * 20000u);
  // Files on disk match the accounting.
  uint64_t on_disk = 0;
  for (const auto& name : CacheFiles()) on_disk += std::filesystem::file_size(cache_dir() / name);
  EXPECT_EQ(on_disk, cache->stats().cached_bytes);
}

}  // namespace
}  // namespace modelfleet::registry
