# Transport-free tests of the fleet core: the deployment state table, and cohorts and rollout
# stages against a real PostgreSQL.
modelfleet_add_test(
  NAME deployment_state_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/deployment_state_test.cc
  LIBS mf_fleet
  LABELS unit
)
modelfleet_add_test(
  NAME fleet_core_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/integration/fleet_core_test.cc
  LIBS mf_fleet mf_registry mf_migrations mf_test_support
  LABELS integration
)
