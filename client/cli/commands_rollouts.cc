// `modelfleet rollouts create|list|show|watch|pause|resume|approve|abort|rollback|retry`.
#include <algorithm>
#include <iostream>
#include <sstream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/rollout_view.h"
#include "modelfleet/numbers.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::cli {

namespace {

void PrintRollout(const Settings& s, const v1::Rollout& r) {
  if (s.output == OutputFormat::kJson) {
    std::cout << ToJson(r) << std::endl;
    return;
  }
  for (const auto& line : RenderRollout(r)) std::cout << line << "\n";
  PrintKeyValues(std::cout, {{"auto rollback", r.auto_rollback() ? "yes" : "no"},
                             {"created by", OrDash(r.created_by())},
                             {"created", FormatTime(r.create_time())},
                             {"stage started", FormatTime(r.stage_start_time())}});
}

}  // namespace

Expected<v1::Stage> ParseStage(const std::string& spec) {
  v1::Stage stage;
  std::stringstream parts(spec);
  std::string part;
  bool first = true;
  auto number = [&](const std::string& text, const std::string& what) -> Expected<double> {
    if (const std::optional<double> v = ParseNumber<double>(text)) return *v;
    return Fail(InvalidArgument("--stage", "'" + text + "' is not a number for " + what + " in '" + spec + "'"));
  };
  while (std::getline(parts, part, ':')) {
    if (first) {
      MF_ASSIGN_OR_RETURN(double percent, number(part, "the percentage"));
      stage.set_percent(percent);
      stage.set_success_threshold(1.0);
      first = false;
      continue;
    }
    if (part == "approval") {
      stage.set_requires_approval(true);
      continue;
    }
    MF_ASSIGN_OR_RETURN(auto kv, SplitPair(part, '=', "--stage"));
    MF_ASSIGN_OR_RETURN(double v, number(kv.second, kv.first));
    auto* g = stage.mutable_gates();
    if (kv.first == "min") {
      stage.set_min_devices(static_cast<uint32_t>(v));
    } else if (kv.first == "soak") {
      stage.set_soak_seconds(static_cast<uint32_t>(v));
    } else if (kv.first == "threshold") {
      stage.set_success_threshold(v);
    } else if (kv.first == "max-failure") {
      g->set_max_failure_ratio(v);
    } else if (kv.first == "max-error") {
      g->set_max_error_ratio(v);
    } else if (kv.first == "max-p95") {
      g->set_max_p95_latency_ms(v);
    } else if (kv.first == "max-shift") {
      g->set_max_class_shift(v);
    } else if (kv.first == "min-inferences") {
      g->set_min_inferences(static_cast<uint64_t>(v));
    } else {
      return Fail(
          InvalidArgument("--stage", "unknown key '" + kv.first + "' in '" + spec +
                                         "' (known: min, soak, threshold, max-failure, max-error, max-p95, "
                                         "max-shift, min-inferences, approval)"));
    }
  }
  if (first) return Fail(InvalidArgument("--stage", "is empty"));
  return stage;
}

Status CreateRollout(const Settings& s, const RolloutSpec& spec) {
  v1::CreateRolloutRequest req;
  req.set_model(spec.model);
  req.set_version(spec.version);
  req.set_target(spec.target);
  req.set_auto_rollback(spec.auto_rollback);
  req.set_deployment_timeout_seconds(spec.deployment_timeout_seconds);
  req.set_queue_if_conflicting(spec.queue);
  for (const auto& stage : spec.stages) {
    MF_ASSIGN_OR_RETURN(*req.add_stages(), ParseStage(stage));
  }
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  Rpc rpc(s);
  v1::Rollout r;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateRollout(&rpc.context, req, &r), s));
  PrintRollout(s, r);
  return Status::Ok();
}

Status ListRollouts(const Settings& s, const std::string& model) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::ListRolloutsRequest req;
  req.set_model(model);
  MF_ASSIGN_OR_RETURN(std::vector<v1::Rollout> rollouts,
                      ListAll(s, *stub, &v1::FleetService::Stub::ListRollouts, req,
                              [](const v1::ListRolloutsResponse& r) -> const auto& { return r.rollouts(); }));
  PrintList<v1::Rollout>(s, rollouts,
                         {"ROLLOUT ID", "MODEL", "VERSION", "TARGET", "STATE", "STAGE", "CREATED"},
                         [](const v1::Rollout& r) {
                           return std::vector<std::string>{
                               r.rollout_id(),
                               r.model(),
                               r.version(),
                               r.target(),
                               RolloutStateName(r.state()),
                               std::to_string(r.current_stage() + 1) + "/" + std::to_string(r.stages_size()),
                               FormatTime(r.create_time())};
                         });
  return Status::Ok();
}

Status ShowRollout(const Settings& s, const std::string& rollout_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::GetRolloutRequest req;
  req.set_rollout_id(rollout_id);
  Rpc rpc(s);
  v1::Rollout r;
  MF_RETURN_IF_ERROR(FromGrpc(stub->GetRollout(&rpc.context, req, &r), s));
  PrintRollout(s, r);
  return Status::Ok();
}

Status RolloutAction(const Settings& s, const std::string& verb, const std::string& rollout_id,
                     const std::string& reason) {
  using Method = grpc::Status (v1::FleetService::Stub::*)(grpc::ClientContext*,
                                                          const v1::RolloutActionRequest&, v1::Rollout*);
  Method method = nullptr;
  if (verb == "pause") {
    method = &v1::FleetService::Stub::PauseRollout;
  } else if (verb == "resume") {
    method = &v1::FleetService::Stub::ResumeRollout;
  } else if (verb == "approve") {
    method = &v1::FleetService::Stub::ApproveStage;
  } else if (verb == "abort") {
    method = &v1::FleetService::Stub::AbortRollout;
  } else if (verb == "rollback") {
    method = &v1::FleetService::Stub::RollbackRollout;
  } else if (verb == "retry") {
    method = &v1::FleetService::Stub::RetryFailed;
  } else {
    return InvalidArgument("verb", "'" + verb + "' is not pause, resume, approve, abort, rollback or retry");
  }
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::RolloutActionRequest req;
  req.set_rollout_id(rollout_id);
  req.set_reason(reason);
  Rpc rpc(s);
  v1::Rollout r;
  MF_RETURN_IF_ERROR(FromGrpc((stub.get()->*method)(&rpc.context, req, &r), s));
  PrintRollout(s, r);
  return Status::Ok();
}

Expected<v1::RolloutState> WatchRollout(const Settings& s, const std::string& rollout_id, bool live) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::WatchRolloutRequest req;
  req.set_rollout_id(rollout_id);
  Rpc rpc(s, /*streaming=*/true);
  auto reader = stub->WatchRollout(&rpc.context, req);
  LiveRolloutView view(std::cout);
  v1::RolloutEvent event;
  v1::RolloutState last = v1::ROLLOUT_STATE_UNSPECIFIED;
  std::string last_line;  // the previous plain line without its time
  while (reader->Read(&event)) {
    if (s.output == OutputFormat::kJson) {
      std::cout << ToJson(event) << std::endl;
    } else if (live) {
      view.OnEvent(event);
    } else {
      // Progress events come with every report; a pipe gets a line only when the numbers moved.
      const std::string line = EventLine(event);
      const std::string what = line.substr(std::min(line.find("  "), line.size()));
      if (event.kind() != "progress" || what != last_line) std::cout << line << std::endl;
      last_line = what;
    }
    last = event.rollout().state();
    // The server keeps streaming a paused rollout (it may be resumed); a watcher stops here.
    if (last == v1::ROLLOUT_STATE_PAUSED) {
      rpc.context.TryCancel();
      while (reader->Read(&event)) {
      }
      (void)reader->Finish();
      return last;
    }
  }
  MF_RETURN_IF_ERROR(FromGrpc(reader->Finish(), s));
  if (last == v1::ROLLOUT_STATE_COMPLETED || last == v1::ROLLOUT_STATE_ABORTED ||
      last == v1::ROLLOUT_STATE_ROLLED_BACK) {
    return last;
  }
  return Fail(
      Unavailable("the watch of rollout " + rollout_id + " ended while it was " + RolloutStateName(last)));
}

}  // namespace modelfleet::cli
