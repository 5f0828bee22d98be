// modelfleet-agent: the agent on each pressure mat. See agent.h and deploy/agent.conf.example.
//
//   modelfleet-agent --config /etc/modelfleet/agent.conf [--key value ...]
//
// Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad configuration (the message names the key),
// 1 for any other failure to start.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <set>
#include <thread>

#include "agent/app/agent.h"
#include "agent/app/config.h"
#include "agent/update/fs_util.h"

namespace {

std::atomic<modelfleet::agent::app::Agent*> g_agent{nullptr};

void Usage() {
  std::fprintf(stderr,
               "usage: modelfleet-agent [--config FILE] [--KEY VALUE | --KEY=VALUE]...\n"
               "keys (see deploy/agent.conf.example for meaning and defaults):\n");
  for (const auto& k : modelfleet::agent::app::ConfigKeys()) std::fprintf(stderr, "  --%s\n", k.c_str());
  std::fprintf(stderr,
               "test hook (not for production): environment MODELFLEET_AGENT_PAUSE_AT=<State>|Downloading@<bytes>\n"
               "pauses the update flow there (client/agent/app/test_hooks.h)\n");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace modelfleet;
  using namespace modelfleet::agent::app;
  auto logger = spdlog::stderr_color_mt("agent");
  spdlog::set_default_logger(logger);

  std::string config_path;
  std::vector<std::pair<std::string, std::string>> flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      Usage();
      return 0;
    }
    if (arg.rfind("--", 0) != 0) {
      std::fprintf(stderr, "modelfleet-agent: unexpected argument '%s'\n", arg.c_str());
      Usage();
      return 2;
    }
    arg = arg.substr(2);
    std::string value;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "insecure" && (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0)) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "modelfleet-agent: --%s needs a value\n", arg.c_str());
      return 2;
    }
    std::replace(arg.begin(), arg.end(), '-', '_');
    if (arg == "config") {
      config_path = value;
    } else {
      flags.emplace_back(arg, value);
    }
  }

  AgentConfig config;
  if (!config_path.empty()) {
    auto text = agent::update::ReadWholeFile(config_path);
    if (!text) {
      std::fprintf(stderr, "modelfleet-agent: config: %s\n", text.error().ToString().c_str());
      return 2;
    }
    if (Status s = ParseConfigText(config, *text, config_path); !s.ok()) {
      std::fprintf(stderr, "modelfleet-agent: bad config key '%s': %s\n", s.field().c_str(), s.message().c_str());
      return 2;
    }
  }
  std::set<std::string> replaced;
  for (const auto& [k, v] : flags) {
    if ((k == "publisher_key" || k == "label") && replaced.insert(k).second) {
      if (k == "publisher_key") config.publisher_keys.clear();
      if (k == "label") config.labels.clear();
    }
    if (Status s = ApplyConfigValue(config, k, v); !s.ok()) {
      std::fprintf(stderr, "modelfleet-agent: bad flag --%s: %s\n", k.c_str(), s.message().c_str());
      return 2;
    }
  }
  if (Status s = ValidateConfig(config); !s.ok()) {
    std::fprintf(stderr, "modelfleet-agent: bad config key '%s': %s\n", s.field().c_str(), s.message().c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config.log_level));

  // Signals: a thread waits for them, so the handler does nothing unsafe.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  Agent agent(config);
  g_agent = &agent;
  std::thread signals([set] {
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("signal {}: stopping", sig);
    if (auto* a = g_agent.load()) a->RequestStop();
  });
  signals.detach();

  Status s = agent.Run();
  g_agent = nullptr;
  if (!s.ok()) {
    if (s.code() == StatusCode::kInvalidArgument && !s.field().empty()) {
      std::fprintf(stderr, "modelfleet-agent: bad config key '%s': %s\n", s.field().c_str(), s.message().c_str());
      return 2;
    }
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  return 0;
}
