# Tests of the agent's model runtime. Included from tests/CMakeLists.txt.

# mf_agent_runtime: the TorchScript runtime on a real int8 QNNPACK model and the on-device
# self-test. The models are made at test start by tests/models/make_test_model.py with
# /usr/bin/python3 (python3-torch); without python3-torch the model tests are skipped.
modelfleet_add_test(
  NAME agent_runtime_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_runtime_test.cc
  LIBS mf_agent_runtime mf_agent_sensor mf_test_support
  LABELS unit
  TIMEOUT 300
)
