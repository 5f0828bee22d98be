# Tests of the S3-compatible BlobStore backend (server/blob/s3). Included from tests/CMakeLists.txt.
# The integration test starts s3rver from the repo's node_modules (`npm ci` at the repo root).

# The s3rver fixture; also used by the shared BlobStore conformance suite.
target_sources(mf_test_support PRIVATE ${CMAKE_CURRENT_LIST_DIR}/support/s3rver.cc)

modelfleet_add_test(
  NAME sigv4_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/unit/sigv4_test.cc
  LIBS mf_blob_s3
  LABELS unit
)

modelfleet_add_test(
  NAME s3_blob_store_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/integration/s3_blob_store_test.cc
  LIBS mf_blob_s3 mf_test_support
  LABELS integration
)
