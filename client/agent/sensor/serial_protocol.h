// The mat's serial protocol (STM32 firmware -> host), version 1, and its streaming decoder.
//
// ============================================================================================
// WIRE FORMAT (for the firmware team)
// ============================================================================================
// The STM32 sends one frame per scan of the bladder grid, back to back, over a UART (8 data
// bits, no parity, 1 stop bit, no flow control; 115200 baud unless the host is configured
// otherwise) or a USB CDC-ACM port. Nothing ever goes host -> STM32 in version 1. Every
// multi-byte field is little-endian (least significant byte first), including the CRC.
//
//   offset        size     field      value
//   ------------  -------  ---------  --------------------------------------------------------
//   0             1        sync0      0xA5
//   1             1        sync1      0x5A
//   2             1        version    0x01 (this document)
//   3             4        sequence   u32 LE; the firmware's frame counter: starts anywhere
//                                     (0 after reset is fine), +1 for every frame *scanned*
//                                     (also for frames the firmware failed to send, so the host
//                                     can count losses), wraps 0xFFFFFFFF -> 0
//   7             1        rows       u8, 1..255: the grid's row count (rows run head-to-foot)
//   8             1        cols       u8, 1..255: the grid's column count
//   9             2*R*C    values     R*C readings, each u16 LE, row-major: row 0 col 0,
//                                     row 0 col 1, ..., row 0 col C-1, row 1 col 0, ...
//                                     0 = no pressure / dead bladder, 65535 = full scale. A
//                                     12-bit ADC should send its reading shifted left by 4 so
//                                     full scale stays 65535.
//   9+2*R*C       2        crc        u16 LE: CRC-16/CCITT-FALSE over bytes 2 .. 8+2*R*C, i.e.
//                                     version, sequence, rows, cols and values -- everything
//                                     after the sync bytes and before the CRC itself
//
//   Total length: 11 + 2*R*C bytes (523 bytes for a 16x16 mat).
//
// CRC-16/CCITT-FALSE: width 16, polynomial 0x1021, initial value 0xFFFF, no input or output
// reflection, no final XOR. Check value: CRC of the ASCII bytes "123456789" = 0x29B1. Bitwise
// reference implementation (C, fine for an STM32; the host uses the same loop):
//
//     uint16_t crc = 0xFFFF;
//     for (size_t i = 0; i < len; ++i) {
//       crc ^= (uint16_t)data[i] << 8;
//       for (int b = 0; b < 8; ++b)
//         crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
//     }
//
// (The STM32 hardware CRC unit can compute it too: POLYSIZE 16, polynomial 0x1021, init 0xFFFF,
// no input/output inversion, fed byte by byte.)
//
// Complete example (verified by tests/unit/agent_sensor_test.cc): sequence 258, a 2x3 grid with
// values {0, 1, 256, 0x1234, 0xFFFF, 500}:
//
//   A5 5A | 01 | 02 01 00 00 | 02 | 03 | 00 00  01 00  00 01  34 12  FF FF  F4 01 | 8C 41
//   sync    ver  sequence=258  rows cols  values (row 0: 0, 1, 256; row 1: 0x1234, 0xFFFF, 500)
//                                                                                  crc=0x418C
//
// Rules for the sender:
//   - Send whole frames; never interleave two frames. If a frame is abandoned half-way (reset,
//     buffer overrun), just start the next frame with its sync bytes: the host resynchronises.
//   - There is no escaping: 0xA5 0x5A may appear inside values or the CRC. The host does not
//     trust a sync pattern until the version, size and CRC all check out.
//   - rows and cols must stay the same for the life of the device (the host is normally
//     configured with the expected grid and rejects anything else as a wrong size).
//   - Between frames the line may idle or carry any bytes (e.g. boot messages); the host skips
//     them.
//
// ============================================================================================
// HOW THE HOST DECODES (FrameDecoder)
// ============================================================================================
// The decoder scans for 0xA5 0x5A. At a sync it reads the 9-byte header; a version other than
// 1 is counted as unsupported_version, a size of 0, above the configured maximum, or different
// from the configured expected grid as wrong_size. Otherwise it waits for the whole frame and
// checks the CRC. On any failure it drops only the first sync byte and scans on from the very
// next byte, so a good frame that starts inside a rejected one is never lost. A failed CRC is
// counted as a torn frame when another plausible header (both sync bytes, then version 1 and
// an acceptable size as far as the rejected frame's own bytes go) starts inside the rejected
// frame (the sender gave up mid-frame and started a new one), and as bad_crc otherwise; only
// the frame's own bytes decide, so the verdict is the same wherever the stream was split. A frame still incomplete when the caller calls Flush() (the line went
// quiet, or a recording ended) is torn too. Every byte not inside a good frame is counted in
// bytes_skipped. A good frame whose sequence is not the previous good frame's + 1 is still
// delivered; the discontinuity is counted in sequence_gaps (and frames_missed when forward).
//
// Memory is bounded: the decoder holds at most one maximum-size frame of bytes
// (MaxFrameBytes(max_rows, max_cols)) plus max_queued_frames decoded frames; when the consumer
// falls behind, the oldest queued frame is dropped and counted in frames_dropped.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "agent/sensor/frame.h"
#include "agent/sensor/frame_source.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

inline constexpr uint8_t kSync0 = 0xA5;
inline constexpr uint8_t kSync1 = 0x5A;
inline constexpr uint8_t kProtocolVersion = 0x01;
inline constexpr size_t kHeaderBytes = 9;  // sync0, sync1, version, sequence(4), rows, cols
inline constexpr size_t kCrcBytes = 2;
inline constexpr size_t kMaxGridSide = 255;  // rows and cols are one byte each

// Bytes of a whole frame of rows x cols: 11 + 2 * rows * cols.
constexpr size_t FrameBytes(size_t rows, size_t cols) {
  return kHeaderBytes + 2 * rows * cols + kCrcBytes;
}

// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR). Pass a previous
// result as `crc` to continue over more bytes.
uint16_t Crc16CcittFalse(std::span<const uint8_t> data, uint16_t crc = 0xFFFF);

// Appends the wire encoding of `frame` to `out`. INVALID_ARGUMENT ("frame.rows", "frame.cols",
// "frame.values") when rows or cols is 0 or above 255 or values does not hold rows*cols
// readings; `out` is unchanged then.
Status AppendEncodedFrame(const PressureFrame& frame, std::vector<uint8_t>& out);
// The wire encoding of `frame` (see AppendEncodedFrame for the errors).
Expected<std::vector<uint8_t>> EncodeFrame(const PressureFrame& frame);

struct DecoderOptions {
  // The grid the mat must send; 0 = accept any size up to the maximum. Set these in
  // production: a corrupted header is then rejected at once instead of being waited for.
  uint16_t expected_rows = 0;
  uint16_t expected_cols = 0;
  // The largest grid accepted (1..255); bounds the decoder's buffer.
  uint16_t max_rows = 64;
  uint16_t max_cols = 64;
  // Decoded frames waiting for Pop(); beyond this the oldest is dropped (frames_dropped).
  size_t max_queued_frames = 16;
};

// OK, or INVALID_ARGUMENT naming the offending option ("decoder.max_rows", ...).
Status ValidateDecoderOptions(const DecoderOptions& options);

// Streaming decoder: feed it whatever byte chunks arrive (frames may be split anywhere), pop
// decoded frames. Never throws on any input, never allocates beyond the bound above.
// Not thread-safe.
class FrameDecoder {
 public:
  // INVALID_ARGUMENT when the options are unusable.
  static Expected<FrameDecoder> Create(const DecoderOptions& options = {});

  // Consumes all of `bytes`. Frames completed by them are queued with received = `now`.
  void Feed(std::span<const uint8_t> bytes,
            std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  // The oldest decoded frame not yet popped, if any.
  std::optional<PressureFrame> Pop();
  size_t queued() const { return queue_.size(); }

  // True when bytes are buffered that could still become a frame (a frame has started).
  bool has_partial_frame() const;
  // Gives up on buffered bytes: a started frame counts as torn, all of them as skipped. Call
  // when the line has been quiet for a while or at the end of a recording.
  void Flush();
  // Flush() plus forgetting the previous sequence number (after reopening the device or
  // rewinding a recording, so the restart is not counted as a gap). Keeps queued frames and
  // stats.
  void Reset();

  const FrameSourceStats& stats() const { return stats_; }
  const DecoderOptions& options() const { return options_; }
  // The most bytes the decoder ever buffers.
  size_t buffer_capacity() const { return buffer_.size(); }

 private:
  explicit FrameDecoder(const DecoderOptions& options);

  bool SizeAcceptable(size_t rows, size_t cols) const;
  // A sync, version 1 and an acceptable size at `pos`, checking only the bytes before `end`
  // (the buffered ones by default); `full_sync` requires both sync bytes to be there.
  bool PlausibleHeaderAt(size_t pos) const { return PlausibleHeaderBefore(pos, tail_, false); }
  bool PlausibleHeaderBefore(size_t pos, size_t end, bool full_sync) const;
  void Parse(std::chrono::steady_clock::time_point now);
  void Skip(size_t n);
  void Emit(size_t pos, size_t rows, size_t cols, std::chrono::steady_clock::time_point now);

  DecoderOptions options_;
  std::vector<uint8_t> buffer_;  // fixed size = capacity; live bytes are [head_, tail_)
  size_t head_ = 0;
  size_t tail_ = 0;
  std::deque<PressureFrame> queue_;
  std::optional<uint32_t> last_sequence_;
  FrameSourceStats stats_;
};

}  // namespace modelfleet::agent::sensor
