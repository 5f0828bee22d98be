# End-to-end tests of the fleet: the built modelfleet-server binary over real gRPC, with a real
# PostgreSQL cluster and s3rver as the blob store, driven by a simulated fleet of devices
# (client/devsim/fleet_simulator.*). Included from tests/CMakeLists.txt.
modelfleet_add_test(
  NAME fleet_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/fleet_e2e_test.cc
  LIBS mf_devsim mf_test_support mf_proto mf_manifest
  LABELS e2e
  TIMEOUT 900
)
add_dependencies(fleet_e2e_test modelfleet-server)

# Hostile devices, a database outage, SIGTERM and restarts against the built server. It stops
# and restarts PostgreSQL, so it runs with a cluster of its own (its own binary).
modelfleet_add_test(
  NAME reliability_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/reliability_e2e_test.cc
  LIBS mf_devsim mf_test_support mf_proto mf_manifest mf_db
  LABELS e2e
  TIMEOUT 600
)
add_dependencies(reliability_e2e_test modelfleet-server)
