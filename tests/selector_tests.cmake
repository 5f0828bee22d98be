# Unit tests of the device selector language (server/fleet/device_selector.h).
# Included from tests/CMakeLists.txt.

if(TARGET mf_fleet)
  modelfleet_add_test(
    NAME device_selector_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/device_selector_test.cc
    LIBS mf_fleet
    LABELS unit
  )
else()
  # Until server/CMakeLists.txt defines mf_fleet: compile the selector into the test itself.
  modelfleet_add_test(
    NAME device_selector_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/device_selector_test.cc
            ${PROJECT_SOURCE_DIR}/server/fleet/device_selector.cc
    LIBS mf_common mf_proto
    LABELS unit
  )
  target_include_directories(device_selector_test PRIVATE ${PROJECT_SOURCE_DIR}/server)
endif()
