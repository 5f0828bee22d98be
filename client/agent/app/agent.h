// The modelfleet-agent process: enrollment and the stored device credential, the check-in loop
// (server-given interval, jittered exponential backoff on UNAVAILABLE / RESOURCE_EXHAUSTED /
// DEADLINE_EXCEEDED / connection errors), the update flow (agent/update/updater.h) and the
// inference thread (sensor -> Preprocessor -> LoadedModel -> PresenceTracker, presence events
// as JSON lines on stdout, telemetry per model version sent with each check-in: put back for
// the next one when the call fails, dropped when the server refuses it as INVALID_ARGUMENT,
// which it would do again with every later check-in). The current model keeps running whatever
// the server does. A test hook (test_hooks.h, MODELFLEET_AGENT_PAUSE_AT) can pause the update
// flow at a given state for the kill tests.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "agent/app/config.h"
#include "agent/app/telemetry.h"
#include "agent/runtime/torch_runtime.h"
#include "agent/sensor/preprocessor.h"
#include "agent/update/model_store.h"
#include "agent/update/update_state.h"
#include "agent/update/updater.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::agent::app {

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();

  // Runs until RequestStop(); the error if it cannot start (bad key file, enrollment refused...).
  Status Run();
  void RequestStop();

 private:
  struct ActiveModel {
    v1::Manifest manifest;
    std::shared_ptr<runtime::LoadedModel> model;
    sensor::Preprocessor preprocessor;
  };

  Status Init();
  Status LoadCredential();
  Status Enroll();
  Status LoadActiveModel();
  void SetActive(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model,
                 bool probation = false);
  // The inference thread's account of one inference of `digest` (probation bookkeeping).
  void CountForProbation(const std::string& digest, bool bad);
  update::ProbationVerdict ProbationVerdict();
  std::shared_ptr<const ActiveModel> active() const;
  // One check-in; the answer's interval in *next.
  Status CheckIn(std::chrono::seconds* next);
  void InferenceLoop();
  void SleepFor(std::chrono::milliseconds d);
  std::chrono::milliseconds NextBackoff();

  AgentConfig config_;
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DeviceService::Stub> device_;
  std::string device_id_, token_;
  bool attributes_sent_ = false;

  std::unique_ptr<runtime::TorchRuntime> runtime_;
  std::unique_ptr<update::ModelStore> store_;
  std::optional<update::UpdateStateStore> state_;
  std::unique_ptr<update::DeploymentReporter> reporter_;
  std::unique_ptr<update::Updater> updater_;
  std::vector<update::PinnedKey> keys_;

  mutable std::mutex active_mu_;
  std::shared_ptr<const ActiveModel> active_;
  Telemetry telemetry_;
  struct Probation {
    std::string digest;
    double budget_ms = 0;
    int seen = 0, bad = 0;
  };
  std::mutex probation_mu_;
  std::optional<Probation> probation_;
  std::thread inference_;

  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace modelfleet::agent::app
