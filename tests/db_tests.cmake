# PostgreSQL layer tests (mf_db, mf_migrations) against a real throwaway cluster.
target_sources(mf_test_support PRIVATE support/temp_postgres.cc)

modelfleet_add_test(NAME db_test
  SOURCES integration/db_test.cc
  LIBS mf_db mf_migrations mf_test_support
  LABELS integration)
