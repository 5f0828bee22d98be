# Unit tests of the shared libraries (validation, crypto, manifest encoding, the ListVersions
# filter parser) and the BlobStore conformance suite run against both backends.
# Included from tests/CMakeLists.txt.

modelfleet_add_test(
  NAME common_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/common_test.cc
  LIBS mf_manifest mf_common
  LABELS unit
)

modelfleet_add_test(
  NAME version_filter_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/version_filter_test.cc
  LIBS mf_registry
  LABELS unit
)

# Starts s3rver (tests/support/s3rver.h), so it needs `npm ci` at the repo root.
modelfleet_add_test(
  NAME blob_store_conformance_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/integration/blob_store_conformance_test.cc
  LIBS mf_blob mf_blob_s3 mf_test_support
  LABELS integration
)

# Seeded mutation fuzzing of the parsers that read untrusted input: the serial frame decoder,
# signed manifests, the ListVersions filter and the device selector. Deterministic and bounded
# (a fixed input count and a wall-time cap per target), so it runs in CI under ASan+UBSan.
modelfleet_add_test(
  NAME parser_fuzz_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/parser_fuzz_test.cc
  LIBS mf_agent_sensor mf_manifest mf_registry mf_fleet
  LABELS unit
)
