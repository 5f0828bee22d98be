// modelfleet-devsim / test support: a fleet of N simulated devices speaking DeviceService over real gRPC.
//
// This is NOT the real agent: each device is a few fields and plain gRPC stubs. A device
//   - enrolls with a fleet enrollment token (hardware id "hw-<i>", attributes from
//     Options::attributes; by default site alternates "berlin"/"paris" and hardware_revision
//     alternates "2"/"3") and keeps the device credential it gets;
//   - is "factory flashed" with Options::factory_version: it just reports it as running;
//   - on every Round() checks in once, reporting what it runs (model, version, digest) and the
//     telemetry of the version it runs (TelemetryPolicy), and follows the answer: for an
//     assignment it reports DOWNLOADING, VERIFYING, INSTALLING, SELF_TESTING, ACTIVATED
//     (Options::steps_per_round of them per round; 0 = all in the round of the assignment), or
//     DOWNLOADING then FAILED when the FailurePolicy says so; once ACTIVATED is acknowledged it
//     runs the assigned version (download_version: for a rollback assignment, the previous one).
//     Like the agent, it asks again (three tries, 50-200 ms jittered backoff) when a report
//     gets UNAVAILABLE, RESOURCE_EXHAUSTED or ABORTED, and otherwise repeats it next round;
//     its channels reconnect to a restarted server within about a second
//     (client/common/channel_args.h).
//
// Device i talks to addresses[i % n] (or, with Options::rotate_addresses, to
// addresses[(i + round) % n], so every device meets every replica). Rounds run on a small pool
// of threads over a few channels per address, so 1,000 devices make a round well under a
// second against a local server.
//
// Everything a device was told (CheckIn answers) and every report it made (with the outcome) is
// recorded per device, for the tests' assertions.
//
// Not thread-safe: call everything from one thread (Round() itself fans out internally).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::devsim {

// What a device measured for the version it runs, per check-in.
struct SimTelemetry {
  uint64_t inferences = 0;  // 0: no telemetry entry is sent
  uint64_t errors = 0;
  double p95_ms = 0;
  std::map<std::string, uint64_t> histogram;
};

class FleetSimulator {
 public:
  using AttributesFn = std::function<v1::DeviceAttributes(int device)>;
  // Telemetry of `device` for the version it runs.
  using TelemetryPolicy = std::function<SimTelemetry(int device, const std::string& version)>;
  // A failure reason if `device` fails this assignment (asked once per deployment id), else nullopt.
  using FailurePolicy = std::function<std::optional<std::string>(int device, const v1::Assignment& assignment)>;

  struct Options {
    int devices = 100;
    std::vector<std::string> addresses;  // host:port of each replica
    std::string enrollment_token;
    std::string model;            // the model every device runs
    std::string factory_version;  // ... and the version it was flashed with
    std::string factory_digest;
    int threads = 8;
    int channels_per_address = 2;
    int steps_per_round = 0;      // deployment reports per device and round; 0: all at once
    bool rotate_addresses = false;
    std::chrono::milliseconds rpc_timeout{5000};
    AttributesFn attributes;      // default: DefaultAttributes
  };

  // What a CheckIn returned.
  struct Answer {
    enum class Kind { kKeep, kAssignment, kError };
    int round = 0;
    int address_index = 0;
    Kind kind = Kind::kKeep;
    std::string deployment_id, rollout_id, version;  // for assignments (version: download_version)
    bool is_rollback = false;
    grpc::StatusCode code = grpc::StatusCode::OK;   // for errors
  };
  // One ReportDeployment call.
  struct Report {
    int round = 0;
    std::string deployment_id;
    v1::DeploymentStep step = v1::DEPLOYMENT_STEP_UNSPECIFIED;
    grpc::StatusCode code = grpc::StatusCode::OK;  // OK = acknowledged
  };
  struct Device {
    int index = 0;
    std::string hardware_id, device_id, token;
    v1::DeviceAdmission admission = v1::DEVICE_ADMISSION_UNSPECIFIED;
    std::string running_version, running_digest;
    // The deployment under way, if any.
    std::optional<v1::Assignment> pending;
    std::vector<v1::DeploymentStep> pending_steps;  // still to report, in order
    std::string failure_reason;                     // when pending_steps ends in FAILED
    bool last_report_unknown = false;  // the previous attempt of pending_steps[0] failed in transport
    std::vector<Answer> answers;
    std::vector<Report> reports;
  };
  struct RoundStats {
    int check_ins = 0;
    int assignments = 0;
    int reports = 0;
    int errors = 0;  // failed RPCs of any kind
    std::string first_error;  // "CheckIn: <code> <message>" of one of them
    std::chrono::milliseconds duration{0};
  };

  // Site "berlin" for even, "paris" for odd devices; hardware_revision "2" / "3" alternating
  // in pairs; firmware "1.0"; sensor grid 16x16.
  static v1::DeviceAttributes DefaultAttributes(int device);

  explicit FleetSimulator(Options options);
  ~FleetSimulator();
  FleetSimulator(const FleetSimulator&) = delete;
  FleetSimulator& operator=(const FleetSimulator&) = delete;

  // Enrolls every device (in parallel). The first failure, if any.
  grpc::Status EnrollAll();

  // One check-in per device (plus its deployment reports).
  RoundStats Round();
  int rounds() const { return round_; }

  // Replicas moved (e.g. a server restarted on another port): reconnects.
  void SetAddresses(std::vector<std::string> addresses);
  void SetTelemetryPolicy(TelemetryPolicy policy) { telemetry_ = std::move(policy); }
  void SetFailurePolicy(FailurePolicy policy) { failure_ = std::move(policy); }

  int size() const { return static_cast<int>(devices_.size()); }
  const Device& device(int i) const { return devices_[static_cast<size_t>(i)]; }
  Device& mutable_device(int i) { return devices_[static_cast<size_t>(i)]; }
  // Devices per running version.
  std::map<std::string, int> CountByVersion() const;
  // Number of devices with a deployment under way.
  int Pending() const;
  // The channel device i uses this round (for tests that make their own calls as a device).
  std::shared_ptr<grpc::Channel> ChannelFor(int device) const;

 private:
  struct Endpoint {
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    std::vector<std::unique_ptr<v1::DeviceService::Stub>> stubs;
  };
  int AddressIndex(int device) const;
  v1::DeviceService::Stub& StubFor(int device, int worker);
  void Connect();
  void ParallelFor(const std::function<void(int device, int worker)>& fn);
  void StepDevice(Device& d, int worker, RoundStats& stats);

  Options options_;
  std::vector<Endpoint> endpoints_;
  std::vector<Device> devices_;
  TelemetryPolicy telemetry_;
  FailurePolicy failure_;
  int round_ = 0;
};

// Short names for assertions: "ACTIVATED" for DEPLOYMENT_STEP_ACTIVATED.
std::string StepShortName(v1::DeploymentStep step);

}  // namespace modelfleet::devsim
