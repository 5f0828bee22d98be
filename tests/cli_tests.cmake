# End-to-end tests of the `modelfleet` CLI: the built binary as a subprocess against the built
# modelfleet-server (real PostgreSQL, s3rver), simulated devices from client/devsim for a
# rollout that completes. Included from tests/CMakeLists.txt.
modelfleet_add_test(
  NAME cli_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/cli_e2e_test.cc
  LIBS mf_devsim mf_test_support mf_proto mf_common
  LABELS e2e
  TIMEOUT 900
)
add_dependencies(cli_e2e_test modelfleet-server modelfleet)
