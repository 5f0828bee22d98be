// Test support: the real peers of an end-to-end test binary, one PostgreSQL 15 cluster and
// one s3rver, started before the first test and removed after the last. Register once:
//   [[maybe_unused]] auto* const env = ::testing::AddGlobalTestEnvironment(new PeersEnvironment);
// then use Cluster() (postgres_environment.h) and S3Peer().
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "postgres_environment.h"
#include "s3rver.h"

namespace modelfleet::testing {

// The running s3rver, or nullptr if it did not start.
inline S3rverProcess*& S3Peer() {
  static S3rverProcess* s3 = nullptr;
  return s3;
}

class PeersEnvironment : public PostgresEnvironment {
 public:
  void SetUp() override {
    PostgresEnvironment::SetUp();
    if (::testing::Test::HasFatalFailure()) return;
    std::string error;
    s3_ = S3rverProcess::Start(&error);
    ASSERT_NE(s3_, nullptr) << error;
    S3Peer() = s3_.get();
  }
  void TearDown() override {
    S3Peer() = nullptr;
    s3_.reset();
    PostgresEnvironment::TearDown();
  }

 private:
  std::unique_ptr<S3rverProcess> s3_;
};

}  // namespace modelfleet::testing
