// Test support: logging set-up every test binary shares.
#pragma once

namespace modelfleet::testing {

// spdlog creates its registry (and default logger) on first use, inside the uninstrumented
// libspdlog: created by one background thread while another logs, ThreadSanitizer reports a
// race whose guard it cannot see. Calling this on the main thread before any test starts a
// thread creates it first.
void CreateLoggerRegistry();

}  // namespace modelfleet::testing
