# The one-command story (the README's first command, deploy/demo.sh) in its CI form: a private
# PostgreSQL 15 and modelfleet-server, the release pipeline (--quick) for 1.0.0, 1.1.0 and a
# broken 1.2.0, four real modelfleet-agent processes, a staged rollout watched to 100% and the
# broken version rolled back by itself. tests/story/run_story.sh checks the exit code, the
# summary, that nothing is left running or behind, and (in the sanitized build) that no agent,
# server or CLI log holds an ASan/UBSan report. Included from tests/CMakeLists.txt. About a
# minute on two cores, in the plain and the MODELFLEET_SANITIZE build alike (the Python
# training dominates).
#
# The script runs demo.sh with --build-dir ${CMAKE_BINARY_DIR}: demo.sh only brings the three
# binaries it runs (modelfleet-server, modelfleet, modelfleet-agent) up to date there, which is a
# no-op after `cmake --build` of the whole tree (a plain add_test cannot depend on targets; build
# the tree, or at least those three targets, before running it). Skipped (77) without
# PostgreSQL 15 or Debian's python3-torch.
add_test(NAME one_command_story
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/story/run_story.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
set_tests_properties(one_command_story PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77)
