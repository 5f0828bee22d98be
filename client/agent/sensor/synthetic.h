// Synthetic pressure frames of the four situations the person-detection model tells apart,
// with a ground-truth label per frame: for tests, for the release pipeline's smoke checks, and
// for running the agent without a mat.
//
// The sensor model (all in raw 16-bit counts, see frame.h):
//   - every bladder has a fixed offset drawn once per generator from
//     [offset_min, offset_max] (a real mat's bladders never read exactly 0 when unloaded);
//   - a fixed set of dead bladders (each with probability dead_bladder_fraction) always read 0;
//   - every reading gets fresh noise, roughly normal with standard deviation noise_stddev and
//     bounded to +-6 standard deviations;
//   - a body adds pressure: a set of elliptical contact regions (head, torso, pelvis, thighs,
//     calves, heels when lying; the two ischial regions when sitting) with a Hertz-like
//     profile, averaged over each bladder's area (3x3 sub-samples), scaled by a peak pressure.
//
// Geometry: the rows axis runs head-to-foot (the mat's length), cols across; `mat_aspect` is
// the mat's physical width / length (default 0.5, e.g. 95 x 190 cm), so bodies keep their
// physical proportions on any grid. The four situations:
//   empty          no body: offsets + noise only;
//   sitting        a compact, high-pressure blob (peak 35000..60000) around the middle of the
//                  mat, never touching its edges;
//   lying_full     a whole body (height 78..95 % of the mat's length) along the mat, tilted by
//                  up to +-8 degrees, head at either end, peak 18000..32000;
//   lying_partial  the same body shifted over the head or foot end so only 35..65 % of its
//                  length is on the mat (either end of the body, at either end of the mat).
// A new body (size, position, tilt, peak) is drawn whenever the situation changes; while it
// stays, the body is kept and only breathing (about 2 % pressure change), sub-bladder jitter
// and noise vary from frame to frame, as on a real mat.
//
// Reproducibility: everything comes from one xoshiro256** stream seeded from `seed` (SplitMix64)
// with integer-only uniform and noise draws; the same seed and the same sequence of calls give
// the same frames (bit-identical on any platform with the same libm for sin/cos/sqrt).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/sensor/frame.h"
#include "agent/sensor/frame_source.h"
#include "modelfleet/status.h"

namespace modelfleet::agent::sensor {

// The model's classes, in the order of the default class_labels.
enum class Situation : uint8_t { kEmpty = 0, kSitting = 1, kLyingFull = 2, kLyingPartial = 3 };
inline constexpr std::array<Situation, 4> kAllSituations = {
    Situation::kEmpty, Situation::kSitting, Situation::kLyingFull, Situation::kLyingPartial};

// "empty", "sitting", "lying_full", "lying_partial" (the model's class labels).
std::string_view SituationName(Situation situation);
// The inverse of SituationName; INVALID_ARGUMENT ("situation") for anything else.
Expected<Situation> ParseSituation(std::string_view name);

struct ScheduleEntry {
  Situation situation = Situation::kEmpty;
  std::chrono::milliseconds duration{0};  // > 0
};

// "empty:10s,sitting:20s,lying_full:1m,lying_partial:1500ms": comma-separated situation:duration
// pairs; durations are a positive integer with unit ms, s, m or h. Spaces around items are
// ignored. INVALID_ARGUMENT ("schedule") naming the bad entry.
Expected<std::vector<ScheduleEntry>> ParseSchedule(std::string_view spec);

struct SyntheticOptions {
  uint16_t rows = 16;  // 4..255
  uint16_t cols = 16;  // 4..255
  uint64_t seed = 1;
  double mat_aspect = 0.5;             // physical width / length, 0.1..10
  uint16_t offset_min = 300;           // per-bladder offset range, offset_max <= 20000
  uint16_t offset_max = 2500;
  double noise_stddev = 120;           // 0..5000
  double dead_bladder_fraction = 0.01; // 0..0.5
};

// OK or INVALID_ARGUMENT naming the option ("synthetic.rows", ...).
Status ValidateSyntheticOptions(const SyntheticOptions& options);

struct LabeledFrame {
  PressureFrame frame;
  Situation label = Situation::kEmpty;
};

// Generates frames on demand. Not thread-safe.
class SyntheticGenerator {
 public:
  static Expected<SyntheticGenerator> Create(const SyntheticOptions& options);

  // One frame of `situation` (sequence 0 and received unset: the caller stamps them). A new
  // body is drawn when `situation` differs from the previous call's or after NewBody().
  PressureFrame Generate(Situation situation);
  // The next Generate() draws a new body even for the same situation (another person, or the
  // same one lying down elsewhere).
  void NewBody() { has_body_ = false; }

  const SyntheticOptions& options() const { return options_; }
  // The sensor's fixed per-bladder offsets (row-major) and dead bladders.
  const std::vector<uint16_t>& offsets() const { return offsets_; }
  const std::vector<bool>& dead() const { return dead_; }

  // One elliptical contact region of the body model.
  struct Segment {
    double u, v;    // centre: along the body (0 = head, 1 = feet) and across, in body heights
    double hu, hv;  // half-extents, in body heights
    double weight;  // share of the peak pressure
  };

 private:
  struct Body {
    Situation situation = Situation::kEmpty;
    double center_y = 0, center_x = 0;  // in mat lengths
    double height = 0;                  // in mat lengths
    double angle = 0;                   // radians; 0 = head towards row 0
    double peak = 0;                    // counts
    const std::vector<Segment>* segments = nullptr;
  };

  explicit SyntheticGenerator(const SyntheticOptions& options);
  uint64_t NextU64();
  double Uniform(double lo, double hi);  // [lo, hi)
  double Noise();                        // ~N(0, 1), bounded to +-6
  void DrawBody(Situation situation);

  SyntheticOptions options_;
  std::array<uint64_t, 4> state_{};
  std::vector<uint16_t> offsets_;
  std::vector<bool> dead_;
  bool has_body_ = false;
  Body body_;
};

struct SyntheticSourceOptions {
  SyntheticOptions sensor{};
  double frame_rate_hz = 10;  // > 0; frame i is at i / frame_rate_hz after the first
  // The situations over time, played in order (looping when loop_schedule). Ignored when
  // situation_fn is set.
  std::vector<ScheduleEntry> schedule{};
  bool loop_schedule = true;  // false: OUT_OF_RANGE from Next() once the schedule has ended
  // Alternative to `schedule`: the situation of frame `index`, `elapsed` after the first frame.
  std::function<Situation(std::chrono::milliseconds elapsed, uint64_t index)> situation_fn{};
  // false: every Next() returns a frame at once; `received` advances by exactly one period per
  // frame from the first call (virtual time, reproducible). true: frames are paced at
  // frame_rate_hz on the steady clock.
  bool realtime = false;
  uint32_t first_sequence = 0;
};

class SyntheticFrameSource final : public FrameSource {
 public:
  // INVALID_ARGUMENT naming the option: "synthetic.*", "synthetic.frame_rate_hz",
  // "synthetic.schedule" (empty without a situation_fn, or a non-positive duration).
  static Expected<std::unique_ptr<SyntheticFrameSource>> Create(
      const SyntheticSourceOptions& options);

  // See FrameSource; errors only with loop_schedule = false once the schedule is over
  // (OUT_OF_RANGE).
  Expected<std::optional<PressureFrame>> Next(std::chrono::milliseconds timeout) override;
  // The same, with the frame's ground-truth label.
  Expected<std::optional<LabeledFrame>> NextLabeled(std::chrono::milliseconds timeout);
  FrameSourceStats stats() const override { return stats_; }

  // The situation scheduled at `elapsed` after the first frame (nullopt past the end of a
  // non-looping schedule).
  std::optional<Situation> SituationAt(std::chrono::milliseconds elapsed, uint64_t index) const;

 private:
  SyntheticFrameSource(const SyntheticSourceOptions& options, SyntheticGenerator generator);

  SyntheticSourceOptions options_;
  SyntheticGenerator generator_;
  std::chrono::milliseconds schedule_total_{0};
  uint64_t index_ = 0;
  bool started_ = false;
  std::chrono::steady_clock::time_point start_{};
  FrameSourceStats stats_;
};

}  // namespace modelfleet::agent::sensor
