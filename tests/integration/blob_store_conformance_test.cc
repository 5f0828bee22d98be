// The BlobStore conformance suite (server/blob/blob_store.h): one typed test suite that every
// backend must pass. A backend contributes only a factory for a fresh, empty store:
//   - LocalBackend: LocalBlobStore::Open on a new temporary directory;
//   - S3Backend:    S3BlobStore::Open on a new bucket of one s3rver started for the whole suite
//                   (tests/support/s3rver.h; needs `npm ci` at the repo root).
// Every test names the contract clause it checks. Behaviour specific to one backend lives in
// that backend's own tests; the few local-only checks at the end of this file are about the
// local layout (<root>/tmp) documented in local_blob_store.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "blob/blob_store.h"
#include "blob/local_blob_store.h"
#include "blob/s3/s3_blob_store.h"
#include "modelfleet/crypto.h"
#include "process.h"
#include "s3rver.h"

namespace modelfleet::blob {
namespace {

namespace fs = std::filesystem;
using modelfleet::testing::S3rverProcess;
using modelfleet::testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Backends: a factory each.

class LocalBackend {
 public:
  static constexpr const char* kName = "Local";
  static void SetUpTestSuite() {}
  static void TearDownTestSuite() {}
  static bool Available(std::string*) { return true; }

  Expected<std::unique_ptr<BlobStore>> Open() {
    dirs_.push_back(std::make_unique<TempDir>("mf-blob-conformance"));
    return LocalBlobStore::Open(dirs_.back()->path() / "store");
  }

 private:
  std::vector<std::unique_ptr<TempDir>> dirs_;
};

class S3Backend {
 public:
  static constexpr const char* kName = "S3";
  static void SetUpTestSuite() {
    std::string error;
    server_ = S3rverProcess::Start(&error);
    start_error_ = error;
  }
  static void TearDownTestSuite() { server_.reset(); }
  static bool Available(std::string* why) {
    if (server_ == nullptr) *why = "cannot start s3rver: " + start_error_;
    return server_ != nullptr;
  }

  Expected<std::unique_ptr<BlobStore>> Open() {
    static std::atomic<int> counter{0};
    S3Options options;
    options.endpoint = server_->endpoint();
    options.bucket = "conformance-" + std::to_string(counter++);
    options.access_key = S3rverProcess::kAccessKey;
    options.secret_key = S3rverProcess::kSecretKey;
    options.part_size = 5 * kMiB;  // the S3 minimum, so multipart uploads start early
    return S3BlobStore::Open(options);
  }

 private:
  static inline std::unique_ptr<S3rverProcess> server_;
  static inline std::string start_error_;
};

// ---------------------------------------------------------------------------------------------
// Helpers

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Deterministic, position-dependent bytes: a misplaced, lost or repeated chunk changes them.
std::string Pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

Status Put(BlobStore& store, const std::string& key, std::string_view content) {
  MF_ASSIGN_OR_RETURN(auto writer, store.Create(key));
  MF_RETURN_IF_ERROR(writer->Append(Bytes(content)));
  return writer->Commit();
}

Expected<std::string> ReadAll(BlobStore& store, const std::string& key, uint64_t offset = 0,
                              std::optional<uint64_t> length = std::nullopt) {
  std::string out;
  Status s = store.Read(key, offset, length, [&](std::span<const uint8_t> piece) {
    out.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    return Status::Ok();
  });
  if (!s.ok()) return Fail(s);
  return out;
}

// List, sorted (the BlobStore contract does not promise an order).
std::vector<std::string> Keys(BlobStore& store, const std::string& prefix) {
  auto keys = store.List(prefix);
  EXPECT_TRUE(keys.has_value()) << "List('" << prefix << "'): " << keys.error().ToString();
  std::vector<std::string> out = keys.value_or(std::vector<std::string>{});
  std::sort(out.begin(), out.end());
  return out;
}

using KeyList = std::vector<std::string>;

// The code of an Expected's error, kOk if it holds a value.
template <typename T>
StatusCode CodeOf(const Expected<T>& e) {
  return e ? StatusCode::kOk : e.error().code();
}

std::string Describe(const Expected<std::string>& read) {
  return read ? "OK (" + std::to_string(read->size()) + " bytes)" : read.error().ToString();
}

// ---------------------------------------------------------------------------------------------
// The suite

template <typename Backend>
class BlobStoreConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { Backend::SetUpTestSuite(); }
  static void TearDownTestSuite() { Backend::TearDownTestSuite(); }

  void SetUp() override {
    std::string why;
    ASSERT_TRUE(Backend::Available(&why)) << why;
    auto store = backend_.Open();
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
  }

  BlobStore& store() { return *store_; }

  Backend backend_;                   // declared first: outlives the store (temp dirs)
  std::unique_ptr<BlobStore> store_;
};

struct BackendName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};

using Backends = ::testing::Types<LocalBackend, S3Backend>;
TYPED_TEST_SUITE(BlobStoreConformanceTest, Backends, BackendName);

// "Nothing is visible under the key until Commit() returns OK."
TYPED_TEST(BlobStoreConformanceTest, NothingIsVisibleBeforeCommit) {
  BlobStore& store = this->store();
  auto writer = store.Create("sha256/pending");
  ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  ASSERT_TRUE((*writer)->Append(Bytes("hello ")).ok());
  ASSERT_TRUE((*writer)->Append(Bytes("world")).ok());

  auto stat = store.Stat("sha256/pending");
  ASSERT_FALSE(stat.has_value()) << "visible before Commit: size " << stat->size;
  EXPECT_EQ(stat.error().code(), StatusCode::kNotFound) << stat.error().ToString();
  auto read = ReadAll(store, "sha256/pending");
  ASSERT_FALSE(read.has_value()) << "readable before Commit";
  EXPECT_EQ(read.error().code(), StatusCode::kNotFound) << read.error().ToString();
  EXPECT_EQ(Keys(store, ""), KeyList{});

  Status committed = (*writer)->Commit();
  ASSERT_TRUE(committed.ok()) << committed.ToString();
  auto after = store.Stat("sha256/pending");
  ASSERT_TRUE(after.has_value()) << after.error().ToString();
  EXPECT_EQ(after->size, 11u);
  EXPECT_EQ(ReadAll(store, "sha256/pending").value_or("<error>"), "hello world");
  EXPECT_EQ(Keys(store, ""), KeyList{"sha256/pending"});
}

// "Makes the object visible under its key, atomically replacing any object there."
TYPED_TEST(BlobStoreConformanceTest, CommitReplacesAnExistingObject) {
  BlobStore& store = this->store();
  const std::string old_content = "the old content, longer than the new one";
  ASSERT_TRUE(Put(store, "model", old_content).ok());

  auto writer = store.Create("model");
  ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  ASSERT_TRUE((*writer)->Append(Bytes("new")).ok());
  // While the replacement is being written the old object is still there, whole.
  EXPECT_EQ(ReadAll(store, "model").value_or("<error>"), old_content);
  EXPECT_EQ(store.Stat("model").value_or(BlobInfo{}).size, old_content.size());

  ASSERT_TRUE((*writer)->Commit().ok());
  // Exactly the new bytes: no tail of the longer old object survives.
  EXPECT_EQ(ReadAll(store, "model").value_or("<error>"), "new");
  EXPECT_EQ(store.Stat("model").value_or(BlobInfo{}).size, 3u);
  EXPECT_EQ(Keys(store, ""), KeyList{"model"});

  // Two uploads to one key in flight at once: the one committed last wins, and it is whole.
  auto first = store.Create("model");
  auto second = store.Create("model");
  ASSERT_TRUE(first.has_value() && second.has_value());
  ASSERT_TRUE((*first)->Append(Bytes("first upload")).ok());
  ASSERT_TRUE((*second)->Append(Bytes("second")).ok());
  ASSERT_TRUE((*second)->Commit().ok());
  EXPECT_EQ(ReadAll(store, "model").value_or("<error>"), "second");
  ASSERT_TRUE((*first)->Commit().ok());
  EXPECT_EQ(ReadAll(store, "model").value_or("<error>"), "first upload");
  EXPECT_EQ(Keys(store, ""), KeyList{"model"});
}

// "Abort: discards everything written. Idempotent; never fails."
TYPED_TEST(BlobStoreConformanceTest, AbortLeavesNothing) {
  BlobStore& store = this->store();
  {
    auto writer = store.Create("sha256/aborted");
    ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
    ASSERT_TRUE((*writer)->Append(Bytes(Pattern(100 * 1024, 1))).ok());
    (*writer)->Abort();
    (*writer)->Abort();  // idempotent
    EXPECT_EQ(CodeOf(store.Stat("sha256/aborted")), StatusCode::kNotFound);
    EXPECT_EQ(Keys(store, ""), KeyList{});
  }
  EXPECT_EQ(Keys(store, ""), KeyList{});  // nor after the aborted writer is destroyed

  // Aborting a replacement leaves the existing object as it was.
  ASSERT_TRUE(Put(store, "sha256/kept", "kept").ok());
  auto replacement = store.Create("sha256/kept");
  ASSERT_TRUE(replacement.has_value());
  ASSERT_TRUE((*replacement)->Append(Bytes("other")).ok());
  (*replacement)->Abort();
  EXPECT_EQ(ReadAll(store, "sha256/kept").value_or("<error>"), "kept");
  EXPECT_EQ(Keys(store, ""), KeyList{"sha256/kept"});
}

// "A writer destroyed without Commit() aborts and leaves nothing behind."
TYPED_TEST(BlobStoreConformanceTest, DestroyingAnUncommittedWriterLeavesNothing) {
  BlobStore& store = this->store();
  {
    auto writer = store.Create("sha256/dropped");
    ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
    ASSERT_TRUE((*writer)->Append(Bytes("partial")).ok());
  }
  {
    // 6 MiB: more than one S3 part (5 MiB here), so a multipart upload is under way.
    auto writer = store.Create("sha256/dropped-large");
    ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
    const std::string chunk = Pattern(kMiB, 2);
    for (int i = 0; i < 6; ++i) ASSERT_TRUE((*writer)->Append(Bytes(chunk)).ok());
  }
  {
    auto writer = store.Create("sha256/never-written");  // created, nothing appended
    ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  }
  EXPECT_EQ(CodeOf(store.Stat("sha256/dropped")), StatusCode::kNotFound);
  EXPECT_EQ(CodeOf(store.Stat("sha256/dropped-large")), StatusCode::kNotFound);
  EXPECT_EQ(CodeOf(store.Stat("sha256/never-written")), StatusCode::kNotFound);
  EXPECT_EQ(Keys(store, ""), KeyList{});

  // Dropping a replacement leaves the existing object as it was.
  ASSERT_TRUE(Put(store, "sha256/kept", "kept").ok());
  {
    auto writer = store.Create("sha256/kept");
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE((*writer)->Append(Bytes("other")).ok());
  }
  EXPECT_EQ(ReadAll(store, "sha256/kept").value_or("<error>"), "kept");
  EXPECT_EQ(Keys(store, ""), KeyList{"sha256/kept"});
}

// "Streams bytes [offset, offset+length) ... length = nullopt means to the end.
//  Errors: NOT_FOUND (no such key), OUT_OF_RANGE (offset > size)."
TYPED_TEST(BlobStoreConformanceTest, ReadWholeRangedAndAtTheEdges) {
  BlobStore& store = this->store();
  ASSERT_TRUE(Put(store, "ten", "0123456789").ok());

  struct Case {
    uint64_t offset;
    std::optional<uint64_t> length;
    const char* want;
  };
  const Case cases[] = {
      {0, std::nullopt, "0123456789"},  // whole
      {0, 10, "0123456789"},            // whole, explicit length
      {3, 4, "3456"},                   // middle
      {4, std::nullopt, "456789"},      // to the end
      {9, 1, "9"},                      // last byte
      {7, 100, "789"},                  // length past the end is clamped
      {3, UINT64_MAX, "3456789"},       // offset + length overflows uint64: still clamped
      {0, 0, ""},                       // empty range
      {10, std::nullopt, ""},           // offset == size: OK, no bytes
      {10, 5, ""},                      // offset == size with a length: OK, no bytes
  };
  for (const Case& c : cases) {
    auto read = ReadAll(store, "ten", c.offset, c.length);
    ASSERT_TRUE(read.has_value()) << "offset " << c.offset << ": " << read.error().ToString();
    EXPECT_EQ(*read, c.want) << "offset " << c.offset << " length "
                             << (c.length ? std::to_string(*c.length) : "none");
  }

  for (uint64_t offset : {uint64_t{11}, uint64_t{1000}, UINT64_MAX}) {
    auto read = ReadAll(store, "ten", offset, 1);
    ASSERT_FALSE(read.has_value()) << "offset " << offset << " read " << read->size() << " bytes";
    EXPECT_EQ(read.error().code(), StatusCode::kOutOfRange) << read.error().ToString();
  }

  for (uint64_t offset : {uint64_t{0}, uint64_t{5}}) {
    bool sink_called = false;
    Status missing = store.Read("nine", offset, std::nullopt, [&](std::span<const uint8_t>) {
      sink_called = true;
      return Status::Ok();
    });
    EXPECT_EQ(missing.code(), StatusCode::kNotFound) << missing.ToString();
    EXPECT_FALSE(sink_called);
  }
}

TYPED_TEST(BlobStoreConformanceTest, EmptyObject) {
  BlobStore& store = this->store();
  ASSERT_TRUE(Put(store, "empty", "").ok());
  auto info = store.Stat("empty");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->size, 0u);
  auto read = ReadAll(store, "empty");
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  EXPECT_EQ(*read, "");
  EXPECT_EQ(CodeOf(ReadAll(store, "empty", 1)), StatusCode::kOutOfRange);
  EXPECT_EQ(Keys(store, ""), KeyList{"empty"});
}

// "Returning a non-OK status stops the read and Read() returns that status."
TYPED_TEST(BlobStoreConformanceTest, SinkErrorStopsTheReadAndIsReturned) {
  BlobStore& store = this->store();
  const std::string data = Pattern(kMiB, 3);
  ASSERT_TRUE(Put(store, "big", data).ok());

  for (int fail_on_call : {1, 3}) {
    int calls = 0;
    uint64_t received = 0;
    Status s = store.Read("big", 0, std::nullopt, [&](std::span<const uint8_t> piece) {
      ++calls;
      received += piece.size();
      if (calls == fail_on_call) return Status(StatusCode::kAborted, "the sink is full");
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
    EXPECT_NE(s.message().find("the sink is full"), std::string::npos) << s.ToString();
    EXPECT_EQ(calls, fail_on_call) << "the sink was called again after it failed";
    EXPECT_LT(received, data.size());
  }

  // The store is still usable afterwards (no connection or handle left in a bad state).
  auto again = ReadAll(store, "big");
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_TRUE(*again == data);
}

TYPED_TEST(BlobStoreConformanceTest, StatReportsTheSize) {
  BlobStore& store = this->store();
  for (size_t size : {size_t{0}, size_t{1}, size_t{4097}, size_t{300000}}) {
    const std::string key = "sized/" + std::to_string(size);
    ASSERT_TRUE(Put(store, key, Pattern(size, 4)).ok()) << key;
    auto info = store.Stat(key);
    ASSERT_TRUE(info.has_value()) << info.error().ToString();
    EXPECT_EQ(info->size, size) << key;
  }
  auto missing = store.Stat("sized/missing");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound) << missing.error().ToString();
}

// "Removes key. Deleting a missing key is OK (idempotent)."
TYPED_TEST(BlobStoreConformanceTest, DeleteIsIdempotent) {
  BlobStore& store = this->store();
  ASSERT_TRUE(Put(store, "dir/one", "1").ok());
  ASSERT_TRUE(Put(store, "dir/two", "2").ok());

  Status deleted = store.Delete("dir/one");
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  EXPECT_EQ(CodeOf(store.Stat("dir/one")), StatusCode::kNotFound);
  EXPECT_EQ(CodeOf(ReadAll(store, "dir/one")), StatusCode::kNotFound);
  EXPECT_EQ(Keys(store, ""), KeyList{"dir/two"});  // the sibling is untouched

  Status again = store.Delete("dir/one");
  EXPECT_TRUE(again.ok()) << again.ToString();
  Status never = store.Delete("never/existed");
  EXPECT_TRUE(never.ok()) << never.ToString();
  EXPECT_EQ(ReadAll(store, "dir/two").value_or("<error>"), "2");

  // A deleted key can be written again.
  ASSERT_TRUE(Put(store, "dir/one", "one again").ok());
  EXPECT_EQ(ReadAll(store, "dir/one").value_or("<error>"), "one again");
}

// "Keys under prefix."
TYPED_TEST(BlobStoreConformanceTest, ListByPrefix) {
  BlobStore& store = this->store();
  for (const char* key : {"sha256/aa", "sha256/ab", "sha256/b0", "other/x", "sha2", "deep/a/b/c"}) {
    ASSERT_TRUE(Put(store, key, key).ok()) << key;
  }
  EXPECT_EQ(Keys(store, ""),
            (KeyList{"deep/a/b/c", "other/x", "sha2", "sha256/aa", "sha256/ab", "sha256/b0"}));
  EXPECT_EQ(Keys(store, "sha256/"), (KeyList{"sha256/aa", "sha256/ab", "sha256/b0"}));
  EXPECT_EQ(Keys(store, "sha256/a"), (KeyList{"sha256/aa", "sha256/ab"}));
  // A prefix is a plain string prefix, not a directory: "sha2" also matches "sha256/...".
  EXPECT_EQ(Keys(store, "sha2"), (KeyList{"sha2", "sha256/aa", "sha256/ab", "sha256/b0"}));
  EXPECT_EQ(Keys(store, "deep/"), KeyList{"deep/a/b/c"});
  EXPECT_EQ(Keys(store, "sha256/aa"), KeyList{"sha256/aa"});
  EXPECT_EQ(Keys(store, "nothing"), KeyList{});
}

// "Backends reject other keys with INVALID_ARGUMENT."
TYPED_TEST(BlobStoreConformanceTest, InvalidKeysAreRejectedAndNeverTouchTheStore) {
  BlobStore& store = this->store();
  ASSERT_TRUE(Put(store, "a/b", "kept").ok());

  const std::vector<std::string> invalid = {
      "",          "..",        ".",         "a//b",      "a b",   "/a",
      "/",         "a/",        "a/../b",    "../escape", "a/./b", "a\\b",
      "a?b",       "a%2Fb",     "caf\xc3\xa9", std::string("a\0b", 3), "a\nb", "/a/b",
  };
  for (const std::string& key : invalid) {
    SCOPED_TRACE(::testing::PrintToString(key));
    auto writer = store.Create(key);
    ASSERT_FALSE(writer.has_value()) << "Create accepted an invalid key";
    EXPECT_EQ(writer.error().code(), StatusCode::kInvalidArgument) << writer.error().ToString();

    bool sink_called = false;
    Status read = store.Read(key, 0, std::nullopt, [&](std::span<const uint8_t>) {
      sink_called = true;
      return Status::Ok();
    });
    EXPECT_EQ(read.code(), StatusCode::kInvalidArgument) << read.ToString();
    EXPECT_FALSE(sink_called);

    auto stat = store.Stat(key);
    ASSERT_FALSE(stat.has_value());
    EXPECT_EQ(stat.error().code(), StatusCode::kInvalidArgument) << stat.error().ToString();

    Status deleted = store.Delete(key);
    EXPECT_EQ(deleted.code(), StatusCode::kInvalidArgument) << deleted.ToString();
  }
  // Nothing was created, and the object whose key the invalid ones resemble is intact.
  EXPECT_EQ(Keys(store, ""), KeyList{"a/b"});
  EXPECT_EQ(ReadAll(store, "a/b").value_or("<error>"), "kept");
}

// Keys are '/'-separated paths of valid segments, so "a" and "a/b" are both valid keys. A key
// that only exists as the parent (or child) of another key does not exist: Stat and Read are
// NOT_FOUND (the only "missing" error of the contract) and Delete is OK (idempotent).
TYPED_TEST(BlobStoreConformanceTest, KeysAboveOrBelowAnExistingKeyAreMissing) {
  // Regression (local store used nested paths): server/blob/local_blob_store.cc maps keys to paths (<root>/objects/<key>), so "a" is
  // a directory once "a/b" exists and "c/d" goes through the regular file "c". Stat("a") and
  // Read("a") return INTERNAL "Is a directory" instead of NOT_FOUND, and Delete("a") returns
  // INTERNAL instead of OK; likewise ENOTDIR for "c/d" (ErrnoStatus maps only ENOENT to
  // NOT_FOUND; Stat checks only no_such_file_or_directory).
  BlobStore& store = this->store();
  ASSERT_TRUE(Put(store, "a/b", "ab").ok());
  ASSERT_TRUE(Put(store, "c", "c").ok());
  for (const char* missing : {"a", "c/d"}) {
    SCOPED_TRACE(missing);
    auto stat = store.Stat(missing);
    EXPECT_EQ(CodeOf(stat), StatusCode::kNotFound) << (stat ? "exists" : stat.error().ToString());
    auto read = ReadAll(store, missing);
    EXPECT_EQ(CodeOf(read), StatusCode::kNotFound) << Describe(read);
    Status deleted = store.Delete(missing);
    EXPECT_TRUE(deleted.ok()) << deleted.ToString();
  }
  EXPECT_EQ(Keys(store, ""), (KeyList{"a/b", "c"}));
}

TYPED_TEST(BlobStoreConformanceTest, AKeyAndKeysBelowItCoexist) {
  // Regression (local store used nested paths): server/blob/local_blob_store.cc, LocalBlobWriter::Commit: rename() onto
  // <root>/objects/m fails with EISDIR when "m/v1" exists, and onto <root>/objects/n/v1
  // with ENOTDIR when "n" exists; both valid keys by blob_store.h, both fine on S3.
  BlobStore& store = this->store();
  Status s = Put(store, "m/v1", "m/v1");
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = Put(store, "m", "m");
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = Put(store, "n", "n");
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = Put(store, "n/v1", "n/v1");
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const char* key : {"m", "m/v1", "n", "n/v1"}) {
    EXPECT_EQ(ReadAll(store, key).value_or("<error>"), key);
  }
  EXPECT_EQ(Keys(store, ""), (KeyList{"m", "m/v1", "n", "n/v1"}));
}

// Large objects stream through bounded memory and come back bit-identical.
TYPED_TEST(BlobStoreConformanceTest, TwentyMiBWrittenInUnevenChunksReadsBackIdentical) {
  BlobStore& store = this->store();
  const size_t kSize = 20 * kMiB;
  const std::string data = Pattern(kSize, 5);
  const std::string want_sha = Sha256Hex(data);

  auto writer = store.Create("sha256/large");
  ASSERT_TRUE(writer.has_value()) << writer.error().ToString();
  // Chunk sizes chosen so that chunk and part boundaries (5 MiB on S3) rarely coincide.
  const size_t chunks[] = {1, 4095, 65537, kMiB + 3, 3 * kMiB - 1, 7, 5 * kMiB + 1};
  size_t at = 0;
  for (int i = 0; at < kSize; ++i) {
    const size_t n = std::min(chunks[i % std::size(chunks)], kSize - at);
    Status s = (*writer)->Append(Bytes(std::string_view(data).substr(at, n)));
    ASSERT_TRUE(s.ok()) << "Append at " << at << ": " << s.ToString();
    at += n;
  }
  Status committed = (*writer)->Commit();
  ASSERT_TRUE(committed.ok()) << committed.ToString();

  auto info = store.Stat("sha256/large");
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->size, kSize);

  Sha256 hash;
  uint64_t received = 0;
  size_t largest_piece = 0;
  Status read = store.Read("sha256/large", 0, std::nullopt, [&](std::span<const uint8_t> piece) {
    hash.Update(piece);
    received += piece.size();
    largest_piece = std::max(largest_piece, piece.size());
    return Status::Ok();
  });
  ASSERT_TRUE(read.ok()) << read.ToString();
  EXPECT_EQ(received, kSize);
  EXPECT_EQ(hash.FinishHex(), want_sha);
  // "in pieces of bounded size": a 20 MiB object does not arrive in one piece.
  EXPECT_LT(largest_piece, kSize);

  // Ranges across a 5 MiB boundary and at the very end.
  auto across = ReadAll(store, "sha256/large", 5 * kMiB - 3, 6);
  EXPECT_EQ(across.value_or("<error>"), data.substr(5 * kMiB - 3, 6)) << Describe(across);
  auto tail = ReadAll(store, "sha256/large", kSize - 5);
  EXPECT_EQ(tail.value_or("<error>"), data.substr(kSize - 5)) << Describe(tail);
}

// "A BlobStore is safe to use from many threads at once."
TYPED_TEST(BlobStoreConformanceTest, ConcurrentWritersToDifferentKeys) {
  BlobStore& store = this->store();
  constexpr int kThreads = 4;
  constexpr int kObjectsPerThread = 2;
  auto content = [](int t, int j) {
    return Pattern(768 * 1024 + t * 1000 + j, static_cast<uint32_t>(100 + t * 10 + j));
  };
  auto key = [](int t, int j) {
    return "concurrent/t" + std::to_string(t) + "-" + std::to_string(j);
  };

  std::vector<std::string> errors(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();  // all writers in flight together
      for (int j = 0; j < kObjectsPerThread; ++j) {
        const std::string data = content(t, j);
        auto writer = store.Create(key(t, j));
        if (!writer) {
          errors[t] += "Create: " + writer.error().ToString() + "\n";
          continue;
        }
        const size_t chunk = 64 * 1024 + static_cast<size_t>(t);
        for (size_t at = 0; at < data.size(); at += chunk) {
          Status s = (*writer)->Append(
              Bytes(std::string_view(data).substr(at, std::min(chunk, data.size() - at))));
          if (!s.ok()) errors[t] += "Append: " + s.ToString() + "\n";
        }
        Status s = (*writer)->Commit();
        if (!s.ok()) errors[t] += "Commit: " + s.ToString() + "\n";
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;

  KeyList want;
  for (int t = 0; t < kThreads; ++t) {
    for (int j = 0; j < kObjectsPerThread; ++j) {
      want.push_back(key(t, j));
      auto read = ReadAll(store, key(t, j));
      ASSERT_TRUE(read.has_value()) << key(t, j) << ": " << read.error().ToString();
      EXPECT_TRUE(*read == content(t, j)) << key(t, j) << " has other bytes";
    }
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Keys(store, "concurrent/"), want);
}

// ---------------------------------------------------------------------------------------------
// Local backend only: the on-disk layout of local_blob_store.h.

std::set<std::string> FilesUnder(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    out.insert(fs::relative(it->path(), dir).generic_string());
  }
  return out;
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// "Temp files left by a crash are removed when the store is opened."
TEST(LocalBlobStoreLayout, TempFilesLeftByACrashAreRemovedOnReopen) {
  TempDir dir("mf-blob-local");
  const fs::path root = dir.path() / "store";
  {
    auto store = LocalBlobStore::Open(root);
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    ASSERT_TRUE(Put(**store, "sha256/kept", "kept").ok());
  }
  // What a process killed during uploads leaves behind.
  ASSERT_TRUE(fs::is_directory(root / "tmp"));
  WriteFile(root / "tmp" / "upload-0123456789abcdef01234567", "half an upload");
  WriteFile(root / "tmp" / "upload-empty", "");
  ASSERT_EQ(FilesUnder(root / "tmp").size(), 2u);

  auto reopened = LocalBlobStore::Open(root);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
  EXPECT_EQ(FilesUnder(root / "tmp"), std::set<std::string>{});
  // Committed objects survive the reopen; the leftovers never show up as keys.
  EXPECT_EQ(ReadAll(**reopened, "sha256/kept").value_or("<error>"), "kept");
  EXPECT_EQ(Keys(**reopened, ""), KeyList{"sha256/kept"});
}

// "A writer destroyed without Commit() aborts and leaves nothing behind (no temp file ...)."
TEST(LocalBlobStoreLayout, AbortedDroppedAndCommittedUploadsLeaveNoTempFile) {
  TempDir dir("mf-blob-local");
  const fs::path root = dir.path() / "store";
  auto opened = LocalBlobStore::Open(root);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  BlobStore& store = **opened;
  {
    auto writer = store.Create("x");
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE((*writer)->Append(Bytes("abc")).ok());
    EXPECT_EQ(FilesUnder(root / "tmp").size(), 1u);  // the upload in progress
    (*writer)->Abort();
    EXPECT_EQ(FilesUnder(root / "tmp"), std::set<std::string>{});
  }
  {
    auto writer = store.Create("x");
    ASSERT_TRUE(writer.has_value());
    ASSERT_TRUE((*writer)->Append(Bytes("abc")).ok());
  }
  EXPECT_EQ(FilesUnder(root / "tmp"), std::set<std::string>{});
  ASSERT_TRUE(Put(store, "x", "abc").ok());
  EXPECT_EQ(FilesUnder(root / "tmp"), std::set<std::string>{});
  EXPECT_EQ(Keys(store, ""), KeyList{"x"});
}

// Invalid keys must not create anything anywhere, in particular not outside <root>.
TEST(LocalBlobStoreLayout, InvalidKeysCreateNothingOnDisk) {
  TempDir dir("mf-blob-local");
  const fs::path root = dir.path() / "store";
  auto opened = LocalBlobStore::Open(root);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  BlobStore& store = **opened;
  const std::set<std::string> before = FilesUnder(dir.path());
  for (const std::string key : {"../escape", "../../escape", "a/../../escape", "/tmp/escape", ".."}) {
    auto writer = store.Create(key);
    if (writer) {
      (void)(*writer)->Append(Bytes("x"));
      (void)(*writer)->Commit();
    }
    EXPECT_FALSE(writer.has_value()) << key;
    EXPECT_EQ(store.Delete(key).code(), StatusCode::kInvalidArgument) << key;
  }
  EXPECT_EQ(FilesUnder(dir.path()), before);
}

// A reader never sees a torn object while it is being replaced (rename is atomic).
TEST(LocalBlobStoreLayout, ReadersSeeTheOldOrTheNewObjectNeverAMix) {
  TempDir dir("mf-blob-local");
  auto opened = LocalBlobStore::Open(dir.path() / "store");
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  BlobStore& store = **opened;
  const std::string a(600 * 1024, 'a'), b(300 * 1024, 'b');  // more than one read piece
  ASSERT_TRUE(Put(store, "model", a).ok());

  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, torn{0};
  std::thread reader([&] {
    while (!done.load() || reads.load() < 10) {
      auto read = ReadAll(store, "model");
      if (!read || (*read != a && *read != b)) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 20; ++i) {
    Status put = Put(store, "model", i % 2 == 0 ? b : a);
    EXPECT_TRUE(put.ok()) << put.ToString();
    if (!put.ok()) break;
  }
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
}

}  // namespace
}  // namespace modelfleet::blob
