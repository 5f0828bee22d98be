// The release pipeline (deploy/release/release.sh) in its quick mode, checked with the agent's
// own runtime: the model it produces loads in TorchRuntime and passes the self-test its manifest
// describes; the manifest is one the CLI's --manifest takes (a v1.Manifest that validates); the
// int8 accuracy is measured (and reported here); the quality gate refuses an impossible margin
// leaving nothing behind and pushing nothing; a --broken-self-test release fails the self-test.
//
// The pipeline runs with Debian's python3-torch (/usr/bin/python3, or MODELFLEET_TEST_PYTHON).
// Without it the tests are SKIPPED with the reason. The push is exercised with a stand-in CLI
// (a script that records its arguments): the real push is the CLI's end-to-end tests' business.
//
// Expected values come from the pipeline (Python, PyTorch) and are checked by the C++ runtime
// and the common manifest code, not by the code that made them.
#include <gtest/gtest.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "agent/runtime/self_test.h"
#include "agent/runtime/torch_runtime.h"
#include "agent/sensor/preprocessor.h"
#include "agent/sensor/synthetic.h"
#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/v1/model.pb.h"
#include "process.h"

namespace modelfleet {
namespace {

namespace fs = std::filesystem;
using ::modelfleet::testing::ReadFileOrEmpty;
using ::modelfleet::testing::RunCommand;
using ::modelfleet::testing::SourceDir;
using ::modelfleet::testing::Subprocess;
using ::modelfleet::testing::TempDir;
using ::modelfleet::testing::TorchPython;

fs::path ReleaseScript() { return SourceDir() / "deploy/release/release.sh"; }

// The lineage a GitHub Actions run would give; the Jenkins and MODELFLEET_* variables are blanked
// so the test means the same under any CI.
const std::map<std::string, std::string>& CiEnvironment() {
  static const auto* env = new std::map<std::string, std::string>{
      {"MODELFLEET_PYTHON", TorchPython()},
      {"MODELFLEET_GIT_COMMIT", ""}, {"MODELFLEET_CI_RUN_ID", ""}, {"MODELFLEET_CI_RUN_URL", ""},
      {"GIT_COMMIT", ""}, {"BUILD_TAG", ""}, {"BUILD_URL", ""},
      {"GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"},
      {"GITHUB_RUN_ID", "4242"}, {"GITHUB_RUN_ATTEMPT", "2"},
      {"GITHUB_SERVER_URL", "https://github.example"}, {"GITHUB_REPOSITORY", "acme/modelfleet"},
  };
  return *env;
}

struct RunResult {
  int exit_code = -1;
  std::string output;
};

// Runs release.sh with `args` (its log in `log`), waiting at most 10 minutes.
RunResult RunRelease(const std::vector<std::string>& args, const fs::path& log) {
  Subprocess::Options o;
  o.argv = {"bash", ReleaseScript().string()};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env = CiEnvironment();
  o.log_path = log;
  std::string error;
  auto p = Subprocess::Start(o, &error);
  if (!p) return {-1, "cannot start release.sh: " + error};
  auto code = p->Wait(std::chrono::minutes(10));
  if (!code) p->Stop(std::chrono::seconds(5));
  return {code.value_or(-1), ReadFileOrEmpty(log)};
}

// A stand-in for the modelfleet CLI: appends its arguments (one per line, then "--") to
// `calls`, prints a JSON line like the CLI's and exits 0.
fs::path WriteFakeCli(const fs::path& dir) {
  const fs::path cli = dir / "fake-modelfleet";
  std::ofstream(cli) << "#!/bin/sh\n"
                        "for a in \"$@\"; do printf '%s\\n' \"$a\" >>'" << (dir / "calls").string()
                     << "'; done\n"
                        "echo -- >>'" << (dir / "calls").string() << "'\n"
                        "echo '{\"manifest\":{}}'\n";
  fs::permissions(cli, fs::perms::owner_all);
  return cli;
}

Expected<v1::Manifest> ReadManifest(const fs::path& file) {
  v1::Manifest m;
  const std::string json = ReadFileOrEmpty(file);
  if (json.empty()) return Fail(InvalidArgument("manifest", file.string() + " is missing or empty"));
  // Strict (unknown fields are an error), as the CLI's --manifest reads it.
  auto st = google::protobuf::util::JsonStringToMessage(json, &m);
  if (!st.ok()) return Fail(InvalidArgument("manifest", file.string() + ": " + st.ToString()));
  return m;
}

// The quick release every test looks at, built once per test binary.
struct QuickRelease {
  std::string skip_reason;
  std::string error;
  std::unique_ptr<TempDir> dir;
  fs::path out;
  std::string log;
  v1::Manifest manifest;
  google::protobuf::Struct metrics;

  static const QuickRelease& Get() {
    static const QuickRelease* release = Make();
    return *release;
  }

 private:
  static QuickRelease* Make() {
    auto* r = new QuickRelease;
    std::string out;
    if (!fs::exists(TorchPython()) || RunCommand({TorchPython(), "-c", "import torch"}, &out) != 0) {
      r->skip_reason = TorchPython() + " cannot import torch (scripts/install-deps.sh installs "
                                  "python3-torch): " + out.substr(0, 300);
      return r;
    }
    r->dir = std::make_unique<TempDir>("mf-release-test");
    r->out = r->dir->path() / "release";
    RunResult run = RunRelease({"--quick", "--no-push", "--model", "mat-person", "--version",
                                "0.1.0", "--out", r->out.string()},
                               r->dir->path() / "release.log");
    r->log = run.output;
    if (run.exit_code != 0) {
      r->error = "release.sh --quick --no-push exited " + std::to_string(run.exit_code) + ":\n" + run.output;
      return r;
    }
    auto m = ReadManifest(r->out / "manifest.json");
    if (!m) {
      r->error = m.error().ToString();
      return r;
    }
    r->manifest = std::move(*m);
    auto st = google::protobuf::util::JsonStringToMessage(ReadFileOrEmpty(r->out / "metrics.json"),
                                                          &r->metrics);
    if (!st.ok()) r->error = "metrics.json is not JSON: " + st.ToString();
    return r;
  }
};

#define REQUIRE_RELEASE()                                                  \
  const QuickRelease& release = QuickRelease::Get();                       \
  if (!release.skip_reason.empty()) GTEST_SKIP() << release.skip_reason;  \
  ASSERT_TRUE(release.error.empty()) << release.error

// metrics.json's value at a dotted path ("int8.accuracy"), or nullptr.
const google::protobuf::Value* MetricAt(const google::protobuf::Struct& s, const std::string& path) {
  const google::protobuf::Struct* node = &s;
  std::stringstream parts(path);
  std::string part;
  const google::protobuf::Value* value = nullptr;
  while (std::getline(parts, part, '.')) {
    if (node == nullptr) return nullptr;
    auto it = node->fields().find(part);
    if (it == node->fields().end()) return nullptr;
    value = &it->second;
    node = value->has_struct_value() ? &value->struct_value() : nullptr;
  }
  return value;
}

double NumberAt(const google::protobuf::Struct& s, const std::string& path) {
  const auto* v = MetricAt(s, path);
  EXPECT_TRUE(v != nullptr && v->has_number_value()) << "metrics.json has no number at " << path;
  return v != nullptr && v->has_number_value() ? v->number_value() : NAN;
}

std::unique_ptr<agent::runtime::LoadedModel> LoadWithAgentRuntime(const fs::path& model) {
  auto runtime = agent::runtime::TorchRuntime::Create({.num_threads = 1});
  EXPECT_TRUE(runtime.has_value()) << runtime.error().ToString();
  if (!runtime) return nullptr;
  auto loaded = (*runtime)->Load(model);
  EXPECT_TRUE(loaded.has_value()) << loaded.error().ToString();
  return loaded ? std::move(*loaded) : nullptr;
}

TEST(ReleasePipelineTest, QuickReleaseWritesExactlyTheArtifacts) {
  REQUIRE_RELEASE();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(release.out)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"manifest.json", "metrics.json", "model.pt"}));
  // The staging directory is gone.
  for (const auto& e : fs::directory_iterator(release.dir->path())) {
    EXPECT_EQ(e.path().filename().string().rfind(".release-", 0), std::string::npos) << e.path();
  }
  for (const char* stage : {"== dataset", "== train", "== quantize", "== evaluate", "== export"}) {
    EXPECT_NE(release.log.find(stage), std::string::npos) << stage << " missing from:\n" << release.log;
  }
}

TEST(ReleasePipelineTest, ManifestIsOneTheCliAccepts) {
  REQUIRE_RELEASE();
  const v1::Manifest& m = release.manifest;
  // What `push` checks before sending (the CLI sets model/version/digest/size the same way).
  Status valid = ValidateManifest(m, "manifest");
  EXPECT_TRUE(valid.ok()) << valid.ToString();
  EXPECT_EQ(m.model(), "mat-person");
  EXPECT_EQ(m.version(), "0.1.0");
  EXPECT_EQ(m.version_counter(), 1000u);  // 0 * 1e6 + 1 * 1e3 + 0
  EXPECT_EQ(m.format(), "torchscript-int8");
  EXPECT_EQ(m.quantization(), "ptq-static-qnnpack");
  const std::string bytes = ReadFileOrEmpty(release.out / "model.pt");
  EXPECT_EQ(m.digest(), Sha256Hex(bytes));
  EXPECT_EQ(m.size_bytes(), bytes.size());
  EXPECT_EQ(std::vector<std::string>(m.class_labels().begin(), m.class_labels().end()),
            (std::vector<std::string>{"empty", "sitting", "lying_full", "lying_partial"}));
  EXPECT_EQ(std::vector<int64_t>(m.input_spec().shape().begin(), m.input_spec().shape().end()),
            (std::vector<int64_t>{1, 1, 16, 16}));
  EXPECT_EQ(m.labels().at("variant"), "good");
  // Lineage from the (GitHub Actions) environment the test gave it.
  EXPECT_EQ(m.lineage().git_commit(), "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(m.lineage().ci_run_id(), "github-4242-2");
  EXPECT_EQ(m.lineage().ci_run_url(), "https://github.example/acme/modelfleet/actions/runs/4242");
  EXPECT_NE(m.lineage().dataset().find("synthetic-mat-v1"), std::string::npos) << m.lineage().dataset();
  // A manifest the agent can preprocess frames for.
  auto pre = agent::sensor::Preprocessor::Create(m.input_spec());
  EXPECT_TRUE(pre.has_value()) << pre.error().ToString();
}

TEST(ReleasePipelineTest, ModelLoadsInTheAgentRuntimeAndPassesItsSelfTest) {
  REQUIRE_RELEASE();
  auto model = LoadWithAgentRuntime(release.out / "model.pt");
  ASSERT_NE(model, nullptr);
  agent::runtime::SelfTestReport report;
  Status st = agent::runtime::RunSelfTest(*model, release.manifest, {}, &report);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_LE(report.max_abs_difference, release.manifest.self_test().tolerance());
  std::cout << "[ release  ] self-test: max |difference| " << report.max_abs_difference
            << " (tolerance " << release.manifest.self_test().tolerance() << "), median latency "
            << report.median_latency.count() << " us (budget "
            << release.manifest.self_test().latency_budget_ms() << " ms)" << std::endl;
  // The runtime rejects a wrongly shaped input: the model declares its shape.
  std::vector<float> small(64, 0.0f);
  auto wrong = model->Run(small, {1, 1, 8, 8});
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), StatusCode::kInvalidArgument);
}

TEST(ReleasePipelineTest, Int8AccuracyIsMeasuredAndReported) {
  REQUIRE_RELEASE();
  const double int8 = NumberAt(release.metrics, "int8.accuracy");
  const double fp32 = NumberAt(release.metrics, "fp32.accuracy");
  ASSERT_TRUE(std::isfinite(int8) && int8 >= 0 && int8 <= 1) << int8;
  ASSERT_TRUE(std::isfinite(fp32) && fp32 >= 0 && fp32 <= 1) << fp32;
  for (const char* cls : {"empty", "sitting", "lying_full", "lying_partial"}) {
    const double recall = NumberAt(release.metrics, std::string("int8.recall.") + cls);
    EXPECT_TRUE(recall >= 0 && recall <= 1) << cls << " " << recall;
    EXPECT_EQ(release.manifest.metrics().at(std::string("recall_") + cls), recall) << cls;
  }
  EXPECT_GT(NumberAt(release.metrics, "int8.latency_p50_ms"), 0);
  EXPECT_GT(NumberAt(release.metrics, "fp32.size_bytes"), NumberAt(release.metrics, "int8.size_bytes"));
  const auto* passed = MetricAt(release.metrics, "gate.passed");
  ASSERT_NE(passed, nullptr);
  EXPECT_TRUE(passed->bool_value());
  // The manifest carries the same measurement.
  EXPECT_EQ(release.manifest.metrics().at("accuracy"), int8);
  EXPECT_EQ(release.manifest.metrics().at("accuracy_int8"), int8);
  EXPECT_EQ(release.manifest.metrics().at("accuracy_fp32"), fp32);
  std::cout << "[ release  ] quick mode, held-out " << NumberAt(release.metrics, "dataset.frames.heldout")
            << " frames: int8 accuracy " << int8 << ", fp32 accuracy " << fp32 << std::endl;
  ::testing::Test::RecordProperty("int8_accuracy", std::to_string(int8));
  ::testing::Test::RecordProperty("fp32_accuracy", std::to_string(fp32));
}

// The data set is the pipeline's, but the agent makes its frames with its own generator
// (agent/sensor/synthetic.h): the released model must tell those apart too, through the agent's
// preprocessing. Chance is 0.25.
TEST(ReleasePipelineTest, ClassifiesTheAgentsSyntheticFrames) {
  REQUIRE_RELEASE();
  auto model = LoadWithAgentRuntime(release.out / "model.pt");
  ASSERT_NE(model, nullptr);
  auto pre = agent::sensor::Preprocessor::Create(release.manifest.input_spec());
  ASSERT_TRUE(pre.has_value()) << pre.error().ToString();
  int correct = 0, total = 0;
  for (uint64_t seed : {11u, 12u, 13u, 14u}) {
    auto gen = agent::sensor::SyntheticGenerator::Create({.seed = seed});
    ASSERT_TRUE(gen.has_value()) << gen.error().ToString();
    for (int i = 0; i < 25; ++i) {
      for (agent::sensor::Situation s : agent::sensor::kAllSituations) {
        gen->NewBody();
        auto x = pre->Run(gen->Generate(s));
        ASSERT_TRUE(x.has_value()) << x.error().ToString();
        auto r = model->Run(*x, {1, 1, 16, 16});
        ASSERT_TRUE(r.has_value()) << r.error().ToString();
        correct += r->class_index == static_cast<int>(s);
        ++total;
      }
    }
  }
  const double accuracy = static_cast<double>(correct) / total;
  std::cout << "[ release  ] accuracy on " << total << " frames of the agent's synthetic source: "
            << accuracy << std::endl;
  EXPECT_GE(accuracy, 0.7);
}

TEST(ReleasePipelineTest, GateRefusesAnImpossibleMarginAndLeavesNothing) {
  REQUIRE_RELEASE();
  TempDir dir("mf-release-refused");
  const fs::path cli = WriteFakeCli(dir.path());
  const fs::path key = dir.path() / "release.pem";
  std::ofstream(key) << "not used: the gate refuses before any push\n";
  const fs::path out = dir.path() / "release";
  // -100 points: int8 would have to beat fp32 by 100 points.
  RunResult run = RunRelease({"--quick", "--version", "0.1.1", "--out", out.string(), "--margin", "-100",
                              "--cli", cli.string(), "--sign-key", key.string(), "--key-id", "k1"},
                             dir.path() / "refused.log");
  EXPECT_EQ(run.exit_code, 3) << run.output;
  EXPECT_NE(run.output.find("RELEASE REFUSED"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("points below fp32"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(out)) << "the refused run left " << out;
  EXPECT_FALSE(fs::exists(dir.path() / "calls")) << "the refused run called the CLI:\n"
                                                 << ReadFileOrEmpty(dir.path() / "calls");
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir.path())) left.push_back(e.path().filename());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"fake-modelfleet", "refused.log", "release.pem"}));
}

TEST(ReleasePipelineTest, BrokenSelfTestReleaseFailsTheSelfTestAndIsPushedSigned) {
  REQUIRE_RELEASE();
  TempDir dir("mf-release-broken");
  const fs::path cli = WriteFakeCli(dir.path());
  const fs::path key = dir.path() / "release.pem";
  std::ofstream(key) << "-----BEGIN PRIVATE KEY-----\n(the stand-in CLI does not read it)\n";
  const fs::path out = dir.path() / "release";
  RunResult run = RunRelease({"--quick", "--broken-self-test", "--version", "0.2.0", "--out", out.string(),
                              "--parent-version", "0.1.0", "--cli", cli.string(), "--sign-key",
                              key.string(), "--key-id", "release-2026"},
                             dir.path() / "broken.log");
  ASSERT_EQ(run.exit_code, 0) << run.output;

  // Pushed once, signed, with the manifest (the push subcommand is release.sh's PUSH_COMMAND).
  std::string calls = ReadFileOrEmpty(dir.path() / "calls");
  const std::string expected_tail = "mat-person\n0.2.0\n" + (out / "model.pt").string() + "\n--manifest\n" +
                                    (out / "manifest.json").string() + "\n--sign-key\n" + key.string() +
                                    "\n--key-id\nrelease-2026\n-o\njson\n--\n";
  ASSERT_GE(calls.size(), expected_tail.size()) << calls;
  EXPECT_EQ(calls.substr(calls.size() - expected_tail.size()), expected_tail) << calls;
  EXPECT_EQ(calls.find("--\n"), calls.size() - 3) << "more than one CLI call:\n" << calls;
  EXPECT_TRUE(fs::exists(out / "push.json"));

  auto m = ReadManifest(out / "manifest.json");
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->labels().at("variant"), "broken-self-test");
  EXPECT_EQ(m->lineage().parent_version(), "0.1.0");
  EXPECT_GT(m->version_counter(), release.manifest.version_counter());
  // The same seed and options train the same model, byte for byte: only the manifest differs.
  EXPECT_EQ(m->digest(), release.manifest.digest());
  Status valid = ValidateManifest(*m, "manifest");
  EXPECT_TRUE(valid.ok()) << valid.ToString();

  auto model = LoadWithAgentRuntime(out / "model.pt");
  ASSERT_NE(model, nullptr);
  Status st = agent::runtime::RunSelfTest(*model, *m);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("tolerance"), std::string::npos) << st.ToString();
}

TEST(ReleasePipelineTest, BadUsageIsRefusedBeforeAnyWork) {
  TempDir dir("mf-release-usage");
  const fs::path out = dir.path() / "release";
  struct Case {
    std::vector<std::string> args;
    std::string mention;
  };
  fs::create_directories(dir.path() / "full");
  std::ofstream(dir.path() / "full" / "old-model.pt") << "x";
  const std::vector<Case> cases = {
      {{"--quick", "--no-push"}, "--version is required"},
      {{"--version", "1.2", "--no-push"}, "--version '1.2'"},
      {{"--version", "1.2.0", "--model", "Bad Name", "--no-push"}, "--model 'Bad Name'"},
      {{"--version", "1.2.0", "--margin", "two", "--no-push"}, "--margin 'two'"},
      {{"--version", "1.2.0", "--frobnicate"}, "unknown option '--frobnicate'"},
      {{"--version", "1.2.0"}, "--sign-key"},  // pushing without a key: releases are signed
      {{"--version", "1.2.0", "--no-push", "--out", (dir.path() / "full").string()}, "is not empty"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    if (std::find(args.begin(), args.end(), "--out") == args.end()) {
      args.insert(args.end(), {"--out", out.string()});
    }
    RunResult run = RunRelease(args, dir.path() / "usage.log");
    EXPECT_EQ(run.exit_code, 2) << c.mention << ":\n" << run.output;
    EXPECT_NE(run.output.find(c.mention), std::string::npos) << run.output;
    EXPECT_FALSE(fs::exists(out)) << c.mention;
  }
  EXPECT_TRUE(fs::exists(dir.path() / "full" / "old-model.pt"));
}

}  // namespace
}  // namespace modelfleet
