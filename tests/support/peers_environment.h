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
#include "server_process.h"

namespace modelfleet::testing {

// The running s3rver, or nullptr if it did not start.
inline S3rverProcess*& S3Peer() {
  static S3rverProcess* s3 = nullptr;
  return s3;
}

// Points a server at the running s3rver, in a bucket of its own named after `name` (a
// database name: '_' becomes '-', which bucket names need).
inline void UseS3Peer(ServerProcess::Options& o, const std::string& name) {
  o.blob_store = "s3";
  o.s3_endpoint = S3Peer()->endpoint();
  o.s3_bucket = "bucket-" + name;
  for (char& c : o.s3_bucket) c = c == '_' ? '-' : c;
  o.s3_access_key = S3rverProcess::kAccessKey;
  o.s3_secret_key = S3rverProcess::kSecretKey;
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
