// Hashing, signatures and random secrets, over OpenSSL 3. No OpenSSL type leaks out of here.
//
// Thread safety: free functions are thread-safe; a Sha256 object is used by one thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "modelfleet/status.h"

namespace modelfleet {

// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const uint8_t> bytes);
  void Update(std::string_view bytes);
  // Finishes and returns the 64-character lowercase hex digest. Call once.
  std::string FinishHex();
  std::array<uint8_t, 32> Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(std::string_view bytes);

std::string HexEncode(std::span<const uint8_t> bytes);
std::string HexEncode(std::string_view bytes);
// Errors: INVALID_ARGUMENT if not an even number of hex digits.
Expected<std::string> HexDecode(std::string_view hex);

// Standard base64 (RFC 4648 section 4) with padding.
std::string Base64Encode(std::string_view bytes);

// True if `s` is exactly 64 lowercase hex characters.
bool IsSha256Hex(std::string_view s);

// `n` bytes from the OS CSPRNG (RAND_bytes). Aborts the process if the CSPRNG fails.
std::string RandomBytes(size_t n);

// Constant-time comparison of equal-length strings (false if lengths differ).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// HMAC-SHA256 of `message` under `key`, as 64 lowercase hex characters.
std::string HmacSha256Hex(std::string_view key, std::string_view message);

// AES-256-GCM with a 32-byte key and a 12-byte nonce, no associated data. Seal returns
// ciphertext || 16-byte tag. A nonce must never be used twice with one key: pass a fresh
// RandomBytes(kAesGcmNonceBytes) for every message.
inline constexpr size_t kAesGcmKeyBytes = 32;
inline constexpr size_t kAesGcmNonceBytes = 12;
// Errors: INVALID_ARGUMENT (key or nonce length).
Expected<std::string> AesGcmSeal(std::string_view key, std::string_view nonce, std::string_view plaintext);
// Errors: INVALID_ARGUMENT (key or nonce length, too short), PERMISSION_DENIED (the tag does
// not verify: another key, or the bytes were altered).
Expected<std::string> AesGcmOpen(std::string_view key, std::string_view nonce, std::string_view sealed);

// Ed25519 (RFC 8032). Keys are raw: 32-byte public key, 32-byte private seed.
struct Ed25519KeyPair {
  std::string public_key;   // 32 bytes
  std::string private_key;  // 32 bytes
};
Ed25519KeyPair GenerateEd25519KeyPair();
// Errors: INVALID_ARGUMENT (key not 32 bytes).
Expected<std::string> Ed25519Sign(std::string_view private_key, std::string_view message);
// OK if `signature` is a valid signature of `message` by `public_key`; INVALID_ARGUMENT
// (bad key or signature length) or PERMISSION_DENIED (does not verify) otherwise.
Status Ed25519Verify(std::string_view public_key, std::string_view message,
                     std::string_view signature);

// Reads a raw 32-byte Ed25519 key from a PEM file (PUBLIC KEY or PRIVATE KEY, as written by
// `openssl genpkey -algorithm ed25519`). Errors: NOT_FOUND, INVALID_ARGUMENT.
Expected<std::string> ReadEd25519PublicKeyPem(const std::string& path);
Expected<std::string> ReadEd25519PrivateKeyPem(const std::string& path);

}  // namespace modelfleet
