// Device-agent benchmark: what the int8 model costs on the mat.
//
// 1. Inference latency of the int8 TorchScript model (QNNPACK, what the fleet ships) against the
//    same model (same seed, same weights) left in float32, both made at start by
//    tests/models/make_test_model.py (with /usr/bin/python3) unless --int8 DIR / --fp32 DIR
//    give them. Both run in this process through the agent's own runtime (TorchRuntime, one
//    intra-op thread as on the device) on the same synthetic pressure frames, pre-processed as
//    the manifest says, alternating frame by frame so both see the same machine load.
//    Printed: p50 / p95 / p99 / mean of each, the int8/fp32 ratios, and the file sizes.
// 2. Resident memory (VmRSS of /proc/<pid>/status) of a real modelfleet-agent process in three
//    phases, each a fresh process on a state directory prepared here (a stored device
//    credential; the model installed and active through the agent's own ModelStore):
//      idle, no model          nothing installed: check-ins (to an address nobody listens on)
//                              back off, the sensor runs, nothing to infer;
//      idle, model loaded      the int8 model loaded, the sensor at 0.01 Hz (no frames);
//      running                 the int8 model on synthetic frames at --frame-rate Hz (presence
//                              events on its stdout prove it infers).
//    Each phase settles for --settle seconds, then VmRSS is sampled every 100 ms for
//    --sample seconds; the peak is printed, and running / idle ratios.
//
//   agent_bench [--int8 DIR] [--fp32 DIR] [--runs N] [--frame-rate HZ] [--settle S] [--sample S]
//   defaults: the models made at start, 2000 runs each after 50 warm-up runs, 20 Hz, 4 s, 3 s.
//
// Needs the built agent: $MODELFLEET_BINARY_DIR (default: the parent of this program's
// directory, i.e. the build tree), and $MODELFLEET_SOURCE_DIR (default: the source tree this was
// built from) for make_test_model.py. Exits non-zero if anything cannot be set up.
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/runtime/torch_runtime.h"
#include "agent/sensor/preprocessor.h"
#include "agent/sensor/synthetic.h"
#include "agent/update/fs_util.h"
#include "agent/update/model_store.h"
#include "modelfleet/crypto.h"
#include "process.h"

namespace modelfleet {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Flags {
  fs::path int8, fp32;
  int runs = 2000;
  int warmup = 50;
  double frame_rate = 20;
  double settle_s = 4;
  double sample_s = 3;
};

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "agent_bench: " << what << std::endl;
  std::exit(1);
}

Expected<v1::Manifest> ReadManifest(const fs::path& dir, const std::string& version) {
  v1::Manifest m;
  google::protobuf::util::JsonParseOptions jo;
  jo.ignore_unknown_fields = true;
  auto s =
      google::protobuf::util::JsonStringToMessage(testing::ReadFileOrEmpty(dir / "manifest.json"), &m, jo);
  if (!s.ok())
    return Fail(InvalidArgument("manifest", (dir / "manifest.json").string() + ": " + s.ToString()));
  m.set_model("mat-person");
  m.set_version(version);
  m.set_version_counter(1);
  return m;
}

fs::path MakeModel(const fs::path& out, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   (testing::SourceDir() / "tests/models/make_test_model.py").string(),
                                   "--out", out.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::string output;
  if (testing::RunCommand(argv, &output) != 0) Die("make_test_model.py failed: " + output);
  return out;
}

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0, mean = 0;
};

// Nearest rank, as the agent's telemetry computes them.
Percentiles Summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto rank = [&](double p) {
    const size_t r = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(r, 1, v.size()) - 1];
  };
  return {rank(50), rank(95), rank(99),
          std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size())};
}

void MeasureLatency(const Flags& flags, const v1::Manifest& int8_manifest) {
  auto runtime = agent::runtime::TorchRuntime::Create({.num_threads = 1});
  if (!runtime) Die(runtime.error().ToString());
  struct Subject {
    std::string name;
    fs::path file;
    std::unique_ptr<agent::runtime::LoadedModel> model;
    std::vector<double> ms;
  };
  std::vector<Subject> subjects(2);
  subjects[0].name = "int8";
  subjects[0].file = flags.int8 / "model.pt";
  subjects[1].name = "fp32";
  subjects[1].file = flags.fp32 / "model.pt";
  for (Subject& s : subjects) {
    auto m = (*runtime)->Load(s.file);
    if (!m) Die(m.error().ToString());
    s.model = std::move(*m);
  }
  auto pre = agent::sensor::Preprocessor::Create(int8_manifest.input_spec());
  if (!pre) Die(pre.error().ToString());
  agent::sensor::SyntheticSourceOptions so;
  so.schedule = *agent::sensor::ParseSchedule("empty:2s,sitting:4s,lying_full:4s,lying_partial:2s");
  so.frame_rate_hz = 20;
  auto source = agent::sensor::SyntheticFrameSource::Create(so);
  if (!source) Die(source.error().ToString());
  const std::vector<int64_t> shape(int8_manifest.input_spec().shape().begin(),
                                   int8_manifest.input_spec().shape().end());

  for (int i = 0; i < flags.warmup + flags.runs; ++i) {
    auto frame = (*source)->Next(0ms);
    if (!frame || !frame->has_value()) Die("the synthetic source gave no frame");
    auto input = pre->Run(**frame);
    if (!input) Die(input.error().ToString());
    for (Subject& s : subjects) {
      auto r = s.model->Run(*input, shape);
      if (!r) Die(s.name + ": " + r.error().ToString());
      if (i >= flags.warmup) s.ms.push_back(static_cast<double>(r->latency.count()) / 1000.0);
    }
  }
  const Percentiles q8 = Summarise(subjects[0].ms), q32 = Summarise(subjects[1].ms);
  std::printf("inference latency, %d runs each (after %d warm-up), 1 thread, synthetic 16x16 frames:\n",
              flags.runs, flags.warmup);
  std::printf("  %-6s %10s %10s %10s %10s %12s\n", "model", "p50 ms", "p95 ms", "p99 ms", "mean ms",
              "file bytes");
  for (size_t i = 0; i < subjects.size(); ++i) {
    const Percentiles& q = i == 0 ? q8 : q32;
    std::printf("  %-6s %10.4f %10.4f %10.4f %10.4f %12ju\n", subjects[i].name.c_str(), q.p50, q.p95, q.p99,
                q.mean, static_cast<uintmax_t>(fs::file_size(subjects[i].file)));
  }
  std::printf("  int8/fp32 ratio: p50 %.2f, p95 %.2f, p99 %.2f, mean %.2f, size %.2f\n", q8.p50 / q32.p50,
              q8.p95 / q32.p95, q8.p99 / q32.p99, q8.mean / q32.mean,
              static_cast<double>(fs::file_size(subjects[0].file)) /
                  static_cast<double>(fs::file_size(subjects[1].file)));
}

// VmRSS of `pid` in KiB (0 if unreadable).
uint64_t VmRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

std::string PublicKeyPem(const std::string& raw) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string in =
      std::string("\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12) + raw;  // 44 bytes
  std::string out;
  for (size_t i = 0; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  const uint32_t v = (uint8_t(in[42]) << 16) | (uint8_t(in[43]) << 8);  // 44 = 14 * 3 + 2
  out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  return "-----BEGIN PUBLIC KEY-----\n" + out + "\n-----END PUBLIC KEY-----\n";
}

struct RssPhase {
  std::string name;
  uint64_t peak_kib = 0;
  size_t presence_lines = 0;
};

// Runs modelfleet-agent on `state` at `frame_rate`; returns its peak VmRSS while sampled.
RssPhase MeasureAgent(const Flags& flags, const std::string& name, const fs::path& work,
                      const fs::path& state, double frame_rate) {
  const fs::path conf = work / (name + ".conf"), log = work / (name + ".log");
  std::ofstream(conf) << "server = 127.0.0.1:" << testing::FreeTcpPort() << "\n"
                      << "insecure = true\n"
                      << "state_dir = " << state.string() << "\n"
                      << "publisher_key = " << (work / "publisher.pem").string() << "\n"
                      << "hardware_id = bench\n"
                      << "sensor = synthetic\n"
                      << "synthetic_schedule = empty:2s,sitting:3s,lying_full:3s\n"
                      << "frame_rate_hz = " << frame_rate << "\n"
                      << "presence_min_confidence = 0\n"
                      << "presence_hold_frames = 2\n"
                      << "backoff_initial = 30s\n"
                      << "backoff_max = 60s\n"
                      << "rpc_timeout = 1s\n"
                      << "log_level = warn\n";
  testing::Subprocess::Options o;
  o.argv = {(testing::BinaryDir() / "client/agent/app/modelfleet-agent").string(), "--config", conf.string()};
  o.log_path = log;
  std::string error;
  auto proc = testing::Subprocess::Start(o, &error);
  if (!proc) Die("cannot start modelfleet-agent: " + error);
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.settle_s));
  if (!proc->Running()) Die("modelfleet-agent exited: " + testing::ReadFileOrEmpty(log));
  RssPhase phase{name, 0, 0};
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(flags.sample_s);
  while (std::chrono::steady_clock::now() < end) {
    phase.peak_kib = std::max(phase.peak_kib, VmRssKiB(proc->pid()));
    std::this_thread::sleep_for(100ms);
  }
  const std::string out = testing::ReadFileOrEmpty(log);
  for (size_t p = out.find("{\"event\":"); p != std::string::npos; p = out.find("{\"event\":", p + 1))
    ++phase.presence_lines;
  if (proc->Stop(10s) != 0) Die("modelfleet-agent did not stop cleanly: " + out);
  return phase;
}

void MeasureMemory(const Flags& flags, const fs::path& work, const v1::Manifest& manifest) {
  const Ed25519KeyPair key = GenerateEd25519KeyPair();
  std::ofstream(work / "publisher.pem") << PublicKeyPem(key.public_key);
  auto prepare = [&](const std::string& name, bool with_model) {
    const fs::path state = work / (name + "-state");
    if (!agent::update::EnsureDir(state).ok()) Die("cannot create " + state.string());
    // A stored credential: the agent does not enroll, it checks in (and backs off: no server).
    if (!agent::update::AtomicWriteFile(state / "credential", "bench-device\nbench-token\n", 0600).ok()) {
      Die("cannot write the credential");
    }
    if (with_model) {
      agent::update::ModelStore store(state);
      Status s = store.Init();
      if (s.ok()) {
        s = agent::update::AtomicWriteFile(store.PartPath(manifest.digest()),
                                           testing::ReadFileOrEmpty(flags.int8 / "model.pt"));
      }
      if (s.ok()) s = store.Install(manifest);
      if (s.ok()) s = store.Activate(manifest.digest());
      if (!s.ok()) Die("installing the model: " + s.ToString());
    }
    return state;
  };
  std::vector<RssPhase> phases;
  phases.push_back(MeasureAgent(flags, "idle, no model", work, prepare("none", false), flags.frame_rate));
  phases.push_back(MeasureAgent(flags, "idle, model loaded", work, prepare("idle", true), 0.01));
  phases.push_back(MeasureAgent(flags, "running", work, prepare("running", true), flags.frame_rate));
  if (phases[2].presence_lines == 0) Die("the running agent printed no presence event: it did not infer");
  std::printf("modelfleet-agent resident memory (peak VmRSS over %.0f s, after %.0f s):\n", flags.sample_s,
              flags.settle_s);
  for (const RssPhase& p : phases) {
    std::printf("  %-20s %8.1f MiB   (%zu presence events)\n", p.name.c_str(),
                static_cast<double>(p.peak_kib) / 1024.0, p.presence_lines);
  }
  std::printf(
      "  running (%.0f Hz) / idle with the model loaded: %.2f; running / idle without a model: %.2f\n",
      flags.frame_rate, static_cast<double>(phases[2].peak_kib) / static_cast<double>(phases[1].peak_kib),
      static_cast<double>(phases[2].peak_kib) / static_cast<double>(phases[0].peak_kib));
}

}  // namespace
}  // namespace modelfleet

int main(int argc, char** argv) {
  using namespace modelfleet;
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "agent_bench: " << flag << " needs a value" << std::endl;
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--int8") {
      flags.int8 = value;
    } else if (flag == "--fp32") {
      flags.fp32 = value;
    } else if (flag == "--runs") {
      flags.runs = std::stoi(value);
    } else if (flag == "--frame-rate") {
      flags.frame_rate = std::stod(value);
    } else if (flag == "--settle") {
      flags.settle_s = std::stod(value);
    } else if (flag == "--sample") {
      flags.sample_s = std::stod(value);
    } else {
      std::cerr << "agent_bench: unknown flag " << flag << std::endl;
      return 2;
    }
  }
  if (flags.runs < 1 || flags.frame_rate <= 0 || flags.settle_s < 0 || flags.sample_s <= 0) {
    std::cerr << "agent_bench: bad arguments" << std::endl;
    return 2;
  }
  if (!std::getenv("MODELFLEET_BINARY_DIR")) {
    auto exe = std::filesystem::read_symlink("/proc/self/exe");
    setenv("MODELFLEET_BINARY_DIR", exe.parent_path().parent_path().c_str(), 1);
  }
  if (!std::getenv("MODELFLEET_SOURCE_DIR")) setenv("MODELFLEET_SOURCE_DIR", MODELFLEET_BENCH_SOURCE_DIR, 1);

  testing::TempDir work("agent-bench");
  if (flags.int8.empty()) flags.int8 = MakeModel(work.path() / "int8", {"--seed", "1"});
  if (flags.fp32.empty()) flags.fp32 = MakeModel(work.path() / "fp32", {"--seed", "1", "--fp32"});
  auto manifest = ReadManifest(flags.int8, "1.0.0");
  if (!manifest) Die(manifest.error().ToString());

  MeasureLatency(flags, *manifest);
  MeasureMemory(flags, work.path(), *manifest);
  return 0;
}
