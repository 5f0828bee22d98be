#include "agent/sensor/replay_frame_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <thread>

#include "agent/sensor/io_util.h"

namespace modelfleet::agent::sensor {

using Clock = std::chrono::steady_clock;

// ---- FrameRecorder ---------------------------------------------------------------------------

Expected<std::unique_ptr<FrameRecorder>> FrameRecorder::Open(const std::string& path,
                                                             bool append) {
  if (path.empty()) return Fail(InvalidArgument("recorder.path", "is empty"));
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return Fail(internal::ErrnoStatus(errno, "opening recording " + path));
  return std::unique_ptr<FrameRecorder>(new FrameRecorder(path, fd));
}

FrameRecorder::~FrameRecorder() {
  if (fd_ >= 0) ::close(fd_);
}

Status FrameRecorder::Write(const PressureFrame& frame) {
  scratch_.clear();
  MF_RETURN_IF_ERROR(AppendEncodedFrame(frame, scratch_));
  return WriteBytes(scratch_);
}

Status FrameRecorder::WriteBytes(std::span<const uint8_t> bytes) {
  if (fd_ < 0) return FailedPrecondition("recording " + path_ + " is closed");
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return internal::ErrnoStatus(errno, "writing recording " + path_);
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
    bytes_written_ += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status FrameRecorder::Close() {
  if (fd_ < 0) return Status::Ok();
  Status s;
  if (::fsync(fd_) != 0) s = internal::ErrnoStatus(errno, "fsync recording " + path_);
  if (::close(fd_) != 0 && s.ok()) s = internal::ErrnoStatus(errno, "closing recording " + path_);
  fd_ = -1;
  return s;
}

// ---- ReplayFrameSource -----------------------------------------------------------------------

Expected<std::unique_ptr<ReplayFrameSource>> ReplayFrameSource::Open(const ReplayOptions& options) {
  if (options.path.empty()) return Fail(InvalidArgument("replay.path", "is empty"));
  if (!std::isfinite(options.rate_hz) || options.rate_hz < 0) {
    return Fail(InvalidArgument("replay.rate_hz", "must be a finite number >= 0"));
  }
  if (options.read_chunk_bytes == 0) {
    return Fail(InvalidArgument("replay.read_chunk_bytes", "must be at least 1"));
  }
  MF_ASSIGN_OR_RETURN(FrameDecoder decoder, FrameDecoder::Create(options.decoder));
  const int fd = ::open(options.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(internal::ErrnoStatus(errno, "opening recording " + options.path));
  return std::unique_ptr<ReplayFrameSource>(
      new ReplayFrameSource(options, fd, std::move(decoder)));
}

ReplayFrameSource::ReplayFrameSource(const ReplayOptions& options, int fd, FrameDecoder decoder)
    : options_(options), fd_(fd), decoder_(std::move(decoder)),
      chunk_(options.read_chunk_bytes) {}

ReplayFrameSource::~ReplayFrameSource() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<std::optional<PressureFrame>> ReplayFrameSource::ReadFrame() {
  while (true) {
    if (auto frame = decoder_.Pop()) {
      ++frames_this_pass_;
      return frame;
    }
    const ssize_t n = ::read(fd_, chunk_.data(), chunk_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(internal::ErrnoStatus(errno, "reading recording " + options_.path));
    }
    if (n == 0) {
      decoder_.Flush();  // a frame cut off by the end of the file is torn
      if (auto frame = decoder_.Pop()) {
        ++frames_this_pass_;
        return frame;
      }
      return std::optional<PressureFrame>();
    }
    decoder_.Feed(std::span<const uint8_t>(chunk_.data(), static_cast<size_t>(n)));
  }
}

Expected<std::optional<PressureFrame>> ReplayFrameSource::Next(std::chrono::milliseconds timeout) {
  if (failed_) return Fail(*failed_);
  if (timeout < std::chrono::milliseconds(0)) timeout = std::chrono::milliseconds(0);

  if (options_.rate_hz > 0) {
    const Clock::time_point now = Clock::now();
    if (!started_) {
      started_ = true;
      next_due_ = now;
    }
    if (next_due_ > now + timeout) {
      std::this_thread::sleep_for(timeout);
      return std::optional<PressureFrame>();
    }
    std::this_thread::sleep_until(next_due_);
  }

  Expected<std::optional<PressureFrame>> frame = ReadFrame();
  if (frame && !*frame && options_.loop) {
    if (frames_this_pass_ == 0) {
      failed_ = DataLoss("recording " + options_.path + " holds no valid frame");
      return Fail(*failed_);
    }
    if (::lseek(fd_, 0, SEEK_SET) < 0) {
      failed_ = internal::ErrnoStatus(errno, "rewinding recording " + options_.path);
      return Fail(*failed_);
    }
    decoder_.Reset();
    frames_this_pass_ = 0;
    frame = ReadFrame();
    if (frame && !*frame) {
      failed_ = DataLoss("recording " + options_.path + " holds no valid frame");
      return Fail(*failed_);
    }
  }
  if (!frame) {
    failed_ = frame.error();
    return Fail(*failed_);
  }
  if (!*frame) {
    failed_ = Status(StatusCode::kOutOfRange, "end of recording " + options_.path);
    return Fail(*failed_);
  }
  const Clock::time_point now = Clock::now();
  (*frame)->received = now;
  if (options_.rate_hz > 0) {
    const auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1.0 / options_.rate_hz));
    next_due_ += period;
    if (next_due_ + period < now) next_due_ = now;  // a slow consumer does not cause a burst
  }
  return frame;
}

}  // namespace modelfleet::agent::sensor
