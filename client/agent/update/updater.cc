#include "agent/update/updater.h"

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include "agent/update/fs_util.h"
#include "modelfleet/crypto.h"

namespace modelfleet::agent::update {

bool IsRetryable(const Status& s) {
  // RESOURCE_EXHAUSTED is not here: from the downloader it means the local disk is full (the
  // deployment fails); the gRPC clients map the server's RESOURCE_EXHAUSTED to UNAVAILABLE.
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded ||
         s.code() == StatusCode::kCancelled;
}

Updater::Updater(UpdateStateStore& state, const ModelStore& store, runtime::ModelRuntime& runtime,
                 DeploymentReporter& reporter, FetcherFactory fetchers, UpdaterOptions options,
                 ActivatedFn on_activated, RolledBackFn on_rolled_back)
    : state_(state),
      store_(store),
      runtime_(runtime),
      reporter_(reporter),
      fetchers_(std::move(fetchers)),
      options_(std::move(options)),
      on_activated_(std::move(on_activated)),
      on_rolled_back_(std::move(on_rolled_back)) {}

Status Updater::Start(const v1::Assignment& assignment) {
  MF_RETURN_IF_ERROR(state_.Begin(assignment));
  spdlog::info("update: deployment {} of {}@{} ({}) started", assignment.deployment_id(),
               assignment.manifest().model(), assignment.manifest().version(),
               assignment.manifest().digest());
  AfterPersist(UpdateState::kDownloading, FileSizeOrZero(store_.PartPath(assignment.manifest().digest())));
  return Continue();
}

Status Updater::Continue() {
  waiting_ = false;
  while (state_.state() != UpdateState::kIdle && !waiting_) {
    if (stop_ && stop_->load()) return Status(StatusCode::kCancelled, "stopping");
    const UpdateState before = state_.state();
    Status s = Step();
    if (!s.ok()) {
      spdlog::warn("update: {} of deployment {} stopped: {}", UpdateStateName(before),
                   state_.record().assignment.deployment_id(), s.ToString());
      return s;
    }
    if (state_.state() != before) {
      const std::string& digest = state_.record().assignment.manifest().digest();
      AfterPersist(state_.state(), digest.empty() ? 0 : FileSizeOrZero(store_.PartPath(digest)));
    }
  }
  return Status::Ok();
}

void Updater::AfterPersist(UpdateState state, uint64_t bytes_on_disk) const {
  if (options_.after_persist) options_.after_persist(state, bytes_on_disk);
}

Status Updater::ReportStep(v1::DeploymentStep step, uint64_t bytes_done, const std::string& reason) {
  v1::DeploymentReport report;
  report.set_deployment_id(state_.record().assignment.deployment_id());
  report.set_step(step);
  report.set_bytes_done(bytes_done);
  report.set_reason(reason);
  *report.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  Status s = reporter_.Report(report);
  if (s.ok()) return s;
  if (IsRetryable(s) || s.code() == StatusCode::kResourceExhausted) return s;
  // FAILED_PRECONDITION (the step was already reported before a restart, or the server ended
  // the deployment) and NOT_FOUND are answers, not outages: the flow goes on.
  spdlog::warn("update: report {} for {} refused: {}", v1::DeploymentStep_Name(step),
               report.deployment_id(), s.ToString());
  return Status::Ok();
}

std::optional<uint64_t> Updater::RunningCounter() const {
  const auto active = store_.ActiveDigest();
  if (!active) return std::nullopt;
  auto m = store_.LoadManifest(*active);
  if (!m) return std::nullopt;
  return m->version_counter();
}

std::filesystem::path Updater::ArtifactPath() const {
  const std::string& digest = state_.record().assignment.manifest().digest();
  return store_.IsInstalled(digest) ? store_.ModelFile(digest) : store_.PartPath(digest);
}

Status Updater::FailWith(const Status& why) {
  spdlog::error("update: deployment {} fails in {}: {}", state_.record().assignment.deployment_id(),
                UpdateStateName(state_.state()), why.ToString());
  return state_.Transition(UpdateState::kFailed, why.ToString());
}

Status Updater::Step() {
  switch (state_.state()) {
    case UpdateState::kIdle: return Status::Ok();
    case UpdateState::kDownloading: return StepDownloading();
    case UpdateState::kVerifying: return StepVerifying();
    case UpdateState::kInstalling: return StepInstalling();
    case UpdateState::kSelfTesting: return StepSelfTesting();
    case UpdateState::kActivated: return StepActivated();
    case UpdateState::kFailed: return StepFailed();
    case UpdateState::kRolledBack: return StepRolledBack();
  }
  return Status::Ok();
}

Status Updater::StepDownloading() {
  const v1::Assignment& a = state_.record().assignment;
  const v1::Manifest& m = a.manifest();
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_DOWNLOADING, FileSizeOrZero(store_.PartPath(m.digest())), ""));
  if (Status s = VerifyManifestTrust(m, options_.keys); !s.ok()) return FailWith(s);
  if (Status s = VerifyVersionCounter(m, RunningCounter(), a.is_rollback()); !s.ok()) return FailWith(s);
  if (!IsSha256Hex(m.digest()) || m.size_bytes() == 0) {
    return FailWith(InvalidArgument("manifest.digest", "the assignment's manifest has no digest or size"));
  }
  if (!store_.IsInstalled(m.digest())) {
    auto result = DownloadArtifact();
    if (!result) {
      if (IsRetryable(result.error())) return result.error();
      return FailWith(result.error());
    }
    MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_DOWNLOADING, result->bytes_done, ""));
  }
  return state_.Transition(UpdateState::kVerifying);
}

Expected<DownloadResult> Updater::DownloadArtifact() {
  const v1::Assignment& a = state_.record().assignment;
  const v1::Manifest& m = a.manifest();
  spdlog::info("update: downloading {} from byte {} of {}", m.digest(),
               FileSizeOrZero(store_.PartPath(m.digest())), m.size_bytes());
  auto fetcher = fetchers_(a);
  auto last = std::chrono::steady_clock::now();
  auto result = DownloadToPartial(
      *fetcher, m.digest(), m.size_bytes(), store_.PartPath(m.digest()), options_.download,
      [&](uint64_t done) {
        AfterPersist(UpdateState::kDownloading, done);
        const auto now = std::chrono::steady_clock::now();
        if (now - last >= options_.progress_report_interval && done < m.size_bytes()) {
          last = now;
          // Progress reports are best effort; the report once all bytes are on disk counts.
          (void)ReportStep(v1::DEPLOYMENT_STEP_DOWNLOADING, done, "");
        }
      });
  if (!result) return result;
  if (result->resumed_from > 0) {
    spdlog::info("update: download of {} resumed from byte {}", m.digest(), result->resumed_from);
  }
  // What came over the network in this run: after a restart only the missing bytes.
  spdlog::info("update: download of {} complete: {} bytes were on disk, {} fetched, {} total",
               m.digest(), result->resumed_from, result->bytes_fetched, result->bytes_done);
  return result;
}

Status Updater::StepVerifying() {
  const v1::Assignment& a = state_.record().assignment;
  const v1::Manifest& m = a.manifest();
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_VERIFYING, m.size_bytes(), ""));
  if (Status s = VerifyArtifactFile(ArtifactPath(), m); !s.ok()) return FailWith(s);
  if (Status s = VerifyManifestTrust(m, options_.keys); !s.ok()) return FailWith(s);
  if (Status s = VerifyVersionCounter(m, RunningCounter(), a.is_rollback()); !s.ok()) return FailWith(s);
  return state_.Transition(UpdateState::kInstalling);
}

Status Updater::StepInstalling() {
  const v1::Manifest& m = state_.record().assignment.manifest();
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_INSTALLING, m.size_bytes(), ""));
  if (Status s = store_.Install(m); !s.ok()) return FailWith(s);
  return state_.Transition(UpdateState::kSelfTesting);
}

Status Updater::StepSelfTesting() {
  const v1::Manifest& m = state_.record().assignment.manifest();
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_SELF_TESTING, m.size_bytes(), ""));
  auto loaded = runtime_.Load(store_.ModelFile(m.digest()));
  if (!loaded) return FailWith(loaded.error().Annotate("loading the model"));
  runtime::SelfTestReport st;
  if (Status s = runtime::RunSelfTest(**loaded, m, options_.self_test, &st); !s.ok()) {
    return FailWith(s);
  }
  spdlog::info("update: self-test of {}@{} passed (median {} us)", m.model(), m.version(),
               st.median_latency.count());
  // The same bytes may come as another version: the installed manifest follows the assignment.
  if (auto installed = store_.LoadManifest(m.digest());
      installed && installed->SerializeAsString() != m.SerializeAsString()) {
    if (Status s = store_.WriteManifest(m); !s.ok()) return FailWith(s);
  }
  if (Status s = store_.Activate(m.digest()); !s.ok()) return FailWith(s);
  tested_ = std::move(*loaded);
  return state_.Transition(UpdateState::kActivated, "activated");
}

Status Updater::StepActivated() {
  const v1::Assignment& a = state_.record().assignment;
  if (activated_done_ != a.deployment_id()) MF_RETURN_IF_ERROR(HandOverActivatedModel());
  if (options_.probation) {
    const ProbationVerdict v = options_.probation();
    if (v.kind == ProbationVerdict::Kind::kPending) {
      waiting_ = true;
      return Status::Ok();
    }
    if (v.kind == ProbationVerdict::Kind::kFailed && RollBackToLastGood(v.reason)) {
      return state_.Transition(UpdateState::kRolledBack, "local rollback: " + v.reason);
    }
  }
  activated_done_.clear();
  MF_RETURN_IF_ERROR(state_.Transition(UpdateState::kIdle));
  store_.CollectGarbage();
  return Status::Ok();
}

Status Updater::HandOverActivatedModel() {
  const v1::Assignment& a = state_.record().assignment;
  const v1::Manifest& m = a.manifest();
  if (on_activated_) {
    if (!tested_) {  // resumed after a restart: load the activated model again
      auto loaded = runtime_.Load(store_.ModelFile(m.digest()));
      if (loaded) tested_ = std::move(*loaded);
    }
    if (tested_) on_activated_(m, std::move(tested_));
  }
  tested_.reset();
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_ACTIVATED, m.size_bytes(), ""));
  spdlog::info("update: deployment {} ACTIVATED: {}@{} ({})", a.deployment_id(), m.model(),
               m.version(), m.digest());
  activated_done_ = a.deployment_id();
  return Status::Ok();
}

bool Updater::RollBackToLastGood(const std::string& reason) {
  const v1::Manifest& m = state_.record().assignment.manifest();
  const auto good = store_.LastGoodDigest();
  auto good_manifest = good ? store_.LoadManifest(*good) : Expected<v1::Manifest>(Fail(NotFound("none")));
  auto good_model = good ? runtime_.Load(store_.ModelFile(*good))
                         : Expected<std::unique_ptr<runtime::LoadedModel>>(Fail(NotFound("none")));
  if (good_manifest && good_model && store_.RollBack().ok()) {
    spdlog::warn("update: rolling back {}@{} to {}@{}: {}", m.model(), m.version(),
                 good_manifest->model(), good_manifest->version(), reason);
    if (on_rolled_back_) on_rolled_back_(*good_manifest, std::move(*good_model));
    return true;
  }
  spdlog::error("update: {}@{} is unhealthy ({}) but there is no last-known-good model to go back to",
                m.model(), m.version(), reason);
  return false;
}

Status Updater::StepFailed() {
  const v1::Assignment& a = state_.record().assignment;
  tested_.reset();
  const uint64_t deleted = store_.Discard(a.manifest().digest());
  const std::string reason = state_.record().reason + " (deleted " + std::to_string(deleted) + " bytes)";
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_FAILED, 0, reason));
  spdlog::warn("update: deployment {} FAILED: {}", a.deployment_id(), reason);
  return state_.Transition(UpdateState::kIdle);
}

Status Updater::StepRolledBack() {
  const v1::Assignment& a = state_.record().assignment;
  MF_RETURN_IF_ERROR(ReportStep(v1::DEPLOYMENT_STEP_ROLLED_BACK, 0, state_.record().reason));
  spdlog::warn("update: deployment {} ROLLED_BACK: {}", a.deployment_id(), state_.record().reason);
  return state_.Transition(UpdateState::kIdle);
}

}  // namespace modelfleet::agent::update
