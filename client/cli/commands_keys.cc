// `modelfleet keys generate|list|add|revoke`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/crypto.h"
#include "modelfleet/json.h"
#include "modelfleet/v1/admin.grpc.pb.h"

namespace modelfleet::cli {

namespace {

// DER prefixes of an Ed25519 key (RFC 8410): PKCS#8 PrivateKeyInfo and SubjectPublicKeyInfo,
// each followed by the 32 raw key bytes. What `openssl genpkey -algorithm ed25519` writes.
constexpr unsigned char kPkcs8Prefix[] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                          0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
constexpr unsigned char kSpkiPrefix[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                         0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

std::string Base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(n >> shift) & 63];
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string Pem(const std::string& label, const std::string& der) {
  const std::string b64 = Base64(der);
  std::string out = "-----BEGIN " + label + "-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  return out + "-----END " + label + "-----\n";
}

// Writes `content` to `path` with `mode` (also when the file existed and `force`).
Status WriteKeyFile(const std::string& path, const std::string& content, mode_t mode, bool force) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
  if (fd < 0) {
    if (errno == EEXIST) return AlreadyExists(path + " exists (--force overwrites it)");
    return Internal("cannot create " + path + ": " + std::strerror(errno));
  }
  bool ok = ::fchmod(fd, mode) == 0;
  size_t done = 0;
  while (ok && done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok) return Internal("writing " + path + " failed: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Status GenerateKey(const Settings& s, const std::string& private_file, const std::string& public_file,
                   bool force) {
  if (private_file == public_file) {
    return InvalidArgument("--public-key", "must differ from the private key file");
  }
  std::error_code ec;
  for (const auto& f : {private_file, public_file}) {
    if (!force && std::filesystem::exists(f, ec)) return AlreadyExists(f + " exists (--force overwrites it)");
  }
  const Ed25519KeyPair pair = GenerateEd25519KeyPair();
  const std::string private_pem =
      Pem("PRIVATE KEY", std::string(std::begin(kPkcs8Prefix), std::end(kPkcs8Prefix)) + pair.private_key);
  const std::string public_pem =
      Pem("PUBLIC KEY", std::string(std::begin(kSpkiPrefix), std::end(kSpkiPrefix)) + pair.public_key);
  MF_RETURN_IF_ERROR(WriteKeyFile(private_file, private_pem, 0600, force));
  Status written = WriteKeyFile(public_file, public_pem, 0644, force);
  // Read both back through the same code that signs and verifies: nothing half-done is left.
  auto read_private = ReadEd25519PrivateKeyPem(private_file);
  auto read_public = ReadEd25519PublicKeyPem(public_file);
  if (written.ok() && (!read_private || *read_private != pair.private_key || !read_public ||
                       *read_public != pair.public_key)) {
    written = Internal("the written key files do not read back as the generated key");
  }
  if (!written.ok()) {
    std::filesystem::remove(private_file, ec);
    std::filesystem::remove(public_file, ec);
    return written;
  }
  const std::string hex = HexEncode(pair.public_key);
  if (s.output == OutputFormat::kJson) {
    std::cout << "{\"private_key_file\":" << JsonString(private_file)
              << ",\"public_key_file\":" << JsonString(public_file) << ",\"public_key\":" << JsonString(hex)
              << "}" << std::endl;
  } else {
    PrintKeyValues(std::cout,
                   {{"private key", private_file + " (mode 0600: keep it secret, e.g. in the CI's vault)"},
                    {"public key", public_file},
                    {"public key (hex)", hex},
                    {"next", "modelfleet keys add KEY_ID " + public_file}});
  }
  return Status::Ok();
}

Status ListKeys(const Settings& s) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  Rpc rpc(s);
  v1::ListPublisherKeysResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ListPublisherKeys(&rpc.context, {}, &resp), s));
  std::vector<v1::PublisherKey> keys(resp.keys().begin(), resp.keys().end());
  PrintList<v1::PublisherKey>(
      s, keys, {"KEY ID", "PUBLIC KEY", "ADDED BY", "ADDED", "REVOKED"}, [](const v1::PublisherKey& k) {
        return std::vector<std::string>{k.key_id(), HexEncode(k.public_key()), OrDash(k.added_by()),
                                        FormatTime(k.add_time()), FormatTime(k.revoke_time())};
      });
  return Status::Ok();
}

namespace {
KeyValues DescribeKey(const v1::PublisherKey& k) {
  return {{"key id", k.key_id()},
          {"public key", HexEncode(k.public_key())},
          {"added by", OrDash(k.added_by())},
          {"added", FormatTime(k.add_time())},
          {"revoked", FormatTime(k.revoke_time())}};
}
}  // namespace

Status AddKey(const Settings& s, const std::string& key_id, const std::string& public_pem_file) {
  MF_ASSIGN_OR_RETURN(std::string public_key, ReadEd25519PublicKeyPem(public_pem_file));
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  v1::AddPublisherKeyRequest req;
  req.set_key_id(key_id);
  req.set_public_key(public_key);
  Rpc rpc(s);
  v1::PublisherKey key;
  MF_RETURN_IF_ERROR(FromGrpc(stub->AddPublisherKey(&rpc.context, req, &key), s));
  PrintObject(s.output, key, [&] { return DescribeKey(key); });
  return Status::Ok();
}

Status RevokeKey(const Settings& s, const std::string& key_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  v1::RevokePublisherKeyRequest req;
  req.set_key_id(key_id);
  Rpc rpc(s);
  v1::PublisherKey key;
  MF_RETURN_IF_ERROR(FromGrpc(stub->RevokePublisherKey(&rpc.context, req, &key), s));
  PrintObject(s.output, key, [&] { return DescribeKey(key); });
  return Status::Ok();
}

}  // namespace modelfleet::cli
