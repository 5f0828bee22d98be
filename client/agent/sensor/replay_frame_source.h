// Recordings of the mat: a file that is simply the wire bytes of consecutive frames (see
// serial_protocol.h), with no header of its own. FrameRecorder writes one (EncodeFrame output
// appended, or raw bytes teed off the serial line); ReplayFrameSource plays one back through the
// same FrameDecoder as the serial line, so a corrupt region is skipped and counted exactly as on
// the wire.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "agent/sensor/frame_source.h"
#include "agent/sensor/serial_protocol.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

class FrameRecorder {
 public:
  // Creates `path` (mode 0644), or appends to it when `append` (truncates otherwise). Errors
  // name the path (NOT_FOUND for a missing directory, PERMISSION_DENIED, UNAVAILABLE).
  static Expected<std::unique_ptr<FrameRecorder>> Open(const std::string& path,
                                                       bool append = true);
  ~FrameRecorder();
  FrameRecorder(const FrameRecorder&) = delete;
  FrameRecorder& operator=(const FrameRecorder&) = delete;

  // Appends EncodeFrame(frame). INVALID_ARGUMENT for a frame that cannot be encoded.
  Status Write(const PressureFrame& frame);
  // Appends raw bytes (e.g. everything read from the serial line, corrupt parts included).
  Status WriteBytes(std::span<const uint8_t> bytes);
  // fsync()s and closes; later writes fail. The destructor closes without fsync.
  Status Close();

  const std::string& path() const { return path_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  FrameRecorder(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_written_ = 0;
  std::vector<uint8_t> scratch_;
};

struct ReplayOptions {
  std::string path{};
  // Frames per second to deliver at; 0 = as fast as asked (every Next() returns at once).
  // When paced, Next() sleeps until the next frame is due (or its timeout passes first).
  double rate_hz = 0;
  // Start again from the beginning at the end of the file (the decoder's sequence history is
  // reset at the wrap, so the jump back is not counted as a gap).
  bool loop = false;
  DecoderOptions decoder{};
  size_t read_chunk_bytes = 4096;
};

class ReplayFrameSource final : public FrameSource {
 public:
  // Opens the file now; errors name the path (NOT_FOUND, PERMISSION_DENIED, UNAVAILABLE) or
  // the option (INVALID_ARGUMENT "replay.rate_hz", "replay.read_chunk_bytes", "decoder.*").
  static Expected<std::unique_ptr<ReplayFrameSource>> Open(const ReplayOptions& options);
  ~ReplayFrameSource() override;
  ReplayFrameSource(const ReplayFrameSource&) = delete;
  ReplayFrameSource& operator=(const ReplayFrameSource&) = delete;

  // See FrameSource. Delivered frames carry received = the time of delivery. At the end of a
  // non-looping recording: OUT_OF_RANGE ("end of recording <path>"); a looping recording
  // with no good frame at all: DATA_LOSS; a read error: UNAVAILABLE. All name the path.
  Expected<std::optional<PressureFrame>> Next(std::chrono::milliseconds timeout) override;
  FrameSourceStats stats() const override { return decoder_.stats(); }

 private:
  ReplayFrameSource(const ReplayOptions& options, int fd, FrameDecoder decoder);
  // The next decoded frame from the file, reading as needed; nullopt at the end of the file
  // (after flushing a torn tail).
  Expected<std::optional<PressureFrame>> ReadFrame();

  ReplayOptions options_;
  int fd_ = -1;
  FrameDecoder decoder_;
  std::vector<uint8_t> chunk_;
  bool started_ = false;
  std::chrono::steady_clock::time_point next_due_{};
  uint64_t frames_this_pass_ = 0;
  std::optional<Status> failed_;
};

}  // namespace modelfleet::agent::sensor
