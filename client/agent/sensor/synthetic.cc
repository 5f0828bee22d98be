#include "agent/sensor/synthetic.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>
#include <thread>

namespace modelfleet::agent::sensor {
namespace {

using Clock = std::chrono::steady_clock;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

std::string_view SituationName(Situation situation) {
  switch (situation) {
    case Situation::kEmpty: return "empty";
    case Situation::kSitting: return "sitting";
    case Situation::kLyingFull: return "lying_full";
    case Situation::kLyingPartial: return "lying_partial";
  }
  return "unknown";
}

Expected<Situation> ParseSituation(std::string_view name) {
  for (Situation s : kAllSituations) {
    if (SituationName(s) == name) return s;
  }
  return Fail(InvalidArgument("situation", "unknown situation '" + std::string(name) +
                                               "' (expected empty, sitting, lying_full or "
                                               "lying_partial)"));
}

Expected<std::vector<ScheduleEntry>> ParseSchedule(std::string_view spec) {
  std::vector<ScheduleEntry> out;
  if (Trim(spec).empty()) return Fail(InvalidArgument("schedule", "is empty"));
  size_t n = 0;
  while (true) {
    const size_t comma = spec.find(',');
    const std::string_view item = Trim(spec.substr(0, comma));
    ++n;
    auto bad = [&](std::string_view why) {
      return Fail(InvalidArgument("schedule", "entry " + std::to_string(n) + " '" +
                                                  std::string(item) + "': " + std::string(why)));
    };
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) return bad("expected situation:duration");
    auto situation = ParseSituation(Trim(item.substr(0, colon)));
    if (!situation) return bad(situation.error().message());
    const std::string_view dur = Trim(item.substr(colon + 1));
    uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(dur.data(), dur.data() + dur.size(), value);
    if (ec != std::errc() || ptr == dur.data()) return bad("duration must start with a number");
    const std::string_view unit(ptr, static_cast<size_t>(dur.data() + dur.size() - ptr));
    uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return bad("duration unit must be ms, s, m or h");
    if (value == 0) return bad("duration must be positive");
    if (value > (uint64_t{1} << 40) / scale) return bad("duration is too long");
    out.push_back({*situation, std::chrono::milliseconds(value * scale)});
    if (comma == std::string_view::npos) break;
    spec.remove_prefix(comma + 1);
  }
  return out;
}

Status ValidateSyntheticOptions(const SyntheticOptions& o) {
  if (o.rows < 4 || o.rows > 255) return InvalidArgument("synthetic.rows", "must be 4..255");
  if (o.cols < 4 || o.cols > 255) return InvalidArgument("synthetic.cols", "must be 4..255");
  if (!(o.mat_aspect >= 0.1 && o.mat_aspect <= 10)) {
    return InvalidArgument("synthetic.mat_aspect", "must be 0.1..10");
  }
  if (o.offset_max > 20000) return InvalidArgument("synthetic.offset_max", "must be <= 20000");
  if (o.offset_min > o.offset_max) {
    return InvalidArgument("synthetic.offset_min", "must be <= synthetic.offset_max");
  }
  if (!(o.noise_stddev >= 0 && o.noise_stddev <= 5000)) {
    return InvalidArgument("synthetic.noise_stddev", "must be 0..5000");
  }
  if (!(o.dead_bladder_fraction >= 0 && o.dead_bladder_fraction <= 0.5)) {
    return InvalidArgument("synthetic.dead_bladder_fraction", "must be 0..0.5");
  }
  return Status::Ok();
}

// ---- SyntheticGenerator ----------------------------------------------------------------------

Expected<SyntheticGenerator> SyntheticGenerator::Create(const SyntheticOptions& options) {
  MF_RETURN_IF_ERROR(ValidateSyntheticOptions(options));
  return SyntheticGenerator(options);
}

SyntheticGenerator::SyntheticGenerator(const SyntheticOptions& options) : options_(options) {
  uint64_t x = options.seed;
  for (auto& s : state_) s = SplitMix64(x);
  const size_t n = static_cast<size_t>(options.rows) * options.cols;
  offsets_.resize(n);
  dead_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t span = uint64_t{options.offset_max} - options.offset_min + 1;
    offsets_[i] = static_cast<uint16_t>(options.offset_min + NextU64() % span);
    dead_[i] = Uniform(0, 1) < options.dead_bladder_fraction;
  }
}

uint64_t SyntheticGenerator::NextU64() {  // xoshiro256**
  const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = Rotl(state_[3], 45);
  return result;
}

double SyntheticGenerator::Uniform(double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(NextU64() >> 11) * 0x1.0p-53;
}

double SyntheticGenerator::Noise() {
  // Irwin-Hall: the sum of 12 uniforms minus 6 has mean 0, variance 1 and is bounded to +-6.
  // Twelve 16-bit uniforms from three 64-bit draws keep it integer-exact.
  int64_t sum = 0;
  for (int i = 0; i < 3; ++i) {
    const uint64_t r = NextU64();
    for (int k = 0; k < 4; ++k) sum += static_cast<int64_t>((r >> (16 * k)) & 0xFFFF);
  }
  return static_cast<double>(sum) / 65536.0 - 6.0;
}

namespace {

// Contact regions of a body lying on its back, in body heights (u: 0 = top of the head,
// 1 = heels; v: across, 0 = the body's midline).
const std::vector<SyntheticGenerator::Segment>& LyingSegments() {
  static const std::vector<SyntheticGenerator::Segment> kSegments = {
      // u      v      hu     hv     weight
      {0.070, 0.000, 0.060, 0.050, 0.60},   // head
      {0.255, 0.000, 0.110, 0.125, 0.75},   // shoulders and upper back
      {0.455, 0.000, 0.100, 0.115, 1.00},   // pelvis and sacrum
      {0.640, -0.060, 0.110, 0.055, 0.70},  // thighs
      {0.640, 0.060, 0.110, 0.055, 0.70},
      {0.840, -0.065, 0.110, 0.045, 0.60},  // calves
      {0.840, 0.065, 0.110, 0.045, 0.60},
      {0.960, -0.070, 0.035, 0.035, 0.85},  // heels
      {0.960, 0.070, 0.035, 0.035, 0.85},
  };
  return kSegments;
}

const std::vector<SyntheticGenerator::Segment>& SittingSegments() {
  // Around u = 0.5 so the same placement code centres it: the two ischial regions, the coccyx
  // between them and the back of the thighs just ahead.
  static const std::vector<SyntheticGenerator::Segment> kSegments = {
      {0.500, -0.070, 0.075, 0.065, 1.00},
      {0.500, 0.070, 0.075, 0.065, 1.00},
      {0.470, 0.000, 0.050, 0.040, 0.80},
      {0.570, -0.065, 0.060, 0.055, 0.60},
      {0.570, 0.065, 0.060, 0.055, 0.60},
  };
  return kSegments;
}

}  // namespace

void SyntheticGenerator::DrawBody(Situation situation) {
  constexpr double kPi = std::numbers::pi;
  const double aspect = options_.mat_aspect;
  body_ = Body{};
  body_.situation = situation;
  switch (situation) {
    case Situation::kEmpty:
      break;
    case Situation::kSitting:
      body_.segments = &SittingSegments();
      body_.height = Uniform(0.80, 1.00);
      body_.center_y = Uniform(0.35, 0.65);
      body_.center_x = aspect * Uniform(0.35, 0.65);
      body_.angle = Uniform(-kPi / 6, kPi / 6) + (Uniform(0, 1) < 0.5 ? 0 : kPi);
      body_.peak = Uniform(35000, 60000);
      break;
    case Situation::kLyingFull:
    case Situation::kLyingPartial: {
      body_.segments = &LyingSegments();
      body_.height = Uniform(0.78, 0.95);
      body_.center_x = aspect * Uniform(0.35, 0.65);
      body_.angle = Uniform(-8, 8) * kPi / 180 + (Uniform(0, 1) < 0.5 ? 0 : kPi);
      body_.peak = Uniform(18000, 32000);
      const double h = body_.height;
      if (situation == Situation::kLyingFull) {
        // Keep both ends on the mat, allowing for the tilt.
        const double half = 0.5 * h * std::cos(8 * kPi / 180);
        body_.center_y = Uniform(half + 0.01, std::max(half + 0.01, 1 - half - 0.01));
      } else {
        const double visible = Uniform(0.35, 0.65) * h;
        body_.center_y = Uniform(0, 1) < 0.5 ? visible - h / 2 : 1 - visible + h / 2;
      }
      break;
    }
  }
  has_body_ = true;
}

PressureFrame SyntheticGenerator::Generate(Situation situation) {
  if (!has_body_ || body_.situation != situation) DrawBody(situation);

  const size_t rows = options_.rows;
  const size_t cols = options_.cols;
  PressureFrame frame;
  frame.rows = options_.rows;
  frame.cols = options_.cols;
  frame.values.resize(rows * cols);

  // Per-frame variation of the same body: breathing and a sub-bladder shift.
  const double breath = 1 + 0.02 * Noise();
  const double jitter_y = 0.002 * Noise();
  const double jitter_x = 0.002 * Noise();
  const double cos_a = std::cos(body_.angle);
  const double sin_a = std::sin(body_.angle);
  const double aspect = options_.mat_aspect;

  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      double pressure = 0;
      if (body_.segments != nullptr) {
        double sum = 0;
        for (int sy = 0; sy < 3; ++sy) {
          for (int sx = 0; sx < 3; ++sx) {
            // A sub-sample point of the bladder, in mat lengths.
            const double y = (static_cast<double>(r) + (1 + 2 * sy) / 6.0) / rows;
            const double x = (static_cast<double>(c) + (1 + 2 * sx) / 6.0) / cols * aspect;
            const double dy = y - (body_.center_y + jitter_y);
            const double dx = x - (body_.center_x + jitter_x);
            // Into body coordinates (u along the body from the head, v across), body heights.
            const double u = (dy * cos_a + dx * sin_a) / body_.height + 0.5;
            const double v = (-dy * sin_a + dx * cos_a) / body_.height;
            double best = 0;
            for (const Segment& s : *body_.segments) {
              const double du = (u - s.u) / s.hu;
              const double dv = (v - s.v) / s.hv;
              const double d2 = du * du + dv * dv;
              if (d2 < 1) best = std::max(best, s.weight * std::sqrt(1 - d2));
            }
            sum += best;
          }
        }
        pressure = body_.peak * breath * sum / 9;
      }
      const size_t i = r * cols + c;
      const double noise = options_.noise_stddev * Noise();
      if (dead_[i]) {
        frame.values[i] = 0;
      } else {
        const double value = std::round(offsets_[i] + pressure + noise);
        frame.values[i] = static_cast<uint16_t>(std::clamp(value, 0.0, 65535.0));
      }
    }
  }
  return frame;
}

// ---- SyntheticFrameSource --------------------------------------------------------------------

Expected<std::unique_ptr<SyntheticFrameSource>> SyntheticFrameSource::Create(
    const SyntheticSourceOptions& options) {
  if (!(std::isfinite(options.frame_rate_hz) && options.frame_rate_hz > 0 &&
        options.frame_rate_hz <= 10000)) {
    return Fail(InvalidArgument("synthetic.frame_rate_hz", "must be > 0 and <= 10000"));
  }
  if (!options.situation_fn) {
    if (options.schedule.empty()) {
      return Fail(InvalidArgument("synthetic.schedule", "is empty and no situation_fn is set"));
    }
    for (const ScheduleEntry& e : options.schedule) {
      if (e.duration <= std::chrono::milliseconds(0)) {
        return Fail(InvalidArgument("synthetic.schedule", "durations must be positive"));
      }
    }
  }
  MF_ASSIGN_OR_RETURN(SyntheticGenerator generator, SyntheticGenerator::Create(options.sensor));
  return std::unique_ptr<SyntheticFrameSource>(
      new SyntheticFrameSource(options, std::move(generator)));
}

SyntheticFrameSource::SyntheticFrameSource(const SyntheticSourceOptions& options,
                                           SyntheticGenerator generator)
    : options_(options), generator_(std::move(generator)) {
  for (const ScheduleEntry& e : options_.schedule) schedule_total_ += e.duration;
}

std::optional<Situation> SyntheticFrameSource::SituationAt(std::chrono::milliseconds elapsed,
                                                           uint64_t index) const {
  if (options_.situation_fn) return options_.situation_fn(elapsed, index);
  if (elapsed >= schedule_total_) {
    if (!options_.loop_schedule) return std::nullopt;
    elapsed = elapsed % schedule_total_;
  }
  for (const ScheduleEntry& e : options_.schedule) {
    if (elapsed < e.duration) return e.situation;
    elapsed -= e.duration;
  }
  return options_.schedule.back().situation;  // unreachable
}

Expected<std::optional<LabeledFrame>> SyntheticFrameSource::NextLabeled(
    std::chrono::milliseconds timeout) {
  const Clock::time_point now = Clock::now();
  if (!started_) {
    started_ = true;
    start_ = now;
  }
  // Frame i is due i / rate after the first, rounded to the nanosecond (integer-exact for
  // rates dividing 1e9, so 10 Hz gives exactly 100 ms steps).
  const std::chrono::nanoseconds offset(
      std::llround(static_cast<double>(index_) * 1e9 / options_.frame_rate_hz));
  const Clock::time_point due = start_ + std::chrono::duration_cast<Clock::duration>(offset);
  if (options_.realtime) {
    if (due > now + timeout) {
      std::this_thread::sleep_for(std::max(timeout, std::chrono::milliseconds(0)));
      return std::optional<LabeledFrame>();
    }
    std::this_thread::sleep_until(due);
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(offset);
  const std::optional<Situation> situation = SituationAt(elapsed, index_);
  if (!situation) {
    return Fail(Status(StatusCode::kOutOfRange, "synthetic schedule ended"));
  }
  LabeledFrame out;
  out.label = *situation;
  out.frame = generator_.Generate(*situation);
  out.frame.sequence = static_cast<uint32_t>(options_.first_sequence + index_);
  out.frame.received = due;
  ++index_;
  ++stats_.frames_ok;
  return out;
}

Expected<std::optional<PressureFrame>> SyntheticFrameSource::Next(
    std::chrono::milliseconds timeout) {
  MF_ASSIGN_OR_RETURN(std::optional<LabeledFrame> labeled, NextLabeled(timeout));
  if (!labeled) return std::optional<PressureFrame>();
  return std::optional<PressureFrame>(std::move(labeled->frame));
}

}  // namespace modelfleet::agent::sensor
