#include "fleet/device_cache.h"

#include <spdlog/spdlog.h>

#include "util/cache_sync.h"
#include "util/time.h"

namespace modelfleet::fleet {

namespace {
// The columns ApplyRowLocked reads, in its order (then the stored status, for full loads).
#define MF_DEVICE_CACHE_COLUMNS "id, device_id, admission, attributes, token_id"
#define MF_DEVICE_STATUS_COLUMNS \
  "coalesce(running_model, ''), coalesce(running_version, ''), coalesce(running_digest, ''), " \
  "coalesce(agent_state, ''), " MF_EPOCH_MICROS("last_seen")
constexpr size_t kMaxCachedDevices = 4'000'000;  // a bound on memory, far above a fleet's size
}  // namespace

DeviceCache::DeviceCache(db::Pool& pool, DeviceCacheOptions options) : pool_(pool), options_(std::move(options)) {
  sync_ = std::thread([this] { Run(); });
}

DeviceCache::~DeviceCache() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (sync_.joinable()) sync_.join();
}

void DeviceCache::ApplyRowLocked(const db::Row& row, std::chrono::steady_clock::time_point now) {
  if (row.IsNull(4)) return;  // no credential: cannot check in
  const int64_t token_id = row.Int(4);
  if (row.Str(2) != "ACCEPTED") {
    devices_.erase(token_id);  // pending devices are read on every check-in
    return;
  }
  if (devices_.size() >= kMaxCachedDevices && !devices_.count(token_id)) return;
  CachedDevice& device = devices_[token_id];
  device.row_id = row.Int(0);
  device.device_id = row.Str(1);
  device.admission = row.Str(2);
  device.attributes.ParseFromString(row.Bytea(3));
  device.fetched = now;
}

std::optional<CachedDevice> DeviceCache::Find(int64_t token_id) {
  std::shared_lock lock(mu_);
  auto it = devices_.find(token_id);
  if (it == devices_.end() || std::chrono::steady_clock::now() - it->second.fetched >= options_.ttl) return std::nullopt;
  return it->second;
}

Expected<CachedDevice> DeviceCache::Lookup(int64_t token_id) {
  if (auto cached = Find(token_id)) {
    CountHit();
    return *cached;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  // Join the batch being collected; the first waiter that finds no read under way leads it.
  std::shared_ptr<MissBatch> batch;
  std::unique_lock lock(miss_mu_);
  if (!open_batch_) open_batch_ = std::make_shared<MissBatch>();
  batch = open_batch_;
  batch->token_ids.push_back(token_id);
  while (!batch->done) {
    if (!reading_ && open_batch_ == batch) {
      reading_ = true;
      open_batch_ = nullptr;
      lock.unlock();
      Status read = ReadMisses(*batch);
      lock.lock();
      batch->status = read;
      batch->done = true;
      reading_ = false;
      miss_cv_.notify_all();  // this batch's waiters, and the next batch's leader
      break;
    }
    miss_cv_.wait(lock);
  }
  lock.unlock();
  if (!batch->status.ok()) return Fail(batch->status);
  auto it = batch->found.find(token_id);
  if (it == batch->found.end()) return Fail(PermissionDenied("this credential belongs to no device"));
  return it->second;
}

Status DeviceCache::ReadMisses(MissBatch& batch) {
  miss_reads_.fetch_add(1, std::memory_order_relaxed);
  std::string ids = "{";
  for (int64_t id : batch.token_ids) ids += std::to_string(id) + ",";
  ids.back() = '}';
  return pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT " MF_DEVICE_CACHE_COLUMNS " FROM devices WHERE token_id = ANY($1::bigint[])", {ids}));
    const auto now = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    for (const auto& row : rows) {
      ApplyRowLocked(row, now);
      CachedDevice device;
      device.row_id = row.Int(0);
      device.device_id = row.Str(1);
      device.admission = row.Str(2);
      device.attributes.ParseFromString(row.Bytea(3));
      device.fetched = now;
      batch.found.emplace(row.Int(4), std::move(device));
    }
    return Status::Ok();
  });
}

void DeviceCache::DeviceChanged(int64_t device_row_id) {
  bool revoked = false;
  Status read = pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec("SELECT " MF_DEVICE_CACHE_COLUMNS " FROM devices WHERE id = $1", {device_row_id}));
    std::unique_lock lock(mu_);
    for (const auto& row : rows) {
      ApplyRowLocked(row, std::chrono::steady_clock::now());
      revoked = row.Str(2) == "REJECTED" || row.Str(2) == "DECOMMISSIONED";
    }
    return Status::Ok();
  });
  if (!read.ok()) spdlog::warn("device cache: re-reading device row {} failed, dropping it: {}", device_row_id, read.ToString());
  // A rejected or decommissioned device no longer has its credential on its row, so its entry
  // cannot be found by credential: find it by row id (a scan, but admins reject rarely; an
  // enrolment, the frequent change, never scans). A credential rotated by re-enrolment leaves
  // its old entry behind, unreachable: that credential is revoked, so authentication refuses it
  // before any lookup.
  if (read.ok() && !revoked) return;
  std::unique_lock lock(mu_);
  std::erase_if(devices_, [&](const auto& entry) { return entry.second.row_id == device_row_id; });
}

void DeviceCache::AttributesWritten(int64_t token_id, const v1::DeviceAttributes& attributes) {
  std::unique_lock lock(mu_);
  auto it = devices_.find(token_id);
  if (it != devices_.end()) it->second.attributes = attributes;
}

Status DeviceCache::LoadAll() {
  constexpr int64_t kPage = 20'000;
  const auto started = std::chrono::steady_clock::now();
  size_t loaded = 0;
  int64_t after = 0;
  std::vector<StoredDeviceStatus> statuses;
  for (bool more = true; more && !stop_;) {
    statuses.clear();
    MF_RETURN_IF_ERROR(pool_.ReadAutocommit([&](db::Tx& tx) -> Status {
      MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
          "SELECT " MF_DEVICE_CACHE_COLUMNS ", " MF_DEVICE_STATUS_COLUMNS " FROM devices WHERE id > $1 "
          "AND admission = 'ACCEPTED' AND token_id IS NOT NULL ORDER BY id LIMIT $2",
          {after, kPage}));
      more = static_cast<int64_t>(rows.size()) == kPage;
      const auto now = std::chrono::steady_clock::now();
      {
        std::unique_lock lock(mu_);
        for (const auto& row : rows) {
          ApplyRowLocked(row, now);
          after = row.Int(0);
        }
      }
      if (options_.on_loaded) {
        for (const auto& row : rows) {
          if (row.IsNull(9)) continue;  // never reported
          statuses.push_back({row.Int(0), row.Str(5), row.Str(6), row.Str(7), row.Str(8),
                              std::chrono::system_clock::time_point(std::chrono::microseconds(row.Int(9)))});
        }
      }
      loaded += rows.size();
      return Status::Ok();
    }));
    for (const auto& status : statuses) options_.on_loaded(status);
  }
  if (stop_) return Status::Ok();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  spdlog::log(preloaded_ ? spdlog::level::debug : spdlog::level::info,
              "device cache: loaded {} accepted devices in {} ms", loaded, ms.count());
  preloaded_ = true;
  return Status::Ok();
}

Expected<int64_t> DeviceCache::ApplyChangesSince(int64_t since_micros) {
  // changed_at is stamped while the changing transaction runs, so one that commits after this
  // poll may carry an earlier stamp: re-read a margin of a few seconds.
  constexpr int64_t kLateCommitMarginMicros = 5'000'000;
  int64_t clock = 0;
  MF_RETURN_IF_ERROR(pool_.Read([&](db::Tx& tx) -> Status {
    MF_ASSIGN_OR_RETURN(auto now, tx.Exec("SELECT " MF_EPOCH_MICROS("clock_timestamp()")));
    clock = now[0].Int(0);
    if (since_micros == 0) return Status::Ok();
    MF_ASSIGN_OR_RETURN(auto rows, tx.Exec(
        "SELECT " MF_DEVICE_CACHE_COLUMNS " FROM devices WHERE changed_at >= to_timestamp($1::float8 / 1e6)",
        {static_cast<double>(since_micros - kLateCommitMarginMicros)}));
    const auto fetched = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    for (const auto& row : rows) ApplyRowLocked(row, fetched);
    return Status::Ok();
  }));
  return clock;
}

void DeviceCache::Run() {
  util::CacheSync sync;
  sync.what = "device cache";
  sync.poll_interval = options_.poll_interval;
  sync.reload_every = std::max<std::chrono::milliseconds>(options_.ttl / 2, options_.poll_interval);
  sync.apply_changes_since = [this](int64_t since) { return ApplyChangesSince(since); };
  sync.load_all = [this] { return LoadAll(); };
  util::RunCacheSync(sync, stop_, wake_mu_, wake_);
}

DeviceCache::Stats DeviceCache::GetStats() {
  std::shared_lock lock(mu_);
  return {hits_.load(), misses_.load(), miss_reads_.load(), devices_.size(), preloaded_.load()};
}

}  // namespace modelfleet::fleet
