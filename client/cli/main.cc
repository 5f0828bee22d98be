// modelfleet: the command line for admins running the registry and the fleet, and for CI
// pushing releases. This file only wires CLI11 to the commands (commands.h); settings come from
// flags > environment > config file (config.h), output is a table or JSON (output.h), and the
// exit code says the class of error (exit_codes.h).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace modelfleet::cli {
namespace {

constexpr const char kFooter[] =
    "Settings: flags > environment (MODELFLEET_SERVER, MODELFLEET_TOKEN, MODELFLEET_TLS_CA,\n"
    "MODELFLEET_INSECURE, MODELFLEET_OUTPUT) > config file (--config, MODELFLEET_CONFIG, else\n"
    "$XDG_CONFIG_HOME/modelfleet/config or ~/.config/modelfleet/config: `key = value` lines with keys\n"
    "server, token, tls_ca, insecure, output) > defaults.\n"
    "Output: tables for people, numbers rounded (3 significant digits) with units; on a terminal\n"
    "tables fit its width ($COLUMNS, else the terminal's), long cells cut with an ellipsis; piped or\n"
    "with --wide nothing is cut. -o json prints one JSON document with every value exact: an object\n"
    "per result, an array for lists; `rollouts watch -o json` prints one object per line.\n";

// What the parsed command line asks for: run once the settings are resolved.
using Action = std::function<int(const Settings&)>;

// Prints a failed status and returns its exit code.
int Report(const Status& status) {
  if (status.ok()) return kExitOk;
  std::cerr << "modelfleet: " << status.ToString() << std::endl;
  return ExitCodeFor(status.code());
}

struct Wiring {
  Action action;
  // Sets the action of `cmd` to run `fn` (returning Status).
  void On(CLI::App* cmd, std::function<Status(const Settings&)> fn) {
    cmd->callback([this, fn] { action = [fn](const Settings& s) { return Report(fn(s)); }; });
  }
};

CLI::App* Noun(CLI::App& app, const std::string& name, const std::string& what) {
  auto* noun = app.add_subcommand(name, what);
  noun->require_subcommand(1);
  noun->footer(kExitCodesHelp);
  return noun;
}

void AddModels(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "models", "create, list, show and archive models");
  static ModelSpec spec;
  auto* create = noun->add_subcommand("create", "create a model");
  create->add_option("name", spec.name, "[a-z0-9][a-z0-9._-]{0,62}")->required();
  create->add_option("--task", spec.task, "e.g. person-detection");
  create->add_option("--description", spec.description);
  create->add_option("--class-labels", spec.class_labels, "e.g. empty,sitting,lying_full,lying_partial")
      ->delimiter(',');
  w.On(create, [](const Settings& s) { return CreateModel(s, spec); });

  static bool all = false;
  auto* list = noun->add_subcommand("list", "list models");
  list->add_flag("--all", all, "include archived models");
  w.On(list, [](const Settings& s) { return ListModels(s, all); });

  static std::string name;
  auto* show = noun->add_subcommand("show", "show a model");
  show->add_option("name", name)->required();
  w.On(show, [](const Settings& s) { return ShowModel(s, name); });
  auto* archive = noun->add_subcommand("archive", "archive a model (no new versions; admin)");
  archive->add_option("name", name)->required();
  w.On(archive, [](const Settings& s) { return ArchiveModel(s, name); });
}

void AddVersions(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "versions", "push, list, show, download, verify, archive and purge versions");
  static PushOptions push;
  static bool no_progress = false;
  auto* p = noun->add_subcommand(
      "push", "push an artifact as a new version: hashed, optionally signed, streamed; safe to re-run");
  p->add_option("model", push.model)->required();
  p->add_option("version", push.version, "Semantic Versioning 2.0.0")->required();
  p->add_option("artifact", push.file, "the model file")->required()->check(CLI::ExistingFile);
  p->add_option("--manifest", push.manifest_file,
                "JSON Manifest with further fields (input_spec, self_test, ...); the flags override it")
      ->check(CLI::ExistingFile);
  p->add_option("--format", push.format)->capture_default_str();
  p->add_option("--quantization", push.quantization, "e.g. ptq-static-qnnpack");
  p->add_option("--metric", push.metrics, "name=value (repeatable)");
  p->add_option("--label", push.labels, "key=value (repeatable)");
  p->add_option("--param", push.params, "key=value (repeatable)");
  p->add_option("--version-counter", push.version_counter, "anti-rollback counter (0: keep the manifest's)");
  p->add_option("--git-commit", push.git_commit)->envname("MODELFLEET_GIT_COMMIT");
  p->add_option("--ci-run-id", push.ci_run_id)->envname("MODELFLEET_CI_RUN_ID");
  p->add_option("--ci-run-url", push.ci_run_url)->envname("MODELFLEET_CI_RUN_URL");
  p->add_option("--parent-version", push.parent_version);
  p->add_option("--dataset", push.dataset);
  p->add_option("--sign-key", push.sign_key_file, "Ed25519 private key (PEM) to sign the manifest with")
      ->check(CLI::ExistingFile);
  p->add_option("--key-id", push.key_id, "the key id of --sign-key as the server knows it");
  p->add_flag("--no-progress", no_progress, "no progress on stderr");
  w.On(p, [](const Settings& s) {
    PushOptions o = push;
    o.progress = !no_progress;
    return PushVersion(s, o);
  });

  static std::string model, filter, ref, out;
  static std::vector<std::string> metrics;
  auto* list = noun->add_subcommand(
      "list",
      "list a model's versions, newest first, with the headline metrics (accuracy, latency_p50_ms_int8, "
      "size_bytes_int8)");
  list->add_option("model", model)->required();
  list->add_option("--filter", filter, "e.g. 'metrics.accuracy >= 0.9 AND labels.hw = \"rev3\"'");
  list->add_option("--metrics", metrics, "NAME,NAME,...: these metric columns instead (--wide: every metric)")
      ->delimiter(',');
  w.On(list, [](const Settings& s) { return ListVersions(s, model, filter, metrics); });

  auto* show = noun->add_subcommand("show", "show a version with its manifest");
  show->add_option("ref", ref, "MODEL@VERSION or MODEL@ALIAS")->required();
  w.On(show, [](const Settings& s) { return ShowVersion(s, ref); });

  auto* download = noun->add_subcommand("download", "download (resumably) and verify an artifact");
  download->add_option("ref", ref, "MODEL@VERSION or MODEL@ALIAS")->required();
  download->add_option("--out", out, "file to write (resumes from FILE.part)")->required();
  download->add_flag("--no-progress", no_progress, "no progress on stderr");
  w.On(download, [](const Settings& s) { return DownloadVersion(s, ref, out, !no_progress); });

  static VerifyOptions verify;
  auto* v = noun->add_subcommand(
      "verify",
      "check a local file against a version's manifest: size, SHA-256 and signature (exit 7 if not)");
  v->add_option("ref", verify.ref, "MODEL@VERSION or MODEL@ALIAS")->required();
  v->add_option("file", verify.file)->required()->check(CLI::ExistingFile);
  v->add_option("--public-key", verify.public_key_file,
                "Ed25519 public key (PEM) to check the signature with instead of the server's trusted keys")
      ->check(CLI::ExistingFile);
  v->add_flag("--allow-unsigned", verify.allow_unsigned, "accept a version without a signature");
  w.On(v, [](const Settings& s) { return VerifyVersion(s, verify); });

  auto* archive = noun->add_subcommand("archive", "archive a version (no new deployments; admin)");
  archive->add_option("ref", ref, "MODEL@VERSION")->required();
  w.On(archive, [](const Settings& s) { return ArchiveVersion(s, ref); });
  auto* purge = noun->add_subcommand("purge", "delete an archived version and its bytes (admin)");
  purge->add_option("ref", ref, "MODEL@VERSION")->required();
  w.On(purge, [](const Settings& s) { return PurgeVersion(s, ref); });
}

void AddAliases(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "alias", "point aliases (production, staging, ...) at versions; read their history");
  static std::string model, alias, version, reason, from;
  auto* set = noun->add_subcommand("set", "point an alias at a version, whatever it points at now");
  set->add_option("model", model)->required();
  set->add_option("alias", alias)->required();
  set->add_option("version", version)->required();
  set->add_option("--reason", reason, "recorded in the history");
  w.On(set, [](const Settings& s) { return SetAlias(s, model, alias, version, reason, ""); });
  auto* move = noun->add_subcommand(
      "move",
      "move an alias only if it still points at --from (compare-and-set; exit 6 if it moved meanwhile)");
  move->add_option("model", model)->required();
  move->add_option("alias", alias)->required();
  move->add_option("version", version, "the new version")->required();
  move->add_option("--from", from, "the version it must point at now; \"-\": it must not exist yet")
      ->required();
  move->add_option("--reason", reason, "recorded in the history");
  w.On(move, [](const Settings& s) { return SetAlias(s, model, alias, version, reason, from); });
  auto* history = noun->add_subcommand("history", "every move of a model's aliases, newest first");
  history->add_option("model", model)->required();
  history->add_option("alias", alias, "only this alias");
  w.On(history, [](const Settings& s) { return AliasHistory(s, model, alias); });
}

void AddKeys(CLI::App& app, Wiring& w) {
  auto* noun =
      Noun(app, "keys", "Ed25519 signing keys: generate locally; the publisher keys the server trusts");
  static std::string private_file, public_file, key_id;
  static bool force = false;
  auto* gen =
      noun->add_subcommand("generate", "write a new Ed25519 keypair as PEM files (private one mode 0600)");
  gen->add_option("private_key", private_file, "file for the private key, e.g. release.key")->required();
  gen->add_option("public_key", public_file, "file for the public key, e.g. release.pub")->required();
  gen->add_flag("--force", force, "overwrite existing files");
  w.On(gen, [](const Settings& s) { return GenerateKey(s, private_file, public_file, force); });
  auto* list = noun->add_subcommand("list", "the publisher keys the server knows (revoked ones too)");
  w.On(list, [](const Settings& s) { return ListKeys(s); });
  auto* add = noun->add_subcommand("add", "trust a public key for manifest signatures (admin)");
  add->add_option("key_id", key_id, "[A-Za-z0-9._-]{1,64}, never reused")->required();
  add->add_option("public_key", public_file, "PEM file")->required()->check(CLI::ExistingFile);
  w.On(add, [](const Settings& s) { return AddKey(s, key_id, public_file); });
  auto* revoke = noun->add_subcommand("revoke", "stop trusting a key (admin)");
  revoke->add_option("key_id", key_id)->required();
  w.On(revoke, [](const Settings& s) { return RevokeKey(s, key_id); });
}

void AddTokens(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "tokens", "API tokens (admin)");
  static std::string name, role = "viewer";
  static int64_t ttl = 0, id = 0;
  static bool all = false;
  auto* create = noun->add_subcommand("create", "create a token; its secret is shown once");
  create->add_option("name", name)->required();
  create->add_option("--role", role, "admin, publisher, device or viewer")->capture_default_str();
  create->add_option("--ttl-seconds", ttl, "0: never expires");
  w.On(create, [](const Settings& s) { return CreateToken(s, name, role, ttl); });
  auto* list = noun->add_subcommand("list", "list tokens");
  list->add_flag("--all", all, "include revoked tokens");
  w.On(list, [](const Settings& s) { return ListTokens(s, all); });
  auto* revoke = noun->add_subcommand("revoke", "revoke a token");
  revoke->add_option("id", id)->required();
  w.On(revoke, [](const Settings& s) { return RevokeToken(s, id); });
}

void AddDevices(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "devices", "the fleet's devices (admin; list/show/history also viewer)");
  static std::string filter, device_id, reason;
  auto* list = noun->add_subcommand("list", "list devices");
  list->add_option("--filter", filter, "e.g. 'site = \"berlin\" AND offline_for > 3600'");
  w.On(list, [](const Settings& s) { return ListDevices(s, filter); });
  auto* show = noun->add_subcommand("show", "show a device");
  show->add_option("device_id", device_id)->required();
  w.On(show, [](const Settings& s) { return ShowDevice(s, device_id); });
  for (const char* verb : {"accept", "reject", "decommission"}) {
    auto* cmd = noun->add_subcommand(verb, std::string(verb) + " a device");
    cmd->add_option("device_id", device_id)->required();
    cmd->add_option("--reason", reason);
    const std::string v = verb;
    w.On(cmd, [v](const Settings& s) { return SetDeviceAdmission(s, device_id, v, reason); });
  }
  static PreauthorizeOptions pre;
  auto* p = noun->add_subcommand("preauthorize", "accept a device before it enrolls, by hardware id");
  p->add_option("hardware_id", pre.hardware_id)->required();
  p->add_option("--site", pre.site);
  p->add_option("--hardware-revision", pre.hardware_revision);
  p->add_option("--firmware-version", pre.firmware_version);
  p->add_option("--sensor-rows", pre.sensor_rows);
  p->add_option("--sensor-cols", pre.sensor_cols);
  p->add_option("--label", pre.labels, "key=value (repeatable)");
  w.On(p, [](const Settings& s) { return PreauthorizeDevice(s, pre); });
  auto* history = noun->add_subcommand("history", "a device's events, oldest first");
  history->add_option("device_id", device_id)->required();
  w.On(history, [](const Settings& s) { return DeviceHistory(s, device_id); });
}

void AddEnrollTokens(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "enroll-tokens", "fleet enrollment tokens devices enroll with (admin)");
  static std::string name;
  static uint32_t max_uses = 0;
  static int64_t ttl = 0, id = 0;
  static bool auto_accept = false;
  auto* create = noun->add_subcommand("create", "create an enrollment token; shown once");
  create->add_option("name", name)->required();
  create->add_option("--max-uses", max_uses, "0: unlimited");
  create->add_option("--ttl-seconds", ttl, "0: never expires");
  create->add_flag("--auto-accept", auto_accept, "devices enrolling with it are accepted at once");
  w.On(create, [](const Settings& s) { return CreateEnrollmentToken(s, name, max_uses, ttl, auto_accept); });
  auto* list = noun->add_subcommand("list", "list enrollment tokens");
  w.On(list, [](const Settings& s) { return ListEnrollmentTokens(s); });
  auto* revoke = noun->add_subcommand("revoke", "revoke an enrollment token");
  revoke->add_option("id", id)->required();
  w.On(revoke, [](const Settings& s) { return RevokeEnrollmentToken(s, id); });
}

void AddRollouts(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "rollouts", "staged rollouts of a version to the fleet");
  static RolloutSpec spec;
  static std::string model, rollout_id, reason;
  auto* create = noun->add_subcommand("create", "roll a version out in stages");
  create->add_option("model", spec.model)->required();
  create->add_option("version", spec.version)->required();
  create->add_option("--target", spec.target, "device selector, \"*\" for every accepted device")->required();
  create
      ->add_option("--stage", spec.stages,
                   "PERCENT[:min=N][:soak=S][:threshold=X][:max-failure=X][:max-error=X][:max-p95=MS]"
                   "[:max-shift=X][:min-inferences=N][:approval] (repeatable, in order)")
      ->required();
  create->add_flag("--auto-rollback", spec.auto_rollback, "roll back by itself when a gate breaks");
  create->add_option("--deployment-timeout-seconds", spec.deployment_timeout_seconds);
  create->add_flag("--queue", spec.queue, "queue behind a conflicting rollout instead of failing");
  w.On(create, [](const Settings& s) { return CreateRollout(s, spec); });
  auto* list = noun->add_subcommand("list", "list rollouts, newest first");
  list->add_option("--model", model, "only this model's");
  w.On(list, [](const Settings& s) { return ListRollouts(s, model); });
  auto* show = noun->add_subcommand("show", "a rollout: stages, progress, gates");
  show->add_option("rollout_id", rollout_id)->required();
  w.On(show, [](const Settings& s) { return ShowRollout(s, rollout_id); });

  auto* watch = noun->add_subcommand(
      "watch",
      "follow a rollout live until it completes (exit 0), pauses (10), is aborted (11) or rolled back (12)");
  watch->add_option("rollout_id", rollout_id)->required();
  watch->callback([&w] {
    w.action = [](const Settings& s) {
      const bool live = s.output == OutputFormat::kTable && ::isatty(STDOUT_FILENO) == 1;
      auto state = WatchRollout(s, rollout_id, live);
      if (!state) return Report(state.error());
      switch (*state) {
        case v1::ROLLOUT_STATE_COMPLETED:
          return static_cast<int>(kExitOk);
        case v1::ROLLOUT_STATE_PAUSED:
          std::cerr << "modelfleet: rollout " << rollout_id << " paused" << std::endl;
          return static_cast<int>(kExitRolloutPaused);
        case v1::ROLLOUT_STATE_ABORTED:
          std::cerr << "modelfleet: rollout " << rollout_id << " was aborted" << std::endl;
          return static_cast<int>(kExitRolloutAborted);
        default:
          std::cerr << "modelfleet: rollout " << rollout_id << " was rolled back" << std::endl;
          return static_cast<int>(kExitRolloutRolledBack);
      }
    };
  });

  for (const char* verb : {"pause", "resume", "approve", "abort", "rollback", "retry"}) {
    const std::string v = verb;
    const std::string what = v == "approve"    ? "approve the next stage of a rollout waiting for it"
                             : v == "retry"    ? "retry a rollout's failed deployments"
                             : v == "rollback" ? "roll a rollout back to the version it replaced"
                                               : v + " a rollout";
    auto* cmd = noun->add_subcommand(verb, what);
    cmd->add_option("rollout_id", rollout_id)->required();
    cmd->add_option("--reason", reason, "recorded with the event");
    w.On(cmd, [v](const Settings& s) { return RolloutAction(s, v, rollout_id, reason); });
  }
}

void AddEvents(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "events", "the server's event log (what changed, by whom)");
  static TailEventsOptions o;
  auto* tail = noun->add_subcommand("tail", "print events, oldest first; --follow keeps streaming new ones");
  tail->add_option("--type", o.types, "only this type (rollout.paused) or family (rollout.*); repeatable");
  tail->add_option("--subject", o.subject, "only this subject: KIND or KIND/ID, e.g. rollout/ro-3");
  tail->add_option("--since", o.since, "only events after this id (-1 with --follow: only new ones)");
  tail->add_flag("--follow,-f", o.follow, "keep streaming new events until interrupted");
  w.On(tail, [](const Settings& s) { return TailEvents(s, o); });
}

void AddWebhooks(CLI::App& app, Wiring& w) {
  auto* noun = Noun(app, "webhooks", "URLs the server POSTs events to, signed (admin)");
  static std::string url, state;
  static std::vector<std::string> types;
  static int64_t id = 0, delivery = 0;
  auto* add = noun->add_subcommand("add", "subscribe a URL; prints its signing secret once");
  add->add_option("url", url, "http:// or https:// URL, no credentials")->required();
  add->add_option("--type", types, "only this type (rollout.paused) or family (rollout.*); repeatable");
  w.On(add, [](const Settings& s) { return AddWebhook(s, url, types); });
  auto* list = noun->add_subcommand("list", "the webhooks, with pending and dead deliveries");
  w.On(list, [](const Settings& s) { return ListWebhooks(s); });
  auto* remove = noun->add_subcommand("remove", "remove a webhook and its deliveries");
  remove->add_option("id", id)->required();
  w.On(remove, [](const Settings& s) { return RemoveWebhook(s, id); });
  auto* test = noun->add_subcommand("test", "send a signed webhook.test event now");
  test->add_option("id", id)->required();
  w.On(test, [](const Settings& s) { return TestWebhook(s, id); });
  auto* deliveries = noun->add_subcommand("deliveries", "a webhook's deliveries, newest first");
  deliveries->add_option("id", id)->required();
  deliveries->add_option("--state", state, "pending, delivered or dead");
  w.On(deliveries, [](const Settings& s) { return ListWebhookDeliveries(s, id, state); });
  auto* replay = noun->add_subcommand("replay", "send dead deliveries again (all, or --delivery N)");
  replay->add_option("id", id)->required();
  replay->add_option("--delivery", delivery, "only this dead delivery");
  w.On(replay, [](const Settings& s) { return ReplayWebhookDeliveries(s, id, delivery); });
}

int Main(int argc, char** argv) {
  CLI::App app{"modelfleet: model registry and fleet command line"};
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(std::string(kFooter) + "\n" + kExitCodesHelp);
  std::string server, token, tls_ca, output, config;
  bool insecure = false;
  auto* o_server = app.add_option("--server", server, "server host:port (default 127.0.0.1:7443)");
  auto* o_token =
      app.add_option("--token", token, "bearer token (prefer MODELFLEET_TOKEN or the config file)");
  auto* o_tls_ca =
      app.add_option("--tls-ca", tls_ca, "PEM file of the CA that signed the server's certificate");
  auto* o_insecure = app.add_flag("--insecure", insecure, "plaintext gRPC (no TLS)");
  auto* o_output = app.add_option("-o,--output", output, "table (default) or json")
                       ->check(CLI::IsMember({"table", "json"}));
  auto* o_config = app.add_option("--config", config, "config file (default ~/.config/modelfleet/config)");
  bool wide = false;
  app.add_flag("--wide", wide, "tables: every column (versions list: every metric), cells never cut");

  Wiring wiring;
  AddModels(app, wiring);
  AddVersions(app, wiring);
  AddAliases(app, wiring);
  AddKeys(app, wiring);
  AddTokens(app, wiring);
  AddDevices(app, wiring);
  AddEnrollTokens(app, wiring);
  AddRollouts(app, wiring);
  AddEvents(app, wiring);
  AddWebhooks(app, wiring);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  FlagValues flags;
  if (o_server->count() > 0) flags.server = server;
  if (o_token->count() > 0) flags.token = token;
  if (o_tls_ca->count() > 0) flags.tls_ca = tls_ca;
  if (o_insecure->count() > 0) flags.insecure = insecure;
  if (o_output->count() > 0) flags.output = output;
  if (o_config->count() > 0) flags.config = config;
  auto settings = ResolveSettings(flags, ProcessEnvironment());
  if (!settings) {
    std::cerr << "modelfleet: " << settings.error().message() << std::endl;
    return ExitCodeFor(settings.error().code()) == kExitNotFound ? kExitUsage
                                                                 : ExitCodeFor(settings.error().code());
  }
  settings->wide = wide;
  settings->table_width =
      settings->output == OutputFormat::kTable ? TableWidth(wide, ProcessEnvironment()) : 0;
  if (!wiring.action) {  // unreachable: every leaf command sets one
    std::cerr << app.help();
    return kExitUsage;
  }
  return wiring.action(*settings);
}

}  // namespace
}  // namespace modelfleet::cli

int main(int argc, char** argv) { return modelfleet::cli::Main(argc, argv); }
