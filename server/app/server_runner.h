// Assembles and runs the server: database pool and migrations, blob store, artifact cache,
// registry core, gRPC services (with health checking and reflection), TLS.
#pragma once

#include "app/server_config.h"
#include "modelfleet/status.h"

namespace modelfleet::app {

// Runs until SIGTERM or SIGINT, then stops accepting calls, lets in-flight RPCs finish for up
// to shutdown_grace_seconds, cancels what is left (logging which calls were cut), stops the
// controller, flushes what was written behind and returns 0. If shutting down hangs past the
// grace by more than a moment, it logs what is left and exits the process with status 1, so
// it never outlives its grace by more than that. Returns the process exit code.
// REQUIRES: SIGTERM and SIGINT blocked in every thread (main() does this first).
int RunServer(const ServerConfig& config);

// `modelfleet-server migrate`: applies the embedded migrations and returns.
Status RunMigrations(const ServerConfig& config);

// `modelfleet-server create-token`: creates a token directly in the database (the way to
// get the first admin token) and prints the secret to stdout.
Status CreateTokenOffline(const ServerConfig& config, const std::string& name, const std::string& role,
                          int64_t ttl_seconds);

// Applies the log level and format ("text" or "json": one JSON object per line).
Status ConfigureLogging(const std::string& format, const std::string& level);

}  // namespace modelfleet::app
