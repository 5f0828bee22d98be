#include "agent/update/model_store.h"

#include <cstdio>
#include <system_error>

#include "agent/update/fs_util.h"
#include "modelfleet/crypto.h"

namespace modelfleet::agent::update {

Status ModelStore::Init() const {
  MF_RETURN_IF_ERROR(EnsureDir(dir_ / "partial"));
  MF_RETURN_IF_ERROR(EnsureDir(dir_ / "models"));
  return Status::Ok();
}

std::filesystem::path ModelStore::PartPath(const std::string& digest) const {
  return dir_ / "partial" / (digest + ".part");
}
std::filesystem::path ModelStore::ModelDir(const std::string& digest) const {
  return dir_ / "models" / digest;
}
std::filesystem::path ModelStore::ModelFile(const std::string& digest) const {
  return ModelDir(digest) / "model.pt";
}

bool ModelStore::IsInstalled(const std::string& digest) const {
  std::error_code ec;
  return IsSha256Hex(digest) && std::filesystem::is_regular_file(ModelFile(digest), ec) &&
         std::filesystem::is_regular_file(ModelDir(digest) / "manifest.pb", ec);
}

Status ModelStore::Install(const v1::Manifest& manifest) const {
  const std::string& digest = manifest.digest();
  if (!IsSha256Hex(digest)) return InvalidArgument("manifest.digest", "not a SHA-256 hex digest");
  if (IsInstalled(digest)) {
    RemoveCounting(PartPath(digest));
    return Status::Ok();
  }
  const std::filesystem::path staging = dir_ / "models" / (digest + ".staging");
  RemoveCounting(staging);
  MF_RETURN_IF_ERROR(EnsureDir(staging));
  MF_RETURN_IF_ERROR(AtomicWriteFile(staging / "manifest.pb", manifest.SerializeAsString()));
  const std::filesystem::path part = PartPath(digest);
  if (std::rename(part.c_str(), (staging / "model.pt").c_str()) != 0) {
    return Unavailable("moving " + part.string() + " into " + staging.string() + ": " +
                       std::error_code(errno, std::generic_category()).message());
  }
  MF_RETURN_IF_ERROR(FsyncDir(staging));
  MF_RETURN_IF_ERROR(FsyncDir(dir_ / "partial"));
  if (std::rename(staging.c_str(), ModelDir(digest).c_str()) != 0) {
    return Unavailable("renaming " + staging.string() + ": " +
                       std::error_code(errno, std::generic_category()).message());
  }
  return FsyncDir(dir_ / "models");
}

std::optional<std::string> ModelStore::ReadPointer(const char* name) const {
  auto bytes = ReadWholeFile(dir_ / name);
  if (!bytes) return std::nullopt;
  std::string s = *bytes;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!IsSha256Hex(s)) return std::nullopt;
  return s;
}

std::optional<std::string> ModelStore::ActiveDigest() const { return ReadPointer("active"); }
std::optional<std::string> ModelStore::LastGoodDigest() const { return ReadPointer("last_good"); }

Status ModelStore::Activate(const std::string& digest) const {
  if (!IsInstalled(digest)) return FailedPrecondition("model " + digest + " is not installed");
  const auto current = ActiveDigest();
  if (current && *current == digest) return Status::Ok();
  if (current) MF_RETURN_IF_ERROR(AtomicWriteFile(dir_ / "last_good", *current + "\n"));
  return AtomicWriteFile(dir_ / "active", digest + "\n");
}

Status ModelStore::RollBack() const {
  const auto good = LastGoodDigest();
  if (!good || !IsInstalled(*good)) return FailedPrecondition("no last-known-good model");
  return AtomicWriteFile(dir_ / "active", *good + "\n");
}

Expected<v1::Manifest> ModelStore::LoadManifest(const std::string& digest) const {
  MF_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(ModelDir(digest) / "manifest.pb"));
  v1::Manifest m;
  if (!m.ParseFromString(bytes)) return Fail(DataLoss("manifest of " + digest + " does not parse"));
  return m;
}

Status ModelStore::WriteManifest(const v1::Manifest& manifest) const {
  if (!IsInstalled(manifest.digest())) return FailedPrecondition("model " + manifest.digest() + " is not installed");
  return AtomicWriteFile(ModelDir(manifest.digest()) / "manifest.pb", manifest.SerializeAsString());
}

uint64_t ModelStore::Discard(const std::string& digest) const {
  uint64_t bytes = RemoveCounting(PartPath(digest));
  if (!IsSha256Hex(digest)) return bytes;
  const auto active = ActiveDigest();
  const auto good = LastGoodDigest();
  if ((!active || *active != digest) && (!good || *good != digest)) {
    bytes += RemoveCounting(ModelDir(digest));
    bytes += RemoveCounting(dir_ / "models" / (digest + ".staging"));
  }
  return bytes;
}

uint64_t ModelStore::CollectGarbage(const std::string& keep_partial) const {
  uint64_t bytes = 0;
  const auto active = ActiveDigest();
  const auto good = LastGoodDigest();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ / "models", ec)) {
    const std::string name = e.path().filename().string();
    if ((active && name == *active) || (good && name == *good)) continue;
    bytes += RemoveCounting(e.path());
  }
  for (const auto& e : std::filesystem::directory_iterator(dir_ / "partial", ec)) {
    if (!keep_partial.empty() && e.path().filename() == keep_partial + ".part") continue;
    bytes += RemoveCounting(e.path());
  }
  return bytes;
}

}  // namespace modelfleet::agent::update
