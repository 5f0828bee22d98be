// Seeded mutation fuzzing of the parsers that read untrusted input:
//   1. FrameDecoder (client/agent/sensor/serial_protocol.h): bytes from the mat's UART;
//   2. VerifyManifestSignature and CanonicalManifestBytes (common/modelfleet/manifest.h):
//      signed manifests as they reach a device or the registry;
//   3. ParseVersionFilter (server/registry/version_filter.h): the ListVersions filter text;
//   4. DeviceSelector::Parse (server/fleet/device_selector.h): rollout targets and ListDevices
//      filters, then Matches and ToSql on what parsed.
//
// Each target starts from valid seeds taken from the unit tests of that parser and applies
// stacked random edits (bit flips, byte insert/erase/replace, chunk duplication, splicing two
// seeds, dictionary tokens such as quotes, parentheses, huge numbers, NUL and broken UTF-8,
// truncation) plus a few structure-aware edits (re-CRC'd frames, manifest field edits). Every
// input must leave the parser in a state its header promises: no crash or sanitizer report
// (CI runs this under ASan+UBSan), rejections with the documented code, field and column, and
// accepted results that are internally consistent (re-encoding or re-printing them parses back
// to the same thing, counters add up). Each loop also checks that it saw both accepted and
// rejected inputs, so it cannot pass by testing nothing.
//
// Bounds: std::mt19937 with a constant seed per target, so a run is reproducible and a failure
// names the input number and prints the input. Each target stops after its input count (20,000
// for the decoder and manifests, whose inputs are bigger and cost a decode or an Ed25519
// verification each, 50,000 for the two text grammars) or after kTimeBudget of wall time,
// whichever comes first, so the suite stays bounded on a slow sanitizer runner; it then still
// has to have run kMinInputs inputs.
//
// Bugs this fuzzer found are fixed and pinned as regression tests at the end of the file; the
// loops still watch for each of them and fail, with the first input, if one comes back.
#include <gtest/gtest.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/sensor/frame.h"
#include "agent/sensor/frame_source.h"
#include "agent/sensor/serial_protocol.h"
#include "fleet/device_selector.h"
#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/model.pb.h"
#include "registry/version_filter.h"
#include "test_data.h"

namespace modelfleet {
namespace {

using namespace std::string_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kTimeBudget = std::chrono::seconds(10);
constexpr size_t kMinInputs = 1000;

// =============================================================================================
// Shared machinery: reporting, the mutator, the bounded loop
// =============================================================================================

// `s` as a C++ string literal body (octal escapes, which never swallow a following digit the
// way \x does), so a failing input can be pasted into a regression test.
std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      buf[0] = '\\';
      buf[1] = static_cast<char>('0' + (c >> 6));
      buf[2] = static_cast<char>('0' + ((c >> 3) & 7));
      buf[3] = static_cast<char>('0' + (c & 7));
      buf[4] = '\0';
      out += buf;
    }
  }
  return "\"" + out + "\"";
}

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Tokens every text grammar gets: the lexer's delimiters, whitespace, numbers at and past the
// int64/double limits, NUL, malformed and well-formed UTF-8, over-long words.
std::vector<std::string> CommonTokens() {
  return {
      "\"",   "\\",   "\\\"", "\\\\", "(",     ")",     ",",     "*",    "=",    "!=",
      "<",    "<=",   ">",    ">=",   " ",     "\t",    "\n",    "\r",   "\v",   "\f",
      "AND",  "and",  "aNd",  "OR",   "NOT",   "not",   "in",    "IN",   "not in",
      "0",    "-0",   "-",    "+1",   ".5",    "1e",    "1e308", "1e309", "-1e309", "1e-400",
      "nan",  "inf",  "-inf", "0x10", "00",
      "9223372036854775807",  "9223372036854775808",  "-9223372036854775808",
      "-9223372036854775809", "99999999999999999999999999999999999999",
      "4294967295",           "4294967296",           "3153600000",          "3153600001",
      "\0"s,  "\xff",         "\xc0\xaf",             "\xed\xa0\x80",        "\xf4\x90\x80\x80",
      "\xe2\x82",             "\xc3\xbc",             "\xf0\x9f\x98\x80",    "\xef\xbb\xbf",
      std::string(64, 'k'),   std::string(65, 'k'),
  };
}

// Random edits of byte strings. Deterministic for a given generator state.
class Mutator {
 public:
  Mutator(std::mt19937& rng, std::vector<std::string> tokens, size_t max_size)
      : rng_(rng), tokens_(std::move(tokens)), max_size_(max_size) {}

  size_t Below(size_t n) { return n == 0 ? 0 : rng_() % n; }
  bool OneIn(size_t n) { return Below(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[Below(v.size())]; }

  // 1 to 4 stacked edits of `input`; `others` feeds splicing and chunk insertion.
  std::string Mutate(std::string input, const std::vector<std::string>& others) {
    const size_t edits = 1 + Below(4);
    for (size_t i = 0; i < edits; ++i) MutateOnce(input, others);
    if (input.size() > max_size_) input.resize(max_size_);
    return input;
  }

 private:
  uint8_t InterestingByte() {
    static constexpr uint8_t kBytes[] = {0x00, 0xff, 0x7f, 0x80, 0xa5, 0x5a, 0x01, 0x02,
                                         '"',  '\\', '(',  ')',  ',',  ' ',  '\n', '=', '*'};
    return kBytes[Below(sizeof kBytes)];
  }
  uint8_t AnyByte() { return OneIn(2) ? InterestingByte() : static_cast<uint8_t>(rng_()); }

  void MutateOnce(std::string& s, const std::vector<std::string>& others) {
    switch (Below(11)) {
      case 0:  // flip one bit
        if (!s.empty()) s[Below(s.size())] ^= static_cast<char>(1u << Below(8));
        break;
      case 1:  // replace a byte
        if (!s.empty()) s[Below(s.size())] = static_cast<char>(AnyByte());
        break;
      case 2:  // insert a byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(Below(s.size() + 1)),
                 static_cast<char>(AnyByte()));
        break;
      case 3: {  // erase a range
        if (s.empty()) break;
        const size_t at = Below(s.size());
        s.erase(at, 1 + Below(std::min<size_t>(s.size() - at, 16)));
        break;
      }
      case 4: {  // duplicate a chunk somewhere else
        if (s.empty()) break;
        const size_t from = Below(s.size());
        const std::string chunk = s.substr(from, 1 + Below(64));
        s.insert(Below(s.size() + 1), chunk);
        break;
      }
      case 5: {  // splice: a prefix of this input and a suffix of another seed
        const std::string& other = Pick(others);
        s = s.substr(0, Below(s.size() + 1)) + other.substr(Below(other.size() + 1));
        break;
      }
      case 6:  // insert a dictionary token
        s.insert(Below(s.size() + 1), Pick(tokens_));
        break;
      case 7: {  // overwrite a range with a dictionary token
        const std::string& token = Pick(tokens_);
        const size_t at = Below(s.size() + 1);
        s.replace(at, std::min(token.size(), s.size() - at), token);
        break;
      }
      case 8:  // truncate
        s.resize(Below(s.size() + 1));
        break;
      case 9: {  // insert a run of random bytes
        const size_t n = 1 + Below(8);
        std::string run;
        for (size_t i = 0; i < n; ++i) run += static_cast<char>(AnyByte());
        s.insert(Below(s.size() + 1), run);
        break;
      }
      default:  // repeat the whole input (reaches the length limits)
        if (OneIn(8)) {
          s += s;
        } else if (!s.empty()) {
          std::swap(s[Below(s.size())], s[Below(s.size())]);
        }
        break;
    }
  }

  std::mt19937& rng_;
  std::vector<std::string> tokens_;
  size_t max_size_;
};

// What one input did: a parser may accept part of an input and reject another part (the
// decoder), so both can be true.
struct Verdict {
  bool accepted = false;
  bool rejected = false;
};

struct LoopCounts {
  size_t inputs = 0;
  size_t accepted = 0;
  size_t rejected = 0;
  double seconds = 0;
};

// Runs `one_input(i)` for i = 0, 1, ... until `max_inputs`, kTimeBudget or the first failure.
// `one_input` reports its own failures (with the input) through gtest.
LoopCounts RunFuzzLoop(std::string_view target, size_t max_inputs,
                       const std::function<Verdict(size_t)>& one_input) {
  const Clock::time_point start = Clock::now();
  LoopCounts counts;
  while (counts.inputs < max_inputs && Clock::now() - start < kTimeBudget) {
    const Verdict v = one_input(counts.inputs);
    ++counts.inputs;
    counts.accepted += v.accepted ? 1 : 0;
    counts.rejected += v.rejected ? 1 : 0;
    if (::testing::Test::HasFailure()) break;
  }
  counts.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::cout << "[ fuzz     ] " << target << ": " << counts.inputs << " inputs in "
            << counts.seconds << " s, " << counts.accepted << " accepted, " << counts.rejected
            << " rejected" << std::endl;
  ::testing::Test::RecordProperty(std::string(target) + ".inputs", std::to_string(counts.inputs));
  ::testing::Test::RecordProperty(std::string(target) + ".accepted",
                                  std::to_string(counts.accepted));
  ::testing::Test::RecordProperty(std::string(target) + ".rejected",
                                  std::to_string(counts.rejected));
  return counts;
}

// The loop ran enough inputs and saw both outcomes.
void ExpectExercised(const LoopCounts& counts) {
  if (::testing::Test::HasFailure()) return;  // stopped early on a failure already reported
  EXPECT_GE(counts.inputs, kMinInputs) << "the time budget ran out before the minimum";
  EXPECT_GT(counts.accepted, 0u) << "no input was accepted: the loop tested only rejections";
  EXPECT_GT(counts.rejected, 0u) << "no input was rejected: the mutations did nothing";
}

// A bug this fuzzer found once (since fixed; the regression test at the end of the file pins
// it): the loops keep watching for it, and any hit fails, printing its first input.
struct FixedBug {
  explicit FixedBug(std::string_view bug) : name(bug) {}

  std::string_view name;
  size_t hits = 0;
  std::string first_input;

  void Hit(std::string_view input) {
    if (hits++ == 0) first_input = std::string(input);
  }
  void Report() const {
    EXPECT_EQ(hits, 0u) << "fixed bug '" << name << "' is back; first input " << Printable(first_input);
  }
};

// For the two text grammars (both built on the same lexer): an INVALID_ARGUMENT naming
// `field`, whose message starts with "<field>: " and, unless it is one of the whole-text checks
// listed in `columnless`, ends with " at column N", N within the text (1-based) or just past it.
void ExpectGrammarError(const Status& s, std::string_view text, const std::string& field,
                        const std::vector<std::string_view>& columnless) {
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  ASSERT_EQ(s.field(), field) << s.ToString();
  ASSERT_TRUE(s.message().starts_with(field + ": ")) << s.message();
  ASSERT_GT(s.message().size(), field.size() + 2) << "empty error message";
  for (std::string_view what : columnless) {
    if (s.message().find(what) != std::string::npos) return;
  }
  constexpr std::string_view kColumn = " at column ";
  const size_t at = s.message().rfind(kColumn);
  ASSERT_NE(at, std::string::npos) << "names no column: " << s.message();
  const char* first = s.message().data() + at + kColumn.size();
  const char* last = s.message().data() + s.message().size();
  size_t column = 0;
  const auto r = std::from_chars(first, last, column);
  ASSERT_TRUE(r.ec == std::errc() && r.ptr == last) << "the column is not at the end: " << s.message();
  ASSERT_GE(column, 1u) << s.message();
  ASSERT_LE(column, text.size() + 1) << s.message();
}

// A double-quoted string of the filter/selector lexer: only '"' and '\' are escaped.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool IsKey(std::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

// =============================================================================================
// 1. FrameDecoder
// =============================================================================================

namespace sensor = agent::sensor;

sensor::PressureFrame MakeFrame(uint32_t sequence, uint16_t rows, uint16_t cols, uint32_t salt) {
  sensor::PressureFrame f;
  f.sequence = sequence;
  f.rows = rows;
  f.cols = cols;
  f.values.resize(static_cast<size_t>(rows) * cols);
  for (size_t i = 0; i < f.values.size(); ++i) {
    f.values[i] = static_cast<uint16_t>((i * 2654435761u + sequence * 40503u + salt) % 65536);
  }
  return f;
}

std::string EncodedFrame(const sensor::PressureFrame& f) {
  auto bytes = sensor::EncodeFrame(f);
  EXPECT_TRUE(bytes.has_value()) << bytes.error().ToString();
  if (!bytes) return {};
  return std::string(bytes->begin(), bytes->end());
}

// Streams as the tests in agent_sensor_test.cc build them: the documented 2x3 example, runs of
// consecutive frames, a sequence gap and wrap, boot noise and a lone sync byte between frames.
std::vector<std::string> FrameSeeds() {
  sensor::PressureFrame example;
  example.sequence = 258;
  example.rows = 2;
  example.cols = 3;
  example.values = {0, 1, 256, 0x1234, 0xFFFF, 500};

  std::vector<std::string> seeds;
  seeds.push_back(EncodedFrame(example));
  std::string run16;
  for (uint32_t seq = 0; seq < 3; ++seq) run16 += EncodedFrame(MakeFrame(seq, 16, 16, 7));
  seeds.push_back(run16);
  std::string gaps;
  for (uint32_t seq : {10u, 11u, 15u, 16u}) gaps += EncodedFrame(MakeFrame(seq, 1, 1, 3));
  seeds.push_back(gaps);
  seeds.push_back(EncodedFrame(MakeFrame(0xFFFFFFFFu, 3, 5, 1)) +
                  EncodedFrame(MakeFrame(0, 3, 5, 2)));
  seeds.push_back("boot v1.2\r\n" + EncodedFrame(MakeFrame(1, 4, 4, 9)) + "\xA5" +
                  EncodedFrame(MakeFrame(2, 4, 4, 9)) + "\xA5\x5A\x01");
  seeds.push_back(EncodedFrame(MakeFrame(7, 20, 3, 5)) + EncodedFrame(MakeFrame(8, 8, 8, 5)));
  return seeds;
}

// Rewrites the CRC of every complete frame-shaped region (sync, version 1, non-zero size) so
// that mutated headers and values still decode: without this nearly every mutated frame would
// only ever exercise the bad-CRC path.
void FixCrcs(std::string& s) {
  for (size_t pos = 0; pos + sensor::kHeaderBytes <= s.size(); ++pos) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
    if (p[0] != sensor::kSync0 || p[1] != sensor::kSync1 || p[2] != sensor::kProtocolVersion) continue;
    if (p[7] == 0 || p[8] == 0) continue;
    const size_t len = sensor::FrameBytes(p[7], p[8]);
    if (pos + len > s.size()) continue;
    const uint16_t crc = sensor::Crc16CcittFalse(AsBytes(s).subspan(pos + 2, len - 4));
    s[pos + len - 2] = static_cast<char>(crc & 0xFF);
    s[pos + len - 1] = static_cast<char>(crc >> 8);
  }
}

struct Decoded {
  std::vector<sensor::PressureFrame> frames;
  sensor::FrameSourceStats stats;
};

sensor::FrameDecoder MakeDecoder(const sensor::DecoderOptions& options) {
  auto decoder = sensor::FrameDecoder::Create(options);
  EXPECT_TRUE(decoder.has_value()) << decoder.error().ToString();
  return std::move(*decoder);
}

// One Feed, a queue large enough that nothing is ever dropped, then Flush.
Decoded DecodeAtOnce(const std::string& input, sensor::DecoderOptions options) {
  options.max_queued_frames = input.size() / sensor::FrameBytes(1, 1) + 1;
  sensor::FrameDecoder d = MakeDecoder(options);
  d.Feed(AsBytes(input));
  Decoded out;
  while (auto f = d.Pop()) out.frames.push_back(std::move(*f));
  d.Flush();
  EXPECT_FALSE(d.has_partial_frame());
  out.stats = d.stats();
  return out;
}

// Random chunks (single bytes, small or large pieces), popping after each one with the
// option's own (possibly tiny) queue, so frames may be dropped.
Decoded DecodeInChunks(const std::string& input, const sensor::DecoderOptions& options,
                       Mutator& m) {
  sensor::FrameDecoder d = MakeDecoder(options);
  const size_t capacity = d.buffer_capacity();
  const size_t max_chunk = std::vector<size_t>{1, 3, 16, 64, 600}[m.Below(5)];
  Decoded out;
  for (size_t pos = 0; pos < input.size();) {
    const size_t n = std::min(input.size() - pos, 1 + m.Below(max_chunk));
    d.Feed(AsBytes(input).subspan(pos, n));
    pos += n;
    EXPECT_LE(d.queued(), options.max_queued_frames);
    EXPECT_EQ(d.buffer_capacity(), capacity) << "the buffer grew";
    (void)d.has_partial_frame();
    if (m.OneIn(2)) {
      while (auto f = d.Pop()) out.frames.push_back(std::move(*f));
    }
  }
  while (auto f = d.Pop()) out.frames.push_back(std::move(*f));
  d.Flush();
  EXPECT_FALSE(d.has_partial_frame());
  EXPECT_EQ(d.queued(), 0u);
  out.stats = d.stats();
  return out;
}

bool SameFrame(const sensor::PressureFrame& a, const sensor::PressureFrame& b) {
  return a.sequence == b.sequence && a.rows == b.rows && a.cols == b.cols && a.values == b.values;
}

uint64_t Rejections(const sensor::FrameSourceStats& s) {
  return s.torn_frames + s.bad_crc + s.wrong_size + s.unsupported_version;
}

void CheckDecoderInput(const std::string& input, const sensor::DecoderOptions& options,
                       Mutator& m, FixedBug& torn_split, Verdict& verdict) {
  const Decoded whole = DecodeAtOnce(input, options);
  const Decoded chunked = DecodeInChunks(input, options, m);
  const sensor::FrameSourceStats& s = whole.stats;

  // Every frame is well formed, of an acceptable size, and is the re-encoding of bytes that
  // were really sent, in order and without overlap; every other byte was counted as skipped.
  ASSERT_EQ(s.frames_dropped, 0u);
  ASSERT_EQ(s.frames_ok, whole.frames.size());
  size_t next = 0;
  uint64_t frame_bytes = 0;
  for (const sensor::PressureFrame& f : whole.frames) {
    ASSERT_TRUE(f.well_formed()) << f.rows << "x" << f.cols << " with " << f.values.size();
    ASSERT_GE(f.rows, 1u);
    ASSERT_GE(f.cols, 1u);
    ASSERT_LE(f.rows, options.max_rows);
    ASSERT_LE(f.cols, options.max_cols);
    if (options.expected_rows != 0) {
      ASSERT_EQ(f.rows, options.expected_rows);
    }
    if (options.expected_cols != 0) {
      ASSERT_EQ(f.cols, options.expected_cols);
    }
    const std::string encoded = EncodedFrame(f);
    const size_t at = input.find(encoded, next);
    ASSERT_NE(at, std::string::npos) << "decoded a frame that is not in the input (seq "
                                     << f.sequence << ")";
    next = at + encoded.size();
    frame_bytes += encoded.size();
  }
  ASSERT_EQ(s.bytes_skipped + frame_bytes, input.size()) << s.ToString();

  // Sequence accounting, recomputed from the delivered frames.
  uint64_t gaps = 0, missed = 0;
  for (size_t i = 1; i < whole.frames.size(); ++i) {
    const uint32_t want = whole.frames[i - 1].sequence + 1;
    if (whole.frames[i].sequence == want) continue;
    ++gaps;
    const uint32_t ahead = whole.frames[i].sequence - want;
    if (ahead < 0x80000000u) missed += ahead;
  }
  ASSERT_EQ(s.sequence_gaps, gaps) << s.ToString();
  ASSERT_EQ(s.frames_missed, missed) << s.ToString();

  // Frames may be split anywhere: the chunked run finds the same frames (less the ones its
  // small queue dropped, in order) and the same counters.
  const sensor::FrameSourceStats& c = chunked.stats;
  ASSERT_EQ(c.frames_ok, chunked.frames.size() + c.frames_dropped) << c.ToString();
  ASSERT_EQ(c.frames_ok, s.frames_ok) << "chunked " << c.ToString() << "\nwhole " << s.ToString();
  ASSERT_EQ(c.bytes_skipped, s.bytes_skipped);
  ASSERT_EQ(c.wrong_size, s.wrong_size);
  ASSERT_EQ(c.unsupported_version, s.unsupported_version);
  ASSERT_EQ(c.sequence_gaps, s.sequence_gaps);
  ASSERT_EQ(c.frames_missed, s.frames_missed);
  ASSERT_EQ(c.torn_frames + c.bad_crc, s.torn_frames + s.bad_crc);
  if (c.torn_frames != s.torn_frames) torn_split.Hit(input);  // see the regression test
  size_t j = 0;
  for (const sensor::PressureFrame& f : chunked.frames) {
    while (j < whole.frames.size() && !SameFrame(whole.frames[j], f)) ++j;
    ASSERT_LT(j, whole.frames.size()) << "the chunked run decoded a frame the whole run did not";
    ++j;
  }

  verdict.accepted = !whole.frames.empty();
  verdict.rejected = Rejections(s) > 0;
}

// Options as a configuration file might hold them: Create either works, with a buffer of one
// maximum frame, or refuses with INVALID_ARGUMENT naming the option.
void CheckDecoderOptions(Mutator& m) {
  const std::vector<uint16_t> sides = {0, 1, 16, 64, 255, 256, 65535};
  sensor::DecoderOptions o;
  o.expected_rows = m.Pick(sides);
  o.expected_cols = m.Pick(sides);
  o.max_rows = m.Pick(sides);
  o.max_cols = m.Pick(sides);
  o.max_queued_frames = m.Below(3);
  auto decoder = sensor::FrameDecoder::Create(o);
  const Status valid = sensor::ValidateDecoderOptions(o);
  ASSERT_EQ(decoder.has_value(), valid.ok()) << valid.ToString();
  if (!decoder) {
    ASSERT_EQ(valid.code(), StatusCode::kInvalidArgument) << valid.ToString();
    ASSERT_TRUE(valid.field().starts_with("decoder.")) << valid.ToString();
    ASSERT_EQ(decoder.error().field(), valid.field());
    ASSERT_FALSE(valid.message().empty());
    return;
  }
  ASSERT_EQ(decoder->buffer_capacity(), sensor::FrameBytes(o.max_rows, o.max_cols));
}

TEST(FrameDecoderFuzz, MutatedStreamsAreAccountedForAndSplitIndependent) {
  std::mt19937 rng(0x5e7a1u);
  const std::vector<std::string> seeds = FrameSeeds();
  std::vector<std::string> tokens = {"\xA5\x5A"s, "\xA5\x5A\x01"s, "\xA5\x5A\x02"s, "\xA5"s,
                                     "\x5A"s,     "\x01"s,         "\x00\x00"s,     "\xFF\xFF"s,
                                     "\x10\x10"s, "\x00\x10"s,     "\xFF\xFF\xFF\xFF"s};
  for (const std::string& seed : seeds) tokens.push_back(seed.substr(0, sensor::kHeaderBytes));
  Mutator m(rng, tokens, 8192);

  std::vector<sensor::DecoderOptions> option_sets(4);
  option_sets[1].expected_rows = option_sets[1].expected_cols = 16;  // production-style
  option_sets[2].max_rows = option_sets[2].max_cols = 8;
  option_sets[2].max_queued_frames = 2;
  option_sets[3].max_rows = option_sets[3].max_cols = 255;
  option_sets[3].max_queued_frames = 1;

  FixedBug torn_split("torn vs bad_crc depends on chunking");
  const LoopCounts counts = RunFuzzLoop("frame_decoder", 20000, [&](size_t i) {
    std::string input = m.Mutate(m.Pick(seeds), seeds);
    if (m.OneIn(3)) FixCrcs(input);
    const sensor::DecoderOptions& options = option_sets[i % option_sets.size()];
    Verdict verdict;
    CheckDecoderInput(input, options, m, torn_split, verdict);
    if (!::testing::Test::HasFailure()) CheckDecoderOptions(m);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "frame_decoder input #" << i << " (options #" << i % option_sets.size()
                    << "): " << Printable(input);
    }
    return verdict;
  });
  torn_split.Report();
  ExpectExercised(counts);
}

// =============================================================================================
// 2. Signed manifests
// =============================================================================================

// RFC 8032 section 7.1, TEST 1: a fixed key, so signatures (Ed25519 is deterministic) and thus
// the whole run are reproducible.
constexpr char kRfcSecretKeyHex[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
constexpr char kRfcPublicKeyHex[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
constexpr const char* kDigest = testing::kSmallManifestDigest;

std::string Unhex(std::string_view hex) {
  auto bytes = HexDecode(hex);
  EXPECT_TRUE(bytes.has_value()) << hex;
  return bytes.value_or("");
}

// The manifest of common_test.cc's canonical-encoding test (testing::SmallManifest), and variants with more map entries,
// values holding spaces and newlines, and longer repeated fields.
std::vector<v1::Manifest> UnsignedManifestSeeds() {
  const v1::Manifest small = testing::SmallManifest();

  v1::Manifest minimal;
  minimal.set_model("m");
  minimal.set_version("0.0.1");
  minimal.set_format("onnx");
  minimal.set_digest(kDigest);
  minimal.set_size_bytes(1);

  v1::Manifest maps = small;
  (*maps.mutable_params())["a"] = "b";
  (*maps.mutable_params())["c"] = "d";
  (*maps.mutable_params())["note"] = "two words\nand a line";
  (*maps.mutable_labels())["zone"] = "eu-west";
  maps.add_class_labels("lying full");
  maps.mutable_lineage()->set_ci_run_url("https://ci.example/run/42");
  maps.set_quantization("ptq-static-qnnpack");

  v1::Manifest wide = small;
  for (int i = 0; i < 16; ++i) {
    wide.mutable_self_test()->add_reference_input(static_cast<float>(i) / 7.0f);
  }
  wide.mutable_input_spec()->add_shape(4);
  wide.mutable_input_spec()->add_mean(-0.5);
  wide.mutable_input_spec()->add_std(2.0);
  wide.set_version_counter(std::numeric_limits<uint64_t>::max());

  return {small, minimal, maps, wide};
}

std::string SerializeDeterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    EXPECT_TRUE(m.SerializeToCodedStream(&coded));
  }
  return out;
}

// The manifest without what the signature does not cover: the signature bytes, unknown fields,
// and the presence of empty sub-messages (the canonical encoding cannot tell them apart).
v1::Manifest SignedPart(const v1::Manifest& m) {
  v1::Manifest p = m;
  p.DiscardUnknownFields();
  p.mutable_signature()->clear_signature();
  if (p.signature().ByteSizeLong() == 0) p.clear_signature();
  if (p.input_spec().ByteSizeLong() == 0) p.clear_input_spec();
  if (p.lineage().ByteSizeLong() == 0) p.clear_lineage();
  if (p.self_test().ByteSizeLong() == 0) p.clear_self_test();
  return p;
}

// Field by field (so -0.0 equals 0.0 and a NaN equals nothing): did a signed field change?
bool SignedFieldsDiffer(const v1::Manifest& a, const v1::Manifest& b) {
  return !google::protobuf::util::MessageDifferencer::Equals(SignedPart(a), SignedPart(b));
}

// The key-injection bug (see ManifestSignatureRegression below): `m` differs from `origin` only
// in its maps, and one of its map keys holds the canonical encoding's own separators (a space or
// a newline).
bool IsMapKeyInjection(const v1::Manifest& origin, const v1::Manifest& m) {
  auto bad = [](const std::string& k) { return k.find_first_of(" \n") != std::string::npos; };
  bool separator = false;
  for (const auto& [k, v] : m.params()) separator |= bad(k);
  for (const auto& [k, v] : m.labels()) separator |= bad(k);
  for (const auto& [k, v] : m.metrics()) separator |= bad(k);
  v1::Manifest a = SignedPart(origin), b = SignedPart(m);
  for (v1::Manifest* x : {&a, &b}) {
    x->clear_params();
    x->clear_labels();
    x->clear_metrics();
  }
  return separator && google::protobuf::util::MessageDifferencer::Equals(a, b);
}

template <typename Map>
std::vector<std::string> SortedKeys(const Map& map) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : map) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  return keys;
}

// Structure-aware edits of a manifest's fields. Some keep every signed field (re-inserting maps
// in another order, unknown fields, empty sub-messages) and must keep verifying; the rest change
// something the signature covers and must break it.
class ManifestMutator {
 public:
  ManifestMutator(Mutator& m, const std::vector<std::string>& signatures)
      : m_(m), signatures_(signatures) {}

  void Mutate(v1::Manifest& manifest) {
    const size_t edits = 1 + m_.Below(3);
    for (size_t i = 0; i < edits; ++i) MutateOnce(manifest);
  }

 private:
  std::string Text(const std::string& s) { return m_.Mutate(s, texts_); }

  double InterestingDouble(double v) {
    const double choices[] = {0.0,
                              -0.0,
                              std::nan(""),
                              -std::nan(""),
                              std::numeric_limits<double>::infinity(),
                              -std::numeric_limits<double>::infinity(),
                              std::numeric_limits<double>::denorm_min(),
                              std::numeric_limits<double>::max(),
                              std::numeric_limits<double>::lowest(),
                              std::nextafter(v, 1e300),
                              v * 2,
                              -v,
                              static_cast<double>(static_cast<float>(v))};
    return choices[m_.Below(std::size(choices))];
  }
  int64_t InterestingInt() {
    const int64_t choices[] = {0, 1, -1, 16, 1 << 20, (1 << 20) + 1, std::numeric_limits<int64_t>::max(),
                               std::numeric_limits<int64_t>::min()};
    return choices[m_.Below(std::size(choices))];
  }

  template <typename Map>
  void MutateStringMap(Map& map, const std::string& prefix) {
    const std::vector<std::string> keys = SortedKeys(map);
    switch (m_.Below(5)) {
      case 0:
        map[Text(keys.empty() ? "k" : m_.Pick(keys))] = Text("v");
        break;
      case 1:
        if (!keys.empty()) map.erase(m_.Pick(keys));
        break;
      case 2:
        if (!keys.empty()) {
          std::string& v = map[m_.Pick(keys)];
          v = Text(v);
        }
        break;
      case 3:
        if (!keys.empty()) {  // rename a key
          const std::string k = m_.Pick(keys);
          const std::string v = map[k];
          map.erase(k);
          map[Text(k)] = v;
        }
        break;
      default:
        // Two neighbouring entries become one whose key spells out the first entry's record:
        // k1 -> v1, k2 -> v2 becomes "k1 <len(v1)> v1\n<prefix>.k2" -> v2.
        if (keys.size() >= 2) {
          const size_t i = m_.Below(keys.size() - 1);
          const std::string v1 = map[keys[i]], v2 = map[keys[i + 1]];
          const std::string merged =
              keys[i] + " " + std::to_string(v1.size()) + " " + v1 + "\n" + prefix + "." + keys[i + 1];
          map.erase(keys[i]);
          map.erase(keys[i + 1]);
          map[merged] = v2;
        }
        break;
    }
  }

  // Rebuilds every map with the entries inserted in reverse key order: nothing signed changes.
  static void ReinsertMaps(v1::Manifest& manifest) {
    auto reinsert = [](auto& map) {
      std::vector<std::pair<std::string, typename std::decay_t<decltype(map)>::mapped_type>> entries;
      for (const auto& [k, v] : map) entries.emplace_back(k, v);
      std::sort(entries.begin(), entries.end(),
                [](const auto& a, const auto& b) { return a.first > b.first; });
      map.clear();
      for (const auto& [k, v] : entries) map[k] = v;
    };
    reinsert(*manifest.mutable_metrics());
    reinsert(*manifest.mutable_params());
    reinsert(*manifest.mutable_labels());
  }

  void MutateOnce(v1::Manifest& mf) {
    auto* in = mf.mutable_input_spec();
    auto* test = mf.mutable_self_test();
    switch (m_.Below(14)) {
      case 0: {  // a string field
        std::string* fields[] = {mf.mutable_model(),          mf.mutable_version(),
                                 mf.mutable_format(),         mf.mutable_quantization(),
                                 mf.mutable_digest(),         in->mutable_dtype(),
                                 in->mutable_layout(),        mf.mutable_lineage()->mutable_git_commit(),
                                 mf.mutable_lineage()->mutable_ci_run_id(),
                                 mf.mutable_lineage()->mutable_ci_run_url(),
                                 mf.mutable_lineage()->mutable_parent_version(),
                                 mf.mutable_lineage()->mutable_dataset(),
                                 mf.mutable_signature()->mutable_key_id()};
        std::string* f = fields[m_.Below(std::size(fields))];
        *f = Text(*f);
        break;
      }
      case 1: {  // an integer field
        const uint64_t choices[] = {0, 1, mf.size_bytes() + 1, (uint64_t{1} << 40) + 1,
                                    std::numeric_limits<uint64_t>::max()};
        const uint64_t v = choices[m_.Below(std::size(choices))];
        if (m_.OneIn(2)) {
          mf.set_size_bytes(v);
        } else {
          mf.set_version_counter(v);
        }
        break;
      }
      case 2:  // a double
        if (m_.OneIn(2)) {
          test->set_tolerance(InterestingDouble(test->tolerance()));
        } else {
          test->set_latency_budget_ms(InterestingDouble(test->latency_budget_ms()));
        }
        break;
      case 3: {  // input_spec.mean / std
        auto* list = m_.OneIn(2) ? in->mutable_mean() : in->mutable_std();
        if (list->empty() || m_.OneIn(3)) {
          list->Add(InterestingDouble(1.0));
        } else if (m_.OneIn(3)) {
          list->RemoveLast();
        } else {
          double* v = list->Mutable(static_cast<int>(m_.Below(static_cast<size_t>(list->size()))));
          *v = InterestingDouble(*v);
        }
        break;
      }
      case 4: {  // self_test reference floats
        auto* list = m_.OneIn(2) ? test->mutable_reference_input() : test->mutable_reference_output();
        if (list->empty() || m_.OneIn(3)) {
          list->Add(static_cast<float>(InterestingDouble(0.5)));
        } else if (m_.OneIn(3)) {
          list->RemoveLast();
        } else {
          float* v = list->Mutable(static_cast<int>(m_.Below(static_cast<size_t>(list->size()))));
          *v = static_cast<float>(InterestingDouble(*v));
        }
        break;
      }
      case 5:  // shape
        if (in->shape().empty() || m_.OneIn(3)) {
          in->add_shape(InterestingInt());
        } else if (m_.OneIn(2)) {
          in->mutable_shape()->RemoveLast();
        } else {
          in->set_shape(static_cast<int>(m_.Below(static_cast<size_t>(in->shape_size()))), InterestingInt());
        }
        break;
      case 6: {  // class labels
        auto* labels = mf.mutable_class_labels();
        if (labels->empty() || m_.OneIn(3)) {
          mf.add_class_labels(Text("label"));
        } else if (m_.OneIn(3)) {
          labels->RemoveLast();
        } else if (m_.OneIn(2) && labels->size() >= 2) {
          labels->SwapElements(0, labels->size() - 1);
        } else {
          std::string* l = labels->Mutable(static_cast<int>(m_.Below(static_cast<size_t>(labels->size()))));
          *l = Text(*l);
        }
        break;
      }
      case 7: {  // metrics
        auto& metrics = *mf.mutable_metrics();
        const std::vector<std::string> keys = SortedKeys(metrics);
        if (keys.empty() || m_.OneIn(3)) {
          metrics[Text("metric")] = InterestingDouble(0.5);
        } else if (m_.OneIn(2)) {
          metrics.erase(m_.Pick(keys));
        } else {
          const std::string& k = m_.Pick(keys);
          metrics[k] = InterestingDouble(metrics[k]);
        }
        break;
      }
      case 8:
        MutateStringMap(*mf.mutable_params(), "params");
        break;
      case 9:
        MutateStringMap(*mf.mutable_labels(), "labels");
        break;
      case 10: {  // the signature bytes
        std::string* sig = mf.mutable_signature()->mutable_signature();
        switch (m_.Below(5)) {
          case 0: *sig = Text(*sig); break;
          case 1: if (!sig->empty()) sig->pop_back(); break;
          case 2: sig->push_back('\0'); break;
          case 3: sig->clear(); break;
          default: *sig = m_.Pick(signatures_); break;  // another manifest's signature
        }
        break;
      }
      case 11:  // no signed change: maps in another order
        ReinsertMaps(mf);
        break;
      case 12:  // no signed change: unknown fields
        mf.GetReflection()->MutableUnknownFields(&mf)->AddVarint(1000 + static_cast<int>(m_.Below(50)),
                                                                  m_.Below(1u << 20));
        break;
      default:  // no signed change: a sub-message made present (or left as it was)
        if (m_.OneIn(2)) {
          mf.mutable_lineage();
        } else {
          mf.mutable_self_test();
        }
        break;
    }
  }

  Mutator& m_;
  const std::vector<std::string>& signatures_;
  const std::vector<std::string> texts_ = {"mat-detector", "1.2.0", "rev3", "labels.", "params.",
                                           " 1 ", "\n", "0.001"};
};

// Keeps protobuf's parser from logging every invalid UTF-8 string it rejects.
class QuietProtobufLogs {
 public:
  QuietProtobufLogs() : previous_(google::protobuf::SetLogHandler(nullptr)) {}
  ~QuietProtobufLogs() { google::protobuf::SetLogHandler(previous_); }

 private:
  google::protobuf::LogHandler* previous_;
};

struct SignedSeed {
  v1::Manifest manifest;
  std::string signed_bytes;  // SerializeDeterministic(SignedPart(manifest))
};

// What the manifest loop saw besides accepted/rejected.
struct ManifestFindings {
  FixedBug key_injection{"map key injection into the canonical encoding"};
  FixedBug wrong_code{"wrong-length signature gives INVALID_ARGUMENT"};
  size_t unparseable = 0;        // protobuf's parser refused the bytes; nothing of ours ran
  size_t passed_validation = 0;  // ValidateManifest said OK
};

void CheckManifestInput(const v1::Manifest& m, const std::vector<SignedSeed>& seeds,
                        const std::string& public_key, std::string_view input,
                        ManifestFindings& findings, Verdict& verdict) {
  // The canonical encoding of anything starts with its version line and ends with the key id.
  const std::string canonical = CanonicalManifestBytes(m);
  ASSERT_TRUE(canonical.starts_with("modelfleet-manifest-v1\nmodel ")) << Printable(canonical);
  ASSERT_TRUE(canonical.ends_with("signature.key_id " + std::to_string(m.signature().key_id().size()) +
                                  " " + m.signature().key_id() + "\n"));

  // Validation never crashes and names a field under "manifest" when it refuses.
  const Status valid = ValidateManifest(m, "manifest");
  findings.passed_validation += valid.ok() ? 1 : 0;
  if (!valid.ok()) {
    ASSERT_EQ(valid.code(), StatusCode::kInvalidArgument) << valid.ToString();
    ASSERT_TRUE(valid.field().starts_with("manifest")) << valid.ToString();
    ASSERT_FALSE(valid.message().empty());
  }

  // Which seed's signature does the input carry, if any?
  const SignedSeed* origin = nullptr;
  for (const SignedSeed& s : seeds) {
    if (s.manifest.signature().signature() == m.signature().signature()) origin = &s;
  }

  const Status verified = VerifyManifestSignature(m, public_key);
  if (verified.ok()) {
    verdict.accepted = true;
    ASSERT_NE(origin, nullptr) << "a signature that no seed carries verified";
    if (SignedFieldsDiffer(origin->manifest, m)) {
      ASSERT_TRUE(IsMapKeyInjection(origin->manifest, m))
          << "a manifest whose signed fields changed still verifies: "
          << m.ShortDebugString();
      findings.key_injection.Hit(input);
    }
    return;
  }
  verdict.rejected = true;
  ASSERT_FALSE(verified.message().empty());
  // manifest.h: "PERMISSION_DENIED if not".
  const size_t sig_size = m.signature().signature().size();
  if (verified.code() == StatusCode::kInvalidArgument && sig_size != 0 && sig_size != 64) {
    findings.wrong_code.Hit(input);  // see the regression test
  } else {
    ASSERT_EQ(verified.code(), StatusCode::kPermissionDenied) << verified.ToString();
  }
  // The converse: nothing signed changed and the seed's signature is intact, so it must have
  // verified (the canonical encoding is deterministic and ignores what it does not cover).
  if (origin != nullptr) {
    ASSERT_NE(SerializeDeterministic(SignedPart(m)), origin->signed_bytes)
        << "the signed content is byte-identical to a seed's but does not verify: "
        << verified.ToString();
  }
}

TEST(SignedManifestFuzz, NoChangeToASignedFieldKeepsTheSignatureValid) {
  QuietProtobufLogs quiet;
  const std::string secret_key = Unhex(kRfcSecretKeyHex);
  const std::string public_key = Unhex(kRfcPublicKeyHex);

  std::vector<SignedSeed> seeds;
  std::vector<std::string> serialized, signatures;
  int n = 0;
  for (v1::Manifest m : UnsignedManifestSeeds()) {
    ASSERT_TRUE(SignManifest(m, "ci-key-" + std::to_string(++n), secret_key).ok());
    ASSERT_TRUE(VerifyManifestSignature(m, public_key).ok());
    ASSERT_TRUE(ValidateManifest(m, "manifest").ok());
    seeds.push_back({m, SerializeDeterministic(SignedPart(m))});
    serialized.push_back(SerializeDeterministic(m));
    signatures.push_back(m.signature().signature());
  }

  std::mt19937 rng(0x3a11f357u);
  // Protobuf wire bytes worth inserting: tags of length-delimited fields 1..15, varint
  // continuation bytes, a 64-byte length, a map entry's tags.
  Mutator bytes_mutator(rng,
                        {"\x0a"s, "\x12"s, "\x42"s, "\x4a"s, "\x52"s, "\x5a"s, "\x7a"s, "\x30"s,
                         "\x70"s, "\x80"s, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s, "\x40"s,
                         "\x0a\x01 "s, "\x12\x01\n"s, "\x00"s},
                        8192);
  Mutator text_mutator(rng, CommonTokens(), 4096);
  ManifestMutator field_mutator(text_mutator, signatures);

  ManifestFindings findings;
  const LoopCounts counts = RunFuzzLoop("manifest", 20000, [&](size_t i) {
    const size_t seed = bytes_mutator.Below(seeds.size());
    v1::Manifest m;
    std::string input;
    if (i % 2 == 0) {  // mutate the wire bytes
      input = bytes_mutator.Mutate(serialized[seed], serialized);
      if (!m.ParseFromString(input)) {
        ++findings.unparseable;
        return Verdict{};
      }
    } else {  // mutate fields
      m = seeds[seed].manifest;
      field_mutator.Mutate(m);
      input = m.ShortDebugString();
    }
    Verdict verdict;
    CheckManifestInput(m, seeds, public_key, input, findings, verdict);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "manifest input #" << i << " (seed " << seed << "): " << Printable(input);
    }
    return verdict;
  });
  std::cout << "[ fuzz     ] manifest: " << findings.unparseable << " not parseable as protobuf, "
            << findings.passed_validation << " passed ValidateManifest" << std::endl;
  findings.key_injection.Report();
  findings.wrong_code.Report();
  ExpectExercised(counts);
}

// =============================================================================================
// 3. ParseVersionFilter
// =============================================================================================

using registry::FilterOp;
using registry::FilterTerm;

std::string_view FilterOpText(FilterOp op) {
  switch (op) {
    case FilterOp::kEq: return "=";
    case FilterOp::kNe: return "!=";
    case FilterOp::kLt: return "<";
    case FilterOp::kLe: return "<=";
    case FilterOp::kGt: return ">";
    case FilterOp::kGe: return ">=";
  }
  return "?";
}

// The terms written back in the grammar of version_filter.h.
std::string FilterText(const std::vector<FilterTerm>& terms) {
  std::string out;
  for (const FilterTerm& t : terms) {
    if (!out.empty()) out += " AND ";
    switch (t.field) {
      case FilterTerm::Field::kMetric: out += "metrics." + t.key; break;
      case FilterTerm::Field::kLabel: out += "labels." + t.key; break;
      case FilterTerm::Field::kAlias: out += "alias"; break;
      case FilterTerm::Field::kFormat: out += "format"; break;
      case FilterTerm::Field::kVersion: out += "version"; break;
      case FilterTerm::Field::kState: out += "state"; break;
    }
    out += " " + std::string(FilterOpText(t.op)) + " ";
    if (t.field == FilterTerm::Field::kMetric) {
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof buf, t.number);  // shortest round trip
      out.append(buf, r.ptr);
    } else if (t.field == FilterTerm::Field::kState) {
      out += t.text;
    } else {
      out += Quote(t.text);
    }
  }
  return out;
}

bool SameFilterTerm(const FilterTerm& a, const FilterTerm& b) {
  return a.field == b.field && a.key == b.key && a.op == b.op && a.text == b.text &&
         std::bit_cast<uint64_t>(a.number) == std::bit_cast<uint64_t>(b.number);
}

void CheckFilterInput(const std::string& input, Verdict& verdict) {
  auto terms = registry::ParseVersionFilter(input);
  if (!terms) {
    verdict.rejected = true;
    ExpectGrammarError(terms.error(), input, "filter", {"is longer than"});
    return;
  }
  verdict.accepted = true;
  ASSERT_LE(input.size(), registry::kMaxFilterBytes);
  ASSERT_LE(terms->size(), registry::kMaxFilterTerms);
  for (const FilterTerm& t : *terms) {
    const bool keyed = t.field == FilterTerm::Field::kMetric || t.field == FilterTerm::Field::kLabel;
    ASSERT_EQ(IsKey(t.key), keyed) << "key '" << t.key << "'";
    if (t.field == FilterTerm::Field::kMetric) {
      ASSERT_TRUE(std::isfinite(t.number)) << t.number;
      ASSERT_TRUE(t.text.empty());
    } else {
      ASSERT_TRUE(t.op == FilterOp::kEq || t.op == FilterOp::kNe) << FilterOpText(t.op);
      ASSERT_EQ(t.number, 0.0);
    }
    if (t.field == FilterTerm::Field::kState) {
      ASSERT_TRUE(t.text == "READY" || t.text == "ARCHIVED") << t.text;
    }
  }
  // Written back in the grammar, the terms parse to themselves.
  const std::string text = FilterText(*terms);
  if (text.size() > registry::kMaxFilterBytes) return;  // canonical spacing made it too long
  auto again = registry::ParseVersionFilter(text);
  ASSERT_TRUE(again.has_value()) << Printable(text) << ": " << again.error().ToString();
  ASSERT_EQ(again->size(), terms->size()) << Printable(text);
  for (size_t i = 0; i < terms->size(); ++i) {
    ASSERT_TRUE(SameFilterTerm((*again)[i], (*terms)[i])) << "term " << i << " of " << Printable(text);
  }
}

TEST(VersionFilterFuzz, RejectionsNameAColumnAndAcceptedFiltersReparse) {
  // Filters from version_filter_test.cc.
  std::string many_terms = "metrics.m0 > 0";
  for (int i = 1; i < static_cast<int>(registry::kMaxFilterTerms); ++i) {
    many_terms += " AND metrics.m" + std::to_string(i) + " > " + std::to_string(i);
  }
  const std::vector<std::string> seeds = {
      "",
      "metrics.accuracy >= 0.9",
      "metrics.a!=1",
      "metrics.latency_ms < 2.5E2",
      "metrics.top-1.acc_v2 >= -0.125",
      R"(labels.hw = "rev3")",
      R"(alias != "canary")",
      R"(format = "torchscript-int8")",
      R"(version = "1.2.3-rc.1+b5")",
      R"(labels.note = "a AND b = 3")",
      "state = READY",
      "state != \"ARCHIVED\"",
      R"(labels.note = "say \"hi\" \\ ok")",
      R"(labels.path = "\\" AND alias = "\"")",
      "metrics.acc >= 0.9 and labels.hw = \"rev3\" AnD state = READY",
      "\t metrics.a>=1\n AND\tlabels.b=\"x y\"  AND alias  =  \"prod\"\n",
      many_terms,
  };
  std::vector<std::string> tokens = CommonTokens();
  for (const char* t : {"metrics.", "labels.", "alias", "format", "version", "state", "READY",
                        "ARCHIVED", "metrics.acc", "labels.hw", " AND ", "\"\""}) {
    tokens.push_back(t);
  }
  std::mt19937 rng(0xf1173e5u);
  Mutator m(rng, tokens, 2 * registry::kMaxFilterBytes);

  std::vector<std::string> corpus = seeds;  // grows with accepted inputs, to explore deeper
  const LoopCounts counts = RunFuzzLoop("version_filter", 50000, [&](size_t i) {
    const std::string input = m.Mutate(m.Pick(corpus), seeds);
    Verdict verdict;
    CheckFilterInput(input, verdict);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "version_filter input #" << i << ": " << Printable(input);
    }
    if (verdict.accepted && corpus.size() < 512) corpus.push_back(input);
    return verdict;
  });
  ExpectExercised(counts);
}

// =============================================================================================
// 4. DeviceSelector
// =============================================================================================

using fleet::DeviceSelector;
using fleet::SelectorKind;
using SelectorField = DeviceSelector::Field;
using SelectorOp = DeviceSelector::Op;

bool IsFilterOnly(SelectorField f) {
  return f == SelectorField::kAdmission || f == SelectorField::kOfflineFor ||
         f == SelectorField::kRunning || f == SelectorField::kDeploymentStep;
}
bool IsNumeric(SelectorField f) {
  return f == SelectorField::kSensorRows || f == SelectorField::kSensorCols ||
         f == SelectorField::kOfflineFor;
}

std::string_view SelectorFieldText(SelectorField f) {
  switch (f) {
    case SelectorField::kSite: return "site";
    case SelectorField::kHardwareRevision: return "hardware_revision";
    case SelectorField::kFirmwareVersion: return "firmware_version";
    case SelectorField::kLabel: return "labels.";
    case SelectorField::kSensorRows: return "sensor_rows";
    case SelectorField::kSensorCols: return "sensor_cols";
    case SelectorField::kAdmission: return "admission";
    case SelectorField::kOfflineFor: return "offline_for";
    case SelectorField::kRunning: return "running";
    case SelectorField::kDeploymentStep: return "deployment_step";
  }
  return "?";
}

std::string_view SelectorOpText(SelectorOp op) {
  switch (op) {
    case SelectorOp::kEq: return "=";
    case SelectorOp::kNe: return "!=";
    case SelectorOp::kLt: return "<";
    case SelectorOp::kLe: return "<=";
    case SelectorOp::kGt: return ">";
    case SelectorOp::kGe: return ">=";
    case SelectorOp::kIn: return "in";
    case SelectorOp::kNotIn: return "not in";
  }
  return "?";
}

// One term written back in the grammar of device_selector.h.
std::string SelectorTermText(const DeviceSelector::Term& t) {
  std::string out(SelectorFieldText(t.field));
  if (t.field == SelectorField::kLabel) out += t.key;
  out += " " + std::string(SelectorOpText(t.op)) + " ";
  if (IsNumeric(t.field)) return out + std::to_string(t.number);
  if (t.field == SelectorField::kRunning) {
    return out + Quote(t.values.size() == 2 ? t.values[0] + "@" + t.values[1] : "?");
  }
  if (t.op == SelectorOp::kIn || t.op == SelectorOp::kNotIn) {
    out += "(";
    for (size_t i = 0; i < t.values.size(); ++i) out += (i > 0 ? ", " : "") + Quote(t.values[i]);
    return out + ")";
  }
  return out + Quote(t.values.empty() ? "" : t.values[0]);
}

std::string SelectorText(const DeviceSelector& s) {
  if (s.MatchesEverything()) return "*";
  std::string out;
  for (const DeviceSelector::Term& t : s.terms()) {
    if (!out.empty()) out += " AND ";
    out += SelectorTermText(t);
  }
  return out;
}

bool SameSelectorTerms(const std::vector<DeviceSelector::Term>& a,
                       const std::vector<DeviceSelector::Term>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].field != b[i].field || a[i].op != b[i].op || a[i].key != b[i].key ||
        a[i].values != b[i].values || a[i].number != b[i].number) {
      return false;
    }
  }
  return true;
}

// The parameters ToSql documents binding for the terms, in order: a label's key before its
// values, the number of a numeric field, model then version for running, else the values.
std::vector<db::Param> ExpectedParams(const std::vector<DeviceSelector::Term>& terms) {
  std::vector<db::Param> out;
  for (const DeviceSelector::Term& t : terms) {
    if (t.field == SelectorField::kLabel) out.emplace_back(t.key);
    if (IsNumeric(t.field)) {
      out.emplace_back(t.number);
      continue;
    }
    for (const std::string& v : t.values) out.emplace_back(v);
  }
  return out;
}

bool SameParam(const db::Param& a, const db::Param& b) {
  if (a.index() != b.index()) return false;
  if (const auto* s = std::get_if<std::string>(&a)) return *s == std::get<std::string>(b);
  if (const auto* i = std::get_if<int64_t>(&a)) return *i == std::get<int64_t>(b);
  return false;  // ToSql binds only strings and integers
}

// ToSql: "TRUE" for "*", else one parenthesised expression whose only variable parts are
// $N placeholders numbered on from the parameters already there, one per documented value; no
// quote, non-ASCII or control byte, so no value leaked into the SQL text.
void CheckToSql(const DeviceSelector& s, size_t already_bound) {
  std::vector<db::Param> params(already_bound, db::Param{int64_t{-1}});
  const std::string sql = s.ToSql(params);
  if (s.MatchesEverything()) {
    ASSERT_EQ(sql, "TRUE");
    ASSERT_EQ(params.size(), already_bound);
    return;
  }
  const std::vector<db::Param> want = ExpectedParams(s.terms());
  ASSERT_EQ(params.size(), already_bound + want.size()) << sql;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(SameParam(params[already_bound + i], want[i])) << "parameter $" << already_bound + i + 1;
  }
  ASSERT_TRUE(sql.starts_with("(") && sql.ends_with(")")) << sql;
  int depth = 0;
  std::vector<bool> used(params.size() + 1, false);
  for (size_t i = 0; i < sql.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(sql[i]);
    ASSERT_TRUE(c >= 0x20 && c < 0x7f && c != '\'' && c != '"' && c != ';' && c != '\\')
        << "byte " << int{c} << " in the SQL text: " << Printable(sql);
    if (c == '(') ++depth;
    if (c == ')') {
      ASSERT_GE(--depth, 0) << sql;
    }
    if (c == '$') {
      size_t n = 0;
      const auto r = std::from_chars(sql.data() + i + 1, sql.data() + sql.size(), n);
      ASSERT_TRUE(r.ec == std::errc()) << sql;
      ASSERT_GT(n, already_bound) << sql;
      ASSERT_LE(n, params.size()) << sql;
      used[n] = true;
    }
  }
  ASSERT_EQ(depth, 0) << sql;
  for (size_t n = already_bound + 1; n <= params.size(); ++n) {
    ASSERT_TRUE(used[n]) << "$" << n << " unused: " << sql;
  }
}

// Devices to match against: fixed ones, and one built from the selector's own operands so that
// terms also get to match.
std::vector<v1::DeviceAttributes> DevicesFor(const DeviceSelector& s) {
  std::vector<v1::DeviceAttributes> devices(3);
  devices[1].set_site("berlin");
  devices[1].set_hardware_revision("2");
  devices[1].set_firmware_version("1.0.3");
  devices[1].set_sensor_rows(16);
  devices[1].set_sensor_cols(16);
  (*devices[1].mutable_labels())["room"] = "a";
  (*devices[1].mutable_labels())["k"] = "x";
  (*devices[1].mutable_labels())["note"] = "\\";
  devices[2].set_site("paris");
  devices[2].set_hardware_revision("04");
  devices[2].set_sensor_cols(std::numeric_limits<uint32_t>::max());
  (*devices[2].mutable_labels())["Zone-1.sub_key"] = "x";
  v1::DeviceAttributes& own = devices.emplace_back();
  for (const DeviceSelector::Term& t : s.terms()) {
    const std::string v = t.values.empty() ? "" : t.values.front();
    const auto n = static_cast<uint32_t>(
        std::clamp<int64_t>(t.number, 0, std::numeric_limits<uint32_t>::max()));
    switch (t.field) {
      case SelectorField::kSite: own.set_site(v); break;
      case SelectorField::kHardwareRevision: own.set_hardware_revision(v); break;
      case SelectorField::kFirmwareVersion: own.set_firmware_version(v); break;
      case SelectorField::kLabel: (*own.mutable_labels())[t.key] = v; break;
      case SelectorField::kSensorRows: own.set_sensor_rows(n); break;
      case SelectorField::kSensorCols: own.set_sensor_cols(n); break;
      default: break;
    }
  }
  return devices;
}

Expected<DeviceSelector> ParseSelector(std::string_view text, SelectorKind kind) {
  return DeviceSelector::Parse(text, kind, kind == SelectorKind::kDeviceFilter ? "filter" : "target");
}

void CheckParsedSelector(const std::string& input, const DeviceSelector& s, SelectorKind kind,
                         size_t already_bound) {
  ASSERT_EQ(s.text(), input);
  ASSERT_LE(input.size(), fleet::kMaxSelectorBytes);
  ASSERT_EQ(s.MatchesEverything(), s.terms().empty()) << "a selector with no terms that is not '*'";
  ASSERT_LE(s.terms().size(), fleet::kMaxSelectorTerms);
  bool filter_only = false;
  for (const DeviceSelector::Term& t : s.terms()) {
    filter_only |= IsFilterOnly(t.field);
    if (kind == SelectorKind::kRolloutTarget) {
      ASSERT_FALSE(IsFilterOnly(t.field)) << "a filter-only field in a target";
    }
    ASSERT_EQ(IsKey(t.key), t.field == SelectorField::kLabel) << "key '" << t.key << "'";
    if (IsNumeric(t.field)) {
      ASSERT_TRUE(t.values.empty());
      ASSERT_TRUE(t.op != SelectorOp::kIn && t.op != SelectorOp::kNotIn);
      if (t.field == SelectorField::kOfflineFor) {
        ASSERT_TRUE(t.op != SelectorOp::kEq && t.op != SelectorOp::kNe);
        ASSERT_GE(t.number, 0);
        ASSERT_LE(t.number, fleet::kMaxOfflineForSeconds);
      }
      continue;
    }
    ASSERT_EQ(t.number, 0);
    ASSERT_TRUE(t.op == SelectorOp::kEq || t.op == SelectorOp::kNe || t.op == SelectorOp::kIn ||
                t.op == SelectorOp::kNotIn);
    if (t.field == SelectorField::kRunning) {
      ASSERT_EQ(t.values.size(), 2u);
      ASSERT_TRUE(t.op == SelectorOp::kEq || t.op == SelectorOp::kNe);
      ASSERT_FALSE(t.values[0].empty() || t.values[1].empty());
      ASSERT_EQ((t.values[0] + t.values[1]).find('@'), std::string::npos);
    } else if (t.op == SelectorOp::kIn || t.op == SelectorOp::kNotIn) {
      ASSERT_GE(t.values.size(), 1u);
      ASSERT_LE(t.values.size(), fleet::kMaxSelectorListValues);
    } else {
      ASSERT_EQ(t.values.size(), 1u);
    }
  }

  CheckToSql(s, already_bound);

  // Written back in the grammar, the selector parses to the same terms and behaves the same.
  const std::string text = SelectorText(s);
  std::optional<DeviceSelector> again;
  if (text.size() <= fleet::kMaxSelectorBytes) {
    auto parsed = ParseSelector(text, kind);
    ASSERT_TRUE(parsed.has_value()) << Printable(text) << ": " << parsed.error().ToString();
    ASSERT_TRUE(SameSelectorTerms(parsed->terms(), s.terms())) << Printable(text);
    again = std::move(*parsed);
  }
  // Matches is the AND of its terms; filter-only terms never match in memory.
  std::vector<DeviceSelector> single_terms;
  for (const DeviceSelector::Term& t : s.terms()) {
    const std::string one_text = SelectorTermText(t);
    if (one_text.size() > fleet::kMaxSelectorBytes) break;  // aliases and quotes can grow it
    auto one = ParseSelector(one_text, kind);
    ASSERT_TRUE(one.has_value()) << Printable(one_text) << ": " << one.error().ToString();
    single_terms.push_back(std::move(*one));
  }
  const bool by_terms = single_terms.size() == s.terms().size();
  for (const v1::DeviceAttributes& device : DevicesFor(s)) {
    const bool match = s.Matches(device);
    if (filter_only) {
      ASSERT_FALSE(match) << "a filter-only term matched in memory";
    }
    if (again) {
      ASSERT_EQ(again->Matches(device), match) << Printable(text);
    }
    if (by_terms && !s.MatchesEverything()) {
      bool all = true;
      for (const DeviceSelector& one : single_terms) all = all && one.Matches(device);
      ASSERT_EQ(all, match) << device.ShortDebugString();
    }
  }
}

void CheckSelectorInput(const std::string& input, size_t already_bound, Verdict& target_verdict,
                        Verdict& filter_verdict) {
  const std::vector<std::string_view> columnless = {"is longer than", "is not valid UTF-8", "is empty"};
  auto target = ParseSelector(input, SelectorKind::kRolloutTarget);
  auto filter = ParseSelector(input, SelectorKind::kDeviceFilter);
  target_verdict = {target.has_value(), !target.has_value()};
  filter_verdict = {filter.has_value(), !filter.has_value()};
  if (target) {
    CheckParsedSelector(input, *target, SelectorKind::kRolloutTarget, already_bound);
  } else {
    ExpectGrammarError(target.error(), input, "target", columnless);
  }
  if (::testing::Test::HasFatalFailure()) return;
  if (filter) {
    CheckParsedSelector(input, *filter, SelectorKind::kDeviceFilter, already_bound);
  } else {
    ExpectGrammarError(filter.error(), input, "filter", columnless);
  }
  if (::testing::Test::HasFatalFailure()) return;

  // A filter is a target plus four fields: the same text parses the same way in both unless it
  // uses one of them.
  if (target) {
    ASSERT_TRUE(filter.has_value()) << "a valid target is not a valid filter: " << filter.error().ToString();
    ASSERT_EQ(target->MatchesEverything(), filter->MatchesEverything());
    ASSERT_TRUE(SameSelectorTerms(target->terms(), filter->terms()));
  } else if (filter) {
    const bool uses_filter_only = std::any_of(filter->terms().begin(), filter->terms().end(),
                                              [](const auto& t) { return IsFilterOnly(t.field); });
    ASSERT_TRUE(uses_filter_only) << "a filter without filter-only fields is not a valid target: "
                                  << target.error().ToString();
  }
}

TEST(DeviceSelectorFuzz, BothKindsRejectWithAColumnOrParseMatchAndBindConsistently) {
  // Selectors from device_selector_test.cc.
  const std::vector<std::string> seeds = {
      "*",
      "  *\t\n",
      "site = \"berlin\"",
      "site!=\"\"",
      "hardware_revision = \"rev-2\"",
      "hw_rev in (2, \"3\", 04)",
      "firmware not in ( \"1.0\" )",
      "site Not In (\"a\",\"b\")",
      "labels.room not\tin (\"a\")",
      "labels.Zone-1.sub_key != \"x\"",
      "sensor_rows>=16",
      "sensor_cols < 9223372036854775807",
      "sensor_rows > -1",
      "admission in (PREAUTHORIZED, \"REJECTED\", decommissioned)",
      "admission != \"pending\"",
      "deployment_step = FAILED",
      "deployment_step not in (ACTIVATED, \"rolled_back\")",
      "running = \"mat-pose@1.2.0-rc.1+b5\"",
      "offline_for >= 3153600000",
      "offline_for < 3600",
      "site = \"a\" AND hw_rev = 2 and firmware != \"1\" And labels.k in (\"x\") aNd sensor_rows >= 4 "
      "AND sensor_cols<8",
      R"(labels.note in ("\\", "\"", "AND site = \"x\""))",
      "site = \"M\xc3\xbcnchen (Nord), 'A'\"",
  };
  std::vector<std::string> tokens = CommonTokens();
  for (const char* t : {"site", "hw_rev", "hardware_revision", "firmware", "firmware_version",
                        "labels.", "labels.k", "sensor_rows", "sensor_cols", "admission",
                        "offline_for", "running", "deployment_step", "ACCEPTED", "pending",
                        "SELF_TESTING", "\"m@v\"", "@", " AND ", "(\"a\", \"b\")", "\"\""}) {
    tokens.push_back(t);
  }
  std::mt19937 rng(0xde71ce5u);
  Mutator m(rng, tokens, 2 * fleet::kMaxSelectorBytes);

  std::vector<std::string> corpus = seeds;
  LoopCounts target_counts, filter_counts;
  const LoopCounts counts = RunFuzzLoop("device_selector", 50000, [&](size_t i) {
    const std::string input = m.Mutate(m.Pick(corpus), seeds);
    Verdict target, filter;
    CheckSelectorInput(input, i % 3, target, filter);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "device_selector input #" << i << ": " << Printable(input);
    }
    target_counts.accepted += target.accepted ? 1 : 0;
    target_counts.rejected += target.rejected ? 1 : 0;
    filter_counts.accepted += filter.accepted ? 1 : 0;
    filter_counts.rejected += filter.rejected ? 1 : 0;
    if ((target.accepted || filter.accepted) && corpus.size() < 512) corpus.push_back(input);
    return Verdict{target.accepted || filter.accepted, target.rejected || filter.rejected};
  });
  std::cout << "[ fuzz     ] device_selector as target: " << target_counts.accepted
            << " accepted, " << target_counts.rejected << " rejected; as filter: "
            << filter_counts.accepted << " accepted, " << filter_counts.rejected << " rejected"
            << std::endl;
  ExpectExercised(counts);
  if (!::testing::Test::HasFailure()) {
    for (const LoopCounts& kind : {target_counts, filter_counts}) {
      EXPECT_GT(kind.accepted, 0u);
      EXPECT_GT(kind.rejected, 0u);
    }
  }
}

// =============================================================================================
// Regression tests for bugs the loops above found (all fixed).
// =============================================================================================

// Regression (fixed): a CRC failure was counted as torn or as bad_crc depending on where the
// caller's reads happened to split the stream. When the rejected frame's last byte was 0xA5 and
// the next byte not yet buffered, the decoder took that lone 0xA5 for "another plausible header
// inside the frame" (torn); with the next byte (0x00) buffered it was not a header (bad_crc).
// Now only the frame's own bytes decide, and a header needs both sync bytes inside it.
TEST(FrameDecoderRegression, CrcFailureIsClassifiedTheSameWhereverTheStreamIsSplit) {
  // A 1x1 frame, sequence 0, value 0; its CRC is 0xB2D5 (D5 B2 on the wire), damaged to D5 A5;
  // then one byte of line noise.
  const std::string stream = "\xA5\x5A\x01\x00\x00\x00\x00\x01\x01\x00\x00\xD5\xA5\x00"s;
  ASSERT_EQ(stream.size(), sensor::FrameBytes(1, 1) + 1);

  sensor::FrameDecoder whole = MakeDecoder({});
  whole.Feed(AsBytes(stream));
  whole.Flush();
  sensor::FrameDecoder split = MakeDecoder({});
  split.Feed(AsBytes(stream).first(sensor::FrameBytes(1, 1)));
  split.Feed(AsBytes(stream).subspan(sensor::FrameBytes(1, 1)));
  split.Flush();

  // No header starts inside the frame: the byte after the stray 0xA5 is not 0x5A.
  EXPECT_EQ(whole.stats().bad_crc, 1u) << whole.stats().ToString();
  EXPECT_EQ(whole.stats().torn_frames, 0u) << whole.stats().ToString();
  EXPECT_EQ(split.stats(), whole.stats()) << "split: " << split.stats().ToString()
                                          << "\nwhole: " << whole.stats().ToString();
}

// A validly signed manifest with labels {board: pi, hw: rev3}.
v1::Manifest SignedManifestWithTwoLabels(const std::string& secret_key) {
  v1::Manifest m = UnsignedManifestSeeds()[1];  // the minimal one
  (*m.mutable_labels())["board"] = "pi";
  (*m.mutable_labels())["hw"] = "rev3";
  EXPECT_TRUE(SignManifest(m, "ci-key-1", secret_key).ok());
  return m;
}

// Regression (fixed): the canonical encoding does not delimit map keys, so a key containing
// " <len> <value>\n" followed by the next record's name spells out two records. Anyone who
// could alter a signed manifest in transit could merge, split or hide params/labels entries and
// keep the signature valid: VerifyManifestSignature accepted it (the agent's
// VerifyManifestTrust does not run ValidateManifest, which rejects the key). It now refuses
// any map key that is not an identifier.
TEST(ManifestSignatureRegression, MapKeyCannotSpellOutAnotherSignedRecord) {
  const std::string public_key = Unhex(kRfcPublicKeyHex);
  const v1::Manifest signed_manifest = SignedManifestWithTwoLabels(Unhex(kRfcSecretKeyHex));
  ASSERT_TRUE(VerifyManifestSignature(signed_manifest, public_key).ok());

  v1::Manifest forged = signed_manifest;
  forged.mutable_labels()->clear();
  (*forged.mutable_labels())["board 2 pi\nlabels.hw"] = "rev3";  // one label, no "board", no "hw"

  const Status s = VerifyManifestSignature(forged, public_key);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied)
      << "forged labels verify: " << forged.ShortDebugString();
}

// Regression (fixed): manifest.h documents VerifyManifestSignature as "OK ... PERMISSION_DENIED
// if not", but a signature that is not 64 bytes long came back as INVALID_ARGUMENT (field
// "signature"), passed through from Ed25519Verify. Callers that map PERMISSION_DENIED to "untrusted" see a different
// code for the same kind of tampering.
TEST(ManifestSignatureRegression, WrongLengthSignatureIsPermissionDenied) {
  const std::string public_key = Unhex(kRfcPublicKeyHex);
  v1::Manifest m = SignedManifestWithTwoLabels(Unhex(kRfcSecretKeyHex));
  m.mutable_signature()->mutable_signature()->pop_back();  // 63 bytes
  const Status s = VerifyManifestSignature(m, public_key);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
}

}  // namespace
}  // namespace modelfleet
