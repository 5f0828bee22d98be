#include "s3rver.h"

#include <chrono>
#include <cstdlib>
#include <system_error>
#include <thread>

namespace modelfleet::testing {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr int kStartAttempts = 3;  // a "free" port can be taken by someone else meanwhile
constexpr size_t kLogTailBytes = 4000;

std::string LogTail(const std::filesystem::path& log) {
  std::string text = ReadFileOrEmpty(log);
  if (text.size() > kLogTailBytes) text = "..." + text.substr(text.size() - kLogTailBytes);
  return text.empty() ? "(s3rver log is empty)" : "s3rver log:\n" + text;
}

std::optional<std::filesystem::path> FindS3rver(std::string* searched) {
  const std::filesystem::path in_repo = SourceDir() / "node_modules" / ".bin" / "s3rver";
  std::error_code ec;
  *searched = in_repo.string();
  if (std::filesystem::exists(in_repo, ec)) return in_repo;
  if (const char* env = std::getenv("MODELFLEET_S3RVER"); env != nullptr && *env != '\0') {
    *searched += " and $MODELFLEET_S3RVER=" + std::string(env);
    if (std::filesystem::exists(env, ec)) return std::filesystem::path(env);
  }
  return std::nullopt;
}

std::string LegacyProviderNodeOptions() {
  std::string value = "--openssl-legacy-provider";
  if (const char* existing = std::getenv("NODE_OPTIONS"); existing != nullptr && *existing) {
    value = std::string(existing) + " " + value;
  }
  return value;
}

}  // namespace

S3rverProcess::S3rverProcess(std::unique_ptr<TempDir> dir, Subprocess process, int port)
    : dir_(std::move(dir)), process_(std::move(process)), port_(port) {}

S3rverProcess::~S3rverProcess() {
  if (process_) process_->Stop(std::chrono::seconds(5));
  process_.reset();
  dir_.reset();  // removes the data directory and the log
}

std::string S3rverProcess::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::filesystem::path S3rverProcess::data_dir() const { return dir_->path() / "data"; }

std::unique_ptr<S3rverProcess> S3rverProcess::Start(std::string* error) {
  std::string searched;
  const std::optional<std::filesystem::path> binary = FindS3rver(&searched);
  if (!binary) {
    if (error) {
      *error = "s3rver not found (looked at " + searched + "); run `npm ci` in " +
               SourceDir().string() + " or set MODELFLEET_S3RVER";
    }
    return nullptr;
  }

  std::string last_error;
  for (int attempt = 1; attempt <= kStartAttempts; ++attempt) {
    auto dir = std::make_unique<TempDir>("modelfleet-s3rver");
    const std::filesystem::path data = dir->path() / "data";
    const std::filesystem::path log = dir->path() / "s3rver.log";
    std::error_code ec;
    std::filesystem::create_directories(data, ec);
    if (ec) {
      if (error) *error = "cannot create " + data.string() + ": " + ec.message();
      return nullptr;
    }
    const int port = FreeTcpPort();
    if (port <= 0) {
      if (error) *error = "no free TCP port on 127.0.0.1";
      return nullptr;
    }

    Subprocess::Options options;
    options.argv = {binary->string(), "--directory", data.string(), "--address", "127.0.0.1",
                    "--port",         std::to_string(port), "--silent"};
    options.log_path = log;
    // s3rver 3.7.1 makes ListObjectsV2 continuation tokens with DES, which the OpenSSL 3 behind
    // current Node only offers through its legacy provider (otherwise: HTTP 500 on any truncated
    // listing).
    options.env["NODE_OPTIONS"] = LegacyProviderNodeOptions();
    std::string start_error;
    std::optional<Subprocess> process = Subprocess::Start(options, &start_error);
    if (!process) {
      if (error) *error = "cannot start " + binary->string() + ": " + start_error;
      return nullptr;
    }

    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    bool up = false;
    while (std::chrono::steady_clock::now() < deadline && process->Running()) {
      if (WaitForTcpPort(port, std::chrono::milliseconds(200))) {
        up = true;
        break;
      }
    }
    if (up && process->Running()) {
      return std::unique_ptr<S3rverProcess>(
          new S3rverProcess(std::move(dir), std::move(*process), port));
    }
    const bool exited = !process->Running();
    process->Stop(std::chrono::seconds(2));
    last_error = "s3rver (" + binary->string() + ") on port " + std::to_string(port) +
                 (exited ? " exited during startup" : " did not accept connections within 30 s") +
                 " (attempt " + std::to_string(attempt) + "); " + LogTail(log);
    if (!exited) break;  // a hang will not get better with another port
  }
  if (error) *error = last_error;
  return nullptr;
}

}  // namespace modelfleet::testing
