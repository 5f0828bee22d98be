#include "devsim/fleet_simulator.h"

#include <atomic>
#include <climits>
#include <mutex>
#include <random>
#include <thread>

#include "common/channel_args.h"

namespace modelfleet::devsim {

namespace {

using S = v1::DeploymentStep;

v1::AgentState AgentStateBefore(S next_step) {
  switch (next_step) {
    case S::DEPLOYMENT_STEP_DOWNLOADING: return v1::AGENT_STATE_DOWNLOADING;
    case S::DEPLOYMENT_STEP_VERIFYING: return v1::AGENT_STATE_VERIFYING;
    case S::DEPLOYMENT_STEP_INSTALLING: return v1::AGENT_STATE_INSTALLING;
    case S::DEPLOYMENT_STEP_SELF_TESTING:
    case S::DEPLOYMENT_STEP_ACTIVATED: return v1::AGENT_STATE_SELF_TESTING;
    default: return v1::AGENT_STATE_IDLE;
  }
}

void Authorize(grpc::ClientContext& ctx, const std::string& token) {
  ctx.AddMetadata("authorization", "Bearer " + token);
}

}  // namespace

std::string StepShortName(v1::DeploymentStep step) {
  std::string name = v1::DeploymentStep_Name(step);
  constexpr std::string_view kPrefix = "DEPLOYMENT_STEP_";
  return name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : name;
}

v1::DeviceAttributes FleetSimulator::DefaultAttributes(int device) {
  v1::DeviceAttributes a;
  a.set_site(device % 2 == 0 ? "berlin" : "paris");
  a.set_hardware_revision((device / 2) % 2 == 0 ? "2" : "3");
  a.set_firmware_version("1.0");
  a.set_sensor_rows(16);
  a.set_sensor_cols(16);
  return a;
}

FleetSimulator::FleetSimulator(Options options) : options_(std::move(options)) {
  if (!options_.attributes) options_.attributes = &DefaultAttributes;
  if (options_.threads < 1) options_.threads = 1;
  if (options_.channels_per_address < 1) options_.channels_per_address = 1;
  devices_.resize(static_cast<size_t>(options_.devices));
  for (int i = 0; i < options_.devices; ++i) {
    Device& d = devices_[static_cast<size_t>(i)];
    d.index = i;
    d.hardware_id = "hw-" + std::to_string(i);
    d.running_version = options_.factory_version;
    d.running_digest = options_.factory_digest;
  }
  Connect();
}

FleetSimulator::~FleetSimulator() = default;

namespace {
// A report the server did not take (busy, database briefly down, serialization conflict).
bool IsRetryableReportError(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::ABORTED;
}
}  // namespace

void FleetSimulator::Connect() {
  endpoints_.clear();
  for (const std::string& address : options_.addresses) {
    Endpoint e;
    for (int c = 0; c < options_.channels_per_address; ++c) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per channel
      client::SetDeviceReconnectBackoff(args);
      args.SetInt("modelfleet.sim.channel", c);
      auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      e.stubs.push_back(v1::DeviceService::NewStub(channel));
      e.channels.push_back(std::move(channel));
    }
    endpoints_.push_back(std::move(e));
  }
}

void FleetSimulator::SetAddresses(std::vector<std::string> addresses) {
  options_.addresses = std::move(addresses);
  Connect();
}

int FleetSimulator::AddressIndex(int device) const {
  const int n = static_cast<int>(endpoints_.size());
  return options_.rotate_addresses ? (device + round_) % n : device % n;
}

v1::DeviceService::Stub& FleetSimulator::StubFor(int device, int worker) {
  Endpoint& e = endpoints_[static_cast<size_t>(AddressIndex(device))];
  return *e.stubs[static_cast<size_t>(worker) % e.stubs.size()];
}

std::shared_ptr<grpc::Channel> FleetSimulator::ChannelFor(int device) const {
  return endpoints_[static_cast<size_t>(AddressIndex(device))].channels[0];
}

void FleetSimulator::ParallelFor(const std::function<void(int device, int worker)>& fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  const int n = size();
  for (int w = 0; w < options_.threads; ++w) {
    workers.emplace_back([&, w] {
      for (int i = next++; i < n; i = next++) fn(i, w);
    });
  }
  for (auto& t : workers) t.join();
}

grpc::Status FleetSimulator::EnrollAll() {
  std::mutex mu;
  grpc::Status first;
  ParallelFor([&](int i, int worker) {
    Device& d = devices_[static_cast<size_t>(i)];
    v1::EnrollRequest req;
    req.set_enrollment_token(options_.enrollment_token);
    req.set_hardware_id(d.hardware_id);
    *req.mutable_attributes() = options_.attributes(i);
    v1::EnrollResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
    grpc::Status s = StubFor(i, worker).Enroll(&ctx, req, &resp);
    if (!s.ok()) {
      std::lock_guard lock(mu);
      if (first.ok()) first = grpc::Status(s.error_code(), d.hardware_id + ": " + s.error_message());
      return;
    }
    d.device_id = resp.device_id();
    d.token = resp.device_token();
    d.admission = resp.admission();
  });
  return first;
}

FleetSimulator::RoundStats FleetSimulator::Round() {
  const auto start = std::chrono::steady_clock::now();
  ++round_;
  std::vector<RoundStats> per_worker(static_cast<size_t>(options_.threads));
  ParallelFor([&](int i, int worker) { StepDevice(devices_[static_cast<size_t>(i)], worker, per_worker[static_cast<size_t>(worker)]); });
  RoundStats total;
  for (const auto& s : per_worker) {
    total.check_ins += s.check_ins;
    total.assignments += s.assignments;
    total.reports += s.reports;
    total.errors += s.errors;
    if (total.first_error.empty()) total.first_error = s.first_error;
  }
  total.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return total;
}

void FleetSimulator::StepDevice(Device& d, int worker, RoundStats& stats) {
  if (d.token.empty()) return;  // never enrolled
  v1::DeviceService::Stub& stub = StubFor(d.index, worker);

  // 1. Check in: what runs, how it does.
  v1::CheckInRequest req;
  auto* running = req.add_running();
  running->set_model(options_.model);
  running->set_version(d.running_version);
  running->set_digest(d.running_digest);
  req.set_agent_state(d.pending && !d.pending_steps.empty() ? AgentStateBefore(d.pending_steps.front())
                                                            : v1::AGENT_STATE_IDLE);
  if (telemetry_) {
    SimTelemetry t = telemetry_(d.index, d.running_version);
    if (t.inferences > 0) {
      auto* vt = req.add_telemetry();
      vt->set_model(options_.model);
      vt->set_version(d.running_version);
      vt->set_inference_count(t.inferences);
      vt->set_error_count(t.errors);
      vt->mutable_latency()->set_p50_ms(t.p95_ms / 2);
      vt->mutable_latency()->set_p95_ms(t.p95_ms);
      vt->mutable_latency()->set_p99_ms(t.p95_ms * 1.2);
      for (const auto& [k, v] : t.histogram) (*vt->mutable_class_histogram())[k] = v;
      vt->set_mean_confidence(0.9);
    }
  }
  v1::CheckInResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  Authorize(ctx, d.token);
  grpc::Status s = stub.CheckIn(&ctx, req, &resp);
  ++stats.check_ins;
  Answer answer;
  answer.round = round_;
  answer.address_index = AddressIndex(d.index);
  if (!s.ok()) {
    answer.kind = Answer::Kind::kError;
    answer.code = s.error_code();
    d.answers.push_back(answer);
    ++stats.errors;
    if (stats.first_error.empty()) {
      stats.first_error = "CheckIn: " + std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message();
    }
    return;  // try again next round
  }
  if (resp.has_assignment()) {
    const v1::Assignment& a = resp.assignment();
    answer.kind = Answer::Kind::kAssignment;
    answer.deployment_id = a.deployment_id();
    answer.rollout_id = a.rollout_id();
    answer.version = a.download_version();
    answer.is_rollback = a.is_rollback();
    ++stats.assignments;
    if (!d.pending || d.pending->deployment_id() != a.deployment_id()) {
      d.pending = a;
      d.last_report_unknown = false;
      std::optional<std::string> failure = failure_ ? failure_(d.index, a) : std::nullopt;
      if (failure) {
        d.pending_steps = {S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_FAILED};
        d.failure_reason = *failure;
      } else {
        d.pending_steps = {S::DEPLOYMENT_STEP_DOWNLOADING, S::DEPLOYMENT_STEP_VERIFYING, S::DEPLOYMENT_STEP_INSTALLING,
                           S::DEPLOYMENT_STEP_SELF_TESTING, S::DEPLOYMENT_STEP_ACTIVATED};
      }
    }
  } else {
    answer.kind = Answer::Kind::kKeep;
  }
  d.answers.push_back(answer);

  // 2. Work on the deployment under way (even if told to keep: the agent is mid-install; the
  // server refuses the reports if it cancelled the deployment).
  int budget = options_.steps_per_round > 0 ? options_.steps_per_round : INT_MAX;
  while (d.pending && !d.pending_steps.empty() && budget-- > 0) {
    const S step = d.pending_steps.front();
    v1::DeploymentReport report;
    report.set_deployment_id(d.pending->deployment_id());
    report.set_step(step);
    if (step == S::DEPLOYMENT_STEP_FAILED) report.set_reason(d.failure_reason);
    if (step == S::DEPLOYMENT_STEP_DOWNLOADING) report.set_bytes_done(d.pending->manifest().size_bytes());
    // Like the agent: a server that is busy or briefly without its database is asked again
    // after a short, jittered backoff before the report waits for the next round.
    grpc::Status rs;
    for (int attempt = 0;; ++attempt) {
      v1::ReportDeploymentResponse ack;
      grpc::ClientContext rctx;
      rctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
      Authorize(rctx, d.token);
      rs = stub.ReportDeployment(&rctx, report, &ack);
      if (!IsRetryableReportError(rs.error_code()) || attempt == 2) break;
      thread_local std::mt19937 rng(std::random_device{}());
      const int backoff_ms = 50 << attempt;
      std::this_thread::sleep_for(std::chrono::milliseconds(
          std::uniform_int_distribution<int>(backoff_ms / 2, backoff_ms * 3 / 2)(rng)));
    }
    ++stats.reports;
    d.reports.push_back({round_, report.deployment_id(), step, rs.error_code()});
    bool done = rs.ok();
    if (!rs.ok()) {
      ++stats.errors;
      if (stats.first_error.empty()) {
        stats.first_error = "ReportDeployment " + StepShortName(step) + ": " +
                            std::to_string(static_cast<int>(rs.error_code())) + " " + rs.error_message();
      }
      if (rs.error_code() == grpc::StatusCode::FAILED_PRECONDITION && d.last_report_unknown) {
        done = true;  // the earlier attempt, whose answer was lost, went through after all
      } else if (rs.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 rs.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                 rs.error_code() == grpc::StatusCode::CANCELLED || rs.error_code() == grpc::StatusCode::UNKNOWN ||
                 rs.error_code() == grpc::StatusCode::INTERNAL) {
        d.last_report_unknown = true;  // outcome unknown: repeat next round
        break;
      } else if (rs.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                 rs.error_code() == grpc::StatusCode::ABORTED) {
        break;  // refused before it took effect: repeat next round
      } else {
        d.pending.reset();  // the server will not have it (cancelled, not ours, ...)
        d.pending_steps.clear();
        d.last_report_unknown = false;
        break;
      }
    }
    if (done) {
      d.last_report_unknown = false;
      d.pending_steps.erase(d.pending_steps.begin());
      if (step == S::DEPLOYMENT_STEP_ACTIVATED) {
        d.running_version = d.pending->download_version();
        d.running_digest = d.pending->manifest().digest();
      }
      if (d.pending_steps.empty()) d.pending.reset();
    }
  }
}

std::map<std::string, int> FleetSimulator::CountByVersion() const {
  std::map<std::string, int> out;
  for (const Device& d : devices_) ++out[d.running_version];
  return out;
}

int FleetSimulator::Pending() const {
  int n = 0;
  for (const Device& d : devices_) n += d.pending ? 1 : 0;
  return n;
}

}  // namespace modelfleet::devsim
