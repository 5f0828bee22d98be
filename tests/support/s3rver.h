// Test fixture: a private s3rver (an S3 API emulator from npm, pinned in the repo's package.json)
// on a free port of 127.0.0.1, with its data in a temporary directory.
//
// What s3rver 3.7.1 does and does not do, as far as the tests rely on it:
//   - accepts only its built-in credentials (kAccessKey / kSecretKey); an unknown access key is
//     rejected with 403 InvalidAccessKeyId;
//   - does NOT verify AWS Signature V4 signatures (only V2): a wrong secret key with the right
//     access key is accepted. Signature correctness is covered by tests/unit/sigv4_test.cc;
//   - supports single PUTs, ranged GETs, ListObjectsV2 and multipart upload (Create, UploadPart,
//     Complete), but neither AbortMultipartUpload (405 MethodNotAllowed) nor
//     ListMultipartUploads (501 NotImplemented);
//   - signs ListObjectsV2 continuation tokens with DES, so node runs with
//     --openssl-legacy-provider (added to NODE_OPTIONS by Start).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "process.h"

namespace modelfleet::testing {

class S3rverProcess {
 public:
  // Starts s3rver from SourceDir()/node_modules/.bin/s3rver (installed by `npm ci` at the repo
  // root), or from $MODELFLEET_S3RVER when that is missing, and waits until it accepts
  // connections. On failure returns nullptr and sets *error (with the tail of s3rver's log).
  static std::unique_ptr<S3rverProcess> Start(std::string* error);

  // "http://127.0.0.1:PORT"
  std::string endpoint() const;

  // s3rver's --directory: <data_dir>/<bucket>/ holds the objects, and
  // <data_dir>/<bucket>/._S3rver_uploads/<upload id>/ the parts of pending multipart uploads.
  std::filesystem::path data_dir() const;

  static constexpr const char* kAccessKey = "S3RVER";
  static constexpr const char* kSecretKey = "S3RVER";

  // Stops s3rver and removes its data directory.
  ~S3rverProcess();

  S3rverProcess(const S3rverProcess&) = delete;
  S3rverProcess& operator=(const S3rverProcess&) = delete;

 private:
  S3rverProcess(std::unique_ptr<TempDir> dir, Subprocess process, int port);

  std::unique_ptr<TempDir> dir_;
  std::optional<Subprocess> process_;
  int port_;
};

}  // namespace modelfleet::testing
