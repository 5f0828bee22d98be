// Text renderings of a rollout, for `rollouts show` and `rollouts watch`.
//
// RenderRollout: a header line, one line per stage (the current one with a bar of its devices:
// '#' activated, '>' in progress, 'x' failed, '.' pending, and the counts), the current
// stage's health gates with their values against their limits ("off" for a limit of 0), and
// what it takes to advance. EventLine: one line per RolloutEvent for logs.
//
// LiveRolloutView (terminals only): keeps the rendering at the bottom of the screen, redrawn in
// place with ANSI cursor movement, and prints each event above it as it comes.
// Not thread-safe.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::cli {

std::string RolloutStateName(v1::RolloutState s);  // "RUNNING"
// `bar_width` cells between the brackets.
std::vector<std::string> RenderRollout(const v1::Rollout& r, int bar_width = 30);
// "<time>  <kind>  <STATE>  stage i/n  devices D activated A in progress P failed F  <actor>: <reason>"
std::string EventLine(const v1::RolloutEvent& e);

class LiveRolloutView {
 public:
  explicit LiveRolloutView(std::ostream& out) : out_(out) {}
  // Prints the event above the frame (unless it is a "progress" tick) and redraws the frame.
  void OnEvent(const v1::RolloutEvent& e);

 private:
  std::ostream& out_;
  int frame_lines_ = 0;
};

}  // namespace modelfleet::cli
