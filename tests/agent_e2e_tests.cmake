# Tests of modelfleet-agent's update flow and of the agent binary. Included from
# tests/CMakeLists.txt.

# The state table, the durable record, resumable downloads, the verifier, the model store.
modelfleet_add_test(
  NAME agent_update_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_update_test.cc
  LIBS mf_agent_update mf_manifest mf_test_support
  LABELS unit
  TIMEOUT 120
)

# The agent binary end to end: modelfleet-server + modelfleet-agent processes over real gRPC,
# PostgreSQL, s3rver, and a real int8 model from tests/models/make_test_model.py (skipped when
# /usr/bin/python3 cannot import torch).
modelfleet_add_test(
  NAME agent_e2e_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/agent_e2e_test.cc
  LIBS mf_test_support mf_manifest mf_proto
  LABELS e2e
  TIMEOUT 600
)
add_dependencies(agent_e2e_test modelfleet-server modelfleet-agent)
