#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <ostream>

#include "cli/format.h"

namespace modelfleet::cli {

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string ProgressBar(uint64_t done, uint64_t total, int width) {
  const double share =
      total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(share * width);
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '.') + "]";
}

std::string FormatRate(double bytes_per_second) {
  return FormatBytes(std::max(0.0, bytes_per_second)) + "/s";
}

TransferProgress::TransferProgress(std::string label, uint64_t total, Mode mode, std::ostream& out,
                                   uint64_t start_offset)
    : label_(std::move(label)),
      total_(total),
      mode_(mode),
      out_(out),
      start_offset_(start_offset),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (total_ > 0) last_decile_ = static_cast<int>(start_offset_ * 10 / total_);
}

double TransferProgress::Rate(uint64_t done) const {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (secs <= 0 || done <= start_offset_) return 0;
  return static_cast<double>(done - start_offset_) / secs;
}

std::string TransferProgress::Line(uint64_t done) const {
  // Whole percent, rounded down: "100%" only when it is all there.
  const uint64_t percent = total_ == 0 ? 100 : std::min<uint64_t>(done * 100 / total_, 100);
  return label_ + ": " + FormatBytes(static_cast<double>(done)) + " / " +
         FormatBytes(static_cast<double>(total_)) + " (" + FormatPercent(static_cast<double>(percent)) +
         ") " + FormatRate(Rate(done));
}

void TransferProgress::Update(uint64_t done) {
  if (mode_ == Mode::kOff) return;
  if (mode_ == Mode::kTerminal) {
    const auto now = std::chrono::steady_clock::now();
    if (drew_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    drew_ = true;
    out_ << "\r\033[K" << ProgressBar(done, total_, 30) << " " << Line(done) << std::flush;
    return;
  }
  if (total_ == 0) return;
  const int decile = static_cast<int>(std::min<uint64_t>(done * 10 / total_, 10));
  if (decile > last_decile_ && decile < 10) {
    last_decile_ = decile;
    out_ << Line(done) << std::endl;
  }
}

void TransferProgress::Finish(uint64_t done, const std::string& note) {
  if (mode_ == Mode::kOff) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = label_ + ": " + FormatBytes(static_cast<double>(done)) + " in " + FormatSeconds(secs) +
                     " (" + FormatRate(Rate(done)) + ")";
  if (!note.empty()) line += " " + note;
  if (mode_ == Mode::kTerminal) out_ << "\r\033[K";
  out_ << line << std::endl;
}

}  // namespace modelfleet::cli
