#include "agent/app/agent.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "agent/app/grpc_transport.h"
#include "agent/app/test_hooks.h"
#include "agent/runtime/self_test.h"
#include "agent/sensor/presence_tracker.h"
#include "agent/sensor/replay_frame_source.h"
#include "agent/sensor/serial_frame_source.h"
#include "agent/sensor/synthetic.h"
#include "agent/update/fs_util.h"
#include "common/channel_args.h"
#include "common/grpc_status.h"
#include "modelfleet/crypto.h"

namespace modelfleet::agent::app {
namespace {

using client::StatusFromGrpc;

bool IsBackoffCode(StatusCode c) {
  return c == StatusCode::kUnavailable || c == StatusCode::kResourceExhausted ||
         c == StatusCode::kDeadlineExceeded || c == StatusCode::kUnknown ||
         c == StatusCode::kInternal || c == StatusCode::kAborted;
}

}  // namespace

Agent::Agent(AgentConfig config) : config_(std::move(config)) {}

Agent::~Agent() {
  RequestStop();
  if (inference_.joinable()) inference_.join();
}

void Agent::RequestStop() {
  stop_ = true;
  sleep_cv_.notify_all();
}

void Agent::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(sleep_mu_);
  sleep_cv_.wait_for(lock, d, [&] { return stop_.load(); });
}

std::chrono::milliseconds Agent::NextBackoff() {
  backoff_ = backoff_.count() == 0 ? config_.backoff_initial
                                   : std::min(config_.backoff_max, backoff_ * 2);
  // Jitter: uniformly in [backoff/2, backoff].
  std::uniform_int_distribution<int64_t> dist(backoff_.count() / 2, backoff_.count());
  return std::chrono::milliseconds(dist(rng_));
}

Status Agent::Init() {
  for (const std::string& spec : config_.publisher_keys) {
    update::PinnedKey key;
    std::string path = spec;
    const size_t eq = spec.find('=');
    if (eq != std::string::npos && spec.find('/') > eq) {
      key.key_id = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    }
    auto pub = ReadEd25519PublicKeyPem(path);
    if (!pub) return InvalidArgument("publisher_key", pub.error().message());
    key.public_key = *pub;
    key.source = path;
    keys_.push_back(std::move(key));
  }
  const std::filesystem::path dir = config_.state_dir;
  MF_RETURN_IF_ERROR(update::EnsureDir(dir).Annotate("state_dir"));
  ::chmod(dir.c_str(), 0700);
  store_ = std::make_unique<update::ModelStore>(dir);
  MF_RETURN_IF_ERROR(store_->Init());

  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (config_.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    auto pem = update::ReadWholeFile(config_.tls_ca);
    if (!pem) return InvalidArgument("tls_ca", pem.error().message());
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = *pem;
    creds = grpc::SslCredentials(o);
  }
  grpc::ChannelArguments args;
  client::SetDeviceReconnectBackoff(args);
  channel_ = grpc::CreateCustomChannel(config_.server, creds, args);
  device_ = v1::DeviceService::NewStub(channel_);

  auto rt = runtime::TorchRuntime::Create({.num_threads = config_.num_threads});
  if (!rt) return rt.error().Annotate("model runtime");
  runtime_ = std::move(*rt);

  auto state = update::UpdateStateStore::Open(dir);
  if (!state) {
    spdlog::error("update state is corrupt ({}); starting over", state.error().ToString());
    std::filesystem::remove(dir / "update.state");
    state = update::UpdateStateStore::Open(dir);
    if (!state) return state.error();
  }
  state_.emplace(std::move(*state));
  return Status::Ok();
}

Status Agent::LoadCredential() {
  const auto path = std::filesystem::path(config_.state_dir) / "credential";
  auto bytes = update::ReadWholeFile(path);
  if (!bytes) return bytes.error();
  const size_t nl = bytes->find('\n');
  if (nl == std::string::npos) return DataLoss("credential file " + path.string() + " is malformed");
  device_id_ = bytes->substr(0, nl);
  token_ = bytes->substr(nl + 1);
  while (!token_.empty() && (token_.back() == '\n' || token_.back() == ' ')) token_.pop_back();
  if (device_id_.empty() || token_.empty()) return DataLoss("credential file " + path.string() + " is malformed");
  return Status::Ok();
}

Status Agent::Enroll() {
  if (config_.enrollment_token.empty()) {
    return InvalidArgument("enrollment_token", "is required: the agent has no device credential yet");
  }
  v1::EnrollRequest req;
  req.set_enrollment_token(config_.enrollment_token);
  req.set_hardware_id(config_.hardware_id);
  auto* a = req.mutable_attributes();
  a->set_hardware_revision(config_.hardware_revision);
  a->set_firmware_version(config_.firmware_version);
  a->set_site(config_.site);
  a->set_sensor_rows(config_.sensor_rows);
  a->set_sensor_cols(config_.sensor_cols);
  for (const auto& [k, v] : config_.labels) (*a->mutable_labels())[k] = v;
  while (!stop_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + config_.rpc_timeout);
    v1::EnrollResponse resp;
    grpc::Status s = device_->Enroll(&ctx, req, &resp);
    if (s.ok()) {
      device_id_ = resp.device_id();
      token_ = resp.device_token();
      MF_RETURN_IF_ERROR(update::AtomicWriteFile(std::filesystem::path(config_.state_dir) / "credential",
                                                 device_id_ + "\n" + token_ + "\n", 0600));
      spdlog::info("enrolled as device {} (admission {})", device_id_,
                   v1::DeviceAdmission_Name(resp.admission()));
      backoff_ = {};
      return Status::Ok();
    }
    Status st = StatusFromGrpc(s, "Enroll");
    if (!IsBackoffCode(st.code())) return st;
    const auto wait = NextBackoff();
    spdlog::warn("{}; retrying in {} ms", st.ToString(), wait.count());
    SleepFor(wait);
  }
  return Status(StatusCode::kCancelled, "stopped");
}

std::shared_ptr<const Agent::ActiveModel> Agent::active() const {
  std::lock_guard lock(active_mu_);
  return active_;
}

void Agent::CountForProbation(const std::string& digest, bool bad) {
  std::lock_guard lock(probation_mu_);
  if (!probation_ || probation_->digest != digest) return;
  ++probation_->seen;
  if (bad) ++probation_->bad;
}

update::ProbationVerdict Agent::ProbationVerdict() {
  using Kind = update::ProbationVerdict::Kind;
  std::lock_guard lock(probation_mu_);
  if (!probation_ || config_.rollback_window <= 0) return {Kind::kPassed, ""};
  const int window = config_.rollback_window;
  if (probation_->bad * 2 > window) {
    const std::string reason = std::to_string(probation_->bad) + " of the first " +
                               std::to_string(probation_->seen) +
                               " inferences failed or exceeded the latency budget of " +
                               std::to_string(probation_->budget_ms) + " ms";
    probation_.reset();
    return {Kind::kFailed, reason};
  }
  if (probation_->seen < window) return {Kind::kPending, ""};
  spdlog::info("probation of {} passed ({} of {} inferences bad)", probation_->digest, probation_->bad,
               probation_->seen);
  probation_.reset();
  return {Kind::kPassed, ""};
}

void Agent::SetActive(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model,
                      bool probation) {
  {
    std::lock_guard lock(probation_mu_);
    if (probation && config_.rollback_window > 0) {
      probation_ = Probation{manifest.digest(), manifest.self_test().latency_budget_ms(), 0, 0};
    } else {
      probation_.reset();
    }
  }
  auto pre = sensor::Preprocessor::Create(manifest.input_spec());
  if (!pre) {
    spdlog::error("model {}@{}: {}", manifest.model(), manifest.version(), pre.error().ToString());
    return;
  }
  auto next = std::make_shared<ActiveModel>(ActiveModel{manifest, std::move(model), std::move(*pre)});
  std::lock_guard lock(active_mu_);
  active_ = std::move(next);
  spdlog::info("running {}@{} ({})", manifest.model(), manifest.version(), manifest.digest());
}

Status Agent::LoadActiveModel() {
  for (const auto& digest : {store_->ActiveDigest(), store_->LastGoodDigest()}) {
    if (!digest) continue;
    auto manifest = store_->LoadManifest(*digest);
    if (!manifest) {
      spdlog::error("installed model {}: {}", *digest, manifest.error().ToString());
      continue;
    }
    auto model = runtime_->Load(store_->ModelFile(*digest));
    if (!model) {
      spdlog::error("installed model {}: {}", *digest, model.error().ToString());
      continue;
    }
    if (store_->ActiveDigest() != digest) (void)store_->RollBack();
    SetActive(*manifest, std::move(*model));
    return Status::Ok();
  }
  spdlog::info("no model installed yet");
  return Status::Ok();
}

Status Agent::CheckIn(std::chrono::seconds* next) {
  v1::CheckInRequest req;
  const auto current = active();
  if (current) {
    auto* r = req.add_running();
    r->set_model(current->manifest.model());
    r->set_version(current->manifest.version());
    r->set_digest(current->manifest.digest());
  }
  req.set_agent_state(update::AgentStateFor(state_->state()));
  if (!attributes_sent_) {
    auto* a = req.mutable_attributes();
    a->set_hardware_revision(config_.hardware_revision);
    a->set_firmware_version(config_.firmware_version);
    a->set_site(config_.site);
    a->set_sensor_rows(config_.sensor_rows);
    a->set_sensor_cols(config_.sensor_cols);
    for (const auto& [k, v] : config_.labels) (*a->mutable_labels())[k] = v;
  }
  auto windows = telemetry_.Take();
  const auto now = std::chrono::system_clock::now();
  for (const auto& w : windows) *req.add_telemetry() = Telemetry::ToProto(w, now);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token_);
  ctx.set_deadline(now + config_.rpc_timeout);
  v1::CheckInResponse resp;
  grpc::Status s = device_->CheckIn(&ctx, req, &resp);
  if (!s.ok()) {
    // Sent again with the next check-in, unless the server refused them: it would refuse them
    // again, and every later check-in with them.
    if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      telemetry_.Restore(std::move(windows));
    } else if (!windows.empty()) {
      spdlog::error("CheckIn refused ({}); dropping the telemetry it carried", s.error_message());
    }
    return StatusFromGrpc(s, "CheckIn");
  }
  attributes_sent_ = true;
  for (const auto& t : req.telemetry()) {
    spdlog::info("telemetry {}@{}: {} inferences, {} errors, p95 {:.3f} ms, mean confidence {:.3f}", t.model(),
                 t.version(), t.inference_count(), t.error_count(), t.latency().p95_ms(), t.mean_confidence());
  }
  *next = resp.next_check_in_seconds() > 0 ? std::chrono::seconds(resp.next_check_in_seconds())
                                           : config_.check_in_interval;
  if (resp.has_assignment()) {
    const v1::Assignment& a = resp.assignment();
    if (state_->state() != update::UpdateState::kIdle) {
      if (state_->record().assignment.deployment_id() != a.deployment_id()) {
        spdlog::warn("assignment {} while {} is under way; finishing that first", a.deployment_id(),
                     state_->record().assignment.deployment_id());
      }
    } else if (a.deployment_id() == state_->record().last_finished_deployment) {
      spdlog::debug("assignment {} already finished", a.deployment_id());
    } else {
      Status us = updater_->Start(a);
      if (!us.ok() && !update::IsRetryable(us)) return us;
    }
  }
  return Status::Ok();
}

void Agent::InferenceLoop() {
  std::unique_ptr<sensor::FrameSource> source;
  if (config_.sensor == "synthetic") {
    sensor::SyntheticSourceOptions o;
    o.sensor.rows = static_cast<uint16_t>(config_.sensor_rows);
    o.sensor.cols = static_cast<uint16_t>(config_.sensor_cols);
    o.sensor.seed = config_.synthetic_seed;
    o.frame_rate_hz = config_.frame_rate_hz;
    o.realtime = true;
    auto schedule = sensor::ParseSchedule(config_.synthetic_schedule);
    if (!schedule) {
      spdlog::error("synthetic_schedule: {}", schedule.error().ToString());
      return;
    }
    o.schedule = *schedule;
    auto src = sensor::SyntheticFrameSource::Create(o);
    if (!src) {
      spdlog::error("sensor: {}", src.error().ToString());
      return;
    }
    source = std::move(*src);
  }
  auto reopen = [&]() -> bool {
    if (config_.sensor.rfind("replay:", 0) == 0) {
      sensor::ReplayOptions o;
      o.path = config_.sensor.substr(7);
      o.rate_hz = config_.frame_rate_hz;
      o.loop = true;
      auto src = sensor::ReplayFrameSource::Open(o);
      if (!src) {
        spdlog::error("sensor: {}", src.error().ToString());
        return false;
      }
      source = std::move(*src);
    } else if (config_.sensor.rfind("serial:", 0) == 0) {
      sensor::SerialOptions o;
      o.path = config_.sensor.substr(7);
      o.baud = config_.serial_baud;
      o.decoder.expected_rows = static_cast<uint16_t>(config_.sensor_rows);
      o.decoder.expected_cols = static_cast<uint16_t>(config_.sensor_cols);
      auto src = sensor::SerialFrameSource::Open(o);
      if (!src) {
        spdlog::error("sensor: {}", src.error().ToString());
        return false;
      }
      source = std::move(*src);
    }
    return source != nullptr;
  };
  if (!source && !reopen()) return;

  const auto t0 = std::chrono::steady_clock::now();
  auto now_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  };
  std::shared_ptr<const ActiveModel> model;
  std::optional<sensor::PresenceTracker> tracker;
  const auto min_period = std::chrono::duration<double>(1.0 / config_.frame_rate_hz);
  auto next_due = std::chrono::steady_clock::now();
  while (!stop_) {
    auto frame = source->Next(std::chrono::milliseconds(200));
    if (!frame) {
      spdlog::error("sensor failed: {}; reopening in 1 s", frame.error().ToString());
      SleepFor(std::chrono::seconds(1));
      if (config_.sensor != "synthetic") reopen();
      continue;
    }
    auto current = active();
    if (current != model) {
      model = current;
      tracker.reset();
      if (model) {
        sensor::PresenceOptions po;
        po.class_labels.assign(model->manifest.class_labels().begin(), model->manifest.class_labels().end());
        if (po.class_labels.empty()) po.class_labels = {"empty"};
        po.empty_label = std::find(po.class_labels.begin(), po.class_labels.end(), "empty") != po.class_labels.end()
                             ? "empty" : po.class_labels.front();
        po.min_confidence = config_.presence_min_confidence;
        po.hold_frames = config_.presence_hold_frames;
        po.nobody_after = config_.presence_nobody_after;
        auto t = sensor::PresenceTracker::Create(po, [](const sensor::PresenceEvent& e) {
          const std::string line = e.ToJson() + "\n";
          std::fwrite(line.data(), 1, line.size(), stdout);
          std::fflush(stdout);
        });
        if (t) {
          tracker.emplace(std::move(*t));
        } else {
          spdlog::error("presence tracker: {}", t.error().ToString());
        }
      }
    }
    if (!frame->has_value()) {
      if (tracker) (void)tracker->Tick(now_ms());
      continue;
    }
    if (!model) continue;
    // At most frame_rate_hz inferences per second, whatever the source delivers.
    const auto now = std::chrono::steady_clock::now();
    if (now < next_due) continue;
    next_due = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(min_period * 0.9);
    const v1::Manifest& m = model->manifest;
    auto input = model->preprocessor.Run(**frame);
    if (!input) {
      telemetry_.RecordError(m.model(), m.version());
      CountForProbation(m.digest(), true);
      spdlog::debug("preprocess: {}", input.error().ToString());
      continue;
    }
    std::vector<int64_t> shape(m.input_spec().shape().begin(), m.input_spec().shape().end());
    auto result = model->model->Run(*input, shape);
    if (!result) {
      telemetry_.RecordError(m.model(), m.version());
      CountForProbation(m.digest(), true);
      spdlog::debug("inference: {}", result.error().ToString());
      continue;
    }
    const std::string label =
        result->class_index >= 0 && result->class_index < m.class_labels_size()
            ? m.class_labels(result->class_index) : std::to_string(result->class_index);
    const double latency_ms = static_cast<double>(result->latency.count()) / 1000.0;
    telemetry_.RecordInference(m.model(), m.version(), latency_ms, label, result->confidence);
    const double budget = m.self_test().latency_budget_ms();
    CountForProbation(m.digest(), budget > 0 && latency_ms > budget);
    if (tracker) {
      Status s = tracker->Observe(label, result->confidence, now_ms());
      if (!s.ok()) spdlog::debug("presence: {}", s.ToString());
    }
  }
}

Status Agent::Run() {
  MF_ASSIGN_OR_RETURN(std::optional<PauseAt> pause, PauseAtFromEnvironment());
  MF_RETURN_IF_ERROR(Init());
  if (Status s = LoadCredential(); !s.ok()) {
    if (s.code() != StatusCode::kNotFound) spdlog::warn("{}; enrolling again", s.ToString());
    MF_RETURN_IF_ERROR(Enroll());
  } else {
    spdlog::info("device {} (stored credential)", device_id_);
  }
  MF_RETURN_IF_ERROR(LoadActiveModel());

  reporter_ = std::make_unique<GrpcReporter>(*device_, token_, config_.rpc_timeout);
  update::UpdaterOptions uo;
  uo.keys = keys_;
  uo.download.request_bytes = config_.download_chunk_bytes;
  uo.download.rate_limit_bytes_per_s = config_.download_rate_limit;
  uo.download.reserve_bytes = config_.disk_reserve_bytes;
  if (config_.rollback_window > 0) uo.probation = [this] { return ProbationVerdict(); };
  if (pause) {
    spdlog::warn("test hook {}={} is set: the update flow will pause there", kPauseAtEnvironmentVariable,
                 pause->text);
    uo.after_persist = [this, at = *pause, fired = false](update::UpdateState state, uint64_t bytes) mutable {
      if (fired || !PauseAtMatches(at, state, bytes)) return;
      fired = true;
      spdlog::warn("test hook {}={}: paused in {} with {} bytes on disk", kPauseAtEnvironmentVariable,
                   at.text, update::UpdateStateName(state), bytes);
      spdlog::default_logger()->flush();
      while (!stop_) SleepFor(std::chrono::seconds(1));
    };
  }
  auto channel = channel_;
  auto* token = &token_;
  const auto timeout = std::max<std::chrono::seconds>(config_.rpc_timeout, std::chrono::seconds(60));
  updater_ = std::make_unique<update::Updater>(
      *state_, *store_, *runtime_, *reporter_,
      [channel, token, timeout](const v1::Assignment& a) -> std::unique_ptr<update::ChunkFetcher> {
        return std::make_unique<GrpcChunkFetcher>(channel, *token, a.download_model(),
                                                          a.download_version(), timeout);
      },
      uo,
      [this](const v1::Manifest& m, std::unique_ptr<runtime::LoadedModel> model) {
        SetActive(m, std::move(model), /*probation=*/true);
      },
      [this](const v1::Manifest& m, std::unique_ptr<runtime::LoadedModel> model) {
        SetActive(m, std::move(model));
      });
  updater_->set_stop(&stop_);
  if (state_->state() != update::UpdateState::kIdle) {
    spdlog::info("resuming deployment {} in state {}", state_->record().assignment.deployment_id(),
                 update::UpdateStateName(state_->state()));
  } else {
    store_->CollectGarbage();
  }

  inference_ = std::thread([this] { InferenceLoop(); });

  while (!stop_) {
    if (state_->state() != update::UpdateState::kIdle) {
      Status us = updater_->Continue();
      if (!us.ok() && !update::IsRetryable(us)) spdlog::error("update: {}", us.ToString());
    }
    if (stop_) break;
    std::chrono::seconds next = config_.check_in_interval;
    Status s = CheckIn(&next);
    if (s.ok()) {
      backoff_ = {};
      // An update that just stopped early goes on after a short pause, not a whole interval.
      if (state_->state() != update::UpdateState::kIdle) next = std::chrono::seconds(1);
      SleepFor(next);
      continue;
    }
    if (s.code() == StatusCode::kUnauthenticated && !config_.enrollment_token.empty()) {
      spdlog::warn("{}: the credential was revoked; enrolling again", s.ToString());
      if (Status es = Enroll(); !es.ok()) spdlog::error("{}", es.ToString());
      continue;
    }
    const auto wait = NextBackoff();
    spdlog::warn("{}; next check-in in {} ms", s.ToString(), wait.count());
    SleepFor(wait);
  }
  if (inference_.joinable()) inference_.join();
  spdlog::info("stopped");
  return Status::Ok();
}

}  // namespace modelfleet::agent::app
