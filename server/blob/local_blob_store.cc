#include "blob/local_blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "modelfleet/crypto.h"

namespace modelfleet::blob {

namespace fs = std::filesystem;

namespace {

constexpr size_t kReadPiece = 256 * 1024;

Status ErrnoStatus(std::string_view what, const fs::path& path, int err) {
  StatusCode code = (err == ENOENT) ? StatusCode::kNotFound : StatusCode::kInternal;
  return Status(code, std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

Status FsyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoStatus("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync directory", dir, err);
  return Status::Ok();
}

class LocalBlobWriter final : public BlobWriter {
 public:
  LocalBlobWriter(int fd, fs::path temp_path, fs::path final_path)
      : fd_(fd), temp_path_(std::move(temp_path)), final_path_(std::move(final_path)) {}
  ~LocalBlobWriter() override { Abort(); }

  Status Append(std::span<const uint8_t> bytes) override {
    if (fd_ < 0) return FailedPrecondition("blob writer is closed");
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", temp_path_, errno);
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status Commit() override {
    if (fd_ < 0) return FailedPrecondition("blob writer is closed");
    if (::fsync(fd_) != 0) {
      Status s = ErrnoStatus("fsync", temp_path_, errno);
      Abort();
      return s;
    }
    ::close(fd_);
    fd_ = -1;
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      Status s = ErrnoStatus("rename to", final_path_, errno);
      ::unlink(temp_path_.c_str());
      return s;
    }
    committed_ = true;
    return FsyncDirectory(final_path_.parent_path());
  }

  void Abort() override {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!committed_) ::unlink(temp_path_.c_str());
    committed_ = true;  // nothing more to clean up
  }

 private:
  int fd_;
  fs::path temp_path_;
  fs::path final_path_;
  bool committed_ = false;
};

}  // namespace

Expected<std::unique_ptr<BlobStore>> LocalBlobStore::Open(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root / "objects", ec);
  if (ec) return Fail(Internal("cannot create " + (root / "objects").string() + ": " + ec.message()));
  fs::create_directories(root / "tmp", ec);
  if (ec) return Fail(Internal("cannot create " + (root / "tmp").string() + ": " + ec.message()));
  // Uploads interrupted by a crash can never be committed: drop them.
  for (const auto& entry : fs::directory_iterator(root / "tmp", ec)) fs::remove(entry.path(), ec);
  if (::access((root / "tmp").c_str(), W_OK) != 0) {
    return Fail(Internal("blob directory " + root.string() + " is not writable"));
  }
  return std::unique_ptr<BlobStore>(new LocalBlobStore(fs::absolute(root)));
}

std::string LocalBlobStore::Describe() const { return "local:" + root_.string(); }

fs::path LocalBlobStore::ObjectPathFor(const fs::path& root, const std::string& key) {
  std::string file = key;
  std::replace(file.begin(), file.end(), '/', '~');
  return root / "objects" / file;
}

Expected<std::unique_ptr<BlobWriter>> LocalBlobStore::Create(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  fs::path temp = root_ / "tmp" / ("upload-" + HexEncode(RandomBytes(12)));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(ErrnoStatus("create", temp, errno));
  return std::unique_ptr<BlobWriter>(new LocalBlobWriter(fd, temp, ObjectPath(key)));
}

Status LocalBlobStore::Read(const std::string& key, uint64_t offset,
                            std::optional<uint64_t> length, const BlobSink& sink) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  fs::path path = ObjectPath(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound("blob '" + key + "' does not exist");
    return ErrnoStatus("open", path, errno);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0) return ErrnoStatus("seek", path, errno);
  if (offset > static_cast<uint64_t>(size)) {
    return Status(StatusCode::kOutOfRange, "offset " + std::to_string(offset) +
                                               " is past the end of blob '" + key + "' (" +
                                               std::to_string(size) + " bytes)");
  }
  uint64_t remaining = static_cast<uint64_t>(size) - offset;
  if (length) remaining = std::min(remaining, *length);
  std::vector<uint8_t> buf(std::min<uint64_t>(kReadPiece, std::max<uint64_t>(remaining, 1)));
  uint64_t pos = offset;
  while (remaining > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), remaining));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read", path, errno);
    }
    if (n == 0) return DataLoss("blob '" + key + "' shrank while being read");
    MF_RETURN_IF_ERROR(sink(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n))));
    pos += static_cast<uint64_t>(n);
    remaining -= static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Expected<BlobInfo> LocalBlobStore::Stat(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  std::error_code ec;
  auto size = fs::file_size(ObjectPath(key), ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return Fail(NotFound("blob '" + key + "' does not exist"));
    return Fail(Internal("stat " + ObjectPath(key).string() + ": " + ec.message()));
  }
  return BlobInfo{size};
}

Status LocalBlobStore::Delete(const std::string& key) {
  MF_RETURN_IF_ERROR(ValidateBlobKey(key));
  fs::path path = ObjectPath(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("delete", path, errno);
  Status synced = FsyncDirectory(path.parent_path());
  return synced.code() == StatusCode::kNotFound ? Status::Ok() : synced;
}

Expected<std::vector<std::string>> LocalBlobStore::List(const std::string& prefix) {
  std::vector<std::string> keys;
  std::error_code ec;
  fs::path objects = root_ / "objects";
  for (auto it = fs::directory_iterator(objects, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string key = it->path().filename().string();
    std::replace(key.begin(), key.end(), '~', '/');
    if (key.starts_with(prefix)) keys.push_back(std::move(key));
  }
  if (ec) return Fail(Internal("listing " + objects.string() + ": " + ec.message()));
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace modelfleet::blob
