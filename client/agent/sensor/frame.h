// One pressure frame from the mat: a grid of air-bladder readings.
//
// The mat is a rows x cols grid of air bladders. By convention the rows axis runs head-to-foot
// (the long axis of a bed mat) and the cols axis across the mat; row 0 is the end the STM32
// firmware scans first. Each value is a raw 16-bit pressure reading (0 = no pressure or a dead
// bladder, 65535 = full scale); nothing on the host rescales it before the Preprocessor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace modelfleet::agent::sensor {

struct PressureFrame {
  // The firmware's frame counter; +1 per frame, wraps at 2^32. Gaps mean frames were lost.
  uint32_t sequence = 0;
  uint16_t rows = 0;
  uint16_t cols = 0;
  // rows * cols readings, row-major: values[r * cols + c].
  std::vector<uint16_t> values{};
  // When the host had the whole frame (decoded from the wire, replayed, or generated).
  std::chrono::steady_clock::time_point received{};

  size_t index(size_t row, size_t col) const { return row * cols + col; }
  uint16_t at(size_t row, size_t col) const { return values[index(row, col)]; }
  // True when values holds exactly rows * cols readings.
  bool well_formed() const {
    return values.size() == static_cast<size_t>(rows) * static_cast<size_t>(cols);
  }
};

}  // namespace modelfleet::agent::sensor
