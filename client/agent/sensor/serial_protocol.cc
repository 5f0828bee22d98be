#include "agent/sensor/serial_protocol.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace modelfleet::agent::sensor {

std::string FrameSourceStats::ToString() const {
  return "frames_ok=" + std::to_string(frames_ok) + " torn_frames=" + std::to_string(torn_frames) +
         " bad_crc=" + std::to_string(bad_crc) + " wrong_size=" + std::to_string(wrong_size) +
         " unsupported_version=" + std::to_string(unsupported_version) +
         " sequence_gaps=" + std::to_string(sequence_gaps) +
         " frames_missed=" + std::to_string(frames_missed) +
         " frames_dropped=" + std::to_string(frames_dropped) +
         " bytes_skipped=" + std::to_string(bytes_skipped);
}

uint16_t Crc16CcittFalse(std::span<const uint8_t> data, uint16_t crc) {
  for (uint8_t byte : data) {
    crc = static_cast<uint16_t>(crc ^ (static_cast<uint16_t>(byte) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

Status AppendEncodedFrame(const PressureFrame& frame, std::vector<uint8_t>& out) {
  if (frame.rows == 0 || frame.rows > kMaxGridSide) {
    return InvalidArgument("frame.rows", "must be 1..255, got " + std::to_string(frame.rows));
  }
  if (frame.cols == 0 || frame.cols > kMaxGridSide) {
    return InvalidArgument("frame.cols", "must be 1..255, got " + std::to_string(frame.cols));
  }
  if (!frame.well_formed()) {
    return InvalidArgument("frame.values",
                           "holds " + std::to_string(frame.values.size()) + " readings, a " +
                               std::to_string(frame.rows) + "x" + std::to_string(frame.cols) +
                               " grid needs " +
                               std::to_string(static_cast<size_t>(frame.rows) * frame.cols));
  }
  const size_t start = out.size();
  out.reserve(start + FrameBytes(frame.rows, frame.cols));
  out.push_back(kSync0);
  out.push_back(kSync1);
  out.push_back(kProtocolVersion);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(frame.sequence >> (8 * i)));
  out.push_back(static_cast<uint8_t>(frame.rows));
  out.push_back(static_cast<uint8_t>(frame.cols));
  for (uint16_t v : frame.values) {
    out.push_back(static_cast<uint8_t>(v & 0xFF));
    out.push_back(static_cast<uint8_t>(v >> 8));
  }
  const uint16_t crc =
      Crc16CcittFalse(std::span<const uint8_t>(out.data() + start + 2, out.size() - start - 2));
  out.push_back(static_cast<uint8_t>(crc & 0xFF));
  out.push_back(static_cast<uint8_t>(crc >> 8));
  return Status::Ok();
}

Expected<std::vector<uint8_t>> EncodeFrame(const PressureFrame& frame) {
  std::vector<uint8_t> out;
  MF_RETURN_IF_ERROR(AppendEncodedFrame(frame, out));
  return out;
}

Status ValidateDecoderOptions(const DecoderOptions& o) {
  if (o.max_rows == 0 || o.max_rows > kMaxGridSide) {
    return InvalidArgument("decoder.max_rows", "must be 1..255");
  }
  if (o.max_cols == 0 || o.max_cols > kMaxGridSide) {
    return InvalidArgument("decoder.max_cols", "must be 1..255");
  }
  if (o.expected_rows > o.max_rows) {
    return InvalidArgument("decoder.expected_rows", "is above decoder.max_rows");
  }
  if (o.expected_cols > o.max_cols) {
    return InvalidArgument("decoder.expected_cols", "is above decoder.max_cols");
  }
  if (o.max_queued_frames == 0) {
    return InvalidArgument("decoder.max_queued_frames", "must be at least 1");
  }
  return Status::Ok();
}

Expected<FrameDecoder> FrameDecoder::Create(const DecoderOptions& options) {
  MF_RETURN_IF_ERROR(ValidateDecoderOptions(options));
  return FrameDecoder(options);
}

FrameDecoder::FrameDecoder(const DecoderOptions& options)
    : options_(options), buffer_(FrameBytes(options.max_rows, options.max_cols)) {}

bool FrameDecoder::SizeAcceptable(size_t rows, size_t cols) const {
  if (rows == 0 || cols == 0) return false;
  if (rows > options_.max_rows || cols > options_.max_cols) return false;
  if (options_.expected_rows != 0 && rows != options_.expected_rows) return false;
  if (options_.expected_cols != 0 && cols != options_.expected_cols) return false;
  return true;
}

bool FrameDecoder::PlausibleHeaderBefore(size_t pos, size_t end, bool full_sync) const {
  const size_t avail = end - pos;
  if (avail < 1 || buffer_[pos] != kSync0) return false;
  if (avail < 2) return !full_sync;
  if (buffer_[pos + 1] != kSync1) return false;
  if (avail < 3) return true;
  if (buffer_[pos + 2] != kProtocolVersion) return false;
  if (avail < kHeaderBytes) return true;
  return SizeAcceptable(buffer_[pos + 7], buffer_[pos + 8]);
}

void FrameDecoder::Skip(size_t n) {
  head_ += n;
  stats_.bytes_skipped += n;
}

void FrameDecoder::Emit(size_t pos, size_t rows, size_t cols,
                        std::chrono::steady_clock::time_point now) {
  PressureFrame frame;
  const uint8_t* p = buffer_.data() + pos;
  frame.sequence = static_cast<uint32_t>(p[3]) | (static_cast<uint32_t>(p[4]) << 8) |
                   (static_cast<uint32_t>(p[5]) << 16) | (static_cast<uint32_t>(p[6]) << 24);
  frame.rows = static_cast<uint16_t>(rows);
  frame.cols = static_cast<uint16_t>(cols);
  frame.values.resize(rows * cols);
  const uint8_t* v = p + kHeaderBytes;
  for (size_t i = 0; i < frame.values.size(); ++i) {
    frame.values[i] = static_cast<uint16_t>(v[2 * i] | (v[2 * i + 1] << 8));
  }
  frame.received = now;

  ++stats_.frames_ok;
  if (last_sequence_ && frame.sequence != static_cast<uint32_t>(*last_sequence_ + 1)) {
    ++stats_.sequence_gaps;
    const uint32_t ahead = frame.sequence - static_cast<uint32_t>(*last_sequence_ + 1);
    if (ahead < 0x80000000u) stats_.frames_missed += ahead;  // forward jump; else a restart
  }
  last_sequence_ = frame.sequence;

  if (queue_.size() >= options_.max_queued_frames) {
    queue_.pop_front();
    ++stats_.frames_dropped;
  }
  queue_.push_back(std::move(frame));
}

void FrameDecoder::Parse(std::chrono::steady_clock::time_point now) {
  while (head_ < tail_) {
    // Find the next sync pair (a lone 0xA5 as the last byte may be the start of one).
    size_t pos = head_;
    while (pos < tail_) {
      if (buffer_[pos] == kSync0 && (pos + 1 == tail_ || buffer_[pos + 1] == kSync1)) break;
      ++pos;
    }
    Skip(pos - head_);
    const size_t avail = tail_ - head_;
    if (avail < kHeaderBytes) return;  // wait for the header (possibly just a lone 0xA5)

    const uint8_t* h = buffer_.data() + head_;
    if (h[2] != kProtocolVersion) {
      ++stats_.unsupported_version;
      Skip(1);
      continue;
    }
    const size_t rows = h[7];
    const size_t cols = h[8];
    if (!SizeAcceptable(rows, cols)) {
      ++stats_.wrong_size;
      Skip(1);
      continue;
    }
    const size_t len = FrameBytes(rows, cols);
    if (avail < len) return;  // wait for the rest (len <= buffer capacity by SizeAcceptable)

    const uint16_t want = static_cast<uint16_t>(h[len - 2] | (h[len - 1] << 8));
    const uint16_t got = Crc16CcittFalse(std::span<const uint8_t>(h + 2, len - 4));
    if (want == got) {
      Emit(head_, rows, cols, now);
      head_ += len;
      continue;
    }
    bool torn = false;
    // Regression: judged against every buffered byte, a lone 0xA5 ending the frame counted
    // as torn or bad_crc depending on whether the next byte had arrived yet.
    for (size_t p = head_ + 1; p < head_ + len && !torn; ++p) torn = PlausibleHeaderBefore(p, head_ + len, true);
    if (torn) {
      ++stats_.torn_frames;
    } else {
      ++stats_.bad_crc;
    }
    Skip(1);  // rescan from the next byte: a good frame may start inside this one
  }
}

void FrameDecoder::Feed(std::span<const uint8_t> bytes,
                        std::chrono::steady_clock::time_point now) {
  while (!bytes.empty()) {
    if (head_ > 0) {  // compact: live bytes to the front
      std::memmove(buffer_.data(), buffer_.data() + head_, tail_ - head_);
      tail_ -= head_;
      head_ = 0;
    }
    // After Parse() fewer than one maximum frame is buffered, so there is always room.
    const size_t n = std::min(bytes.size(), buffer_.size() - tail_);
    std::memcpy(buffer_.data() + tail_, bytes.data(), n);
    tail_ += n;
    bytes = bytes.subspan(n);
    Parse(now);
  }
}

std::optional<PressureFrame> FrameDecoder::Pop() {
  if (queue_.empty()) return std::nullopt;
  PressureFrame frame = std::move(queue_.front());
  queue_.pop_front();
  return frame;
}

bool FrameDecoder::has_partial_frame() const {
  return head_ < tail_ && PlausibleHeaderAt(head_);
}

void FrameDecoder::Flush() {
  if (head_ < tail_) {
    // A frame had started if the buffer begins with both sync bytes and an acceptable header
    // so far (Parse() leaves the buffer starting at a sync candidate whenever it waits).
    if (tail_ - head_ >= 2 && PlausibleHeaderAt(head_)) ++stats_.torn_frames;
    Skip(tail_ - head_);
  }
  head_ = tail_ = 0;
}

void FrameDecoder::Reset() {
  Flush();
  last_sequence_.reset();
}

}  // namespace modelfleet::agent::sensor
