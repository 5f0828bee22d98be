// Internal to mf_agent_sensor: errno -> Status.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "modelfleet/status.h"

namespace modelfleet::agent::sensor::internal {

// "<what>: <strerror>" with NOT_FOUND for ENOENT/ENODEV/ENXIO, PERMISSION_DENIED for
// EACCES/EPERM, UNAVAILABLE otherwise.
inline Status ErrnoStatus(int err, const std::string& what) {
  std::string message = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return NotFound(std::move(message));
    case EACCES:
    case EPERM:
      return PermissionDenied(std::move(message));
    default:
      return Unavailable(std::move(message));
  }
}

}  // namespace modelfleet::agent::sensor::internal
