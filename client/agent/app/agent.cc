#include "agent/app/agent.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "agent/app/check_in_loop.h"
#include "agent/app/grpc_transport.h"
#include "agent/update/fs_util.h"
#include "common/channel_args.h"
#include "modelfleet/crypto.h"

namespace modelfleet::agent::app {
namespace {

// "[key_id=]path.pem" -> the pinned key. INVALID_ARGUMENT (field publisher_key).
Expected<std::vector<update::PinnedKey>> ReadPublisherKeys(const std::vector<std::string>& specs) {
  std::vector<update::PinnedKey> keys;
  for (const std::string& spec : specs) {
    update::PinnedKey key;
    std::string path = spec;
    const size_t eq = spec.find('=');
    if (eq != std::string::npos && spec.find('/') > eq) {
      key.key_id = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    }
    auto pub = ReadEd25519PublicKeyPem(path);
    if (!pub) return Fail(InvalidArgument("publisher_key", pub.error().message()));
    key.public_key = *pub;
    key.source = path;
    keys.push_back(std::move(key));
  }
  return keys;
}

}  // namespace

Agent::Agent(AgentConfig config)
    : config_(std::move(config)),
      backoff_(config_.backoff_initial, config_.backoff_max),
      probation_(config_.rollback_window),
      inference_(config_, active_, telemetry_, probation_, stop_) {}

Agent::~Agent() {
  RequestStop();
  if (inference_thread_.joinable()) inference_thread_.join();
}

void Agent::RequestStop() { stop_.Request(); }

Status Agent::Init() {
  MF_ASSIGN_OR_RETURN(keys_, ReadPublisherKeys(config_.publisher_keys));
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
  enrollment_ = std::make_unique<Enrollment>(config_, *device_, stop_, backoff_);

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

void Agent::SetActive(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model,
                      bool probation) {
  if (probation) {
    probation_.Watch(manifest);
  } else {
    probation_.Clear();
  }
  active_.Set(manifest, std::move(model));
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

std::unique_ptr<update::Updater> Agent::NewUpdater(const std::optional<PauseAt>& pause) {
  update::UpdaterOptions uo;
  uo.keys = keys_;
  uo.download.request_bytes = config_.download_chunk_bytes;
  uo.download.rate_limit_bytes_per_s = config_.download_rate_limit;
  uo.download.reserve_bytes = config_.disk_reserve_bytes;
  if (probation_.enabled()) uo.probation = [this] { return probation_.Verdict(); };
  if (pause) {
    spdlog::warn("test hook {}={} is set: the update flow will pause there", kPauseAtEnvironmentVariable,
                 pause->text);
    uo.after_persist = [this, at = *pause, fired = false](update::UpdateState state, uint64_t bytes) mutable {
      if (fired || !PauseAtMatches(at, state, bytes)) return;
      fired = true;
      spdlog::warn("test hook {}={}: paused in {} with {} bytes on disk", kPauseAtEnvironmentVariable,
                   at.text, update::UpdateStateName(state), bytes);
      spdlog::default_logger()->flush();
      while (!stop_.requested()) stop_.SleepFor(std::chrono::seconds(1));
    };
  }
  auto channel = channel_;
  // The fetchers carry the token current when a download starts (it changes on re-enrollment).
  const std::string* token = &enrollment_->token();
  const auto timeout = std::max<std::chrono::seconds>(config_.rpc_timeout, std::chrono::seconds(60));
  auto updater = std::make_unique<update::Updater>(
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
  updater->set_stop(stop_.flag());
  return updater;
}

Status Agent::Run() {
  MF_ASSIGN_OR_RETURN(std::optional<PauseAt> pause, PauseAtFromEnvironment());
  MF_RETURN_IF_ERROR(Init());
  MF_RETURN_IF_ERROR(enrollment_->LoadOrEnroll());
  MF_RETURN_IF_ERROR(LoadActiveModel());

  reporter_ = std::make_unique<GrpcReporter>(*device_, enrollment_->token(), config_.rpc_timeout);
  updater_ = NewUpdater(pause);
  if (state_->state() != update::UpdateState::kIdle) {
    spdlog::info("resuming deployment {} in state {}", state_->record().assignment.deployment_id(),
                 update::UpdateStateName(state_->state()));
  } else {
    store_->CollectGarbage();
  }

  inference_thread_ = std::thread([this] { inference_.Run(); });
  CheckInLoop(config_, *device_, *enrollment_, active_, telemetry_, *state_, *updater_, stop_, backoff_)
      .Run();
  if (inference_thread_.joinable()) inference_thread_.join();
  spdlog::info("stopped");
  return Status::Ok();
}

}  // namespace modelfleet::agent::app
