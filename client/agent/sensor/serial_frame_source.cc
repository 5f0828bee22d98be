#include "agent/sensor/serial_frame_source.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/sensor/io_util.h"

namespace modelfleet::agent::sensor {
namespace {

using Clock = std::chrono::steady_clock;

std::optional<speed_t> BaudConstant(int baud) {
  switch (baud) {
    case 1200: return B1200;
    case 2400: return B2400;
    case 4800: return B4800;
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 576000: return B576000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 1152000: return B1152000;
    case 1500000: return B1500000;
    case 2000000: return B2000000;
    case 2500000: return B2500000;
    case 3000000: return B3000000;
    case 3500000: return B3500000;
    case 4000000: return B4000000;
    default: return std::nullopt;
  }
}

Status ConfigureTty(int fd, speed_t speed, const std::string& path) {
  termios tio{};
  if (tcgetattr(fd, &tio) != 0) return internal::ErrnoStatus(errno, "tcgetattr " + path);
  cfmakeraw(&tio);
  tio.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS | CSIZE);
  tio.c_cflag |= CS8 | CLOCAL | CREAD;
  tio.c_iflag &= ~(IXON | IXOFF | IXANY);
  tio.c_cc[VMIN] = 0;
  tio.c_cc[VTIME] = 0;
  if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0) {
    return internal::ErrnoStatus(errno, "setting the baud rate of " + path);
  }
  if (tcsetattr(fd, TCSANOW, &tio) != 0) return internal::ErrnoStatus(errno, "tcsetattr " + path);
  tcflush(fd, TCIFLUSH);  // stale bytes from before the open are of no use
  return Status::Ok();
}

}  // namespace

Expected<std::unique_ptr<SerialFrameSource>> SerialFrameSource::Open(const SerialOptions& options) {
  if (options.path.empty()) return Fail(InvalidArgument("serial.path", "is empty"));
  const std::optional<speed_t> speed = BaudConstant(options.baud);
  if (!speed) {
    return Fail(InvalidArgument("serial.baud", "unsupported baud rate " +
                                                   std::to_string(options.baud) + " for " +
                                                   options.path));
  }
  if (options.read_chunk_bytes == 0) {
    return Fail(InvalidArgument("serial.read_chunk_bytes", "must be at least 1"));
  }
  MF_ASSIGN_OR_RETURN(FrameDecoder decoder, FrameDecoder::Create(options.decoder));

  const int fd = ::open(options.path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Fail(internal::ErrnoStatus(errno, "opening serial device " + options.path));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    Status s = internal::ErrnoStatus(errno, "stat " + options.path);
    ::close(fd);
    return Fail(std::move(s));
  }
  if (isatty(fd)) {
    Status s = ConfigureTty(fd, *speed, options.path);
    if (!s.ok()) {
      ::close(fd);
      return Fail(std::move(s));
    }
  } else if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    ::close(fd);
    return Fail(InvalidArgument("serial.path", options.path +
                                                   " is not a terminal, FIFO or character "
                                                   "device (use ReplayFrameSource for files)"));
  }
  return std::unique_ptr<SerialFrameSource>(
      new SerialFrameSource(options, fd, std::move(decoder)));
}

SerialFrameSource::SerialFrameSource(const SerialOptions& options, int fd, FrameDecoder decoder)
    : options_(options), fd_(fd), decoder_(std::move(decoder)),
      chunk_(options.read_chunk_bytes) {}

SerialFrameSource::~SerialFrameSource() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<std::optional<PressureFrame>> SerialFrameSource::Next(std::chrono::milliseconds timeout) {
  if (auto frame = decoder_.Pop()) return frame;
  if (failed_) return Fail(*failed_);

  const Clock::time_point deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  while (true) {
    Clock::time_point now = Clock::now();
    if (decoder_.has_partial_frame() && now - last_byte_ >= options_.torn_frame_timeout) {
      decoder_.Flush();  // the sender went quiet mid-frame
    }
    Clock::duration wait = std::max(deadline - now, Clock::duration::zero());
    if (decoder_.has_partial_frame()) {
      wait = std::min(wait, std::max(last_byte_ + options_.torn_frame_timeout - now,
                                     Clock::duration::zero()));
    }
    const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
    pollfd pfd{fd_, POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(wait_ms, 60'000)));
    if (r < 0 && errno != EINTR) {
      failed_ = internal::ErrnoStatus(errno, "polling serial device " + options_.path);
      return Fail(*failed_);
    }
    if (r > 0) {
      if (pfd.revents & POLLIN) {
        const ssize_t n = ::read(fd_, chunk_.data(), chunk_.size());
        if (n > 0) {
          last_byte_ = Clock::now();
          decoder_.Feed(std::span<const uint8_t>(chunk_.data(), static_cast<size_t>(n)),
                        last_byte_);
          if (auto frame = decoder_.Pop()) return frame;
        } else if (n == 0) {
          failed_ = Unavailable("serial device " + options_.path +
                                " disappeared: end of stream");
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          failed_ = Unavailable("serial device " + options_.path +
                                " disappeared: read: " + std::strerror(errno));
        }
      } else if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) {
        failed_ = Unavailable("serial device " + options_.path + " disappeared (hang-up)");
      }
      if (failed_) {
        decoder_.Flush();
        return Fail(*failed_);
      }
    }
    if (Clock::now() >= deadline) return std::optional<PressureFrame>();
  }
}

}  // namespace modelfleet::agent::sensor
