// modelfleet: the command line for admins running the registry and for CI pushing releases.
// Every command prints JSON lines on stdout. Connection flags come from the environment too:
// MODELFLEET_SERVER, MODELFLEET_TOKEN, MODELFLEET_TLS_CA, MODELFLEET_INSECURE.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace modelfleet::cli;
  CLI::App app{"modelfleet: model registry and fleet command line"};
  app.require_subcommand(1);
  app.fallthrough();
  Connection conn;
  app.add_option("--server", conn.server, "server host:port")->envname("MODELFLEET_SERVER")->capture_default_str();
  app.add_option("--token", conn.token, "bearer token")->envname("MODELFLEET_TOKEN");
  app.add_option("--tls-ca", conn.tls_ca, "PEM CA certificate of the server")->envname("MODELFLEET_TLS_CA");
  app.add_flag("--insecure", conn.insecure, "plaintext gRPC")->envname("MODELFLEET_INSECURE");

  modelfleet::Status result;
  auto* model = app.add_subcommand("model", "create and list models")->require_subcommand(1);
  std::string name, task, description;
  std::vector<std::string> class_labels;
  auto* model_create = model->add_subcommand("create", "create a model");
  model_create->add_option("name", name)->required();
  model_create->add_option("--task", task);
  model_create->add_option("--description", description);
  model_create->add_option("--class-labels", class_labels, "e.g. empty,sitting,lying_full,lying_partial")
      ->delimiter(',');
  model_create->callback([&] { result = CreateModel(conn, name, task, description, class_labels); });
  model->add_subcommand("list", "list models")->callback([&] { result = ListModels(conn); });

  PushOptions push;
  auto* push_cmd = app.add_subcommand("push", "push an artifact as a new version (streamed, hashed)");
  push_cmd->add_option("model", push.model)->required();
  push_cmd->add_option("version", push.version)->required();
  push_cmd->add_option("file", push.file)->required()->check(CLI::ExistingFile);
  push_cmd->add_option("--format", push.format)->capture_default_str();
  push_cmd->add_option("--quantization", push.quantization);
  push_cmd->add_option("--metric", push.metrics, "name=value (repeatable)");
  push_cmd->add_option("--label", push.labels, "key=value (repeatable)");
  push_cmd->add_option("--param", push.params, "key=value (repeatable)");
  push_cmd->add_option("--git-commit", push.git_commit)->envname("MODELFLEET_GIT_COMMIT");
  push_cmd->add_option("--ci-run-id", push.ci_run_id)->envname("MODELFLEET_CI_RUN_ID");
  push_cmd->add_option("--ci-run-url", push.ci_run_url)->envname("MODELFLEET_CI_RUN_URL");
  push_cmd->add_option("--parent-version", push.parent_version);
  push_cmd->add_option("--manifest", push.manifest_template, "JSON Manifest with further fields (input_spec, self_test)");
  push_cmd->add_option("--sign-key", push.sign_key_file, "Ed25519 private key (PEM) to sign the manifest");
  push_cmd->add_option("--key-id", push.key_id, "key id of --sign-key as the server knows it");
  push_cmd->callback([&] { result = Push(conn, push); });

  std::string filter, ref, out;
  auto* versions = app.add_subcommand("versions", "list versions, newest first");
  versions->add_option("model", name)->required();
  versions->add_option("--filter", filter, "e.g. 'metrics.accuracy >= 0.9 AND labels.hw = \"rev3\"'");
  versions->callback([&] { result = ListVersions(conn, name, filter); });

  auto* get = app.add_subcommand("get", "show a version: model@version or model@alias");
  get->add_option("ref", ref)->required();
  get->callback([&] { result = GetVersion(conn, ref); });

  auto* alias = app.add_subcommand("alias", "move aliases and read their history")->require_subcommand(1);
  std::string alias_name, version, reason;
  auto* alias_set = alias->add_subcommand("set", "point an alias at a version");
  alias_set->add_option("model", name)->required();
  alias_set->add_option("alias", alias_name)->required();
  alias_set->add_option("version", version)->required();
  alias_set->add_option("--reason", reason);
  alias_set->callback([&] { result = SetAlias(conn, name, alias_name, version, reason); });
  auto* alias_history = alias->add_subcommand("history", "every move of a model's aliases, newest first");
  alias_history->add_option("model", name)->required();
  alias_history->add_option("alias", alias_name);
  alias_history->callback([&] { result = AliasHistory(conn, name, alias_name); });

  auto* download = app.add_subcommand("download", "download (resumably) and verify an artifact");
  download->add_option("ref", ref, "model@version or model@alias")->required();
  download->add_option("-o,--out", out)->required();
  download->callback([&] { result = Download(conn, ref, out); });

  auto* token = app.add_subcommand("token", "API tokens")->require_subcommand(1);
  std::string role = "viewer";
  int64_t ttl = 0;
  auto* token_create = token->add_subcommand("create", "create a token (shown once)");
  token_create->add_option("name", name)->required();
  token_create->add_option("--role", role)->capture_default_str();
  token_create->add_option("--ttl-seconds", ttl);
  token_create->callback([&] { result = CreateToken(conn, name, role, ttl); });

  auto* key = app.add_subcommand("key", "trusted publisher keys")->require_subcommand(1);
  std::string key_id, pem;
  auto* key_add = key->add_subcommand("add", "trust an Ed25519 public key for manifest signatures");
  key_add->add_option("key_id", key_id)->required();
  key_add->add_option("pem", pem)->required()->check(CLI::ExistingFile);
  key_add->callback([&] { result = AddPublisherKey(conn, key_id, pem); });

  // ---- fleet
  auto* enroll = app.add_subcommand("enroll-token", "fleet enrollment tokens")->require_subcommand(1);
  uint32_t max_uses = 0;
  bool auto_accept = false;
  auto* enroll_create = enroll->add_subcommand("create", "create an enrollment token (shown once)");
  enroll_create->add_option("name", name)->required();
  enroll_create->add_option("--max-uses", max_uses, "0 = unlimited");
  enroll_create->add_option("--ttl-seconds", ttl);
  enroll_create->add_flag("--auto-accept", auto_accept, "devices enrolling with it are accepted at once");
  enroll_create->callback([&] { result = CreateEnrollmentToken(conn, name, max_uses, ttl, auto_accept); });

  auto* devices = app.add_subcommand("devices", "the fleet's devices")->require_subcommand(1);
  auto* devices_list = devices->add_subcommand("list", "list devices");
  devices_list->add_option("--filter", filter, "e.g. 'site = \"berlin\" AND offline_for > 3600'");
  devices_list->callback([&] { result = ListDevices(conn, filter); });
  std::string device_id;
  for (const char* verb : {"accept", "reject", "decommission"}) {
    auto* cmd = devices->add_subcommand(verb, std::string(verb) + " a device");
    cmd->add_option("device_id", device_id)->required();
    cmd->add_option("--reason", reason);
    std::string admission = std::string(verb) == "accept" ? "accepted"
                            : std::string(verb) == "reject" ? "rejected" : "decommissioned";
    cmd->callback([&, admission] { result = SetDeviceAdmission(conn, device_id, admission, reason); });
  }

  auto* rollout = app.add_subcommand("rollout", "staged rollouts")->require_subcommand(1);
  std::string target, rollout_id;
  std::vector<std::string> stages;
  bool auto_rollback = false, queue = false, fail_on_pause = false;
  uint32_t deployment_timeout = 0;
  auto* rollout_create = rollout->add_subcommand("create", "roll a version out in stages");
  rollout_create->add_option("model", name)->required();
  rollout_create->add_option("version", version)->required();
  rollout_create->add_option("--target", target, "device selector, \"*\" for all")->required();
  rollout_create->add_option("--stage", stages, "PERCENT[:min=N][:soak=S][:threshold=X][:max-failure=X][:max-error=X]"
                                                "[:max-p95=MS][:max-shift=X][:min-inferences=N][:approval]")
      ->required();
  rollout_create->add_flag("--auto-rollback", auto_rollback, "roll back by itself when a gate breaks");
  rollout_create->add_option("--deployment-timeout-seconds", deployment_timeout);
  rollout_create->add_flag("--queue", queue, "queue behind a conflicting rollout instead of failing");
  rollout_create->callback([&] {
    result = CreateRollout(conn, name, version, target, stages, auto_rollback, deployment_timeout, queue);
  });
  auto* rollout_list = rollout->add_subcommand("list", "list rollouts, newest first");
  rollout_list->add_option("--model", name, "only this model's");
  rollout_list->callback([&] { result = ListRollouts(conn, name); });
  auto* rollout_show = rollout->add_subcommand("show", "a rollout with its progress");
  rollout_show->add_option("rollout_id", rollout_id)->required();
  rollout_show->callback([&] { result = GetRollout(conn, rollout_id); });
  auto* rollout_watch = rollout->add_subcommand("watch", "follow a rollout; exit 0 when it completes");
  rollout_watch->add_option("rollout_id", rollout_id)->required();
  rollout_watch->add_flag("--fail-on-pause", fail_on_pause, "exit non-zero as soon as it pauses");
  rollout_watch->callback([&] { result = WatchRollout(conn, rollout_id, fail_on_pause); });
  for (const char* verb : {"pause", "resume", "approve", "abort", "rollback", "retry"}) {
    auto* cmd = rollout->add_subcommand(verb, std::string(verb) + " a rollout");
    cmd->add_option("rollout_id", rollout_id)->required();
    cmd->add_option("--reason", reason);
    std::string v = verb;
    cmd->callback([&, v] { result = RolloutAction(conn, v, rollout_id, reason); });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!result.ok()) {
    std::cerr << "modelfleet: " << result.ToString() << std::endl;
    return result.code() == modelfleet::StatusCode::kInvalidArgument ? 64 : 1;
  }
  return 0;
}
