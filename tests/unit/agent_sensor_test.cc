// Unit tests of mf_agent_sensor: the STM32 serial protocol and its streaming decoder, the
// serial source over a real pty (and a FIFO), recordings and their replay, the synthetic
// generator, the preprocessor and the presence tracker.
//
// Expected values come from specifications, not from running the code: the CRC-16/CCITT-FALSE
// check value 0x29B1 (the CRC RevEng catalogue), the example frame documented byte by byte in
// client/agent/sensor/serial_protocol.h, and hand-computed normalisations.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/sensor/frame.h"
#include "agent/sensor/frame_source.h"
#include "agent/sensor/preprocessor.h"
#include "agent/sensor/presence_tracker.h"
#include "agent/sensor/replay_frame_source.h"
#include "agent/sensor/serial_frame_source.h"
#include "agent/sensor/serial_protocol.h"
#include "agent/sensor/synthetic.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/model.pb.h"

namespace modelfleet::agent::sensor {
namespace {

using std::chrono::milliseconds;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

PressureFrame MakeFrame(uint32_t sequence, uint16_t rows, uint16_t cols, uint32_t salt = 0) {
  PressureFrame f;
  f.sequence = sequence;
  f.rows = rows;
  f.cols = cols;
  f.values.resize(static_cast<size_t>(rows) * cols);
  for (size_t i = 0; i < f.values.size(); ++i) {
    // Deterministic, varied, and never containing the 0xA5 0x5A sync pair.
    f.values[i] = static_cast<uint16_t>(((i * 2654435761u + sequence * 40503u + salt) % 40000));
    if (f.values[i] == 0x5AA5) ++f.values[i];
  }
  return f;
}

Bytes Encode(const PressureFrame& f) {
  auto bytes = EncodeFrame(f);
  EXPECT_TRUE(bytes.has_value()) << bytes.error().ToString();
  return bytes.value_or(Bytes{});
}

void Append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

FrameDecoder MakeDecoder(DecoderOptions options = {}) {
  auto decoder = FrameDecoder::Create(options);
  EXPECT_TRUE(decoder.has_value());
  return std::move(*decoder);
}

DecoderOptions Expect16x16() {
  DecoderOptions o;
  o.expected_rows = 16;
  o.expected_cols = 16;
  return o;
}

std::vector<PressureFrame> PopAll(FrameDecoder& d) {
  std::vector<PressureFrame> out;
  while (auto f = d.Pop()) out.push_back(std::move(*f));
  return out;
}

void ExpectSameFrame(const PressureFrame& got, const PressureFrame& want) {
  EXPECT_EQ(got.sequence, want.sequence);
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.cols, want.cols);
  EXPECT_EQ(got.values, want.values);
}

Bytes Str(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::filesystem::path TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mf_sensor_XXXXXX").string();
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return std::filesystem::path(tmpl);
}

// ---------------------------------------------------------------------------------------------
// CRC and encoding
// ---------------------------------------------------------------------------------------------

TEST(Crc16, PublishedCheckValue) {
  const Bytes check = Str("123456789");
  EXPECT_EQ(Crc16CcittFalse(check), 0x29B1);
  EXPECT_EQ(Crc16CcittFalse({}), 0xFFFF);  // init value, nothing processed
  // Continuing over a second part gives the CRC of the whole.
  const uint16_t first = Crc16CcittFalse(std::span<const uint8_t>(check.data(), 4));
  EXPECT_EQ(Crc16CcittFalse(std::span<const uint8_t>(check.data() + 4, 5), first), 0x29B1);
}

TEST(Encode, MatchesTheDocumentedExampleByteForByte) {
  PressureFrame f;
  f.sequence = 258;
  f.rows = 2;
  f.cols = 3;
  f.values = {0, 1, 256, 0x1234, 0xFFFF, 500};
  const Bytes want = {0xA5, 0x5A, 0x01, 0x02, 0x01, 0x00, 0x00, 0x02, 0x03, 0x00, 0x00, 0x01,
                      0x00, 0x00, 0x01, 0x34, 0x12, 0xFF, 0xFF, 0xF4, 0x01, 0x8C, 0x41};
  EXPECT_EQ(Encode(f), want);
  EXPECT_EQ(want.size(), FrameBytes(2, 3));
  EXPECT_EQ(FrameBytes(16, 16), 523u);
}

TEST(Encode, RejectsFramesItCannotRepresent) {
  PressureFrame f = MakeFrame(1, 2, 2);
  f.rows = 0;
  EXPECT_EQ(EncodeFrame(f).error().field(), "frame.rows");
  f = MakeFrame(1, 2, 2);
  f.cols = 256;
  EXPECT_EQ(EncodeFrame(f).error().field(), "frame.cols");
  f = MakeFrame(1, 2, 2);
  f.values.pop_back();
  auto r = EncodeFrame(f);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.error().field(), "frame.values");
  Bytes out = {1, 2, 3};
  EXPECT_FALSE(AppendEncodedFrame(f, out).ok());
  EXPECT_EQ(out, (Bytes{1, 2, 3}));  // unchanged on error
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

TEST(Decoder, RoundTripsFramesOfManySizes) {
  FrameDecoder d = MakeDecoder({.max_rows = 255, .max_cols = 255, .max_queued_frames = 64});
  std::vector<PressureFrame> sent;
  Bytes stream;
  const std::vector<std::pair<uint16_t, uint16_t>> sizes = {{1, 1}, {2, 3}, {16, 16},
                                                            {32, 16}, {255, 255}, {7, 1}};
  uint32_t seq = 100;
  for (auto [r, c] : sizes) {
    sent.push_back(MakeFrame(seq++, r, c));
    Append(stream, Encode(sent.back()));
  }
  const auto now = std::chrono::steady_clock::now();
  d.Feed(stream, now);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ExpectSameFrame(got[i], sent[i]);
    EXPECT_EQ(got[i].received, now);
  }
  FrameSourceStats want;
  want.frames_ok = sent.size();
  EXPECT_EQ(d.stats(), want);
  EXPECT_FALSE(d.has_partial_frame());
}

TEST(Decoder, FramesSplitAtEveryByteBoundary) {
  std::vector<PressureFrame> sent = {MakeFrame(1, 4, 5), MakeFrame(2, 4, 5), MakeFrame(3, 4, 5)};
  Bytes stream;
  for (const auto& f : sent) Append(stream, Encode(f));
  for (size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder d = MakeDecoder();
    d.Feed(std::span<const uint8_t>(stream.data(), split));
    d.Feed(std::span<const uint8_t>(stream.data() + split, stream.size() - split));
    auto got = PopAll(d);
    ASSERT_EQ(got.size(), 3u) << "split at " << split;
    for (size_t i = 0; i < 3; ++i) ExpectSameFrame(got[i], sent[i]);
    EXPECT_EQ(d.stats().bytes_skipped, 0u) << "split at " << split;
  }
  // And one byte at a time: each frame appears exactly when its last byte arrives.
  FrameDecoder d = MakeDecoder();
  size_t frames = 0;
  for (size_t i = 0; i < stream.size(); ++i) {
    d.Feed(std::span<const uint8_t>(&stream[i], 1));
    if (auto f = d.Pop()) {
      ++frames;
      EXPECT_EQ(i + 1, frames * FrameBytes(4, 5));
      ExpectSameFrame(*f, sent[frames - 1]);
    }
  }
  EXPECT_EQ(frames, 3u);
  EXPECT_EQ(d.stats().frames_ok, 3u);
}

TEST(Decoder, GarbageBetweenFramesIsSkippedAndCountedExactly) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  const Bytes garbage1 = Str("STM32 boot v1.2\r\n");
  const Bytes garbage2 = {0x00, 0xFF, 0x5A, 0x01, 0xA4, 0x10, 0x10};  // no 0xA5 0x5A pair
  Bytes stream = garbage1;
  Append(stream, Encode(MakeFrame(1, 16, 16)));
  Append(stream, garbage2);
  Append(stream, Encode(MakeFrame(2, 16, 16)));
  d.Feed(stream);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].sequence, 2u);
  FrameSourceStats want;
  want.frames_ok = 2;
  want.bytes_skipped = garbage1.size() + garbage2.size();
  EXPECT_EQ(d.stats(), want);
}

TEST(Decoder, TornFrameIsCountedAndTheNextFrameDecoded) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  const Bytes torn = Encode(MakeFrame(1, 16, 16));
  Bytes stream(torn.begin(), torn.begin() + 200);  // the firmware reset mid-frame
  const PressureFrame good = MakeFrame(2, 16, 16);
  Append(stream, Encode(good));
  d.Feed(stream);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 1u);
  ExpectSameFrame(got[0], good);
  FrameSourceStats want;
  want.frames_ok = 1;
  want.torn_frames = 1;
  want.bytes_skipped = 200;
  EXPECT_EQ(d.stats(), want);
}

TEST(Decoder, BadCrcIsCountedAndTheNextFrameDecoded) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  Bytes bad_value = Encode(MakeFrame(1, 16, 16));
  bad_value[kHeaderBytes + 37] ^= 0x04;  // one flipped bit in a reading
  Bytes bad_crc = Encode(MakeFrame(2, 16, 16));
  bad_crc.back() ^= 0x80;  // one flipped bit in the CRC itself
  const PressureFrame good = MakeFrame(3, 16, 16);
  Bytes stream = bad_value;
  Append(stream, bad_crc);
  Append(stream, Encode(good));
  d.Feed(stream);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 1u);
  ExpectSameFrame(got[0], good);
  FrameSourceStats want;
  want.frames_ok = 1;
  want.bad_crc = 2;
  want.bytes_skipped = 2 * FrameBytes(16, 16);
  EXPECT_EQ(d.stats(), want);
}

TEST(Decoder, WrongSizesAreCountedAndTheNextFrameDecoded) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  const Bytes small = Encode(MakeFrame(1, 8, 8));      // not the expected grid
  const Bytes large = Encode(MakeFrame(2, 100, 100));  // above max_rows/max_cols (64)
  const PressureFrame good = MakeFrame(3, 16, 16);
  Bytes stream = small;
  Append(stream, large);
  Append(stream, Encode(good));
  d.Feed(stream);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 1u);
  ExpectSameFrame(got[0], good);
  FrameSourceStats want;
  want.frames_ok = 1;
  want.wrong_size = 2;
  want.bytes_skipped = small.size() + large.size();
  EXPECT_EQ(d.stats(), want);
  // The buffer never grew for the oversized frame.
  EXPECT_EQ(d.buffer_capacity(), FrameBytes(64, 64));
}

TEST(Decoder, UnsupportedVersionIsCountedAndSkipped) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  Bytes v2 = Encode(MakeFrame(1, 16, 16));
  v2[2] = 0x02;  // a future firmware, with a CRC that matches its own bytes
  const uint16_t crc =
      Crc16CcittFalse(std::span<const uint8_t>(v2.data() + 2, v2.size() - 4));
  v2[v2.size() - 2] = static_cast<uint8_t>(crc & 0xFF);
  v2[v2.size() - 1] = static_cast<uint8_t>(crc >> 8);
  Bytes stream = v2;
  Append(stream, Encode(MakeFrame(2, 16, 16)));
  d.Feed(stream);
  EXPECT_EQ(PopAll(d).size(), 1u);
  EXPECT_EQ(d.stats().unsupported_version, 1u);
  EXPECT_EQ(d.stats().bytes_skipped, v2.size());
}

TEST(Decoder, SequenceGapsAreCountedButFramesStillDelivered) {
  FrameDecoder d = MakeDecoder();
  Bytes stream;
  for (uint32_t seq : {10u, 11u, 15u, 16u}) Append(stream, Encode(MakeFrame(seq, 2, 2)));
  d.Feed(stream);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[2].sequence, 15u);
  EXPECT_EQ(d.stats().sequence_gaps, 1u);
  EXPECT_EQ(d.stats().frames_missed, 3u);  // 12, 13, 14

  // Wrapping 0xFFFFFFFF -> 0 is not a gap; a restart (backwards) is a gap with nothing missed.
  FrameDecoder w = MakeDecoder();
  stream.clear();
  for (uint32_t seq : {0xFFFFFFFEu, 0xFFFFFFFFu, 0u, 1u, 0u}) {
    Append(stream, Encode(MakeFrame(seq, 2, 2)));
  }
  w.Feed(stream);
  EXPECT_EQ(PopAll(w).size(), 5u);
  EXPECT_EQ(w.stats().sequence_gaps, 1u);
  EXPECT_EQ(w.stats().frames_missed, 0u);

  // Reset() forgets the previous sequence (a reopened device), so no gap is counted.
  w.Reset();
  w.Feed(Encode(MakeFrame(500, 2, 2)));
  EXPECT_EQ(w.stats().sequence_gaps, 1u);
}

TEST(Decoder, FlushCountsAStartedFrameAsTorn) {
  FrameDecoder d = MakeDecoder(Expect16x16());
  const Bytes frame = Encode(MakeFrame(1, 16, 16));
  d.Feed(std::span<const uint8_t>(frame.data(), 300));
  EXPECT_TRUE(d.has_partial_frame());
  EXPECT_FALSE(d.Pop().has_value());
  d.Flush();
  EXPECT_FALSE(d.has_partial_frame());
  EXPECT_EQ(d.stats().torn_frames, 1u);
  EXPECT_EQ(d.stats().bytes_skipped, 300u);
  // Flushing garbage that never started a frame is not a torn frame.
  d.Feed(Str("xyz"));
  d.Flush();
  EXPECT_EQ(d.stats().torn_frames, 1u);
  EXPECT_EQ(d.stats().bytes_skipped, 303u);
  // The rest of the interrupted frame is skipped; the next whole frame still decodes.
  d.Feed(std::span<const uint8_t>(frame.data() + 300, frame.size() - 300));
  d.Feed(Encode(MakeFrame(2, 16, 16)));
  EXPECT_EQ(PopAll(d).size(), 1u);
}

TEST(Decoder, QueueIsBoundedAndDropsTheOldest) {
  FrameDecoder d = MakeDecoder({.max_queued_frames = 4});
  Bytes stream;
  for (uint32_t seq = 0; seq < 10; ++seq) Append(stream, Encode(MakeFrame(seq, 3, 3)));
  d.Feed(stream);
  EXPECT_EQ(d.queued(), 4u);
  auto got = PopAll(d);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.front().sequence, 6u);
  EXPECT_EQ(got.back().sequence, 9u);
  EXPECT_EQ(d.stats().frames_ok, 10u);
  EXPECT_EQ(d.stats().frames_dropped, 6u);
}

TEST(Decoder, RejectsUnusableOptions) {
  EXPECT_EQ(FrameDecoder::Create({.max_rows = 0}).error().field(), "decoder.max_rows");
  EXPECT_EQ(FrameDecoder::Create({.max_cols = 256}).error().field(), "decoder.max_cols");
  EXPECT_EQ(FrameDecoder::Create({.expected_rows = 65}).error().field(), "decoder.expected_rows");
  EXPECT_EQ(FrameDecoder::Create({.max_queued_frames = 0}).error().field(),
            "decoder.max_queued_frames");
}

// Random noise, and valid streams with random damage, in random chunk sizes: never a crash,
// never more memory than the bound, never a frame that was not sent, and every byte accounted
// for (skipped + inside good frames == fed).
TEST(Decoder, FuzzNoiseAndDamageStayBoundedAndAccounted) {
  std::mt19937_64 rng(20240601);
  DecoderOptions options = Expect16x16();
  options.max_queued_frames = 8;
  const size_t frame_len = FrameBytes(16, 16);

  for (int round = 0; round < 40; ++round) {
    FrameDecoder d = MakeDecoder(options);
    const size_t capacity = d.buffer_capacity();
    std::map<uint32_t, PressureFrame> sent;
    Bytes stream;
    if (round % 2 == 0) {
      stream.resize(64 * 1024);
      for (auto& b : stream) b = static_cast<uint8_t>(rng());
      // Salt the noise with sync pairs and plausible headers to exercise every path.
      for (int k = 0; k < 200; ++k) {
        const size_t at = rng() % (stream.size() - kHeaderBytes);
        const uint8_t hdr[] = {0xA5, 0x5A, 0x01, 0, 0, 0, 0, 16, 16};
        std::copy(hdr, hdr + (rng() % kHeaderBytes) + 1, stream.begin() + at);
      }
    } else {
      for (uint32_t seq = 0; seq < 60; ++seq) {
        sent[seq] = MakeFrame(seq, 16, 16, static_cast<uint32_t>(round));
        Bytes f = Encode(sent[seq]);
        switch (rng() % 6) {
          case 0: f[rng() % f.size()] ^= static_cast<uint8_t>(1 + rng() % 255); break;
          case 1: f.resize(rng() % f.size()); break;
          case 2: f.insert(f.begin() + rng() % f.size(), static_cast<uint8_t>(rng())); break;
          default: break;
        }
        Append(stream, f);
        if (rng() % 4 == 0) {
          for (size_t n = rng() % 40; n > 0; --n) stream.push_back(static_cast<uint8_t>(rng()));
        }
      }
    }
    size_t pos = 0;
    size_t delivered = 0;
    while (pos < stream.size()) {
      const size_t n = std::min<size_t>(stream.size() - pos, 1 + rng() % 2000);
      d.Feed(std::span<const uint8_t>(stream.data() + pos, n));
      pos += n;
      ASSERT_LE(d.queued(), options.max_queued_frames);
      ASSERT_EQ(d.buffer_capacity(), capacity);
      while (auto f = d.Pop()) {
        ++delivered;
        ASSERT_EQ(f->rows, 16);
        auto it = sent.find(f->sequence);
        ASSERT_NE(it, sent.end()) << "decoded a frame that was never sent";
        ExpectSameFrame(*f, it->second);
      }
    }
    d.Flush();
    const FrameSourceStats& s = d.stats();
    EXPECT_EQ(s.bytes_skipped + s.frames_ok * frame_len, stream.size()) << "round " << round;
    EXPECT_EQ(s.frames_ok, delivered + s.frames_dropped);
    if (round % 2 == 1) {
      EXPECT_GT(s.frames_ok, 10u);  // undamaged frames got through
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SerialFrameSource
// ---------------------------------------------------------------------------------------------

// A pty pair: the master plays the STM32, the slave is the "serial device".
class Pty {
 public:
  Pty() {
    master_ = posix_openpt(O_RDWR | O_NOCTTY);
    EXPECT_GE(master_, 0);
    EXPECT_EQ(grantpt(master_), 0);
    EXPECT_EQ(unlockpt(master_), 0);
    slave_path_ = ptsname(master_);
  }
  ~Pty() { Close(); }
  void Write(const Bytes& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::write(master_, bytes.data() + off, bytes.size() - off);
      ASSERT_GT(n, 0);
      off += static_cast<size_t>(n);
    }
  }
  void Close() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }
  const std::string& slave_path() const { return slave_path_; }

 private:
  int master_ = -1;
  std::string slave_path_;
};

TEST(SerialFrameSource, ReadsFramesFromARealPty) {
  Pty pty;
  SerialOptions options;
  options.path = pty.slave_path();
  options.baud = 921600;
  options.decoder = Expect16x16();
  options.torn_frame_timeout = milliseconds(100);
  auto source = SerialFrameSource::Open(options);
  ASSERT_TRUE(source.has_value()) << source.error().ToString();
  SerialFrameSource& src = **source;

  // Nothing sent yet: nullopt after about the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  auto none = src.Next(milliseconds(50));
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(45));

  // Frames from the synthetic generator, with line noise and bytes the tty layer would mangle
  // in cooked mode (CR, NL, ^C, ^D, XON/XOFF), which must arrive untouched in raw mode.
  auto gen = SyntheticGenerator::Create({});
  ASSERT_TRUE(gen.has_value());
  std::vector<PressureFrame> sent;
  Bytes stream = {0x0D, 0x0A, 0x03, 0x04, 0x11, 0x13, 0x7F};
  for (uint32_t seq = 0; seq < 6; ++seq) {
    PressureFrame f = gen->Generate(seq < 3 ? Situation::kSitting : Situation::kLyingFull);
    f.sequence = seq;
    f.values[0] = 0x130D;  // ^M and ^S as value bytes
    f.values[1] = 0x0A11;  // ^Q and ^J
    sent.push_back(f);
    Append(stream, Encode(f));
  }
  // From another thread, like a real device: the pty's buffer need not hold it all at once.
  std::jthread stm32([&] { pty.Write(stream); });  // joined even if an assertion returns
  for (const auto& want : sent) {
    auto got = src.Next(milliseconds(2000));
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ASSERT_TRUE(got->has_value());
    ExpectSameFrame(**got, want);
  }
  stm32.join();
  EXPECT_EQ(src.stats().frames_ok, 6u);
  EXPECT_EQ(src.stats().bytes_skipped, 7u);

  // A frame cut off and then silence: given up as torn after the quiet timeout.
  const Bytes partial = Encode(MakeFrame(6, 16, 16));
  pty.Write(Bytes(partial.begin(), partial.begin() + 100));
  auto nothing = src.Next(milliseconds(300));
  ASSERT_TRUE(nothing.has_value());
  EXPECT_FALSE(nothing->has_value());
  EXPECT_EQ(src.stats().torn_frames, 1u);
  EXPECT_EQ(src.stats().bytes_skipped, 107u);

  // The next good frame after the torn one is decoded (one lost frame: a sequence gap).
  pty.Write(Encode(MakeFrame(7, 16, 16)));
  auto next = src.Next(milliseconds(2000));
  ASSERT_TRUE(next.has_value() && next->has_value());
  EXPECT_EQ((*next)->sequence, 7u);
  EXPECT_EQ(src.stats().sequence_gaps, 1u);
  EXPECT_EQ(src.stats().frames_missed, 1u);

  // The device disappears: an error naming the path, and the source stays failed.
  pty.Close();
  auto gone = src.Next(milliseconds(2000));
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(gone.error().message().find(pty.slave_path()), std::string::npos)
      << gone.error().ToString();
  EXPECT_FALSE(src.Next(milliseconds(0)).has_value());
}

TEST(SerialFrameSource, ReadsFromAFifo) {
  const auto dir = TempDir();
  const std::string fifo = (dir / "mat.fifo").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto source = SerialFrameSource::Open({.path = fifo, .decoder = Expect16x16()});
  ASSERT_TRUE(source.has_value()) << source.error().ToString();
  const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
  ASSERT_GE(writer, 0);
  const Bytes bytes = Encode(MakeFrame(42, 16, 16));
  // Written in two pieces with a pause: the source joins them.
  ASSERT_EQ(::write(writer, bytes.data(), 100), 100);
  auto early = (*source)->Next(milliseconds(20));
  ASSERT_TRUE(early.has_value());
  EXPECT_FALSE(early->has_value());
  ASSERT_EQ(::write(writer, bytes.data() + 100, bytes.size() - 100),
            static_cast<ssize_t>(bytes.size() - 100));
  auto got = (*source)->Next(milliseconds(2000));
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->sequence, 42u);
  ::close(writer);
  std::filesystem::remove_all(dir);
}

TEST(SerialFrameSource, OpenErrorsNameThePath) {
  auto missing = SerialFrameSource::Open({.path = "/dev/does-not-exist-mat0"});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.error().message().find("/dev/does-not-exist-mat0"), std::string::npos);

  const auto dir = TempDir();
  const std::string file = (dir / "regular").string();
  { FILE* f = std::fopen(file.c_str(), "w"); ASSERT_NE(f, nullptr); std::fclose(f); }
  auto regular = SerialFrameSource::Open({.path = file});
  ASSERT_FALSE(regular.has_value());
  EXPECT_EQ(regular.error().field(), "serial.path");
  EXPECT_NE(regular.error().message().find(file), std::string::npos);
  std::filesystem::remove_all(dir);

  EXPECT_EQ(SerialFrameSource::Open({.path = "/dev/null", .baud = 12345}).error().field(),
            "serial.baud");
  EXPECT_EQ(SerialFrameSource::Open({.path = ""}).error().field(), "serial.path");
  EXPECT_EQ(SerialFrameSource::Open({.path = "/dev/null", .decoder = {.max_rows = 0}})
                .error()
                .field(),
            "decoder.max_rows");
}

// ---------------------------------------------------------------------------------------------
// Recordings and ReplayFrameSource
// ---------------------------------------------------------------------------------------------

TEST(ReplayFrameSource, SkipsAndCountsACorruptRegion) {
  const auto dir = TempDir();
  const std::string path = (dir / "session.mfr").string();
  const Bytes garbage = Str("\x01\x02garbage from a bad sector\x03");
  Bytes corrupt = Encode(MakeFrame(5, 16, 16));
  corrupt[kHeaderBytes + 10] ^= 0xFF;
  const Bytes torn_tail = Encode(MakeFrame(10, 16, 16));
  {
    auto rec = FrameRecorder::Open(path, /*append=*/false);
    ASSERT_TRUE(rec.has_value()) << rec.error().ToString();
    for (uint32_t seq = 0; seq < 5; ++seq) ASSERT_TRUE((*rec)->Write(MakeFrame(seq, 16, 16)).ok());
    ASSERT_TRUE((*rec)->WriteBytes(garbage).ok());
    ASSERT_TRUE((*rec)->WriteBytes(corrupt).ok());
    for (uint32_t seq = 6; seq < 10; ++seq) ASSERT_TRUE((*rec)->Write(MakeFrame(seq, 16, 16)).ok());
    ASSERT_TRUE((*rec)->WriteBytes(std::span<const uint8_t>(torn_tail.data(), 50)).ok());
    EXPECT_EQ((*rec)->bytes_written(), 9 * FrameBytes(16, 16) + garbage.size() +
                                           corrupt.size() + 50);
    ASSERT_TRUE((*rec)->Close().ok());
  }
  auto source = ReplayFrameSource::Open(
      {.path = path, .decoder = Expect16x16(), .read_chunk_bytes = 333});
  ASSERT_TRUE(source.has_value()) << source.error().ToString();
  std::vector<uint32_t> seqs;
  while (true) {
    auto f = (*source)->Next(milliseconds(0));
    if (!f.has_value()) {
      EXPECT_EQ(f.error().code(), StatusCode::kOutOfRange);
      EXPECT_NE(f.error().message().find(path), std::string::npos);
      break;
    }
    ASSERT_TRUE(f->has_value());
    ExpectSameFrame(**f, MakeFrame((*f)->sequence, 16, 16));
    seqs.push_back((*f)->sequence);
  }
  EXPECT_EQ(seqs, (std::vector<uint32_t>{0, 1, 2, 3, 4, 6, 7, 8, 9}));
  FrameSourceStats want;
  want.frames_ok = 9;
  want.bad_crc = 1;
  want.torn_frames = 1;  // the file ends mid-frame
  want.sequence_gaps = 1;
  want.frames_missed = 1;  // frame 5 was the corrupt one
  want.bytes_skipped = garbage.size() + corrupt.size() + 50;
  EXPECT_EQ((*source)->stats(), want);
  std::filesystem::remove_all(dir);
}

TEST(ReplayFrameSource, PacesAtTheRequestedRateAndLoops) {
  const auto dir = TempDir();
  const std::string path = (dir / "three.mfr").string();
  {
    auto rec = FrameRecorder::Open(path, false);
    ASSERT_TRUE(rec.has_value());
    for (uint32_t seq = 0; seq < 3; ++seq) ASSERT_TRUE((*rec)->Write(MakeFrame(seq, 4, 4)).ok());
  }
  // Appending adds to the recording.
  {
    auto rec = FrameRecorder::Open(path, true);
    ASSERT_TRUE(rec.has_value());
    ASSERT_TRUE((*rec)->Write(MakeFrame(3, 4, 4)).ok());
  }
  auto source = ReplayFrameSource::Open({.path = path, .rate_hz = 50, .loop = true});
  ASSERT_TRUE(source.has_value());
  ReplayFrameSource& src = **source;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint32_t> seqs;
  for (int i = 0; i < 6; ++i) {
    auto f = src.Next(milliseconds(1000));
    ASSERT_TRUE(f.has_value() && f->has_value());
    seqs.push_back((*f)->sequence);
  }
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(elapsed, milliseconds(95));  // 5 periods of 20 ms after the first frame
  EXPECT_LT(elapsed, milliseconds(1000));
  EXPECT_EQ(seqs, (std::vector<uint32_t>{0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(src.stats().sequence_gaps, 0u);  // the wrap is not a gap
  // A timeout shorter than the time to the next frame: nullopt, and the frame is not lost.
  auto early = src.Next(milliseconds(1));
  ASSERT_TRUE(early.has_value());
  EXPECT_FALSE(early->has_value());
  auto next = src.Next(milliseconds(1000));
  ASSERT_TRUE(next.has_value() && next->has_value());
  EXPECT_EQ((*next)->sequence, 2u);
  std::filesystem::remove_all(dir);
}

TEST(ReplayFrameSource, ErrorsNameThePath) {
  auto missing = ReplayFrameSource::Open({.path = "/nonexistent/rec.mfr"});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.error().message().find("/nonexistent/rec.mfr"), std::string::npos);
  EXPECT_EQ(ReplayFrameSource::Open({.path = "/dev/null", .rate_hz = -1}).error().field(),
            "replay.rate_hz");
  auto no_dir = FrameRecorder::Open("/nonexistent/dir/rec.mfr");
  ASSERT_FALSE(no_dir.has_value());
  EXPECT_NE(no_dir.error().message().find("/nonexistent/dir/rec.mfr"), std::string::npos);

  // A looping recording without a single good frame is DATA_LOSS, not an endless loop.
  const auto dir = TempDir();
  const std::string junk = (dir / "junk.mfr").string();
  {
    auto rec = FrameRecorder::Open(junk, false);
    ASSERT_TRUE(rec.has_value());
    ASSERT_TRUE((*rec)->WriteBytes(Str("nothing but noise")).ok());
  }
  auto src = ReplayFrameSource::Open({.path = junk, .loop = true});
  ASSERT_TRUE(src.has_value());
  auto r = (*src)->Next(milliseconds(0));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kDataLoss);
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Synthetic generator
// ---------------------------------------------------------------------------------------------

// Simple statistics of the loaded region (readings >= 4000 counts: well above any offset plus
// noise of the default sensor model, 2500 + 6 * 120).
struct LoadStats {
  double loaded_fraction = 0;
  int extent_rows = 0;  // bounding box of the loaded bladders
  int extent_cols = 0;
  bool touches_end = false;  // first or last row
};

LoadStats Measure(const PressureFrame& f) {
  int n = 0, rmin = f.rows, rmax = -1, cmin = f.cols, cmax = -1;
  for (int r = 0; r < f.rows; ++r) {
    for (int c = 0; c < f.cols; ++c) {
      if (f.at(r, c) < 4000) continue;
      ++n;
      rmin = std::min(rmin, r), rmax = std::max(rmax, r);
      cmin = std::min(cmin, c), cmax = std::max(cmax, c);
    }
  }
  LoadStats s;
  s.loaded_fraction = static_cast<double>(n) / (f.rows * f.cols);
  if (n > 0) {
    s.extent_rows = rmax - rmin + 1;
    s.extent_cols = cmax - cmin + 1;
    s.touches_end = rmin == 0 || rmax == f.rows - 1;
  }
  return s;
}

// A classifier made of two statistics: how much is loaded and how far along the mat.
Situation Classify(const PressureFrame& f) {
  const LoadStats s = Measure(f);
  if (s.loaded_fraction == 0) return Situation::kEmpty;
  if (s.extent_rows >= 0.7 * f.rows) return Situation::kLyingFull;
  if (s.touches_end) return Situation::kLyingPartial;
  return Situation::kSitting;
}

TEST(Synthetic, TheFourSituationsAreDistinguishableBySimpleStatistics) {
  for (auto [rows, cols] : std::vector<std::pair<uint16_t, uint16_t>>{{16, 16}, {32, 16}}) {
    for (uint64_t seed = 1; seed <= 60; ++seed) {
      auto gen = SyntheticGenerator::Create({.rows = rows, .cols = cols, .seed = seed});
      ASSERT_TRUE(gen.has_value());
      for (Situation situation : kAllSituations) {
        for (int k = 0; k < 2; ++k) {
          const PressureFrame f = gen->Generate(situation);
          ASSERT_TRUE(f.well_formed());
          const LoadStats s = Measure(f);
          const double aspect =
              s.extent_cols ? static_cast<double>(s.extent_rows) / s.extent_cols : 0;
          SCOPED_TRACE(std::string(SituationName(situation)) + " seed " + std::to_string(seed) +
                       " grid " + std::to_string(rows) + "x" + std::to_string(cols));
          EXPECT_EQ(Classify(f), situation);
          switch (situation) {
            case Situation::kEmpty:
              EXPECT_EQ(s.loaded_fraction, 0);
              break;
            case Situation::kSitting:  // compact: little of the mat, short, not at an end
              EXPECT_GT(s.loaded_fraction, 0.03);
              EXPECT_LT(s.loaded_fraction, 0.20);
              EXPECT_LE(s.extent_rows, rows / 3);
              EXPECT_LT(aspect, 1.3);
              break;
            case Situation::kLyingFull:  // elongated, most of the length
              EXPECT_GT(s.loaded_fraction, 0.15);
              EXPECT_GE(s.extent_rows, 0.7 * rows);
              EXPECT_GT(aspect, 1.3);
              break;
            case Situation::kLyingPartial:  // part of a body, at an end
              EXPECT_GT(s.loaded_fraction, 0.03);
              EXPECT_TRUE(s.touches_end);
              EXPECT_LE(s.extent_rows, 0.65 * rows);
              break;
          }
        }
      }
    }
  }
}

TEST(Synthetic, SittingPressesHarderThanLying) {
  auto gen = SyntheticGenerator::Create({.seed = 3});
  ASSERT_TRUE(gen.has_value());
  double sit_peaks = 0, lie_peaks = 0;
  for (int i = 0; i < 20; ++i) {
    gen->NewBody();
    const PressureFrame sit = gen->Generate(Situation::kSitting);
    gen->NewBody();
    const PressureFrame lie = gen->Generate(Situation::kLyingFull);
    sit_peaks += *std::max_element(sit.values.begin(), sit.values.end());
    lie_peaks += *std::max_element(lie.values.begin(), lie.values.end());
  }
  EXPECT_GT(sit_peaks, 1.4 * lie_peaks);
}

TEST(Synthetic, ReproducibleFromTheSeedAndVariedAcrossSeeds) {
  auto run = [](uint64_t seed) {
    auto gen = SyntheticGenerator::Create({.seed = seed});
    EXPECT_TRUE(gen.has_value());
    std::vector<uint16_t> all;
    for (Situation s : {Situation::kEmpty, Situation::kSitting, Situation::kSitting,
                        Situation::kLyingFull, Situation::kLyingPartial}) {
      const PressureFrame f = gen->Generate(s);
      all.insert(all.end(), f.values.begin(), f.values.end());
    }
    return all;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));

  // Same body while the situation holds (only noise and breathing change), a new one after.
  auto gen = SyntheticGenerator::Create({.seed = 9});
  const PressureFrame a = gen->Generate(Situation::kLyingFull);
  const PressureFrame b = gen->Generate(Situation::kLyingFull);
  gen->NewBody();
  const PressureFrame c = gen->Generate(Situation::kLyingFull);
  auto loaded_cells = [](const PressureFrame& f) {
    std::vector<bool> m(f.values.size());
    for (size_t i = 0; i < m.size(); ++i) m[i] = f.values[i] >= 8000;
    return m;
  };
  auto overlap = [&](const PressureFrame& x, const PressureFrame& y) {
    auto mx = loaded_cells(x), my = loaded_cells(y);
    int both = 0, either = 0;
    for (size_t i = 0; i < mx.size(); ++i) both += mx[i] && my[i], either += mx[i] || my[i];
    return static_cast<double>(both) / either;
  };
  EXPECT_GT(overlap(a, b), 0.8);
  EXPECT_NE(a.values, b.values);
  EXPECT_LT(overlap(a, c), overlap(a, b));
}

TEST(Synthetic, SensorModelHasOffsetsNoiseAndDeadBladders) {
  auto gen = SyntheticGenerator::Create({.seed = 5, .dead_bladder_fraction = 0.05});
  ASSERT_TRUE(gen.has_value());
  size_t dead = 0;
  for (bool d : gen->dead()) dead += d;
  EXPECT_GT(dead, 2u);
  EXPECT_LT(dead, 40u);
  for (Situation s : kAllSituations) {
    const PressureFrame f = gen->Generate(s);
    for (size_t i = 0; i < f.values.size(); ++i) {
      if (gen->dead()[i]) {
        EXPECT_EQ(f.values[i], 0);
      } else if (s == Situation::kEmpty) {
        EXPECT_NEAR(f.values[i], gen->offsets()[i], 6 * 120 + 1);
        EXPECT_GE(gen->offsets()[i], 300);
        EXPECT_LE(gen->offsets()[i], 2500);
      }
    }
  }
  // Noise: two empty frames differ, but not by much.
  const PressureFrame e1 = gen->Generate(Situation::kEmpty);
  const PressureFrame e2 = gen->Generate(Situation::kEmpty);
  EXPECT_NE(e1.values, e2.values);
  EXPECT_EQ(SyntheticGenerator::Create({.rows = 3}).error().field(), "synthetic.rows");
  EXPECT_EQ(SyntheticGenerator::Create({.offset_min = 10, .offset_max = 5}).error().field(),
            "synthetic.offset_min");
}

TEST(Synthetic, ParseSchedule) {
  auto s = ParseSchedule("empty:10s, sitting:1500ms,lying_full:2m,lying_partial:1h");
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  ASSERT_EQ(s->size(), 4u);
  EXPECT_EQ((*s)[0].situation, Situation::kEmpty);
  EXPECT_EQ((*s)[0].duration, milliseconds(10000));
  EXPECT_EQ((*s)[1].situation, Situation::kSitting);
  EXPECT_EQ((*s)[1].duration, milliseconds(1500));
  EXPECT_EQ((*s)[2].duration, milliseconds(120000));
  EXPECT_EQ((*s)[3].situation, Situation::kLyingPartial);
  EXPECT_EQ((*s)[3].duration, milliseconds(3600000));
  for (const char* bad : {"", "empty", "standing:3s", "empty:3", "empty:0s", "empty:-1s",
                          "empty:3s,", "empty:3x", "sitting:s"}) {
    auto r = ParseSchedule(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().field(), "schedule") << bad;
  }
  EXPECT_NE(ParseSchedule("empty:1s,standing:3s").error().message().find("entry 2"),
            std::string::npos);
}

TEST(SyntheticFrameSource, FollowsTheScheduleWithGroundTruthLabels) {
  SyntheticSourceOptions options;
  options.frame_rate_hz = 10;
  options.schedule = *ParseSchedule("empty:1s,sitting:2s,lying_partial:500ms");
  options.loop_schedule = false;
  options.first_sequence = 1000;
  auto source = SyntheticFrameSource::Create(options);
  ASSERT_TRUE(source.has_value()) << source.error().ToString();
  std::vector<Situation> labels;
  std::optional<std::chrono::steady_clock::time_point> first;
  while (true) {
    auto f = (*source)->NextLabeled(milliseconds(0));
    if (!f.has_value()) {
      EXPECT_EQ(f.error().code(), StatusCode::kOutOfRange);
      break;
    }
    ASSERT_TRUE(f->has_value());
    const LabeledFrame& lf = **f;
    if (!first) first = lf.frame.received;
    EXPECT_EQ(lf.frame.sequence, 1000 + labels.size());
    EXPECT_EQ(lf.frame.received - *first, milliseconds(100) * labels.size());
    EXPECT_EQ(Classify(lf.frame), lf.label) << labels.size();
    labels.push_back(lf.label);
  }
  ASSERT_EQ(labels.size(), 35u);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), Situation::kEmpty), 10);
  EXPECT_EQ(std::count(labels.begin(), labels.end(), Situation::kSitting), 20);
  EXPECT_EQ(labels[9], Situation::kEmpty);
  EXPECT_EQ(labels[10], Situation::kSitting);
  EXPECT_EQ(labels[34], Situation::kLyingPartial);
  EXPECT_EQ((*source)->stats().frames_ok, 35u);

  // Looping schedule and the callback form.
  options.loop_schedule = true;
  auto looping = SyntheticFrameSource::Create(options);
  for (int i = 0; i < 35; ++i) ASSERT_TRUE((*looping)->Next(milliseconds(0)).has_value());
  auto wrapped = (*looping)->NextLabeled(milliseconds(0));
  ASSERT_TRUE(wrapped.has_value() && wrapped->has_value());
  EXPECT_EQ((*wrapped)->label, Situation::kEmpty);

  SyntheticSourceOptions cb;
  cb.situation_fn = [](milliseconds, uint64_t index) {
    return index % 2 ? Situation::kLyingFull : Situation::kEmpty;
  };
  auto by_fn = SyntheticFrameSource::Create(cb);
  ASSERT_TRUE(by_fn.has_value());
  for (int i = 0; i < 4; ++i) {
    auto f = (*by_fn)->NextLabeled(milliseconds(0));
    ASSERT_TRUE(f.has_value() && f->has_value());
    EXPECT_EQ((*f)->label, i % 2 ? Situation::kLyingFull : Situation::kEmpty);
  }

  EXPECT_EQ(SyntheticFrameSource::Create({}).error().field(), "synthetic.schedule");
  SyntheticSourceOptions bad_rate = options;
  bad_rate.frame_rate_hz = 0;
  EXPECT_EQ(SyntheticFrameSource::Create(bad_rate).error().field(), "synthetic.frame_rate_hz");
}

TEST(SyntheticFrameSource, RealtimeIsPaced) {
  SyntheticSourceOptions options;
  options.frame_rate_hz = 50;
  options.realtime = true;
  options.schedule = {{Situation::kSitting, milliseconds(10000)}};
  auto source = SyntheticFrameSource::Create(options);
  ASSERT_TRUE(source.has_value());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    auto f = (*source)->Next(milliseconds(1000));
    ASSERT_TRUE(f.has_value() && f->has_value());
  }
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(58));  // 3 periods of 20 ms
  auto early = (*source)->Next(milliseconds(0));
  ASSERT_TRUE(early.has_value());
  EXPECT_FALSE(early->has_value());
}

// ---------------------------------------------------------------------------------------------
// Preprocessor
// ---------------------------------------------------------------------------------------------

v1::InputSpec Spec(std::vector<int64_t> shape, std::string layout, std::vector<double> mean,
                   std::vector<double> std, std::string dtype = "float32") {
  v1::InputSpec spec;
  for (int64_t d : shape) spec.add_shape(d);
  spec.set_layout(layout);
  spec.set_dtype(dtype);
  for (double m : mean) spec.add_mean(m);
  for (double s : std) spec.add_std(s);
  return spec;
}

TEST(Preprocessor, ExactValuesForASmallFrame) {
  PressureFrame f;
  f.rows = 2;
  f.cols = 3;
  // 0, full scale, and fifths of full scale (65535 = 5 * 13107).
  f.values = {0, 65535, 13107, 26214, 39321, 52428};
  // x = v / 65535 -> {0, 1, .2, .4, .6, .8}; (x - 0.5) / 0.25 -> {-2, 2, -1.2, -.4, .4, 1.2}
  const std::vector<float> want = {-2.0f, 2.0f, -1.2f, -0.4f, 0.4f, 1.2f};
  for (const auto& spec : {Spec({1, 1, 2, 3}, "NCHW", {0.5}, {0.25}),
                           Spec({1, 2, 3, 1}, "NHWC", {0.5}, {0.25})}) {
    auto p = Preprocessor::Create(spec);
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    EXPECT_EQ(p->element_count(), 6u);
    auto out = p->Run(f);
    ASSERT_TRUE(out.has_value()) << out.error().ToString();
    ASSERT_EQ(out->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ((*out)[i], want[i]) << i;
  }
  // No mean/std: just the [0, 1] scaling.
  auto identity = Preprocessor::Create(Spec({1, 1, 2, 3}, "NCHW", {}, {}));
  ASSERT_TRUE(identity.has_value());
  std::vector<float> out(6);
  ASSERT_TRUE(identity->Run(f, out).ok());
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_FLOAT_EQ(out[2], 0.2f);
  EXPECT_FLOAT_EQ(out[5], 0.8f);
}

TEST(Preprocessor, ErrorsNameTheField) {
  auto field = [](const v1::InputSpec& spec) {
    auto p = Preprocessor::Create(spec);
    return p.has_value() ? std::string("(ok)") : p.error().field();
  };
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {0}, {1}, "int8")), "input_spec.dtype");
  EXPECT_EQ(field(Spec({1, 256}, "NC", {0}, {1})), "input_spec.layout");
  EXPECT_EQ(field(Spec({1, 16, 16}, "NCHW", {0}, {1})), "input_spec.shape");
  EXPECT_EQ(field(Spec({2, 1, 16, 16}, "NCHW", {0}, {1})), "input_spec.shape");
  EXPECT_EQ(field(Spec({1, 3, 16, 16}, "NCHW", {0}, {1})), "input_spec.shape");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NHWC", {0}, {1})), "input_spec.shape");  // C last
  EXPECT_EQ(field(Spec({1, 1, 0, 16}, "NCHW", {0}, {1})), "input_spec.shape");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {0, 0}, {1})), "input_spec.mean");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {0}, {0})), "input_spec.std");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {0}, {-1})), "input_spec.std");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {std::nan("")}, {1})), "input_spec.mean");
  EXPECT_EQ(field(Spec({1, 1, 16, 16}, "NCHW", {0}, {1})), "(ok)");

  auto p = Preprocessor::Create(Spec({1, 1, 16, 16}, "NCHW", {0}, {1}));
  ASSERT_TRUE(p.has_value());
  auto wrong_rows = p->Run(MakeFrame(0, 32, 16));
  ASSERT_FALSE(wrong_rows.has_value());
  EXPECT_EQ(wrong_rows.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong_rows.error().field(), "frame.rows");
  EXPECT_NE(wrong_rows.error().message().find("32x16"), std::string::npos);
  EXPECT_EQ(p->Run(MakeFrame(0, 16, 8)).error().field(), "frame.cols");
  PressureFrame short_frame = MakeFrame(0, 16, 16);
  short_frame.values.resize(10);
  EXPECT_EQ(p->Run(short_frame).error().field(), "frame.values");
  std::vector<float> small(5);
  EXPECT_EQ(p->Run(MakeFrame(0, 16, 16), small).field(), "output");
}

// ---------------------------------------------------------------------------------------------
// PresenceTracker
// ---------------------------------------------------------------------------------------------

class PresenceTest : public ::testing::Test {
 protected:
  PresenceTracker Make(PresenceOptions options) {
    auto t = PresenceTracker::Create(options, [this](const PresenceEvent& e) {
      events_.push_back(e);
      lines_.push_back(e.ToJson());
    });
    EXPECT_TRUE(t.has_value()) << t.error().ToString();
    return std::move(*t);
  }
  // Feeds `n` observations of `label` every `step` ms starting at `t`; returns the next time.
  int64_t Feed(PresenceTracker& t, std::string_view label, int n, int64_t start,
               double confidence = 0.9, int64_t step = 100) {
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(t.Observe(label, confidence, milliseconds(start + i * step)).ok());
    }
    return start + n * step;
  }
  std::vector<PresenceEvent> events_;
  std::vector<std::string> lines_;
};

TEST_F(PresenceTest, AOneFrameFlickerDoesNotEmitButKFramesDo) {
  PresenceTracker t = Make({.hold_frames = 3});
  int64_t now = Feed(t, "empty", 3, 0);  // unknown -> empty: no event
  EXPECT_TRUE(events_.empty());
  ASSERT_TRUE(t.state().has_value());
  EXPECT_EQ(*t.state(), "empty");

  now = Feed(t, "sitting", 1, now);  // flicker
  now = Feed(t, "empty", 1, now);
  now = Feed(t, "sitting", 2, now);  // two are not enough either
  now = Feed(t, "lying_full", 1, now);
  now = Feed(t, "sitting", 2, now);
  EXPECT_TRUE(events_.empty());
  EXPECT_FALSE(t.person_present());

  now = Feed(t, "sitting", 1, now);  // the third consecutive sitting
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, PresenceEvent::Kind::kPersonArrived);
  EXPECT_EQ(events_[0].class_label, "sitting");
  EXPECT_EQ(events_[0].time, milliseconds(now - 100));
  EXPECT_TRUE(t.person_present());
}

TEST_F(PresenceTest, LowConfidenceBreaksTheStreak) {
  PresenceTracker t = Make({.min_confidence = 0.7, .hold_frames = 3});
  int64_t now = Feed(t, "empty", 3, 0);
  now = Feed(t, "lying_full", 2, now, 0.95);
  now = Feed(t, "lying_full", 1, now, 0.5);  // unsure: does not count and breaks the streak
  now = Feed(t, "lying_full", 2, now, 0.95);
  EXPECT_TRUE(events_.empty());
  Feed(t, "lying_full", 1, now, 0.8);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_DOUBLE_EQ(events_[0].confidence, (0.95 + 0.95 + 0.8) / 3);
  EXPECT_EQ(lines_[0], "{\"event\":\"person_arrived\",\"class\":\"lying_full\","
                       "\"confidence\":0.9,\"time_ms\":800}");
}

TEST_F(PresenceTest, PostureChangesAndAPersonPresentAtStartArrives) {
  PresenceTracker t = Make({.hold_frames = 2});
  int64_t now = Feed(t, "sitting", 2, 0);  // unknown -> sitting
  now = Feed(t, "lying_full", 2, now);
  now = Feed(t, "lying_partial", 2, now);
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0].kind, PresenceEvent::Kind::kPersonArrived);
  EXPECT_EQ(events_[1].kind, PresenceEvent::Kind::kPostureChanged);
  EXPECT_EQ(events_[1].from, "sitting");
  EXPECT_EQ(events_[1].class_label, "lying_full");
  EXPECT_EQ(lines_[2], "{\"event\":\"posture_changed\",\"class\":\"lying_partial\","
                       "\"from\":\"lying_full\",\"confidence\":0.9,\"time_ms\":500}");
}

TEST_F(PresenceTest, PersonLeftAndNobodyForTiming) {
  PresenceTracker t = Make({.hold_frames = 3, .nobody_after = std::chrono::seconds(5)});
  int64_t now = Feed(t, "sitting", 3, 0);
  now = Feed(t, "sitting", 50, now);  // sits until 5300
  ASSERT_EQ(events_.size(), 1u);
  // Leaves at 5300: confirmed by the third empty frame (5500).
  now = Feed(t, "empty", 3, now);
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[1].kind, PresenceEvent::Kind::kPersonLeft);
  EXPECT_EQ(events_[1].time, milliseconds(5500));
  EXPECT_EQ(lines_[1], "{\"event\":\"person_left\",\"class\":\"empty\",\"from\":\"sitting\","
                       "\"confidence\":0.9,\"time_ms\":5500}");
  // nobody_for counts from when the person left (5300), so it is due at 10300 -- not earlier.
  now = Feed(t, "empty", 47, now);  // up to 10200
  EXPECT_EQ(events_.size(), 2u);
  ASSERT_TRUE(t.Observe("empty", 0.9, milliseconds(10299)).ok());
  EXPECT_EQ(events_.size(), 2u);
  ASSERT_TRUE(t.Observe("empty", 0.9, milliseconds(10300)).ok());
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[2].kind, PresenceEvent::Kind::kNobodyFor);
  EXPECT_EQ(lines_[2], "{\"event\":\"nobody_for\",\"seconds\":5,\"since_ms\":5300,"
                       "\"time_ms\":10300}");
  // Once per empty period.
  Feed(t, "empty", 100, 10400);
  EXPECT_EQ(events_.size(), 3u);
  // A flicker of a person is not an arrival; three frames in a row are.
  now = Feed(t, "sitting", 1, 20400);
  now = Feed(t, "empty", 1, now);
  EXPECT_EQ(events_.size(), 3u);
  now = Feed(t, "sitting", 3, now);
  ASSERT_EQ(events_.size(), 4u);
  EXPECT_EQ(events_[3].kind, PresenceEvent::Kind::kPersonArrived);
}

TEST_F(PresenceTest, NobodyForFiresFromTickWhenInferencesStop) {
  PresenceTracker t = Make({.hold_frames = 2, .nobody_after = std::chrono::seconds(10)});
  Feed(t, "empty", 2, 1000);  // unknown -> empty at 1000, no event
  EXPECT_TRUE(events_.empty());
  ASSERT_TRUE(t.Tick(milliseconds(10999)).ok());
  EXPECT_TRUE(events_.empty());
  ASSERT_TRUE(t.Tick(milliseconds(11000)).ok());
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, PresenceEvent::Kind::kNobodyFor);
  EXPECT_EQ(events_[0].since, milliseconds(1000));
  ASSERT_TRUE(t.Tick(milliseconds(50000)).ok());
  EXPECT_EQ(events_.size(), 1u);
}

TEST_F(PresenceTest, HoldTimeDebouncing) {
  PresenceTracker t = Make({.hold_frames = 0, .hold_time = milliseconds(500)});
  Feed(t, "empty", 2, 0, 0.9, 600);  // 0 and 600: held 600 ms -> empty
  ASSERT_EQ(*t.state(), "empty");
  Feed(t, "sitting", 3, 1000, 0.9, 200);  // 1000, 1200, 1400: only 400 ms
  EXPECT_TRUE(events_.empty());
  ASSERT_TRUE(t.Observe("sitting", 0.9, milliseconds(1500)).ok());
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].time, milliseconds(1500));
}

TEST_F(PresenceTest, RejectsBadInputAndOptions) {
  PresenceTracker t = Make({});
  EXPECT_EQ(t.Observe("standing", 0.9, milliseconds(0)).field(), "class_label");
  EXPECT_EQ(t.Observe("empty", 1.5, milliseconds(0)).field(), "confidence");
  EXPECT_EQ(t.Observe("empty", std::nan(""), milliseconds(0)).field(), "confidence");
  ASSERT_TRUE(t.Observe("empty", 0.9, milliseconds(100)).ok());
  EXPECT_EQ(t.Observe("empty", 0.9, milliseconds(99)).field(), "time");
  EXPECT_EQ(t.Tick(milliseconds(50)).field(), "time");

  auto sink = [](const PresenceEvent&) {};
  EXPECT_EQ(PresenceTracker::Create({.min_confidence = 2}, sink).error().field(),
            "presence.min_confidence");
  EXPECT_EQ(PresenceTracker::Create({.hold_frames = 0}, sink).error().field(),
            "presence.hold_frames");
  EXPECT_EQ(PresenceTracker::Create({.nobody_after = milliseconds(0)}, sink).error().field(),
            "presence.nobody_after");
  EXPECT_EQ(PresenceTracker::Create({.empty_label = "nobody"}, sink).error().field(),
            "presence.empty_label");
  EXPECT_EQ(PresenceTracker::Create({}, nullptr).error().field(), "presence.sink");
}

// The sensor side end to end, with a stand-in for the model: synthetic frames through the wire
// encoding and decoder, the preprocessor, a statistics "classifier", and the presence tracker.
TEST(SensorPipeline, SyntheticSessionProducesTheExpectedEvents) {
  SyntheticSourceOptions options;
  options.frame_rate_hz = 10;
  options.schedule = *ParseSchedule("empty:2s,sitting:5s,lying_full:5s,empty:40s");
  options.loop_schedule = false;
  auto source = SyntheticFrameSource::Create(options);
  ASSERT_TRUE(source.has_value());
  FrameDecoder decoder = MakeDecoder(Expect16x16());
  auto pre = Preprocessor::Create(Spec({1, 1, 16, 16}, "NCHW", {0.1}, {0.2}));
  ASSERT_TRUE(pre.has_value());
  std::vector<std::string> events;
  auto tracker = PresenceTracker::Create(
      {.hold_frames = 3, .nobody_after = std::chrono::seconds(30)},
      [&](const PresenceEvent& e) { events.push_back(std::string(e.name())); });
  ASSERT_TRUE(tracker.has_value());
  const float loaded = static_cast<float>((4000.0 / 65535 - 0.1) / 0.2);

  int64_t t = 0;
  while (true) {
    auto f = (*source)->Next(milliseconds(0));
    if (!f.has_value()) break;
    decoder.Feed(Encode(**f));
    auto decoded = decoder.Pop();
    ASSERT_TRUE(decoded.has_value());
    auto input = pre->Run(*decoded);
    ASSERT_TRUE(input.has_value());
    // The stand-in model: Classify() on the tensor, thresholded at the same 4000 counts.
    PressureFrame seen = *decoded;
    for (size_t i = 0; i < input->size(); ++i) seen.values[i] = (*input)[i] >= loaded ? 4000 : 0;
    ASSERT_TRUE(tracker->Observe(SituationName(Classify(seen)), 0.9, milliseconds(t)).ok());
    t += 100;
  }
  EXPECT_EQ(events, (std::vector<std::string>{"person_arrived", "posture_changed",
                                              "person_left", "nobody_for"}));
  EXPECT_EQ(decoder.stats().frames_ok, 520u);
}

}  // namespace
}  // namespace modelfleet::agent::sensor
