// SerialFrameSource: frames from the mat's STM32 over a serial line (see serial_protocol.h).
//
// Opens a tty (/dev/ttyACM0, /dev/ttyUSB0, a pty slave) and puts it in raw mode (termios:
// cfmakeraw, 8N1, CLOCAL|CREAD, no flow control) at the configured baud rate, discarding
// whatever was buffered before the open. A FIFO also works (opened read-write so it never
// reports end-of-file while no writer is attached; Linux semantics); termios is skipped for
// anything that is not a terminal. Reads are non-blocking with poll().
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "agent/sensor/frame_source.h"
#include "agent/sensor/serial_protocol.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

struct SerialOptions {
  std::string path{};          // e.g. "/dev/ttyACM0"
  int baud = 115200;         // one of the standard rates 1200 .. 4000000 (ignored for non-ttys)
  DecoderOptions decoder{};    // set expected_rows / expected_cols to the mat's grid
  // A started frame that gets no further byte for this long is given up as torn (the firmware
  // was reset mid-frame). Keep it well above one frame's transmission time.
  std::chrono::milliseconds torn_frame_timeout{250};
  size_t read_chunk_bytes = 4096;  // at most this much is read per read() call
};

class SerialFrameSource final : public FrameSource {
 public:
  // Errors name the path: NOT_FOUND (no such device), PERMISSION_DENIED (e.g. not in the
  // dialout group), UNAVAILABLE (any other open/termios failure), INVALID_ARGUMENT (options:
  // "serial.path", "serial.baud", "serial.read_chunk_bytes", "decoder.*"; or a path that is
  // neither a terminal, a FIFO nor a character device).
  static Expected<std::unique_ptr<SerialFrameSource>> Open(const SerialOptions& options);
  ~SerialFrameSource() override;
  SerialFrameSource(const SerialFrameSource&) = delete;
  SerialFrameSource& operator=(const SerialFrameSource&) = delete;

  // See FrameSource. UNAVAILABLE naming the path when the device disappears (hang-up, EIO,
  // end of stream); the source stays failed afterwards.
  Expected<std::optional<PressureFrame>> Next(std::chrono::milliseconds timeout) override;
  FrameSourceStats stats() const override { return decoder_.stats(); }

  const std::string& path() const { return options_.path; }

 private:
  SerialFrameSource(const SerialOptions& options, int fd, FrameDecoder decoder);

  SerialOptions options_;
  int fd_ = -1;
  FrameDecoder decoder_;
  std::vector<uint8_t> chunk_;
  std::chrono::steady_clock::time_point last_byte_{};
  std::optional<Status> failed_;
};

}  // namespace modelfleet::agent::sensor
