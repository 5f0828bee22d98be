# The release pipeline (deploy/release/release.sh) in its quick mode, checked with the agent's
# runtime: the model loads and passes its manifest self-test, the int8 accuracy is measured and
# reported, the quality gate refuses an impossible margin. Included from tests/CMakeLists.txt.
#
# Runs the pipeline three times (good, refused, broken self-test): about a minute on two cores.
# Needs Debian's python3-torch (/usr/bin/python3); without it the tests are skipped.
modelfleet_add_test(
  NAME release_pipeline_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/release/release_pipeline_test.cc
  LIBS mf_agent_runtime mf_agent_sensor mf_manifest mf_test_support
  LABELS integration
  TIMEOUT 900
)
