# Tests of the agent. Included from tests/CMakeLists.txt.

# mf_agent_sensor: serial protocol and decoder, serial (over a pty), replay and synthetic
# sources, preprocessor, presence tracker.
modelfleet_add_test(
  NAME agent_sensor_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_sensor_test.cc
  LIBS mf_agent_sensor
  LABELS unit
)
