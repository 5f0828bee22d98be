// Include once per test executable that restarts PostgreSQL or terminates backends.
//
// libpq 15 / libpqxx 6.4 leak a PGresult (~2 KB) each time a statement meets a connection the
// server has closed (tests that restart the server or terminate a backend do that on purpose).
// The allocations happen inside libpq, below libpqxx; our own objects (connections, results)
// are still checked. Only takes effect in -DMODELFLEET_SANITIZE=ON builds.
#pragma once

extern "C" const char* __lsan_default_suppressions() { return "leak:libpq.so.5\n"; }
