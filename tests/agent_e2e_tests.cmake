# Tests of modelfleet-agent's update flow and of the agent binary. Included from
# tests/CMakeLists.txt.

# The state table, the durable record, resumable downloads, the verifier, the model store, the
# Updater (with fakes).
modelfleet_add_test(
  NAME agent_update_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_update_test.cc
  LIBS mf_agent_update mf_manifest mf_test_support
  LABELS unit
  TIMEOUT 120
)

# The agent binary end to end: modelfleet-server + modelfleet-agent processes over real gRPC,
# PostgreSQL, s3rver, and real int8 models from tests/models/make_test_model.py (skipped when
# /usr/bin/python3 cannot import torch). One executable per concern, sharing
# e2e/agent_e2e_fixture.h:
#   agent_e2e_test          rollout, presence, telemetry, server away, killed mid-download
#   agent_kill_e2e_test     SIGKILLed in every state of the update flow (MODELFLEET_AGENT_PAUSE_AT)
#   agent_refusal_e2e_test  corrupted artifact, unknown key / unsigned, too slow, local rollback
foreach(agent_e2e agent_e2e_test agent_kill_e2e_test agent_refusal_e2e_test)
  modelfleet_add_test(
    NAME ${agent_e2e}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/e2e/${agent_e2e}.cc
    LIBS mf_test_support mf_manifest mf_proto mf_agent_runtime
    LABELS e2e
    TIMEOUT 600
  )
  add_dependencies(${agent_e2e} modelfleet-server modelfleet-agent)
endforeach()
