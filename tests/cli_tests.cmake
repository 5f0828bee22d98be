# Tests of the `modelfleet` CLI. Included from tests/CMakeLists.txt.

# End-to-end: the built binary as a subprocess against the built modelfleet-server (real
# PostgreSQL, s3rver), simulated devices from client/devsim for a rollout that completes.
modelfleet_add_test(
  NAME cli_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/cli_e2e_test.cc
  LIBS mf_devsim mf_test_support mf_proto mf_common
  LABELS e2e
  TIMEOUT 900
)
add_dependencies(cli_e2e_test modelfleet-server modelfleet)

# The CLI's human output without a server: number formatting (one helper for every number a
# person reads), tables fitted to a width, and what a device's history says about its deployment.
modelfleet_add_test(
  NAME cli_format_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/cli_format_test.cc
  LIBS mf_cli
  LABELS unit
)
