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
