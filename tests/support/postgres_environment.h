// Test support: one PostgreSQL 15 cluster per test binary, started before the first test and
// removed after the last. Register it once per binary:
//   [[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);
// and give each test its own database with Cluster()->CreateDatabase(name).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "temp_postgres.h"
#include "test_logging.h"

namespace modelfleet::testing {

// The running cluster, or nullptr if it did not start.
inline TempPostgres*& Cluster() {
  static TempPostgres* cluster = nullptr;
  return cluster;
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    CreateLoggerRegistry();  // before any test starts a thread (see test_logging.h)
    std::string error;
    cluster_ = TempPostgres::Start(&error);
    ASSERT_NE(cluster_, nullptr) << error;
    Cluster() = cluster_.get();
  }
  void TearDown() override {
    Cluster() = nullptr;
    cluster_.reset();
  }

 private:
  std::unique_ptr<TempPostgres> cluster_;
};

}  // namespace modelfleet::testing
