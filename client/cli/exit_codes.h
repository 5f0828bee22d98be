// The `modelfleet` CLI's exit codes: one per class of error, so scripts and CI jobs can tell
// "not found" from "denied" from "server down" without parsing messages. Documented in the
// `--help` epilog (kExitCodesHelp) and in README.md; keep the three in step.
#pragma once

#include "modelfleet/status.h"

namespace modelfleet::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,       // anything not listed below (INTERNAL, UNKNOWN, ...)
  kExitUsage = 2,         // bad command line, bad config file, INVALID_ARGUMENT, OUT_OF_RANGE
  kExitNotFound = 3,      // NOT_FOUND
  kExitDenied = 4,        // PERMISSION_DENIED, UNAUTHENTICATED
  kExitUnavailable = 5,   // UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED
  kExitConflict = 6,      // ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED
  kExitVerification = 7,  // a file does not match its manifest or signature; DATA_LOSS
  // `rollouts watch` only: how the watched rollout ended.
  kExitRolloutPaused = 10,      // PAUSED (by a gate or by someone)
  kExitRolloutAborted = 11,     // ABORTED
  kExitRolloutRolledBack = 12,  // ROLLED_BACK
};

// The exit code for a failed command's status (kExitOk for OK).
inline int ExitCodeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return kExitUsage;
    case StatusCode::kNotFound:
      return kExitNotFound;
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnauthenticated:
      return kExitDenied;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kCancelled:
    case StatusCode::kResourceExhausted:
      return kExitUnavailable;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      return kExitConflict;
    case StatusCode::kDataLoss:
      return kExitVerification;
    default:
      return kExitFailure;
  }
}

inline constexpr const char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  any other error\n"
    "  2  bad usage: command line, config file, or a request the server calls INVALID_ARGUMENT\n"
    "  3  not found\n"
    "  4  denied: PERMISSION_DENIED or UNAUTHENTICATED (check the token and its role)\n"
    "  5  server unavailable or deadline exceeded\n"
    "  6  conflict: ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED (e.g. alias moved meanwhile)\n"
    "  7  verification failed: size, SHA-256 or signature mismatch; DATA_LOSS\n"
    "  rollouts watch: 10 the rollout paused, 11 it was aborted, 12 it was rolled back\n";

}  // namespace modelfleet::cli
