#include "cli/rollout_view.h"

#include <algorithm>
#include <chrono>
#include <ostream>

#include "cli/output.h"

namespace modelfleet::cli {

namespace {

// '#' activated, '>' in progress, 'x' failed, '.' pending, proportional to the stage's devices.
std::string StageBar(const v1::StageProgress& p, int width) {
  if (p.devices() == 0) return "[" + std::string(static_cast<size_t>(width), '.') + "]";
  auto cells = [&](uint32_t n) {
    return static_cast<size_t>(static_cast<uint64_t>(n) * width / p.devices());
  };
  std::string bar = std::string(cells(p.activated()), '#') + std::string(cells(p.in_progress()), '>') +
                    std::string(cells(p.failed()), 'x');
  bar.resize(static_cast<size_t>(width), '.');
  return "[" + bar + "]";
}

std::string Gate(const std::string& name, double value, double limit, const std::string& value_text,
                 const std::string& limit_text, bool judged) {
  if (limit <= 0) return name + " " + value_text + " (no limit)";
  std::string verdict = !judged ? "not judged yet" : value > limit ? "BROKEN" : "ok";
  return name + " " + value_text + " <= " + limit_text + " " + verdict;
}

}  // namespace

std::string RolloutStateName(v1::RolloutState s) {
  const std::string name = v1::RolloutState_Name(s);
  return name.rfind("ROLLOUT_STATE_", 0) == 0 ? name.substr(sizeof("ROLLOUT_STATE_") - 1) : name;
}

std::vector<std::string> RenderRollout(const v1::Rollout& r, int bar_width) {
  std::vector<std::string> lines;
  lines.push_back("rollout " + r.rollout_id() + "  " + r.model() + "@" + r.version() + "  target " +
                  r.target() + "  " + RolloutStateName(r.state()) +
                  (r.state_reason().empty() ? "" : ": " + r.state_reason()));
  const int n = r.stages_size();
  const int current = static_cast<int>(r.current_stage());
  const bool completed = r.state() == v1::ROLLOUT_STATE_COMPLETED;
  const v1::StageProgress& p = r.progress();
  for (int i = 0; i < n; ++i) {
    const v1::Stage& st = r.stages(i);
    std::string line = "stage " + std::to_string(i + 1) + "/" + std::to_string(n) + "  " +
                       FormatPercent(st.percent()) + "  ";
    if (completed || i < current) {
      line += "[" + std::string(static_cast<size_t>(bar_width), '#') + "]  done";
    } else if (i == current && r.state() != v1::ROLLOUT_STATE_QUEUED) {
      const uint32_t pending =
          p.devices() - std::min(p.devices(), p.activated() + p.in_progress() + p.failed());
      line += StageBar(p, bar_width) + "  " + std::to_string(p.activated()) + " activated, " +
              std::to_string(p.in_progress()) + " in progress, " + std::to_string(p.failed()) + " failed, " +
              std::to_string(pending) + " pending of " + std::to_string(p.devices()) + "  <- current";
    } else {
      line += "pending" + std::string(st.requires_approval() ? " (needs approval)" : "");
    }
    lines.push_back(line);
  }
  if (!completed && current < n) {
    const v1::Stage& st = r.stages(current);
    const v1::HealthGates& g = st.gates();
    const double failure = p.devices() == 0 ? 0 : static_cast<double>(p.failed()) / p.devices();
    const bool telemetry_judged = p.inferences() > 0 && p.inferences() >= g.min_inferences();
    lines.push_back("gates: " + Gate("failure ratio", failure, g.max_failure_ratio(), FormatNumber(failure),
                                     FormatNumber(g.max_failure_ratio()), p.devices() > 0));
    lines.push_back("       " + Gate("error ratio", p.error_ratio(), g.max_error_ratio(),
                                     FormatNumber(p.error_ratio()), FormatNumber(g.max_error_ratio()),
                                     telemetry_judged));
    lines.push_back("       " + Gate("p95 latency", p.p95_latency_ms(), g.max_p95_latency_ms(),
                                     FormatMilliseconds(p.p95_latency_ms()),
                                     FormatMilliseconds(g.max_p95_latency_ms()), telemetry_judged));
    lines.push_back("       " + Gate("class shift", p.class_shift(), g.max_class_shift(),
                                     FormatNumber(p.class_shift()), FormatNumber(g.max_class_shift()),
                                     telemetry_judged));
    lines.push_back("       inferences " + std::to_string(p.inferences()) +
                    (g.min_inferences() > 0
                         ? " (telemetry gates judged from " + std::to_string(g.min_inferences()) + ")"
                         : ""));
    const double activated = p.devices() == 0 ? 0 : static_cast<double>(p.activated()) / p.devices();
    lines.push_back(
        "advance: " + FormatPercent(activated * 100) + " activated, needs " +
        FormatPercent(st.success_threshold() * 100) +
        (st.min_devices() > 0 ? ", at least " + std::to_string(st.min_devices()) + " devices" : "") +
        (st.soak_seconds() > 0 ? ", soak " + std::to_string(st.soak_seconds()) + " s" : ""));
  }
  return lines;
}

std::string EventLine(const v1::RolloutEvent& e) {
  const v1::Rollout& r = e.rollout();
  google::protobuf::Timestamp t = e.time();
  if (!e.has_time()) {
    t.set_seconds(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
  }
  const auto& p = r.progress();
  std::string line = FormatTime(t) + "  " + e.kind() + "  " + RolloutStateName(r.state()) + "  stage " +
                     std::to_string(r.current_stage() + 1) + "/" + std::to_string(r.stages_size()) +
                     "  devices " + std::to_string(p.devices()) + " activated " +
                     std::to_string(p.activated()) + " in-progress " + std::to_string(p.in_progress()) +
                     " failed " + std::to_string(p.failed());
  if (!e.actor().empty() || !e.reason().empty()) line += "  " + OrDash(e.actor()) + ": " + e.reason();
  return line;
}

void LiveRolloutView::OnEvent(const v1::RolloutEvent& e) {
  // Back to the top of the previous frame, and clear from there down.
  if (frame_lines_ > 0) out_ << "\033[" << frame_lines_ << "F\033[J";
  if (e.kind() != "progress") out_ << EventLine(e) << "\n";
  const auto lines = RenderRollout(e.rollout());
  out_ << std::string(60, '-') << "\n";
  for (const auto& l : lines) out_ << l << "\n";
  frame_lines_ = static_cast<int>(lines.size()) + 1;
  out_.flush();
}

}  // namespace modelfleet::cli
