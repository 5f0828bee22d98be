// modelfleet-devsim: N simulated mats checking in with a modelfleet-server, following their
// assignments and reporting telemetry, for demos and load. Not the agent: no model runs.
//
//   modelfleet-devsim --server HOST:PORT --enrollment-token T --devices 20
//       --model mat-person --factory-version 1.0.0
//       [--fail-version 1.2.0] [--slow-version 1.2.0] [--rounds N]
//
// Prints one line per round: what the fleet runs. --fail-version makes every device fail the
// self-test of that version (its deployments end FAILED); --slow-version makes devices that
// run it report a p95 latency of 250 ms (the health gates' food).
#include <csignal>
#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "devsim/fleet_simulator.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  using modelfleet::devsim::FleetSimulator;
  CLI::App app{"modelfleet-devsim: a fleet of simulated mats"};
  FleetSimulator::Options o;
  std::string fail_version, slow_version;
  int rounds = 0, interval_ms = 1000;
  app.add_option("--server", o.addresses, "host:port (repeat for replicas)")->required();
  app.add_option("--enrollment-token", o.enrollment_token)->required()->envname("MODELFLEET_ENROLLMENT_TOKEN");
  app.add_option("--devices", o.devices)->capture_default_str();
  app.add_option("--model", o.model)->required();
  app.add_option("--factory-version", o.factory_version)->required();
  app.add_option("--factory-digest", o.factory_digest);
  app.add_option("--fail-version", fail_version, "devices fail deployments of this version");
  app.add_option("--slow-version", slow_version, "devices running this version report p95 250 ms");
  app.add_option("--rounds", rounds, "stop after N rounds (0: until Ctrl-C)")->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "pause between rounds")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  FleetSimulator sim(o);
  auto enrolled = sim.EnrollAll();
  if (!enrolled.ok()) {
    std::cerr << "modelfleet-devsim: enrolling failed: " << enrolled.error_message() << std::endl;
    return 1;
  }
  sim.SetFailurePolicy([&](int, const modelfleet::v1::Assignment& a) -> std::optional<std::string> {
    if (!fail_version.empty() && a.download_version() == fail_version) return "self-test failed: output differs";
    return std::nullopt;
  });
  sim.SetTelemetryPolicy([&](int device, const std::string& version) {
    modelfleet::devsim::SimTelemetry t;
    t.inferences = 600;
    t.errors = 0;
    t.p95_ms = version == slow_version ? 250 : 4 + device % 3;
    t.histogram = {{"empty", 300}, {"sitting", 150}, {"lying_full", 100}, {"lying_partial", 50}};
    return t;
  });
  for (int round = 1; !g_stop && (rounds == 0 || round <= rounds); ++round) {
    auto stats = sim.Round();
    std::cout << "round " << round << ": " << stats.check_ins << " check-ins, " << stats.assignments
              << " assignments, " << stats.errors << " errors; running:";
    for (const auto& [version, count] : sim.CountByVersion()) std::cout << " " << version << "=" << count;
    std::cout << std::endl;
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return 0;
}
