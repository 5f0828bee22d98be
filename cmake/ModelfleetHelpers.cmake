# modelfleet_add_test(NAME name SOURCES a.cc b.cc LIBS lib... [LABELS l...] [TIMEOUT s])
# One GoogleTest executable registered as one CTest test. Tests get MODELFLEET_BINARY_DIR and
# MODELFLEET_SOURCE_DIR in their environment so they can find the built binaries and fixtures.
function(modelfleet_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES
    TIMEOUT ${T_TIMEOUT}
    LABELS "${T_LABELS}"
    ENVIRONMENT "MODELFLEET_BINARY_DIR=${CMAKE_BINARY_DIR};MODELFLEET_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
