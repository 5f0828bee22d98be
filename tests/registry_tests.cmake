# Integration tests of the registry core (server/registry) against a real PostgreSQL cluster,
# a real LocalBlobStore and a real ArtifactCache. Included from tests/CMakeLists.txt.

# The PostgreSQL fixture (also added by db_tests.cmake; add it only once).
get_target_property(_mf_support_sources mf_test_support SOURCES)
set(_mf_has_temp_postgres FALSE)
foreach(_src IN LISTS _mf_support_sources)
  if(_src MATCHES "temp_postgres\\.cc$")
    set(_mf_has_temp_postgres TRUE)
  endif()
endforeach()
if(NOT _mf_has_temp_postgres)
  target_sources(mf_test_support PRIVATE ${CMAKE_CURRENT_LIST_DIR}/support/temp_postgres.cc)
endif()

modelfleet_add_test(
  NAME registry_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/integration/registry_test.cc
  LIBS mf_registry mf_migrations mf_test_support
  LABELS integration
)

modelfleet_add_test(
  NAME artifact_cache_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/integration/artifact_cache_test.cc
  LIBS mf_registry mf_migrations mf_test_support
  LABELS integration
)
