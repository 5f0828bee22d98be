#include "modelfleet/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

namespace modelfleet {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) {
    std::abort();  // out of memory or a broken libcrypto: nothing sensible to do
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::Update(std::span<const uint8_t> bytes) {
  EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size());
}

void Sha256::Update(std::string_view bytes) {
  EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size());
}

std::array<uint8_t, 32> Sha256::Finish() {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, out.data(), &len);
  return out;
}

std::string Sha256::FinishHex() {
  auto d = Finish();
  return HexEncode(std::span<const uint8_t>(d));
}

std::string Sha256Hex(std::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.FinishHex();
}

std::string HexEncode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string HexEncode(std::string_view bytes) {
  return HexEncode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size()));
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Expected<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return Fail(InvalidArgument("hex", "odd number of hex digits"));
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return Fail(InvalidArgument("hex", "not a hex digit"));
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock adds a NUL
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                      reinterpret_cast<const unsigned char*>(bytes.data()),
                                      static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(written));
  return out;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    std::abort();  // never hand out predictable secrets
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

std::string RawPublicKey(EVP_PKEY* key) {
  std::string out(32, '\0');
  size_t len = out.size();
  EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(out.data()), &len);
  out.resize(len);
  return out;
}

std::string RawPrivateKey(EVP_PKEY* key) {
  std::string out(32, '\0');
  size_t len = out.size();
  EVP_PKEY_get_raw_private_key(key, reinterpret_cast<unsigned char*>(out.data()), &len);
  out.resize(len);
  return out;
}

}  // namespace

Ed25519KeyPair GenerateEd25519KeyPair() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) std::abort();
  return {RawPublicKey(key.get()), RawPrivateKey(key.get())};
}

Expected<std::string> Ed25519Sign(std::string_view private_key, std::string_view message) {
  if (private_key.size() != 32) {
    return Fail(InvalidArgument("private_key", "an Ed25519 private key is 32 bytes"));
  }
  PkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(private_key.data()), 32));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!key || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return Fail(Internal("Ed25519 signing setup failed"));
  }
  std::string sig(64, '\0');
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return Fail(Internal("Ed25519 signing failed"));
  }
  sig.resize(len);
  return sig;
}

Status Ed25519Verify(std::string_view public_key, std::string_view message,
                     std::string_view signature) {
  if (public_key.size() != 32) {
    return InvalidArgument("public_key", "an Ed25519 public key is 32 bytes");
  }
  if (signature.size() != 64) {
    return InvalidArgument("signature", "an Ed25519 signature is 64 bytes");
  }
  PkeyPtr key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(public_key.data()), 32));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return InvalidArgument("public_key", "not a valid Ed25519 public key");
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  if (rc != 1) return PermissionDenied("signature does not verify");
  return Status::Ok();
}

namespace {

Expected<PkeyPtr> ReadPem(const std::string& path, bool private_key) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return Fail(NotFound("cannot open key file " + path));
  EVP_PKEY* raw = private_key ? PEM_read_PrivateKey(f, nullptr, nullptr, nullptr)
                              : PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  PkeyPtr key(raw);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return Fail(InvalidArgument("key_file", path + " is not an Ed25519 " +
                                                (private_key ? "private" : "public") +
                                                " key in PEM form"));
  }
  return key;
}

}  // namespace

Expected<std::string> ReadEd25519PublicKeyPem(const std::string& path) {
  // A private key file also yields its public key.
  auto pub = ReadPem(path, false);
  if (pub) return RawPublicKey(pub->get());
  auto priv = ReadPem(path, true);
  if (priv) return RawPublicKey(priv->get());
  return Fail(pub.error());
}

Expected<std::string> ReadEd25519PrivateKeyPem(const std::string& path) {
  MF_ASSIGN_OR_RETURN(auto key, ReadPem(path, true));
  return RawPrivateKey(key.get());
}

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &len);
  return HexEncode(std::span<const uint8_t>(mac, len));
}

namespace {

constexpr size_t kGcmTagBytes = 16;

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

Status CheckGcmArgs(std::string_view key, std::string_view nonce) {
  if (key.size() != kAesGcmKeyBytes) return InvalidArgument("key", "AES-256-GCM needs a 32-byte key");
  if (nonce.size() != kAesGcmNonceBytes) return InvalidArgument("nonce", "AES-256-GCM needs a 12-byte nonce");
  return Status::Ok();
}

const unsigned char* U(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

Expected<std::string> AesGcmSeal(std::string_view key, std::string_view nonce, std::string_view plaintext) {
  MF_RETURN_IF_ERROR(CheckGcmArgs(key, nonce));
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kGcmTagBytes, '\0');
  int len = 0, total = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o, &len, U(plaintext), static_cast<int>(plaintext.size())) != 1) {
    return Fail(Internal("AES-256-GCM encryption failed"));
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), o + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes, o + total + len) != 1) {
    return Fail(Internal("AES-256-GCM encryption failed"));
  }
  out.resize(total + len + kGcmTagBytes);
  return out;
}

Expected<std::string> AesGcmOpen(std::string_view key, std::string_view nonce, std::string_view sealed) {
  MF_RETURN_IF_ERROR(CheckGcmArgs(key, nonce));
  if (sealed.size() < kGcmTagBytes) return Fail(InvalidArgument("sealed", "shorter than the GCM tag"));
  const std::string_view ciphertext = sealed.substr(0, sealed.size() - kGcmTagBytes);
  std::string tag(sealed.substr(ciphertext.size()));
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  std::string out(ciphertext.size() + kGcmTagBytes, '\0');
  int len = 0, total = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), o, &len, U(ciphertext), static_cast<int>(ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes, tag.data()) != 1) {
    return Fail(Internal("AES-256-GCM decryption failed"));
  }
  total = len;
  if (EVP_DecryptFinal_ex(ctx.get(), o + total, &len) != 1) {
    return Fail(PermissionDenied("AES-256-GCM tag does not verify (wrong key or altered data)"));
  }
  out.resize(total + len);
  return out;
}

}  // namespace modelfleet
