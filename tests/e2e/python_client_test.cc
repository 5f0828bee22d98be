// Runs tests/e2e/python_client.py (Python grpcio, stubs generated from proto/ at test time)
// against the built server, with real PostgreSQL and s3rver: the API works from a client
// that was not written in this repository.
#include <gtest/gtest.h>

#include "s3rver.h"
#include "server_process.h"
#include "temp_postgres.h"

namespace modelfleet::testing {
namespace {

TEST(PythonClient, PushesListsAliasesAndDownloads) {
  std::string error;
  auto postgres = TempPostgres::Start(&error);
  ASSERT_NE(postgres, nullptr) << error;
  auto s3 = S3rverProcess::Start(&error);
  ASSERT_NE(s3, nullptr) << error;
  ServerProcess::Options o;
  o.database_url = postgres->conninfo();
  o.blob_store = "s3";
  o.s3_endpoint = s3->endpoint();
  o.s3_access_key = S3rverProcess::kAccessKey;
  o.s3_secret_key = S3rverProcess::kSecretKey;
  auto server = ServerProcess::Start(o, &error);
  ASSERT_NE(server, nullptr) << error;
  std::string token = CreateTokenOffline(o.database_url, "python-ci", "publisher", &error);
  ASSERT_FALSE(token.empty()) << error;

  std::string output;
  int code = RunCommand({"/usr/bin/python3", (SourceDir() / "tests" / "e2e" / "python_client.py").string(),
                         "--proto-dir", (SourceDir() / "proto").string(), "--address", server->address(),
                         "--token", token},
                        &output);
  EXPECT_EQ(code, 0) << output << "\nserver log:\n" << server->Log();
  EXPECT_NE(output.find("decoded a BadRequest detail: OK"), std::string::npos) << output;
}

}  // namespace
}  // namespace modelfleet::testing
