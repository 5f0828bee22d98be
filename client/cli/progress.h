// Progress of a byte transfer (push, download), reported on stderr so stdout stays the result.
//
// On a terminal: one line redrawn in place (at most every 100 ms) with a bar, bytes done and
// total, percentage and rate. Otherwise (CI logs, pipes): a plain line at each further 10% and
// a final line; nothing in between, so logs stay short.
//
// Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace modelfleet::cli {

bool StderrIsTerminal();

// "[########............]" of `width` cells between the brackets.
std::string ProgressBar(uint64_t done, uint64_t total, int width);
// "12.5 MiB/s"
std::string FormatRate(double bytes_per_second);

class TransferProgress {
 public:
  enum class Mode { kOff, kTerminal, kLines };
  // `label` e.g. "push mat-person@1.2.0"; `start_offset` bytes were already there (a resumed
  // download): they count as done but not towards the rate.
  TransferProgress(std::string label, uint64_t total, Mode mode, std::ostream& out,
                   uint64_t start_offset = 0);
  // Bytes done so far (absolute, including start_offset).
  void Update(uint64_t done);
  // The last line: "<label>: <done> in <seconds> s (<rate>) <note>".
  void Finish(uint64_t done, const std::string& note = "");

 private:
  std::string Line(uint64_t done) const;
  double Rate(uint64_t done) const;

  std::string label_;
  uint64_t total_;
  Mode mode_;
  std::ostream& out_;
  uint64_t start_offset_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_decile_ = 0;
  bool drew_ = false;
};

}  // namespace modelfleet::cli
