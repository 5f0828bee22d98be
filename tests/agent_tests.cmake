# Tests of the agent. Included from tests/CMakeLists.txt.

# mf_agent_sensor: serial protocol and decoder, serial (over a pty), replay and synthetic
# sources, preprocessor, presence tracker.
modelfleet_add_test(
  NAME agent_sensor_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_sensor_test.cc
  LIBS mf_agent_sensor
  LABELS unit
)

# mf_agent_app: the per-version telemetry (percentiles, histogram, mean confidence, windows per
# check-in), the configuration parser, the MODELFLEET_AGENT_PAUSE_AT test hook's parser.
modelfleet_add_test(
  NAME agent_app_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/agent_app_test.cc
  LIBS mf_agent_app
  LABELS unit
  TIMEOUT 120
)
