// Small POSIX file helpers of the agent's update flow: durable atomic writes (temp file, fsync,
// rename, fsync of the directory), reads, free disk space (statvfs). Errors are Statuses naming
// the path; nothing throws.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "modelfleet/status.h"

namespace modelfleet::agent::update {

// Writes `bytes` to `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the directory:
// after a power cut `path` holds either the old or the new content, never a mix.
Status AtomicWriteFile(const std::filesystem::path& path, std::string_view bytes,
                       mode_t mode = 0644);
// NOT_FOUND if missing.
Expected<std::string> ReadWholeFile(const std::filesystem::path& path);
// fsync of a directory (after a rename or create inside it).
Status FsyncDir(const std::filesystem::path& dir);
// fsync of a file by path.
Status FsyncFile(const std::filesystem::path& path);
// Bytes available to an unprivileged user on the file system holding `path` (statvfs).
Expected<uint64_t> FreeDiskBytes(const std::filesystem::path& path);
// Size of a regular file, 0 if it does not exist.
uint64_t FileSizeOrZero(const std::filesystem::path& path);
// Removes a file or directory tree; returns the bytes of regular files removed (0 if absent).
uint64_t RemoveCounting(const std::filesystem::path& path);
// mkdir -p.
Status EnsureDir(const std::filesystem::path& dir);

}  // namespace modelfleet::agent::update
