// FrameSource: where the agent gets pressure frames from (the serial port, a recording, or the
// synthetic generator), and the counters every source keeps.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "agent/sensor/frame.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

// Counters of one source since it was opened. Every rejected byte is accounted for in
// bytes_skipped; every rejected frame in exactly one of torn_frames, bad_crc, wrong_size or
// unsupported_version (see serial_protocol.h for how the decoder tells them apart).
struct FrameSourceStats {
  uint64_t frames_ok = 0;            // frames that passed every check (including dropped ones)
  uint64_t torn_frames = 0;          // a frame cut short: another frame started inside it, or
                                     // the line went quiet / the file ended mid-frame
  uint64_t bad_crc = 0;              // a complete frame whose CRC did not match
  uint64_t wrong_size = 0;           // rows/cols zero, above the maximum, or not the expected
  uint64_t unsupported_version = 0;  // sync bytes followed by a protocol version we do not speak
  uint64_t sequence_gaps = 0;        // good frames whose sequence was not previous + 1
  uint64_t frames_missed = 0;        // sum over forward gaps of the frames that never arrived
  uint64_t frames_dropped = 0;       // good frames discarded because the consumer fell behind
  uint64_t bytes_skipped = 0;        // bytes that were not part of a good frame

  bool operator==(const FrameSourceStats&) const = default;
  // One line for logs: "frames_ok=10 torn_frames=1 ...".
  std::string ToString() const;
};

// A stream of pressure frames. Not thread-safe: one consumer calls Next() in a loop.
class FrameSource {
 public:
  virtual ~FrameSource() = default;

  // Waits at most `timeout` (0 = just look) for the next frame.
  //   - a frame: the next good frame, in order;
  //   - std::nullopt: no frame arrived within the timeout (the normal "nothing yet" answer;
  //     line noise, torn frames and bad CRCs only show up in stats());
  //   - an error: only when the source can never produce another frame, e.g. the serial
  //     device disappeared (UNAVAILABLE) or a recording ended (OUT_OF_RANGE). After an error
  //     the source stays failed; reopen it to try again.
  virtual Expected<std::optional<PressureFrame>> Next(std::chrono::milliseconds timeout) = 0;

  virtual FrameSourceStats stats() const = 0;
};

}  // namespace modelfleet::agent::sensor
