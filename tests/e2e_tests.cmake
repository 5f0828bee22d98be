# End-to-end tests: the built binaries over real gRPC, with real PostgreSQL and s3rver.
target_sources(mf_test_support PRIVATE ${CMAKE_CURRENT_LIST_DIR}/support/server_process.cc)
target_link_libraries(mf_test_support PUBLIC gRPC::grpc++)

modelfleet_add_test(
  NAME registry_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/registry_e2e_test.cc
  LIBS mf_test_support mf_manifest mf_proto mf_blob
  LABELS e2e
  TIMEOUT 900
)
# The e2e tests run the server binary: build it first.
add_dependencies(registry_e2e_test modelfleet-server)

modelfleet_add_test(
  NAME python_client_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/python_client_test.cc
  LIBS mf_test_support
  LABELS e2e
)
add_dependencies(python_client_e2e_test modelfleet-server)

# The gRPC edge's exception barrier and call register (no server needed).
modelfleet_add_test(
  NAME call_guard_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/call_guard_test.cc
  LIBS mf_grpc_edge
  LABELS unit
)
