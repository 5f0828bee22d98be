// End-to-end tests of the `modelfleet` CLI: the built binary run as a subprocess against the
// built modelfleet-server (real PostgreSQL 15 cluster, s3rver as the blob store), for every
// command's success path and its main error paths. `-o json` output is parsed with protobuf's
// JSON parser into the API messages (lists are JSON arrays: wrapped into the List* response
// message); exit codes are asserted against client/cli/exit_codes.h.
//
// Tables for people are checked as piped (never cut) and on a terminal of a fixed width: with
// MODELFLEET_FORCE_TTY=1 (the CLI's test-only switch) and COLUMNS, and once on a real
// pseudo-terminal (`script`).
//
// One server serves the whole suite (tests use their own model names); the server runs with
// --check-in-interval-seconds 1 --controller-interval-ms 200 so a one-stage rollout completes
// within seconds once the simulated devices (client/devsim) report.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "devsim/fleet_simulator.h"
#include "modelfleet/crypto.h"
#include "modelfleet/v1/admin.pb.h"
#include "modelfleet/v1/events.pb.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/registry.pb.h"
#include "peers_environment.h"
#include "process.h"
#include "s3rver.h"
#include "server_process.h"
#include "test_data.h"

namespace modelfleet {
namespace {

using namespace std::chrono_literals;
using google::protobuf::util::MessageDifferencer;
using testing::ServerProcess;
using testing::Subprocess;
using testing::TempDir;

[[maybe_unused]] ::testing::Environment* const kPeers =
    ::testing::AddGlobalTestEnvironment(new testing::PeersEnvironment);

// client/cli/exit_codes.h, restated: the test checks the documented contract.
constexpr int kOk = 0, kUsage = 2, kNotFound = 3, kDenied = 4, kUnavailable = 5, kConflict = 6,
              kVerification = 7, kPaused = 10, kAborted = 11, kRolledBack = 12;

struct Result {
  int code = -1;
  std::string out, err;
};

std::ostream& operator<<(std::ostream& os, const Result& r) {
  return os << "exit " << r.code << "\n--- stdout\n" << r.out << "\n--- stderr\n" << r.err;
}

using testing::CliBinary;

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Columns a line takes on a terminal: one per UTF-8 code point (the CLI's "…" is one).
size_t DisplayWidth(const std::string& line) {
  size_t width = 0;
  for (char c : line) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return width;
}

// The lines of an output, without the "\r" a terminal adds.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// The first line that starts with `prefix`, or "".
std::string LineStartingWith(const std::string& text, const std::string& prefix) {
  for (const auto& line : Lines(text)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

constexpr const char kEllipsis[] = "\u2026";

template <typename M>
::testing::AssertionResult ParseJson(const std::string& json, M* out) {
  google::protobuf::util::JsonParseOptions options;
  auto s = google::protobuf::util::JsonStringToMessage(json, out, options);
  if (!s.ok())
    return ::testing::AssertionFailure()
           << "not JSON for " << out->GetTypeName() << ": " << s.ToString() << "\n"
           << json;
  return ::testing::AssertionSuccess();
}

// A JSON array printed by a list command, parsed into the List*Response whose repeated field
// is `field` (e.g. "models").
template <typename Resp>
::testing::AssertionResult ParseList(const std::string& json, const std::string& field, Resp* out) {
  google::protobuf::ListValue array;
  auto check = ParseJson(json, &array);  // must be a JSON array, not lines of objects
  if (!check) return check;
  return ParseJson("{\"" + field + "\":" + json + "}", out);
}

class CliE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_NE(testing::Cluster(), nullptr);
    const std::string db = "cli_" + std::to_string(::getpid());
    ASSERT_TRUE(testing::Cluster()->CreateDatabase(db)) << testing::Cluster()->last_error();
    database_url_ = new std::string(testing::Cluster()->conninfo(db));
    ServerProcess::Options o;
    o.database_url = *database_url_;
    testing::UseS3Peer(o, "cli-" + std::to_string(::getpid()));
    o.extra_args = {"--check-in-interval-seconds", "1", "--controller-interval-ms", "200"};
    std::string error;
    server_ = ServerProcess::Start(o, &error).release();
    ASSERT_NE(server_, nullptr) << error;
    admin_ = new std::string(testing::CreateTokenOffline(*database_url_, "bootstrap", "admin", &error));
    ASSERT_FALSE(admin_->empty()) << error;
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete admin_;
    delete database_url_;
  }

  void TearDown() override {
    if (HasFailure() && server_ != nullptr) {
      std::string log = server_->Log();
      if (log.size() > 3000) log = "..." + log.substr(log.size() - 3000);
      std::fprintf(stderr, "---- server log (tail) ----\n%s\n", log.c_str());
    }
  }

  // The environment every CLI run gets: this server, plaintext, the admin token, and a HOME /
  // XDG_CONFIG_HOME of its own so no config file of the machine is read. `env` overrides; an
  // empty value counts as unset for the CLI.
  std::map<std::string, std::string> Env(const std::map<std::string, std::string>& env = {}) const {
    std::map<std::string, std::string> out = {{"MODELFLEET_SERVER", server_->address()},
                                              {"MODELFLEET_INSECURE", "1"},
                                              {"MODELFLEET_TOKEN", *admin_},
                                              {"MODELFLEET_TLS_CA", ""},
                                              {"MODELFLEET_OUTPUT", ""},
                                              {"MODELFLEET_CONFIG", ""},
                                              {"MODELFLEET_FORCE_TTY", ""},
                                              {"COLUMNS", ""},
                                              {"HOME", (dir_.path() / "home").string()},
                                              {"XDG_CONFIG_HOME", (dir_.path() / "xdg").string()}};
    for (const auto& [k, v] : env) out[k] = v;
    return out;
  }

  // Starts the CLI with stdout and stderr to files of their own.
  std::optional<Subprocess> Start(const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env, const std::string& tag) {
    const auto err = dir_.path() / (tag + ".err");
    Subprocess::Options o;
    o.argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>" + ShellQuote(err.string()), CliBinary().string()};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.env = Env(env);
    o.log_path = dir_.path() / (tag + ".out");
    std::string error;
    auto p = Subprocess::Start(o, &error);
    EXPECT_TRUE(p.has_value()) << error;
    return p;
  }
  Result Collect(Subprocess& p, const std::string& tag, std::chrono::milliseconds timeout = 60s) {
    Result r;
    auto code = p.Wait(timeout);
    EXPECT_TRUE(code.has_value()) << "modelfleet " << tag << " did not finish";
    r.code = code.value_or(-1);
    r.out = testing::ReadFileOrEmpty(dir_.path() / (tag + ".out"));
    r.err = testing::ReadFileOrEmpty(dir_.path() / (tag + ".err"));
    return r;
  }
  // Runs the CLI to completion.
  Result Run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {}) {
    const std::string tag = "run" + std::to_string(++runs_);
    auto p = Start(args, env, tag);
    if (!p) return {};
    return Collect(*p, tag);
  }
  Result RunAs(const std::string& token, const std::vector<std::string>& args) {
    return Run(args, {{"MODELFLEET_TOKEN", token}});
  }
  // Runs the CLI with stdout and stderr on a pseudo-terminal (util-linux `script`); returns
  // everything the terminal showed.
  Result RunOnTerminal(const std::vector<std::string>& args,
                       const std::map<std::string, std::string>& env = {}) {
    std::string cmd = ShellQuote(CliBinary().string());
    for (const auto& a : args) cmd += " " + ShellQuote(a);
    const std::string tag = "tty" + std::to_string(++runs_);
    Subprocess::Options o;
    o.argv = {"script", "-qefc", cmd, "/dev/null"};
    o.env = Env(env);
    o.log_path = dir_.path() / (tag + ".out");
    std::string error;
    auto p = Subprocess::Start(o, &error);
    EXPECT_TRUE(p.has_value()) << error;
    if (!p) return {};
    return Collect(*p, tag);
  }

  std::string WriteFile(const std::string& name, const std::string& bytes) {
    const auto path = dir_.path() / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
  }

  std::string CreateToken(const std::string& name, const std::string& role) {
    Result r = Run({"tokens", "create", name, "--role", role, "-o", "json"});
    EXPECT_EQ(r.code, kOk) << r;
    v1::CreateTokenResponse resp;
    EXPECT_TRUE(ParseJson(r.out, &resp));
    return resp.secret();
  }

  // Creates `model` and pushes `versions` (unsigned; bytes seeded by their index); returns the
  // digest of each.
  std::map<std::string, std::string> ModelWithVersions(const std::string& model,
                                                       const std::vector<std::string>& versions) {
    Result r = Run({"models", "create", model, "--task", "person-detection"});
    EXPECT_EQ(r.code, kOk) << r;
    std::map<std::string, std::string> digests;
    uint32_t seed = 100;
    for (const auto& v : versions) {
      const std::string bytes = testing::PatternBytes(40 << 10, ++seed);
      const std::string file = WriteFile(model + "-" + v + ".pt", bytes);
      r = Run({"versions", "push", model, v, file, "--version-counter", std::to_string(seed), "-o", "json"});
      EXPECT_EQ(r.code, kOk) << r;
      digests[v] = Sha256Hex(bytes);
    }
    return digests;
  }

  static ServerProcess* server_;
  static std::string* admin_;
  static std::string* database_url_;
  TempDir dir_{"modelfleet-cli"};
  int runs_ = 0;
};

ServerProcess* CliE2E::server_ = nullptr;
std::string* CliE2E::admin_ = nullptr;
std::string* CliE2E::database_url_ = nullptr;

TEST_F(CliE2E, HelpEverywhereAndBadUsageExitsTwo) {
  Result r = Run({"--help"});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find("Exit codes"), std::string::npos) << r;
  for (const char* noun : {"models", "versions", "alias", "keys", "tokens", "devices", "enroll-tokens", "rollouts",
                           "events", "webhooks"}) {
    r = Run({noun, "--help"});
    EXPECT_EQ(r.code, kOk) << noun << " " << r;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r;
  }
  r = Run({"rollouts", "watch", "--help"});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find("rolled back (12)"), std::string::npos) << r;

  EXPECT_EQ(Run({}).code, kUsage);                                    // no command
  EXPECT_EQ(Run({"models"}).code, kUsage);                            // no verb
  EXPECT_EQ(Run({"models", "frobnicate"}).code, kUsage);              // unknown verb
  EXPECT_EQ(Run({"models", "list", "--no-such-flag"}).code, kUsage);  // unknown flag
  EXPECT_EQ(Run({"tokens", "revoke", "not-a-number"}).code, kUsage);
  EXPECT_EQ(Run({"-o", "yaml", "models", "list"}).code, kUsage);
  r = Run({"versions", "show", "no-at-sign"});
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("MODEL@VERSION"), std::string::npos) << r;
  r = Run({"models", "create", "Bad Name"});  // the server's INVALID_ARGUMENT
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r;
  r = Run({"rollouts", "create", "m", "1.0.0", "--target", "*", "--stage", "10:bogus=1"});
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r;
}

TEST_F(CliE2E, ModelsCreateListShowArchive) {
  Result r = Run({"models", "create", "cli-models", "--task", "person-detection", "--class-labels",
                  "empty,sitting,lying_full,lying_partial", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Model model;
  ASSERT_TRUE(ParseJson(r.out, &model));
  EXPECT_EQ(model.name(), "cli-models");
  EXPECT_EQ(model.task(), "person-detection");
  EXPECT_EQ(model.class_labels_size(), 4);
  EXPECT_FALSE(model.archived());

  r = Run({"models", "create", "cli-models"});
  EXPECT_EQ(r.code, kConflict) << r;
  EXPECT_NE(r.err.find("ALREADY_EXISTS"), std::string::npos) << r;

  r = Run({"models", "list", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListModelsResponse list;
  ASSERT_TRUE(ParseList(r.out, "models", &list));
  bool found = false;
  for (const auto& m : list.models()) found |= m.name() == "cli-models";
  EXPECT_TRUE(found) << r;

  // The table: a header and aligned columns (the second column starts at the same offset).
  r = Run({"models", "list"});
  ASSERT_EQ(r.code, kOk) << r;
  std::istringstream lines(r.out);
  std::string header, row;
  ASSERT_TRUE(std::getline(lines, header));
  EXPECT_EQ(header.rfind("NAME", 0), 0u) << r;
  const size_t task_col = header.find("TASK");
  ASSERT_NE(task_col, std::string::npos);
  bool row_found = false;
  while (std::getline(lines, row)) {
    if (row.rfind("cli-models ", 0) != 0) continue;
    row_found = true;
    EXPECT_EQ(row.find("person-detection"), task_col) << r;
  }
  EXPECT_TRUE(row_found) << r;

  r = Run({"models", "show", "cli-models", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &model));
  EXPECT_EQ(model.name(), "cli-models");
  r = Run({"models", "show", "cli-models"});
  EXPECT_NE(r.out.find("person-detection"), std::string::npos) << r;
  EXPECT_EQ(Run({"models", "show", "cli-no-such-model"}).code, kNotFound);

  const std::string publisher = CreateToken("cli-models-ci", "publisher");
  r = RunAs(publisher, {"models", "archive", "cli-models"});
  EXPECT_EQ(r.code, kDenied) << r;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r;
  EXPECT_EQ(RunAs("mf_" + std::string(64, '0'), {"models", "list"}).code, kDenied);  // unknown token
  EXPECT_EQ(Run({"models", "list"}, {{"MODELFLEET_TOKEN", ""}}).code, kDenied);      // no token

  r = Run({"models", "archive", "cli-models", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &model));
  EXPECT_TRUE(model.archived());
  r = Run({"models", "list", "-o", "json"});
  ASSERT_TRUE(ParseList(r.out, "models", &list));
  for (const auto& m : list.models()) EXPECT_NE(m.name(), "cli-models");
  r = Run({"models", "list", "--all", "-o", "json"});
  ASSERT_TRUE(ParseList(r.out, "models", &list));
  found = false;
  for (const auto& m : list.models()) found |= m.name() == "cli-models";
  EXPECT_TRUE(found) << r;
}

TEST_F(CliE2E, SignedPushIsIdempotentAndVerifyCatchesCorruption) {
  // A keypair generated by the CLI, trusted by the server.
  const std::string key = (dir_.path() / "release.key").string(),
                    pub = (dir_.path() / "release.pub").string();
  Result r = Run({"keys", "generate", key, pub, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Run({"keys", "generate", key, pub}).code, kConflict);  // never overwrites silently
  ASSERT_EQ(Run({"keys", "add", "cli-release", pub}).code, kOk);
  r = Run({"keys", "list", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListPublisherKeysResponse keys;
  ASSERT_TRUE(ParseList(r.out, "keys", &keys));
  std::string trusted;
  for (const auto& k : keys.keys()) {
    if (k.key_id() == "cli-release") trusted = k.public_key();
  }
  auto expected_pub = ReadEd25519PublicKeyPem(pub);
  ASSERT_TRUE(expected_pub.has_value());
  EXPECT_EQ(trusted, *expected_pub);

  ASSERT_EQ(Run({"models", "create", "cli-push"}).code, kOk);
  const std::string bytes = testing::PatternBytes(3 << 20, 7);  // several chunks
  const std::string artifact = WriteFile("model.pt", bytes);
  const std::string manifest =
      WriteFile("manifest.json",
                R"({"input_spec": {"shape": [1, 1, 16, 16], "dtype": "float32", "layout": "NCHW"},
          "class_labels": ["empty", "sitting", "lying_full", "lying_partial"], "params": {"epochs": "3"}})");
  const std::vector<std::string> push = {"versions",
                                         "push",
                                         "cli-push",
                                         "1.0.0",
                                         artifact,
                                         "--manifest",
                                         manifest,
                                         "--sign-key",
                                         key,
                                         "--key-id",
                                         "cli-release",
                                         "--metric",
                                         "accuracy=0.93",
                                         "--label",
                                         "hw=rev3",
                                         "--version-counter",
                                         "1",
                                         "-o",
                                         "json"};
  r = Run(push);
  ASSERT_EQ(r.code, kOk) << r;
  v1::ModelVersion pushed;
  ASSERT_TRUE(ParseJson(r.out, &pushed));
  EXPECT_EQ(pushed.manifest().digest(), Sha256Hex(bytes));
  EXPECT_EQ(pushed.manifest().size_bytes(), bytes.size());
  EXPECT_EQ(pushed.manifest().signature().key_id(), "cli-release");
  EXPECT_EQ(pushed.manifest().input_spec().shape_size(), 4);
  EXPECT_EQ(pushed.manifest().params().at("epochs"), "3");
  EXPECT_EQ(pushed.manifest().metrics().at("accuracy"), 0.93);
  EXPECT_EQ(pushed.state(), v1::VERSION_STATE_READY);
  // Not a terminal: plain progress lines, no carriage returns.
  EXPECT_NE(r.err.find("push cli-push@1.0.0:"), std::string::npos) << r;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r;

  // CI re-runs the job: same bytes succeed, nothing new is created.
  r = Run(push);
  ASSERT_EQ(r.code, kOk) << r;
  v1::ModelVersion again;
  ASSERT_TRUE(ParseJson(r.out, &again));
  EXPECT_EQ(again.create_time().seconds(), pushed.create_time().seconds());
  EXPECT_EQ(again.create_time().nanos(), pushed.create_time().nanos());
  EXPECT_NE(r.err.find("nothing uploaded"), std::string::npos) << r;
  // Other bytes under the same version: a clear conflict naming both digests.
  const std::string other = WriteFile("other.pt", testing::PatternBytes(1000, 8));
  r = Run({"versions", "push", "cli-push", "1.0.0", other});
  EXPECT_EQ(r.code, kConflict) << r;
  EXPECT_NE(r.err.find("other bytes"), std::string::npos) << r;
  EXPECT_NE(r.err.find(Sha256Hex(testing::PatternBytes(1000, 8))), std::string::npos) << r;
  // Bad usage of push.
  EXPECT_EQ(Run({"versions", "push", "cli-push", "1.0.1", artifact, "--sign-key", key}).code,
            kUsage);  // no key id
  EXPECT_EQ(Run({"versions", "push", "cli-push", "1.0.1", (dir_.path() / "missing.pt").string()}).code,
            kUsage);
  EXPECT_EQ(Run({"versions", "push", "cli-push", "not-semver", artifact}).code, kUsage);
  EXPECT_EQ(Run({"versions", "push", "cli-no-model", "1.0.0", artifact}).code, kNotFound);
  const std::string viewer = CreateToken("cli-push-viewer", "viewer");
  EXPECT_EQ(RunAs(viewer, {"versions", "push", "cli-push", "1.0.1", artifact}).code, kDenied);

  // An unsigned second version, then list / show / filter.
  const std::string bytes2 = testing::PatternBytes(5000, 9);
  const std::string artifact2 = WriteFile("model2.pt", bytes2);
  ASSERT_EQ(Run({"versions", "push", "cli-push", "1.1.0", artifact2, "--metric", "accuracy=0.5"}).code, kOk);
  r = Run({"versions", "list", "cli-push", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListVersionsResponse versions;
  ASSERT_TRUE(ParseList(r.out, "versions", &versions));
  ASSERT_EQ(versions.versions_size(), 2) << r;
  EXPECT_EQ(versions.versions(0).manifest().version(), "1.1.0");  // newest first
  r = Run({"versions", "list", "cli-push", "--filter", "metrics.accuracy >= 0.9", "-o", "json"});
  ASSERT_TRUE(ParseList(r.out, "versions", &versions));
  ASSERT_EQ(versions.versions_size(), 1) << r;
  EXPECT_EQ(versions.versions(0).manifest().version(), "1.0.0");
  EXPECT_EQ(Run({"versions", "list", "cli-push", "--filter", "metrics.accuracy >>> 1"}).code, kUsage);
  r = Run({"versions", "list", "cli-push"});
  EXPECT_NE(r.out.find("VERSION"), std::string::npos) << r;
  EXPECT_NE(r.out.find("cli-release"), std::string::npos) << r;

  ASSERT_EQ(Run({"alias", "set", "cli-push", "production", "1.0.0"}).code, kOk);
  r = Run({"versions", "show", "cli-push@production", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ModelVersion shown;
  ASSERT_TRUE(ParseJson(r.out, &shown));
  EXPECT_EQ(shown.manifest().version(), "1.0.0");
  EXPECT_EQ(Run({"versions", "show", "cli-push@9.9.9"}).code, kNotFound);

  // verify: the good file, by alias and by version.
  r = Run({"versions", "verify", "cli-push@production", artifact, "-o", "json"});
  EXPECT_EQ(r.code, kOk) << r;
  google::protobuf::Struct verdict;
  ASSERT_TRUE(ParseJson(r.out, &verdict));
  EXPECT_TRUE(verdict.fields().at("verified").bool_value()) << r;
  EXPECT_EQ(verdict.fields().at("signature").string_value(), "ok");
  r = Run({"versions", "verify", "cli-push@1.0.0", artifact});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find("VERIFIED"), std::string::npos) << r;
  // One flipped byte: same size, other digest.
  std::string corrupted = bytes;
  corrupted[12345] = static_cast<char>(corrupted[12345] ^ 0x40);
  r = Run({"versions", "verify", "cli-push@1.0.0", WriteFile("corrupt.pt", corrupted), "-o", "json"});
  EXPECT_EQ(r.code, kVerification) << r;
  ASSERT_TRUE(ParseJson(r.out, &verdict));
  EXPECT_FALSE(verdict.fields().at("verified").bool_value());
  EXPECT_TRUE(verdict.fields().at("size_ok").bool_value());
  EXPECT_FALSE(verdict.fields().at("digest_ok").bool_value());
  r = Run({"versions", "verify", "cli-push@1.0.0", WriteFile("short.pt", bytes.substr(0, 100))});
  EXPECT_EQ(r.code, kVerification) << r;
  EXPECT_NE(r.out.find("NOT VERIFIED"), std::string::npos) << r;
  // The right bytes but another key: the signature check fails.
  const std::string key2 = (dir_.path() / "other.key").string(), pub2 = (dir_.path() / "other.pub").string();
  ASSERT_EQ(Run({"keys", "generate", key2, pub2}).code, kOk);
  r = Run({"versions", "verify", "cli-push@1.0.0", artifact, "--public-key", pub2, "-o", "json"});
  EXPECT_EQ(r.code, kVerification) << r;
  ASSERT_TRUE(ParseJson(r.out, &verdict));
  EXPECT_EQ(verdict.fields().at("signature").string_value(), "invalid");
  r = Run({"versions", "verify", "cli-push@1.0.0", artifact, "--public-key", pub});
  EXPECT_EQ(r.code, kOk) << r;
  // Unsigned versions fail verification unless allowed.
  EXPECT_EQ(Run({"versions", "verify", "cli-push@1.1.0", artifact2}).code, kVerification);
  EXPECT_EQ(Run({"versions", "verify", "cli-push@1.1.0", artifact2, "--allow-unsigned"}).code, kOk);
  EXPECT_EQ(Run({"versions", "verify", "cli-push@7.0.0", artifact2}).code, kNotFound);

  // download (read-only token), resumed from a partial file, verified against the manifest.
  const std::string out = (dir_.path() / "downloaded.pt").string();
  std::ofstream(out + ".part", std::ios::binary) << bytes.substr(0, 1000000);
  r = RunAs(viewer, {"versions", "download", "cli-push@production", "--out", out, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Manifest got;
  ASSERT_TRUE(ParseJson(r.out, &got));
  EXPECT_EQ(got.version(), "1.0.0");
  EXPECT_EQ(testing::ReadFileOrEmpty(out), bytes);
  EXPECT_FALSE(std::filesystem::exists(out + ".part"));
  // A partial file that is not a prefix of the artifact: caught, removed, nothing renamed.
  const std::string bad_out = (dir_.path() / "bad-download.pt").string();
  std::ofstream(bad_out + ".part", std::ios::binary) << std::string(1000, 'x');
  r = RunAs(viewer, {"versions", "download", "cli-push@1.0.0", "--out", bad_out});
  EXPECT_EQ(r.code, kVerification) << r;
  EXPECT_FALSE(std::filesystem::exists(bad_out));
  EXPECT_FALSE(std::filesystem::exists(bad_out + ".part"));
  const std::string device = CreateToken("cli-push-device", "device");
  EXPECT_EQ(Run({"versions", "download", "cli-push@staging", "--out", out + "2"}).code, kNotFound);

  // archive and purge (admin only; purge needs an archived version).
  EXPECT_EQ(RunAs(device, {"versions", "archive", "cli-push@1.1.0"}).code, kDenied);
  EXPECT_EQ(Run({"versions", "purge", "cli-push@1.1.0"}).code, kConflict);
  EXPECT_EQ(Run({"versions", "archive", "cli-push@production"}).code, kUsage);  // no aliases here
  r = Run({"versions", "archive", "cli-push@1.1.0", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &shown));
  EXPECT_EQ(shown.state(), v1::VERSION_STATE_ARCHIVED);
  r = Run({"versions", "purge", "cli-push@1.1.0", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::PurgeVersionResponse purged;
  ASSERT_TRUE(ParseJson(r.out, &purged));
  EXPECT_TRUE(purged.blob_deleted());
  EXPECT_EQ(Run({"versions", "show", "cli-push@1.1.0"}).code, kNotFound);
}

TEST_F(CliE2E, PushShowsAProgressBarOnATerminal) {
  ASSERT_EQ(Run({"models", "create", "cli-tty"}).code, kOk);
  const std::string artifact = WriteFile("tty.pt", testing::PatternBytes(4 << 20, 11));
  Result r = RunOnTerminal({"versions", "push", "cli-tty", "1.0.0", artifact});
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find('\r'), std::string::npos) << r;  // redrawn in place
  EXPECT_NE(r.out.find("[#"), std::string::npos) << r;
  EXPECT_NE(r.out.find("/s"), std::string::npos) << r;     // a rate
  EXPECT_NE(r.out.find("4 MiB"), std::string::npos) << r;  // exact: no ".0"
}

TEST_F(CliE2E, AliasSetMoveHistory) {
  ModelWithVersions("cli-alias", {"1.0.0", "1.1.0", "1.2.0"});
  Result r = Run({"alias", "set", "cli-alias", "production", "1.0.0", "--reason", "first", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Alias alias;
  ASSERT_TRUE(ParseJson(r.out, &alias));
  EXPECT_EQ(alias.version(), "1.0.0");
  r = Run({"alias", "move", "cli-alias", "production", "1.1.0", "--from", "1.0.0", "--reason", "better", "-o",
           "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &alias));
  EXPECT_EQ(alias.version(), "1.1.0");
  // Someone else moved it meanwhile: the compare-and-set refuses, nothing moves.
  r = Run({"alias", "move", "cli-alias", "production", "1.2.0", "--from", "1.0.0"});
  EXPECT_EQ(r.code, kConflict) << r;
  EXPECT_NE(r.err.find("nothing moved"), std::string::npos) << r;
  EXPECT_EQ(Run({"alias", "move", "cli-alias", "staging", "1.2.0", "--from", "-"}).code, kOk);
  EXPECT_EQ(Run({"alias", "move", "cli-alias", "staging", "1.1.0", "--from", "-"}).code, kConflict);
  EXPECT_EQ(Run({"alias", "move", "cli-alias", "staging", "1.1.0"}).code, kUsage);  // --from is required
  EXPECT_EQ(Run({"alias", "set", "cli-alias", "production", "9.9.9"}).code, kNotFound);

  r = Run({"alias", "history", "cli-alias", "production", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListAliasHistoryResponse history;
  ASSERT_TRUE(ParseList(r.out, "changes", &history));
  ASSERT_EQ(history.changes_size(), 2) << r;
  EXPECT_EQ(history.changes(0).from_version(), "1.0.0");
  EXPECT_EQ(history.changes(0).to_version(), "1.1.0");
  EXPECT_EQ(history.changes(0).reason(), "better");
  r = Run({"alias", "history", "cli-alias"});
  EXPECT_NE(r.out.find("staging"), std::string::npos) << r;
  EXPECT_NE(r.out.find("production"), std::string::npos) << r;
}

TEST_F(CliE2E, TokensKeysAndEnrollmentTokens) {
  Result r =
      Run({"tokens", "create", "cli-tok", "--role", "publisher", "--ttl-seconds", "3600", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::CreateTokenResponse created;
  ASSERT_TRUE(ParseJson(r.out, &created));
  EXPECT_EQ(created.secret().rfind("mf_", 0), 0u);
  EXPECT_EQ(created.token().role(), v1::ROLE_PUBLISHER);
  EXPECT_TRUE(created.token().has_expire_time());
  EXPECT_EQ(Run({"tokens", "create", "cli-bad", "--role", "wizard"}).code, kUsage);

  r = Run({"tokens", "list", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListTokensResponse tokens;
  ASSERT_TRUE(ParseList(r.out, "tokens", &tokens));
  bool found = false;
  for (const auto& t : tokens.tokens()) found |= t.id() == created.token().id();
  EXPECT_TRUE(found) << r;
  EXPECT_EQ(RunAs(created.secret(), {"tokens", "list"}).code, kDenied);  // publisher
  EXPECT_EQ(RunAs(created.secret(), {"models", "list"}).code, kOk);

  r = Run({"tokens", "revoke", std::to_string(created.token().id()), "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Token revoked;
  ASSERT_TRUE(ParseJson(r.out, &revoked));
  EXPECT_TRUE(revoked.has_revoke_time());
  EXPECT_EQ(RunAs(created.secret(), {"models", "list"}).code, kDenied);
  EXPECT_EQ(Run({"tokens", "revoke", "987654"}).code, kNotFound);
  r = Run({"tokens", "list", "--all"});
  EXPECT_NE(r.out.find("cli-tok"), std::string::npos) << r;

  // Keys: revoke.
  const std::string key = (dir_.path() / "k.key").string(), pub = (dir_.path() / "k.pub").string();
  ASSERT_EQ(Run({"keys", "generate", key, pub}).code, kOk);
  ASSERT_EQ(Run({"keys", "add", "cli-k", pub}).code, kOk);
  EXPECT_EQ(Run({"keys", "add", "cli-k", pub}).code, kConflict);
  EXPECT_EQ(Run({"keys", "add", "cli-k2", key + ".missing"}).code, kUsage);
  r = Run({"keys", "revoke", "cli-k", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::PublisherKey k;
  ASSERT_TRUE(ParseJson(r.out, &k));
  EXPECT_TRUE(k.has_revoke_time());
  EXPECT_EQ(Run({"keys", "revoke", "cli-no-such-key"}).code, kNotFound);

  // Enrollment tokens.
  r = Run({"enroll-tokens", "create", "cli-line", "--max-uses", "5", "--auto-accept", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::CreateEnrollmentTokenResponse enroll;
  ASSERT_TRUE(ParseJson(r.out, &enroll));
  EXPECT_FALSE(enroll.token().empty());
  r = Run({"enroll-tokens", "list", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListEnrollmentTokensResponse etokens;
  ASSERT_TRUE(ParseList(r.out, "tokens", &etokens));
  found = false;
  for (const auto& t : etokens.tokens())
    found |= t.id() == enroll.id() && t.max_uses() == 5 && t.auto_accept();
  EXPECT_TRUE(found) << r;
  const std::string viewer = CreateToken("cli-tok-viewer", "viewer");
  EXPECT_EQ(RunAs(viewer, {"enroll-tokens", "create", "x"}).code, kDenied);
  r = Run({"enroll-tokens", "revoke", std::to_string(enroll.id()), "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::EnrollmentToken et;
  ASSERT_TRUE(ParseJson(r.out, &et));
  EXPECT_TRUE(et.has_revoke_time());
  EXPECT_EQ(Run({"enroll-tokens", "revoke", "987654"}).code, kNotFound);
}

TEST_F(CliE2E, DevicesPreauthorizeAdmitAndHistory) {
  Result r = Run({"devices", "preauthorize", "cli-hw-1", "--site", "berlin", "--hardware-revision", "3",
                  "--label", "room=a", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Device device;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.hardware_id(), "cli-hw-1");
  EXPECT_EQ(device.attributes().site(), "berlin");
  EXPECT_EQ(device.attributes().labels().at("room"), "a");
  const std::string id = device.device_id();
  ASSERT_FALSE(id.empty());

  r = Run({"devices", "list", "--filter", "site = \"berlin\" AND labels.room = \"a\"", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(ParseList(r.out, "devices", &devices));
  bool found = false;
  for (const auto& d : devices.devices()) found |= d.device_id() == id;
  EXPECT_TRUE(found) << r;
  EXPECT_EQ(Run({"devices", "list", "--filter", "site ="}).code, kUsage);

  r = Run({"devices", "show", id, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.hardware_id(), "cli-hw-1");
  r = Run({"devices", "show", id});
  EXPECT_NE(r.out.find("berlin"), std::string::npos) << r;

  const std::string viewer = CreateToken("cli-dev-viewer", "viewer");
  EXPECT_EQ(RunAs(viewer, {"devices", "show", id}).code, kOk);
  EXPECT_EQ(RunAs(viewer, {"devices", "decommission", id}).code, kDenied);
  r = Run({"devices", "reject", id, "--reason", "wrong site", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.admission(), v1::DEVICE_ADMISSION_REJECTED);
  r = Run({"devices", "accept", id, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.admission(), v1::DEVICE_ADMISSION_ACCEPTED);
  r = Run({"devices", "decommission", id, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.admission(), v1::DEVICE_ADMISSION_DECOMMISSIONED);

  r = Run({"devices", "history", id, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListDeviceHistoryResponse history;
  ASSERT_TRUE(ParseList(r.out, "events", &history));
  EXPECT_GE(history.events_size(), 3) << r;  // preauthorized, rejected, accepted, decommissioned
  EXPECT_EQ(Run({"devices", "show", "no-such-device"}).code, kNotFound);
  EXPECT_EQ(Run({"devices", "history", "00000000-0000-0000-0000-000000000000"}).code, kNotFound);
}

TEST_F(CliE2E, ConfigFilePrecedence) {
  const std::string good = server_->address();
  const std::string closed = "127.0.0.1:" + std::to_string(testing::FreeTcpPort());
  const auto write_config = [&](const std::filesystem::path& path, const std::string& text) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
    std::filesystem::permissions(path,
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return path.string();
  };
  const std::map<std::string, std::string> no_env = {
      {"MODELFLEET_SERVER", ""}, {"MODELFLEET_TOKEN", ""}, {"MODELFLEET_INSECURE", ""}};

  // The default file under $XDG_CONFIG_HOME: server, token, insecure and output all from it.
  write_config(dir_.path() / "xdg" / "modelfleet" / "config", "# written by the test\nserver = " + good +
                                                                  "\ntoken = \"" + *admin_ +
                                                                  "\"\n\ninsecure = true\noutput = json\n");
  Result r = Run({"models", "list"}, no_env);
  ASSERT_EQ(r.code, kOk) << r;
  google::protobuf::ListValue array;
  EXPECT_TRUE(ParseJson(r.out, &array));               // output = json from the file
  r = Run({"-o", "table", "models", "list"}, no_env);  // the flag beats the file
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_FALSE(ParseJson(r.out, &array)) << r;

  // Environment beats the file; a flag beats the environment.
  auto env = no_env;
  env["MODELFLEET_SERVER"] = closed;
  r = Run({"models", "list"}, env);
  EXPECT_EQ(r.code, kUnavailable) << r;
  EXPECT_NE(r.err.find(closed), std::string::npos) << r;
  EXPECT_EQ(Run({"--server", good, "models", "list"}, env).code, kOk);
  EXPECT_EQ(Run({"models", "list", "--server", good}, env).code, kOk);  // global flags after the command too
  env = no_env;
  env["MODELFLEET_TOKEN"] = "mf_" + std::string(64, '1');
  EXPECT_EQ(Run({"models", "list"}, env).code, kDenied);

  // --config / MODELFLEET_CONFIG name another file, which then must exist and be valid.
  const std::string other =
      write_config(dir_.path() / "other.conf", "server = " + closed + "\ninsecure = yes\n");
  r = Run({"--config", other, "models", "list"}, no_env);
  EXPECT_EQ(r.code, kUnavailable) << r;
  env = no_env;
  env["MODELFLEET_CONFIG"] = other;
  EXPECT_EQ(Run({"models", "list"}, env).code, kUnavailable);
  r = Run({"--config", (dir_.path() / "absent.conf").string(), "models", "list"}, no_env);
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("absent.conf"), std::string::npos) << r;

  const std::string bad_key =
      write_config(dir_.path() / "bad1.conf", "server = " + good + "\n\nsrever = x\n");
  r = Run({"--config", bad_key, "models", "list"}, no_env);
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("bad1.conf:3"), std::string::npos) << r;
  EXPECT_NE(r.err.find("srever"), std::string::npos) << r;
  const std::string bad_value = write_config(dir_.path() / "bad2.conf", "insecure = maybe\n");
  r = Run({"--config", bad_value, "models", "list"}, no_env);
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("bad2.conf:1: insecure"), std::string::npos) << r;
  const std::string no_equals = write_config(dir_.path() / "bad3.conf", "server\n");
  r = Run({"--config", no_equals, "models", "list"}, no_env);
  EXPECT_EQ(r.code, kUsage) << r;
  EXPECT_NE(r.err.find("bad3.conf:1"), std::string::npos) << r;

  // Without XDG_CONFIG_HOME: ~/.config/modelfleet/config.
  write_config(dir_.path() / "home" / ".config" / "modelfleet" / "config",
               "server = " + good + "\ntoken = " + *admin_ + "\ninsecure = 1\n");
  env = no_env;
  env["XDG_CONFIG_HOME"] = "";
  EXPECT_EQ(Run({"models", "list"}, env).code, kOk);
}

TEST_F(CliE2E, RolloutsCreateWatchAndVerbs) {
  auto digests = ModelWithVersions("cli-fleet", {"1.0.0", "1.1.0", "1.2.0"});
  Result r = Run({"enroll-tokens", "create", "cli-fleet-line", "--auto-accept", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::CreateEnrollmentTokenResponse enroll;
  ASSERT_TRUE(ParseJson(r.out, &enroll));

  devsim::FleetSimulator::Options o;
  o.devices = 3;
  o.addresses = {server_->address()};
  o.enrollment_token = enroll.token();
  o.model = "cli-fleet";
  o.factory_version = "1.0.0";
  o.factory_digest = digests["1.0.0"];
  o.threads = 2;
  o.channels_per_address = 1;
  devsim::FleetSimulator sim(o);
  ASSERT_TRUE(sim.EnrollAll().ok());
  sim.Round();

  r = Run({"rollouts", "create", "cli-fleet", "1.1.0", "--target", "*", "--stage",
           "100:threshold=1:max-failure=0.5", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Rollout rollout;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  const std::string id = rollout.rollout_id();
  EXPECT_EQ(rollout.stages(0).gates().max_failure_ratio(), 0.5);
  // A second rollout of the model conflicts.
  EXPECT_EQ(Run({"rollouts", "create", "cli-fleet", "1.2.0", "--target", "*", "--stage", "100"}).code,
            kConflict);
  EXPECT_EQ(Run({"rollouts", "create", "cli-fleet", "7.7.7", "--target", "*", "--stage", "100"}).code,
            kNotFound);

  // Watch (JSON lines) while the devices check in and activate: exits 0 on completion.
  auto watch = Start({"rollouts", "watch", id, "-o", "json"}, {}, "watch-json");
  ASSERT_TRUE(watch.has_value());
  const auto deadline = std::chrono::steady_clock::now() + 90s;
  std::optional<int> code;
  while (!(code = watch->Wait(0ms)) && std::chrono::steady_clock::now() < deadline) {
    sim.Round();
    std::this_thread::sleep_for(300ms);
  }
  r = Collect(*watch, "watch-json", 5s);
  ASSERT_EQ(r.code, kOk) << r;
  std::istringstream lines(r.out);
  std::string line;
  v1::RolloutEvent event;
  int events = 0;
  bool saw_completed = false;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(ParseJson(line, &event));
    EXPECT_EQ(event.rollout_id(), id);
    saw_completed |= event.kind() == "completed";
    ++events;
  }
  EXPECT_GE(events, 2) << r;
  EXPECT_TRUE(saw_completed) << r;
  EXPECT_EQ(event.rollout().state(), v1::ROLLOUT_STATE_COMPLETED) << r;
  EXPECT_EQ(sim.CountByVersion()["1.1.0"], 3);

  // The plain form of the same, and the live form on a terminal.
  r = Run({"rollouts", "watch", id});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find("completed  COMPLETED"), std::string::npos) << r;
  r = RunOnTerminal({"rollouts", "watch", id});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.out.find("stage 1/1  100%"), std::string::npos) << r;
  EXPECT_NE(r.out.find("done"), std::string::npos) << r;

  r = Run({"rollouts", "show", id, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_COMPLETED);
  r = Run({"rollouts", "show", id});
  EXPECT_NE(r.out.find("COMPLETED"), std::string::npos) << r;
  EXPECT_EQ(Run({"rollouts", "show", "ro-999999"}).code, kNotFound);
  EXPECT_EQ(Run({"rollouts", "pause", id}).code, kConflict);  // finished

  // A rollout waiting for approval at its first stage, approved, paused, resumed, aborted.
  r = Run(
      {"rollouts", "create", "cli-fleet", "1.2.0", "--target", "*", "--stage", "100:approval", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  const std::string second = rollout.rollout_id();
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_WAITING_APPROVAL) << r;
  const std::string viewer = CreateToken("cli-fleet-viewer", "viewer");
  EXPECT_EQ(RunAs(viewer, {"rollouts", "approve", second}).code, kDenied);
  EXPECT_EQ(RunAs(viewer, {"rollouts", "list"}).code, kOk);
  r = Run({"rollouts", "approve", second, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(Run({"rollouts", "approve", second}).code, kConflict);  // not waiting any more
  r = Run({"rollouts", "retry", second, "-o", "json"});
  EXPECT_EQ(r.code, kOk) << r;
  r = Run({"rollouts", "pause", second, "--reason", "e2e", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_PAUSED);
  r = Run({"rollouts", "watch", second});
  EXPECT_EQ(r.code, kPaused) << r;
  EXPECT_NE(r.err.find("paused"), std::string::npos) << r;
  r = Run({"rollouts", "resume", second, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_RUNNING);
  // The event log, followed live over WatchEvents: what happened so far, then the abort as it
  // commits.
  auto follow = Start({"events", "tail", "--follow", "--subject", "rollout/" + second, "-o", "json"}, {}, "events");
  ASSERT_TRUE(follow.has_value());
  ASSERT_EQ(Run({"rollouts", "abort", second}).code, kOk);
  EXPECT_EQ(Run({"rollouts", "watch", second}).code, kAborted);
  std::string followed;
  for (const auto until = std::chrono::steady_clock::now() + 10s;
       followed.find("rollout.aborted") == std::string::npos && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(100ms)) {
    followed = testing::ReadFileOrEmpty(dir_.path() / "events.out");
  }
  follow->Signal(SIGTERM);
  (void)follow->Wait(5s);
  std::vector<std::string> followed_types;
  std::istringstream followed_lines(followed);
  v1::Event followed_event;
  while (std::getline(followed_lines, line)) {
    ASSERT_TRUE(ParseJson(line, &followed_event)) << line;
    EXPECT_EQ(followed_event.subject_id(), second);
    followed_types.push_back(followed_event.type());
  }
  EXPECT_EQ(followed_types, (std::vector<std::string>{"rollout.created", "rollout.approved", "rollout.retried",
                                                      "rollout.paused", "rollout.resumed", "rollout.aborted"}))
      << followed;

  // Rolling the completed rollout back.
  r = Run({"rollouts", "rollback", id, "--reason", "e2e", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_TRUE(ParseJson(r.out, &rollout));
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_EQ(Run({"rollouts", "watch", id}).code, kRolledBack);

  r = Run({"rollouts", "list", "--model", "cli-fleet", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListRolloutsResponse list;
  ASSERT_TRUE(ParseList(r.out, "rollouts", &list));
  EXPECT_EQ(list.rollouts_size(), 2) << r;
  r = Run({"rollouts", "list"});
  EXPECT_NE(r.out.find("ROLLED_BACK"), std::string::npos) << r;
  EXPECT_NE(r.out.find("ABORTED"), std::string::npos) << r;

  // The first rollout's story in the event log, one line per event; a viewer reads it too but
  // not the admin-only token events.
  r = Run({"events", "tail", "--subject", "rollout/" + id});
  ASSERT_EQ(r.code, kOk) << r;
  for (const char* type : {"rollout.created", "rollout.gate_verdict", "rollout.completed", "rollout.rolled_back"}) {
    EXPECT_NE(r.out.find(std::string(type) + "  rollout/" + id), std::string::npos) << type << "\n" << r;
  }
  r = RunAs(viewer, {"events", "tail", "--type", "token.*"});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_EQ(r.out, "") << r;
  EXPECT_EQ(Run({"events", "tail", "--type", "rollout.nope"}).code, kUsage);
}

// What the release pipeline puts in a manifest's metrics, at full float precision.
const std::map<std::string, double> kPipelineMetrics = {{"accuracy", 0.9716666666666667},
                                                        {"accuracy_int8", 0.9716666666666667},
                                                        {"accuracy_fp32", 0.9733333333333334},
                                                        {"accuracy_drop_points", 0.16666666666667052},
                                                        {"latency_ms", 0.08512345},
                                                        {"latency_p50_ms_int8", 0.08512345},
                                                        {"latency_p50_ms_fp32", 0.2468013579},
                                                        {"size_bytes_int8", 42086},
                                                        {"size_bytes_fp32", 121345},
                                                        {"heldout_frames", 1200},
                                                        {"recall_empty", 0.99},
                                                        {"recall_sitting", 0.9612903225806452},
                                                        {"recall_lying_full", 0.9733333333333334},
                                                        {"recall_lying_partial", 0.9411764705882353},
                                                        {"recall_fp32_empty", 0.995},
                                                        {"recall_fp32_sitting", 0.967741935483871},
                                                        {"recall_fp32_lying_full", 0.98},
                                                        {"recall_fp32_lying_partial", 0.9215686274509803}};

TEST_F(CliE2E, VersionsListShowsHeadlineMetricsRoundedAndFitsTheTerminal) {
  ASSERT_EQ(Run({"models", "create", "cli-metrics"}).code, kOk);
  std::string metrics_json;
  for (const auto& [name, value] : kPipelineMetrics) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    metrics_json += (metrics_json.empty() ? "" : ",") + std::string("\"") + name + "\":" + buf;
  }
  const std::string manifest =
      WriteFile("metrics-manifest.json",
                R"({"metrics": {)" + metrics_json +
                    R"(}, "labels": {"pipeline": "deploy-release", "dataset": "synthetic-mats"},
          "params": {"epochs": "12", "architecture": "tiny-cnn"}})");
  Result r = Run({"versions", "push", "cli-metrics", "1.0.0",
                  WriteFile("metrics-1.pt", testing::PatternBytes(40 << 10, 21)), "--manifest", manifest,
                  "--version-counter", "1"});
  ASSERT_EQ(r.code, kOk) << r;
  r = Run({"versions", "push", "cli-metrics", "1.1.0",
           WriteFile("metrics-2.pt", testing::PatternBytes(1000, 22)), "--metric", "accuracy=0.5",
           "--version-counter", "2"});
  ASSERT_EQ(r.code, kOk) << r;

  // Piped: the headline metrics only, rounded with units, one column each, nothing cut.
  r = Run({"versions", "list", "cli-metrics"});
  ASSERT_EQ(r.code, kOk) << r;
  const std::string header = LineStartingWith(r.out, "VERSION");
  const std::string v1 = LineStartingWith(r.out, "1.0.0 "), v11 = LineStartingWith(r.out, "1.1.0 ");
  ASSERT_FALSE(header.empty()) << r;
  ASSERT_FALSE(v1.empty()) << r;
  ASSERT_FALSE(v11.empty()) << r;
  for (const char* column : {"ACCURACY", "LATENCY_P50_MS_INT8", "SIZE_BYTES_INT8"}) {
    EXPECT_NE(header.find(std::string("  ") + column + "  "), std::string::npos) << column << "\n" << r;
  }
  EXPECT_EQ(header.substr(header.size() - 9), "  CREATED") << r;
  EXPECT_EQ(header.find("RECALL"), std::string::npos) << r;  // not every metric
  EXPECT_EQ(header.find("ACCURACY_FP32"), std::string::npos) << r;
  EXPECT_EQ(header.find("METRICS"), std::string::npos) << r;
  EXPECT_EQ(v1.find("0.9716666"), std::string::npos) << r;  // no float noise
  EXPECT_EQ(v1.find("recall"), std::string::npos) << r;
  EXPECT_EQ(v1.compare(header.find("ACCURACY"), 7, "0.972  "), 0) << r;
  EXPECT_EQ(v1.compare(header.find("LATENCY_P50_MS_INT8"), 11, "0.0851 ms  "), 0) << r;
  EXPECT_EQ(v1.compare(header.find("SIZE_BYTES_INT8"), 10, "41.1 KiB  "), 0) << r;
  EXPECT_EQ(v11.compare(header.find("ACCURACY"), 5, "0.5  "), 0) << r;
  EXPECT_EQ(v11.compare(header.find("LATENCY_P50_MS_INT8"), 3, "-  "), 0) << r;  // 1.1.0 has no latency
  EXPECT_NE(v1.find("40 KiB"), std::string::npos) << r;                          // SIZE: the artifact
  EXPECT_LT(DisplayWidth(v1), 160u) << r;  // was over 500 with every metric
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;

  // A terminal of 80 columns (forced, with a fixed width): every line fits, long cells end in
  // "…", the version (the first column) stays whole.
  const std::map<std::string, std::string> tty80 = {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "80"}};
  r = Run({"versions", "list", "cli-metrics"}, tty80);
  ASSERT_EQ(r.code, kOk) << r;
  ASSERT_EQ(Lines(r.out).size(), 3u) << r;
  for (const auto& line : Lines(r.out)) EXPECT_LE(DisplayWidth(line), 80u) << r;
  EXPECT_NE(r.out.find(kEllipsis), std::string::npos) << r;
  EXPECT_FALSE(LineStartingWith(r.out, "1.0.0  ").empty()) << r;
  EXPECT_NE(r.out.find("0.972"), std::string::npos) << r;
  // Narrower than the columns' minimum width (6 each): printed at that width, over the edge.
  r = Run({"versions", "list", "cli-metrics"}, {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "50"}});
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_GT(DisplayWidth(LineStartingWith(r.out, "1.0.0  ")), 50u) << r;
  EXPECT_NE(LineStartingWith(r.out, "1.0.0  ").find("  0.972  "), std::string::npos) << r;
  // A real pseudo-terminal, its width from COLUMNS.
  r = RunOnTerminal({"versions", "list", "cli-metrics"}, {{"COLUMNS", "100"}});
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_FALSE(LineStartingWith(r.out, "1.0.0  ").empty()) << r;
  for (const auto& line : Lines(r.out)) EXPECT_LE(DisplayWidth(line), 100u) << r;
  EXPECT_NE(r.out.find(kEllipsis), std::string::npos) << r;
  EXPECT_NE(r.out.find("0.0851 ms"), std::string::npos) << r;

  // --wide on that terminal: every metric, rounded, nothing cut.
  r = Run({"versions", "list", "cli-metrics", "--wide"}, tty80);
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;
  for (const auto& [name, value] : kPipelineMetrics) {
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_NE(LineStartingWith(r.out, "VERSION").find(upper), std::string::npos) << name << "\n" << r;
  }
  EXPECT_NE(LineStartingWith(r.out, "1.0.0 ").find("  0.922  "), std::string::npos)
      << r;  // recall_fp32_lying_partial
  EXPECT_GT(DisplayWidth(LineStartingWith(r.out, "VERSION")), 200u) << r;

  // --metrics picks the columns, in its order.
  r = Run({"versions", "list", "cli-metrics", "--metrics", "heldout_frames,accuracy_fp32"});
  ASSERT_EQ(r.code, kOk) << r;
  const std::string picked = LineStartingWith(r.out, "VERSION");
  ASSERT_NE(picked.find("HELDOUT_FRAMES"), std::string::npos) << r;
  ASSERT_NE(picked.find("ACCURACY_FP32"), std::string::npos) << r;
  EXPECT_LT(picked.find("HELDOUT_FRAMES"), picked.find("ACCURACY_FP32")) << r;
  EXPECT_EQ(picked.find("LATENCY_P50_MS_INT8"), std::string::npos) << r;
  EXPECT_EQ(LineStartingWith(r.out, "1.0.0 ").compare(picked.find("HELDOUT_FRAMES"), 6, "1200  "), 0) << r;
  EXPECT_EQ(LineStartingWith(r.out, "1.0.0 ").compare(picked.find("ACCURACY_FP32"), 7, "0.973  "), 0) << r;
  r = Run({"versions", "list", "cli-metrics", "--metrics", "acuracy"});
  EXPECT_EQ(r.code, kOk) << r;
  EXPECT_NE(r.err.find("no version listed has the metric 'acuracy'"), std::string::npos) << r;

  // -o json: every metric, exact; the table options change nothing in it.
  r = Run({"versions", "list", "cli-metrics", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListVersionsResponse versions;
  ASSERT_TRUE(ParseList(r.out, "versions", &versions));
  ASSERT_EQ(versions.versions_size(), 2) << r;
  const auto& got = versions.versions(1).manifest().metrics();
  EXPECT_EQ(got.size(), kPipelineMetrics.size()) << r;
  for (const auto& [name, value] : kPipelineMetrics) {
    ASSERT_TRUE(got.contains(name)) << name;
    EXPECT_EQ(got.at(name), value) << name;  // bit for bit
  }
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"versions", "list", "cli-metrics", "-o", "json", "--wide"},
           {"versions", "list", "cli-metrics", "-o", "json", "--metrics", "accuracy"}}) {
    Result again = Run(args, tty80);
    EXPECT_EQ(again.code, kOk) << again;
    v1::ListVersionsResponse same;
    ASSERT_TRUE(ParseList(again.out, "versions", &same));
    EXPECT_TRUE(MessageDifferencer::Equals(same, versions)) << again;  // maps print in no fixed order
  }
  Result json_show = Run({"versions", "show", "cli-metrics@1.0.0", "-o", "json"});
  ASSERT_EQ(json_show.code, kOk) << json_show;
  v1::ModelVersion shown;
  ASSERT_TRUE(ParseJson(json_show.out, &shown));
  EXPECT_EQ(shown.manifest().metrics().at("accuracy"), 0.9716666666666667);
  EXPECT_TRUE(MessageDifferencer::Equals(shown, versions.versions(1)));
  v1::ModelVersion shown_on_tty;
  ASSERT_TRUE(
      ParseJson(Run({"versions", "show", "cli-metrics@1.0.0", "-o", "json"}, tty80).out, &shown_on_tty));
  EXPECT_TRUE(MessageDifferencer::Equals(shown_on_tty, shown));

  // show: one metric, label and param per line, rounded, sorted by name, never cut.
  r = Run({"versions", "show", "cli-metrics@1.0.0"}, {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "40"}});
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;
  const auto lines = Lines(r.out);
  auto line_of = [&](const std::string& text) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find(text) != std::string::npos) return i;
    }
    return lines.size();
  };
  const size_t first = line_of("metrics:");
  ASSERT_LT(first, lines.size()) << r;
  const size_t value_col = lines[first].find("accuracy ");
  ASSERT_NE(value_col, std::string::npos) << r;
  EXPECT_NE(lines[first].find("0.972"), std::string::npos) << r;
  size_t previous = first;
  std::string previous_name;
  for (const auto& [name, value] : kPipelineMetrics) {  // std::map: sorted by name
    const size_t at = line_of(std::string(value_col, ' ') + name + " ");
    const size_t here = name == "accuracy" ? first : at;
    ASSERT_LT(here, lines.size()) << name << "\n" << r;
    EXPECT_EQ(lines[here].find(name + " "), value_col) << name << "\n" << r;
    if (!previous_name.empty()) {
      EXPECT_EQ(here, previous + 1) << previous_name << " then " << name << "\n" << r;
    }
    previous = here;
    previous_name = name;
  }
  EXPECT_NE(lines[line_of(std::string(value_col, ' ') + "latency_p50_ms_int8 ")].find("0.0851 ms"),
            std::string::npos)
      << r;
  EXPECT_NE(lines[line_of(std::string(value_col, ' ') + "size_bytes_int8 ")].find("41.1 KiB"),
            std::string::npos)
      << r;
  EXPECT_EQ(r.out.find("0.9716666"), std::string::npos) << r;
  const size_t labels = line_of("labels:");
  ASSERT_LT(labels, lines.size()) << r;
  EXPECT_NE(lines[labels].find("dataset"), std::string::npos) << r;  // sorted: dataset before pipeline
  EXPECT_NE(lines[labels + 1].find("pipeline"), std::string::npos) << r;
  EXPECT_NE(lines[labels + 1].find("deploy-release"), std::string::npos) << r;
  const size_t params = line_of("params:");
  ASSERT_LT(params, lines.size()) << r;
  EXPECT_NE(lines[params].find("architecture"), std::string::npos) << r;
  EXPECT_NE(lines[params + 1].find("epochs"), std::string::npos) << r;
}

TEST_F(CliE2E, DevicesNameTheRolloutOfTheirDeploymentAndShowTheFailureInFull) {
  auto digests = ModelWithVersions("cli-devro", {"1.0.0", "1.1.0", "1.2.0"});
  Result r = Run({"enroll-tokens", "create", "cli-devro-line", "--auto-accept", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::CreateEnrollmentTokenResponse enroll;
  ASSERT_TRUE(ParseJson(r.out, &enroll));
  devsim::FleetSimulator::Options o;
  o.devices = 2;
  o.addresses = {server_->address()};
  o.enrollment_token = enroll.token();
  o.model = "cli-devro";
  o.factory_version = "1.0.0";
  o.factory_digest = digests["1.0.0"];
  o.threads = 2;
  o.channels_per_address = 1;
  o.attributes = [](int i) {
    v1::DeviceAttributes a = devsim::FleetSimulator::DefaultAttributes(i);
    (*a.mutable_labels())["suite"] = "cli-devro";
    return a;
  };
  devsim::FleetSimulator sim(o);
  // Hardware ids of their own: the simulator's default ones are other tests' devices.
  for (int i = 0; i < sim.size(); ++i)
    sim.mutable_device(i).hardware_id = "cli-devro-hw-" + std::to_string(i);
  ASSERT_TRUE(sim.EnrollAll().ok());
  sim.Round();
  const std::string selector = "labels.suite = \"cli-devro\"";

  // Runs rounds until `done` (or a minute passes).
  auto until = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      sim.Round();
      std::this_thread::sleep_for(200ms);
    }
    return done();
  };
  auto rollout_state = [&](const std::string& id) {
    Result shown = Run({"rollouts", "show", id, "-o", "json"});
    v1::Rollout rollout;
    if (shown.code != kOk || !ParseJson(shown.out, &rollout)) return v1::ROLLOUT_STATE_UNSPECIFIED;
    return rollout.state();
  };

  // 1.1.0 everywhere, then 1.2.0, which fails on device 0 with a long reason.
  r = Run({"rollouts", "create", "cli-devro", "1.1.0", "--target", selector, "--stage", "100", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Rollout first;
  ASSERT_TRUE(ParseJson(r.out, &first));
  ASSERT_TRUE(until([&] { return rollout_state(first.rollout_id()) == v1::ROLLOUT_STATE_COMPLETED; }));
  std::string reason =
      "self-test failed: output differs from the reference by 0.41 > tolerance 0.001 at class 2";
  while (reason.size() < 400) reason += "; and again at frame " + std::to_string(reason.size());
  sim.SetFailurePolicy([&](int device, const v1::Assignment& a) -> std::optional<std::string> {
    if (device == 0 && a.download_version() == "1.2.0") return reason;
    return std::nullopt;
  });
  r = Run({"rollouts", "create", "cli-devro", "1.2.0", "--target", selector, "--stage",
           "100:threshold=0.5:max-failure=1", "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::Rollout second;
  ASSERT_TRUE(ParseJson(r.out, &second));
  const std::string ro1 = first.rollout_id(), ro2 = second.rollout_id();
  ASSERT_TRUE(until([&] {
    return sim.device(1).running_version == "1.2.0" && !sim.device(0).pending &&
           !sim.device(0).reports.empty() && sim.device(0).reports.back().step == v1::DEPLOYMENT_STEP_FAILED;
  }));
  const std::string failed = sim.device(0).device_id, activated = sim.device(1).device_id;
  EXPECT_EQ(sim.device(0).running_version, "1.1.0");  // what ro1 gave it

  // The list names the rollout of each device's deployment.
  r = Run({"devices", "list", "--filter", selector});
  ASSERT_EQ(r.code, kOk) << r;
  const std::string header = LineStartingWith(r.out, "DEVICE ID");
  ASSERT_NE(header.find("DEPLOYMENT"), std::string::npos) << r;
  EXPECT_EQ(header.find("  STEP  "), std::string::npos) << r;
  EXPECT_EQ(LineStartingWith(r.out, failed + " ").find(ro2 + " FAILED"), header.find("DEPLOYMENT")) << r;
  EXPECT_EQ(LineStartingWith(r.out, activated + " ").find(ro2 + " ACTIVATED"), header.find("DEPLOYMENT"))
      << r;
  EXPECT_NE(LineStartingWith(r.out, failed + " ").find("cli-devro@1.1.0"), std::string::npos) << r;
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;
  // On a narrow terminal: fitted, the device ids whole.
  r = Run({"devices", "list", "--filter", selector}, {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "80"}});
  ASSERT_EQ(r.code, kOk) << r;
  for (const auto& line : Lines(r.out)) EXPECT_LE(DisplayWidth(line), 80u) << r;
  EXPECT_FALSE(LineStartingWith(r.out, failed + "  ").empty()) << r;
  EXPECT_FALSE(LineStartingWith(r.out, activated + "  ").empty()) << r;
  EXPECT_NE(r.out.find(kEllipsis), std::string::npos) << r;
  r = Run({"devices", "list", "--filter", selector, "--wide"},
          {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "80"}});
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;
  EXPECT_NE(LineStartingWith(r.out, failed + " ").find(ro2 + " FAILED"), std::string::npos) << r;

  // show: the rollout, the deployment id, and the device's reason in full, even on a narrow terminal.
  r = Run({"devices", "show", failed}, {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "40"}});
  ASSERT_EQ(r.code, kOk) << r;
  const std::string deployment = LineStartingWith(r.out, "deployment:");
  EXPECT_NE(deployment.find(ro2 + " FAILED (dep-"), std::string::npos) << r;
  const std::string failure = LineStartingWith(r.out, "failure reason:");
  ASSERT_GE(failure.size(), reason.size()) << r;
  EXPECT_EQ(failure.substr(failure.size() - reason.size()), reason) << r;  // all of it, on its line
  EXPECT_EQ(r.out.find(kEllipsis), std::string::npos) << r;
  r = Run({"devices", "show", activated});
  ASSERT_EQ(r.code, kOk) << r;
  EXPECT_NE(LineStartingWith(r.out, "deployment:").find(ro2 + " ACTIVATED"), std::string::npos) << r;
  EXPECT_TRUE(LineStartingWith(r.out, "failure reason:").empty()) << r;
  EXPECT_NE(LineStartingWith(r.out, "labels:").find("suite"), std::string::npos) << r;

  // -o json: the Device messages as they are, whatever the table options.
  r = Run({"devices", "list", "--filter", selector, "-o", "json"});
  ASSERT_EQ(r.code, kOk) << r;
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(ParseList(r.out, "devices", &devices));
  ASSERT_EQ(devices.devices_size(), 2) << r;
  for (const auto& d : devices.devices()) {
    EXPECT_EQ(d.current_deployment_step(),
              d.device_id() == failed ? v1::DEPLOYMENT_STEP_FAILED : v1::DEPLOYMENT_STEP_ACTIVATED);
    // The server names the deployment's rollout, and for the failed one its whole reason.
    if (d.device_id() == failed) {
      EXPECT_EQ(d.current_rollout_id(), ro2) << r;
      EXPECT_FALSE(d.current_deployment_reason().empty()) << r;
    }
  }
  v1::ListDevicesResponse same;
  ASSERT_TRUE(ParseList(Run({"devices", "list", "--filter", selector, "-o", "json", "--wide"},
                            {{"MODELFLEET_FORCE_TTY", "1"}, {"COLUMNS", "40"}})
                            .out,
                        "devices", &same));
  EXPECT_TRUE(MessageDifferencer::Equals(same, devices));
  r = Run({"devices", "show", failed, "-o", "json"});
  v1::Device device;
  ASSERT_TRUE(ParseJson(r.out, &device));
  EXPECT_EQ(device.current_deployment_step(), v1::DEPLOYMENT_STEP_FAILED);
  EXPECT_EQ(r.out.find(reason), std::string::npos) << r;
  // The completed first rollout is named nowhere now: each device shows its newest deployment.
  EXPECT_EQ(Run({"devices", "list", "--filter", selector}).out.find(ro1 + " "), std::string::npos);
}

}  // namespace
}  // namespace modelfleet
