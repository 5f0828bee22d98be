# modelfleet_add_test(NAME name SOURCES a.cc b.cc LIBS lib... [LABELS l...] [TIMEOUT s])
#   One GoogleTest executable registered as one CTest test. A GoogleTest skip (GTEST_SKIP)
#   makes CTest report the test as skipped, not passed.
# modelfleet_add_test(NAME name COMMAND script args... [LABELS l...] [TIMEOUT s])
#   A script test; exit code 77 means skipped.
# Every test gets MODELFLEET_BINARY_DIR and MODELFLEET_SOURCE_DIR in its environment so it can
# find the built binaries and fixtures. scripts/test.sh fails a run in which any test was
# skipped: a skip is not a pass.
# unit_and_integration_tests: every GoogleTest executable labelled unit or integration, so a
# build that runs only those suites (scripts/test.sh --tsan) builds only what they need.
if(NOT TARGET unit_and_integration_tests)
  add_custom_target(unit_and_integration_tests)
endif()

function(modelfleet_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;COMMAND" ${ARGN})
  if(NOT T_NAME OR (NOT T_SOURCES AND NOT T_COMMAND) OR (T_SOURCES AND T_COMMAND))
    message(FATAL_ERROR "modelfleet_add_test: give NAME and either SOURCES or COMMAND")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  if(T_SOURCES)
    add_executable(${T_NAME} ${T_SOURCES})
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
    # All test executables in one place (build/tests/), whichever folder registers them.
    set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
    if("unit" IN_LIST T_LABELS OR "integration" IN_LIST T_LABELS)
      add_dependencies(unit_and_integration_tests ${T_NAME})
    endif()
    set_tests_properties(${T_NAME} PROPERTIES SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
  else()
    add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
    set_tests_properties(${T_NAME} PROPERTIES SKIP_RETURN_CODE 77)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES
    TIMEOUT ${T_TIMEOUT}
    LABELS "${T_LABELS}"
    ENVIRONMENT "MODELFLEET_BINARY_DIR=${CMAKE_BINARY_DIR};MODELFLEET_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()

# modelfleet_include_root(target folder)
#   Gives `target` an include root of its own that holds only `folder` (a symbolic link in the
#   build tree named after it), so `#include "<folder name>/x.h"` resolves for `target` and for
#   what links it, and for nothing else. Used by the server's libraries, which otherwise would
#   all share server/ as a root and could include each other's headers in any direction.
function(modelfleet_include_root target folder)
  get_filename_component(name "${folder}" NAME)
  set(root "${CMAKE_BINARY_DIR}/include-roots/${target}")
  file(MAKE_DIRECTORY "${root}")
  file(CREATE_LINK "${folder}" "${root}/${name}" SYMBOLIC)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE "${root}")
  else()
    target_include_directories(${target} PUBLIC "${root}")
  endif()
endfunction()
