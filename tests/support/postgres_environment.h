// Test support: one PostgreSQL 15 cluster per test binary, started before the first test and
// removed after the last. Register it once per binary:
//   [[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);
// and give each test its own database with Cluster()->CreateDatabase(name).
#pragma once

#include <spdlog/spdlog.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "temp_postgres.h"

namespace modelfleet::testing {

// The running cluster, or nullptr if it did not start.
inline TempPostgres*& Cluster() {
  static TempPostgres* cluster = nullptr;
  return cluster;
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // spdlog creates its registry (and default logger) on first use, inside the uninstrumented
    // libspdlog: created by one background thread while another logs, ThreadSanitizer sees a
    // race it cannot see the guard of. Create it here, before any test starts a thread.
    spdlog::default_logger_raw();
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
