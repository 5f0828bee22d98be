// Updater: drives one assignment through the state table of update_state.h to a terminal state,
// reporting every step with DeviceService.ReportDeployment:
//   Downloading   resumable download into partial/<digest>.part (DOWNLOADING with bytes_done,
//                 reported at most once per second and at the end); the trust and the
//                 anti-rollback checks run first so nothing is fetched for a manifest that
//                 would be refused anyway
//   Verifying     size + SHA-256 of the file, Ed25519 signature against the pinned keys,
//                 version_counter not lower than the running one unless is_rollback
//   Installing    atomic install into models/<digest>/
//   SelfTesting   load with the ModelRuntime, RunSelfTest; then the `active` pointer switches
//   Activated     ACTIVATED reported, the new model handed to the caller
//   Failed        partial/installed bytes deleted, FAILED reported with the reason
// A terminal state is left (to Idle) only once the server acknowledged its report, so a report
// lost with the connection is repeated. After a restart Resume() re-enters the persisted state.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "agent/runtime/model_runtime.h"
#include "agent/runtime/self_test.h"
#include "agent/update/downloader.h"
#include "agent/update/model_store.h"
#include "agent/update/update_state.h"
#include "agent/update/verifier.h"
#include "modelfleet/status.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::agent::update {

class DeploymentReporter {
 public:
  virtual ~DeploymentReporter() = default;
  // OK once the server acknowledged it; the gRPC code otherwise.
  virtual Status Report(const v1::DeploymentReport& report) = 0;
};

// Local rollback after activation: the caller watches the first inferences of the new model.
struct ProbationVerdict {
  enum class Kind { kPending, kPassed, kFailed };
  Kind kind = Kind::kPassed;
  std::string reason;  // for kFailed
};

struct UpdaterOptions {
  std::vector<PinnedKey> keys;
  DownloadOptions download;
  runtime::SelfTestOptions self_test;
  std::chrono::milliseconds progress_report_interval{1000};
  // Asked while Activated (after ACTIVATED was reported). Unset: activation is final at once.
  // kFailed: `active` goes back to last_good, ROLLED_BACK is reported.
  std::function<ProbationVerdict()> probation;
  // Test hook (unset in production; modelfleet-agent wires MODELFLEET_AGENT_PAUSE_AT to it, see
  // agent/app/test_hooks.h). Called on the updater's thread right after a new state was
  // persisted (before that state's step runs or reports anything; `bytes_on_disk` is the
  // partial file's size), and while Downloading after each request's bytes were fsynced
  // (`bytes_on_disk` = the bytes on disk then). The flow goes on when it returns.
  std::function<void(UpdateState state, uint64_t bytes_on_disk)> after_persist;
};

class Updater {
 public:
  using FetcherFactory = std::function<std::unique_ptr<ChunkFetcher>(const v1::Assignment&)>;
  // Called when a model was activated (already loaded and self-tested).
  using ActivatedFn = std::function<void(const v1::Manifest&, std::unique_ptr<runtime::LoadedModel>)>;
  // Called after a local rollback with the last-known-good model (loaded).
  using RolledBackFn = ActivatedFn;

  Updater(UpdateStateStore& state, const ModelStore& store, runtime::ModelRuntime& runtime,
          DeploymentReporter& reporter, FetcherFactory fetchers, UpdaterOptions options,
          ActivatedFn on_activated, RolledBackFn on_rolled_back = nullptr);

  // Starts `assignment` (the state must be Idle) and runs it; see Continue().
  Status Start(const v1::Assignment& assignment);
  // Runs the persisted assignment from its current state until Idle. OK when it reached Idle
  // (activated, failed, ...) or waits in Activated for the probation verdict (call again);
  // UNAVAILABLE/DEADLINE_EXCEEDED/CANCELLED when it had to stop (the server is away,
  // shutdown): the state is kept and a later Continue() goes on from there.
  Status Continue();

  UpdateState state() const { return state_.state(); }
  // Last step outcome for logs/tests.
  const std::string& last_reason() const { return state_.record().reason; }

  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; options_.download.stop = stop; }

 private:
  // Runs the current state's step: dispatches to the member function of that state below. Each
  // step does its state's work (idempotent, so it may re-run after a restart), reports it, and
  // ends with the transition the table in update_state.h allows, or returns what stopped it (the
  // state is kept). Idle has no step.
  Status Step();
  Status StepDownloading();
  Status StepVerifying();
  Status StepInstalling();
  Status StepSelfTesting();
  Status StepActivated();
  Status StepFailed();
  Status StepRolledBack();

  // Downloading: fetches the bytes missing from the partial file; the downloader's error as is.
  Expected<DownloadResult> DownloadArtifact();
  // Activated, once per deployment: hands the tested model to on_activated, reports ACTIVATED.
  Status HandOverActivatedModel();
  // Activated, when probation failed: switches `active` back to the last-known-good model and
  // hands that to on_rolled_back. False (logged) when there is none to go back to.
  bool RollBackToLastGood(const std::string& reason);

  Status ReportStep(v1::DeploymentStep step, uint64_t bytes_done, const std::string& reason);
  Status FailWith(const Status& why);
  void AfterPersist(UpdateState state, uint64_t bytes_on_disk) const;
  std::optional<uint64_t> RunningCounter() const;
  std::filesystem::path ArtifactPath() const;

  UpdateStateStore& state_;
  const ModelStore& store_;
  runtime::ModelRuntime& runtime_;
  DeploymentReporter& reporter_;
  FetcherFactory fetchers_;
  UpdaterOptions options_;
  ActivatedFn on_activated_;
  RolledBackFn on_rolled_back_;
  bool waiting_ = false;
  std::string activated_done_;  // deployment whose activation was handed over and reported
  const std::atomic<bool>* stop_ = nullptr;
  std::unique_ptr<runtime::LoadedModel> tested_;  // loaded in SelfTesting, handed over on activation
};

// Transient: the server or the network is away, or we are shutting down.
bool IsRetryable(const Status& s);

}  // namespace modelfleet::agent::update
