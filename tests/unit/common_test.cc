// Unit tests of mf_common and mf_manifest: name/version/text validation, hashing, hex, Ed25519,
// and the canonical manifest encoding that signatures cover.
//
// Expected values come from published specifications, never from running the code:
//   - Semantic Versioning 2.0.0 (https://semver.org), including the examples of its text and its
//     BNF grammar;
//   - RFC 3629 section 4 (the UTF-8 byte-sequence grammar);
//   - FIPS 180-2 appendix B (SHA-256 examples "abc" and the 448-bit two-block message; the
//     one-million-'a' example) and the well-known SHA-256 of the empty string;
//   - RFC 8032 section 7.1, TEST 1..3 (Ed25519 seed, public key, message, signature);
//   - the canonical encoding documented at the top of common/modelfleet/manifest.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "modelfleet/crypto.h"
#include "modelfleet/manifest.h"
#include "modelfleet/numbers.h"
#include "modelfleet/rpc_details.h"
#include "modelfleet/status.h"
#include "modelfleet/validation.h"
#include "modelfleet/v1/model.pb.h"
#include "test_data.h"

namespace modelfleet {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

// Decodes hex written in this file (test vectors); aborts the test on a typo.
std::string Unhex(std::string_view hex) {
  auto decoded = HexDecode(hex);
  EXPECT_TRUE(decoded.has_value()) << "bad hex in the test itself: " << hex;
  return decoded.value_or("");
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Checks that `status` is INVALID_ARGUMENT naming `field`.
::testing::AssertionResult IsInvalidArgumentFor(const Status& status, const std::string& field) {
  if (status.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected INVALID_ARGUMENT, got " << status.ToString();
  }
  if (status.field() != field) {
    return ::testing::AssertionFailure()
           << "expected field '" << field << "', got '" << status.field() << "' ("
           << status.ToString() << ")";
  }
  return ::testing::AssertionSuccess();
}

// =============================================================================================
// validation.h

// Every version string used as an example of a valid version by semver.org (spec items 9 and
// 10 and the FAQ), plus the boundary cases the brief asks for.
TEST(ValidateSemVer, AcceptsValidVersionsFromTheSpec) {
  const std::vector<std::string> valid = {
      "1.0.0",         "0.0.0",           "1.2.3-alpha.1",       "1.2.3+build.5",
      "1.0.0-0.3.7",   "1.0.0-x.7.z.92",  "1.0.0-alpha",         "1.0.0-alpha.1",
      "1.0.0-x-y-z.--", "1.0.0-alpha+001", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85",
      "1.0.0+21AF26D3----117B344092BD",
      // Alphanumeric pre-release identifiers may start with 0 (only numeric ones may not).
      "1.0.0-0a", "1.0.0-0", "10.20.30",
      // Build identifiers have no leading-zero rule at all (semver item 10: "1.0.0+001").
      "1.0.0+0.01",
  };
  for (const std::string& v : valid) {
    Status s = ValidateSemVer(v, "manifest.version");
    EXPECT_TRUE(s.ok()) << "'" << v << "' is valid semver but was rejected: " << s.ToString();
  }
}

TEST(ValidateSemVer, RejectsInvalidVersionsNamingTheField) {
  const std::vector<std::string> invalid = {
      "1.0",            // only two components
      "01.0.0",         // leading zero in MAJOR (semver item 2)
      "1.01.0",         // leading zero in MINOR
      "1.0.01",         // leading zero in PATCH
      "1.0.0-01",       // numeric pre-release identifier with a leading zero (item 9)
      "1.0.0-",         // empty pre-release
      "1.0.0+",         // empty build metadata
      "v1.0.0",         // "v" prefix is not part of a semantic version (FAQ)
      "1.0.0.0",        // four components
      "",               // empty
      "1.0.0-alpha..1", // empty identifier
      "1.0.0+build..1", // empty build identifier
      "1.0.0-alpha_1",  // '_' is not in [0-9A-Za-z-]
      "1.0.0+a+b",      // '+' inside build metadata
      "1.0.0 ",         // trailing space
      " 1.0.0",         // leading space
      "1.0.0-é",        // non-ASCII identifier
      "-1.0.0",         // sign
      "1..0",           // empty component
      "a.b.c",          // non-numeric components
  };
  for (const std::string& v : invalid) {
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateSemVer(v, "manifest.version"), "manifest.version"))
        << "'" << v << "' is not valid semver";
  }
}

TEST(ValidateSemVer, LengthLimitIs128Characters) {
  // "1.0.0+" is 6 characters; build metadata of 122 'a's makes exactly 128.
  const std::string at_limit = "1.0.0+" + std::string(122, 'a');
  ASSERT_EQ(at_limit.size(), 128u);
  Status ok = ValidateSemVer(at_limit, "v");
  EXPECT_TRUE(ok.ok()) << ok.ToString();

  const std::string over_limit = "1.0.0+" + std::string(123, 'a');
  ASSERT_EQ(over_limit.size(), 129u);
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateSemVer(over_limit, "v"), "v"));
}

TEST(ValidateSemVer, ErrorMessageStartsWithTheField) {
  // status.h: InvalidArgument(field, msg) makes the message "<field>: <msg>".
  Status s = ValidateSemVer("1.0", "request.version");
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.field(), "request.version");
  EXPECT_TRUE(s.message().starts_with("request.version: ")) << s.message();
}

TEST(ValidateModelName, FollowsTheDocumentedPattern) {
  // [a-z0-9][a-z0-9._-]{0,62}: 1 to 63 characters.
  for (const std::string& name : std::vector<std::string>{
           "a", "0", "mat-detector", "mat_detector.v2", "9lives", "a-", std::string(63, 'x')}) {
    Status s = ValidateModelName(name, "model.name");
    EXPECT_TRUE(s.ok()) << "'" << name << "': " << s.ToString();
  }
  for (const std::string& name : std::vector<std::string>{
           "", "Mat", "mAt", "-a", ".a", "_a", "a b", "a/b", "a:b", "caf\xc3\xa9", "a\n"}) {
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateModelName(name, "model.name"), "model.name"))
        << "'" << name << "'";
  }
  EXPECT_TRUE(
      IsInvalidArgumentFor(ValidateModelName(std::string(64, 'x'), "model.name"), "model.name"));
}

TEST(ValidateAliasName, FollowsTheDocumentedPattern) {
  // [a-z][a-z0-9_-]{0,62}: starts with a letter, no '.', 1 to 63 characters.
  for (const std::string& alias : std::vector<std::string>{
           "prod", "a", "canary-2", "stable_v1", std::string(63, 'z')}) {
    Status s = ValidateAliasName(alias, "alias");
    EXPECT_TRUE(s.ok()) << "'" << alias << "': " << s.ToString();
  }
  for (const std::string& alias :
       std::vector<std::string>{"", "2prod", "Prod", "-a", "_a", "a.b", "a b", "latest!"}) {
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateAliasName(alias, "alias"), "alias"))
        << "'" << alias << "'";
  }
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateAliasName(std::string(64, 'z'), "alias"), "alias"));
}

TEST(ValidateIdentifier, FollowsTheDocumentedPattern) {
  // [A-Za-z0-9._-]{1,64}
  for (const std::string& id : std::vector<std::string>{"A", "ci-key-1", "Key_2.v3", "...", "-",
                                                         std::string(64, 'K')}) {
    Status s = ValidateIdentifier(id, "key_id");
    EXPECT_TRUE(s.ok()) << "'" << id << "': " << s.ToString();
  }
  for (const std::string& id :
       std::vector<std::string>{"", "a b", "a/b", "a:b", "a+b", "\xc3\xa9", "tab\t"}) {
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateIdentifier(id, "key_id"), "key_id")) << "'" << id << "'";
  }
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateIdentifier(std::string(65, 'K'), "key_id"), "key_id"));
}

// RFC 3629 section 4:
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
//            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) / %xF4 %x80-8F 2( UTF8-tail )
TEST(IsValidUtf8, AcceptsWellFormedSequencesAtEveryBoundary) {
  const std::vector<std::string> valid = {
      "",
      "plain ascii",
      std::string("\x7f", 1),   // U+007F, last 1-byte
      "\xc2\x80",               // U+0080, first 2-byte
      "\xdf\xbf",               // U+07FF, last 2-byte
      "\xe0\xa0\x80",           // U+0800, first 3-byte
      "\xed\x9f\xbf",           // U+D7FF, last before the surrogates
      "\xee\x80\x80",           // U+E000, first after the surrogates
      "\xef\xbf\xbf",           // U+FFFF
      "\xf0\x90\x80\x80",       // U+10000, first 4-byte
      "\xf4\x8f\xbf\xbf",       // U+10FFFF, last code point
      "gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x98\x80",  // "grüße € 😀"
  };
  for (const std::string& s : valid) {
    EXPECT_TRUE(IsValidUtf8(s)) << ::testing::PrintToString(s);
  }
}

TEST(IsValidUtf8, RejectsStrayOverlongTwoByteAndTruncatedSequences) {
  const std::vector<std::string> invalid = {
      "\x80",               // stray continuation byte
      "a\xbf",              // stray continuation after ASCII
      "\xc0\x80",           // overlong NUL (C0 is never valid)
      "\xc1\xbf",           // overlong U+007F
      "\xc2",               // truncated 2-byte
      "\xe2\x82",           // truncated 3-byte ("€" without its last byte)
      "\xf0\x9f\x98",       // truncated 4-byte
      "\xc2" "A",           // lead byte followed by a non-continuation
      "\xe2\x28\xa1",       // second byte not a continuation
      "\xf5\x80\x80\x80",   // F5..FF never appear
      "\xf8\x88\x80\x80\x80",  // old 5-byte form
      "\xff",
      "\xfe",
  };
  for (const std::string& s : invalid) {
    EXPECT_FALSE(IsValidUtf8(s)) << ::testing::PrintToString(s);
  }
}

// Regression: common/validation.cc IsValidUtf8 (the `(c >> 4) == 0xe` and `c >= 0xf0 && c <= 0xf4`
// branches) checks only that the trailing bytes are continuation bytes, not the restricted
// second-byte ranges of RFC 3629 for E0, ED, F0 and F4. It therefore accepts overlong 3- and
// 4-byte encodings, UTF-16 surrogates (U+D800..U+DFFF) and code points above U+10FFFF, all of
// which RFC 3629 forbids. ValidateText (descriptions, labels, lineage) inherits the hole.
TEST(IsValidUtf8, RejectsOverlongThreeAndFourByteFormsSurrogatesAndBeyondU10FFFF) {
  const std::vector<std::string> invalid = {
      "\xe0\x80\x80",      // overlong U+0000
      "\xe0\x9f\xbf",      // overlong U+07FF
      "\xed\xa0\x80",      // U+D800, first surrogate
      "\xed\xbf\xbf",      // U+DFFF, last surrogate
      "\xf0\x80\x80\x80",  // overlong U+0000
      "\xf0\x8f\xbf\xbf",  // overlong U+FFFF
      "\xf4\x90\x80\x80",  // U+110000
  };
  for (const std::string& s : invalid) {
    EXPECT_FALSE(IsValidUtf8(s)) << ::testing::PrintToString(s);
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateText(s, 100, "description"), "description"));
  }
}

TEST(ValidateText, EnforcesLengthNulAndUtf8) {
  EXPECT_TRUE(ValidateText("", 0, "description").ok());
  EXPECT_TRUE(ValidateText("h\xc3\xa9llo", 6, "description").ok());  // 6 bytes, at the limit
  EXPECT_TRUE(
      IsInvalidArgumentFor(ValidateText("h\xc3\xa9llo", 5, "description"), "description"));
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateText("abcd", 3, "reason"), "reason"));
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateText(std::string("a\0b", 3), 10, "reason"), "reason"));
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateText("\xc3", 10, "reason"), "reason"));
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateText("\xc0\xaf", 10, "reason"), "reason"));
}

// =============================================================================================
// crypto.h: SHA-256 (FIPS 180-2 appendix B)

constexpr char kSha256Empty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kSha256Abc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kTwoBlockMessage[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr char kSha256TwoBlock[] =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr char kSha256MillionA[] =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

TEST(Sha256, OneShotMatchesFipsVectors) {
  EXPECT_EQ(Sha256Hex(""), kSha256Empty);
  EXPECT_EQ(Sha256Hex("abc"), kSha256Abc);
  EXPECT_EQ(Sha256Hex(kTwoBlockMessage), kSha256TwoBlock);
}

TEST(Sha256, IncrementalInAnySplitEqualsOneShot) {
  // Every split of the two-block message into two pieces, including empty pieces and a split
  // across the 64-byte block boundary.
  const std::string msg = kTwoBlockMessage;
  for (size_t cut = 0; cut <= msg.size(); ++cut) {
    Sha256 h;
    h.Update(std::string_view(msg).substr(0, cut));
    h.Update(AsBytes(std::string_view(msg).substr(cut)));  // the span overload
    EXPECT_EQ(h.FinishHex(), kSha256TwoBlock) << "split at " << cut;
  }
}

TEST(Sha256, MillionAInUnevenChunks) {
  // FIPS 180-2 B.3: one million repetitions of 'a'. Fed in chunks of 1, 2, 3, ... 999 bytes.
  Sha256 h;
  const std::string a(1000, 'a');
  size_t fed = 0;
  for (size_t chunk = 1; fed < 1000000; chunk = chunk % 999 + 1) {
    const size_t n = std::min(chunk, 1000000 - fed);
    h.Update(std::string_view(a).substr(0, n));
    fed += n;
  }
  EXPECT_EQ(h.FinishHex(), kSha256MillionA);
}

TEST(Sha256, FinishReturnsTheRawDigest) {
  Sha256 h;
  h.Update("abc");
  const std::array<uint8_t, 32> raw = h.Finish();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()), Unhex(kSha256Abc));
}

// =============================================================================================
// crypto.h: hex, IsSha256Hex, ConstantTimeEquals

TEST(Hex, EncodeIsLowercaseTwoDigitsPerByte) {
  const std::vector<uint8_t> bytes = {0x00, 0x01, 0x0f, 0x10, 0xab, 0xff};
  EXPECT_EQ(HexEncode(std::span<const uint8_t>(bytes)), "00010f10abff");
  EXPECT_EQ(HexEncode(std::string_view("\x00\xff\x7f", 3)), "00ff7f");
  EXPECT_EQ(HexEncode(std::string_view()), "");
}

TEST(Hex, DecodeAcceptsBothCasesAndRoundTrips) {
  auto d = HexDecode("00010F10abFF");
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(*d, std::string("\x00\x01\x0f\x10\xab\xff", 6));
  auto empty = HexDecode("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(*empty, "");

  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  auto back = HexDecode(HexEncode(all));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
}

TEST(Hex, DecodeRejectsOddLengthAndNonHexDigits) {
  for (std::string_view bad : {"0", "abc", "zz", "0g", "g0", "  ", "0x00", "-1"}) {
    auto d = HexDecode(bad);
    ASSERT_FALSE(d.has_value()) << "'" << bad << "' decoded";
    EXPECT_EQ(d.error().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(IsSha256Hex, ExactlySixtyFourLowercaseHexDigits) {
  EXPECT_TRUE(IsSha256Hex(kSha256Abc));
  EXPECT_TRUE(IsSha256Hex(std::string(64, '0')));
  std::string upper = kSha256Abc;
  upper[0] = 'B';
  EXPECT_FALSE(IsSha256Hex(upper));
  EXPECT_FALSE(IsSha256Hex(std::string(kSha256Abc).substr(0, 63)));
  EXPECT_FALSE(IsSha256Hex(std::string(kSha256Abc) + "0"));
  std::string non_hex = kSha256Abc;
  non_hex[63] = 'g';
  EXPECT_FALSE(IsSha256Hex(non_hex));
  EXPECT_FALSE(IsSha256Hex(""));
}

TEST(ConstantTimeEquals, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret-token", "secret-token"));
  EXPECT_FALSE(ConstantTimeEquals("secret-token", "secret-tokeN"));  // last byte differs
  EXPECT_FALSE(ConstantTimeEquals("Secret-token", "secret-token"));  // first byte differs
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret-token"));        // prefix
  EXPECT_FALSE(ConstantTimeEquals("secret-token", ""));
  // Bytes after an embedded NUL still count.
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
  EXPECT_TRUE(ConstantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
}

TEST(RandomBytes, HasTheRequestedLengthAndDiffers) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  const std::string a = RandomBytes(32), b = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);  // a collision of two 256-bit CSPRNG outputs does not happen
}

// =============================================================================================
// crypto.h: Ed25519 against RFC 8032 section 7.1

struct Rfc8032Vector {
  const char* name;
  const char* secret_key;  // the 32-byte seed
  const char* public_key;
  const char* message;
  const char* signature;
};

constexpr Rfc8032Vector kRfc8032[] = {
    {"TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

TEST(Ed25519, SignaturesEqualRfc8032AndVerifyWithTheRfcPublicKey) {
  for (const Rfc8032Vector& v : kRfc8032) {
    SCOPED_TRACE(v.name);
    const std::string seed = Unhex(v.secret_key), pub = Unhex(v.public_key),
                      msg = Unhex(v.message), want = Unhex(v.signature);
    auto sig = Ed25519Sign(seed, msg);
    ASSERT_TRUE(sig.has_value()) << sig.error().ToString();
    // Ed25519 is deterministic: the signature must be the RFC's byte for byte.
    EXPECT_EQ(HexEncode(*sig), v.signature);
    // The API has no "public key of a seed"; the seed's public key is the RFC's exactly when a
    // signature made with the seed verifies under the RFC's public key.
    Status verified = Ed25519Verify(pub, msg, *sig);
    EXPECT_TRUE(verified.ok()) << verified.ToString();
    Status verified_rfc = Ed25519Verify(pub, msg, want);
    EXPECT_TRUE(verified_rfc.ok()) << verified_rfc.ToString();
  }
}

TEST(Ed25519, AnyFlippedBitIsPermissionDenied) {
  const Rfc8032Vector& v = kRfc8032[2];  // TEST 3: a non-empty message
  const std::string pub = Unhex(v.public_key), msg = Unhex(v.message), sig = Unhex(v.signature);
  // A flipped bit in R (first half), in S (second half), in the message, in the public key.
  for (size_t byte : {0u, 31u, 32u, 63u}) {
    std::string bad = sig;
    bad[byte] = static_cast<char>(bad[byte] ^ 0x01);
    EXPECT_EQ(Ed25519Verify(pub, msg, bad).code(), StatusCode::kPermissionDenied) << byte;
  }
  std::string bad_msg = msg;
  bad_msg[1] = static_cast<char>(bad_msg[1] ^ 0x01);  // af83
  EXPECT_EQ(Ed25519Verify(pub, bad_msg, sig).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Ed25519Verify(pub, msg + "x", sig).code(), StatusCode::kPermissionDenied);
  // Another valid public key (TEST 2's) does not verify TEST 3's signature.
  Status other_key = Ed25519Verify(Unhex(kRfc8032[1].public_key), msg, sig);
  EXPECT_EQ(other_key.code(), StatusCode::kPermissionDenied) << other_key.ToString();
}

TEST(Ed25519, WrongLengthsAreInvalidArgument) {
  const Rfc8032Vector& v = kRfc8032[1];
  const std::string seed = Unhex(v.secret_key), pub = Unhex(v.public_key), msg = Unhex(v.message),
                    sig = Unhex(v.signature);
  for (const std::string& key : {seed.substr(0, 31), seed + "x", std::string()}) {
    auto s = Ed25519Sign(key, msg);
    ASSERT_FALSE(s.has_value()) << key.size();
    EXPECT_EQ(s.error().code(), StatusCode::kInvalidArgument) << key.size();
  }
  for (const std::string& key : {pub.substr(0, 31), pub + "x", std::string()}) {
    EXPECT_EQ(Ed25519Verify(key, msg, sig).code(), StatusCode::kInvalidArgument) << key.size();
  }
  for (const std::string& s : {sig.substr(0, 63), sig + "x", std::string()}) {
    EXPECT_EQ(Ed25519Verify(pub, msg, s).code(), StatusCode::kInvalidArgument) << s.size();
  }
}

TEST(Ed25519, GeneratedKeyPairsSignAndVerify) {
  const Ed25519KeyPair a = GenerateEd25519KeyPair(), b = GenerateEd25519KeyPair();
  EXPECT_EQ(a.public_key.size(), 32u);
  EXPECT_EQ(a.private_key.size(), 32u);
  EXPECT_NE(a.private_key, b.private_key);
  EXPECT_NE(a.public_key, b.public_key);
  auto sig = Ed25519Sign(a.private_key, "hello");
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(sig->size(), 64u);
  EXPECT_TRUE(Ed25519Verify(a.public_key, "hello", *sig).ok());
  EXPECT_EQ(Ed25519Verify(b.public_key, "hello", *sig).code(), StatusCode::kPermissionDenied);
}

// =============================================================================================
// manifest.h

using testing::SmallManifest;
constexpr const char* kDigest = testing::kSmallManifestDigest;


// Written out by hand from the format in manifest.h. Lengths are the byte counts of the
// values: "mat-detector" = 12, "torchscript-int8" = 16, the digest = 64, "1234" = 4, ...
constexpr char kSmallManifestCanonical[] =
    "modelfleet-manifest-v1\n"
    "model 12 mat-detector\n"
    "version 5 1.2.0\n"
    "format 16 torchscript-int8\n"
    "quantization 0 \n"
    "digest 64 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    "size_bytes 4 1234\n"
    "version_counter 1 7\n"
    "input_spec.shape[0] 1 1\n"
    "input_spec.shape[1] 2 16\n"
    "input_spec.dtype 7 float32\n"
    "input_spec.layout 2 NC\n"
    "input_spec.mean[0] 3 0.1\n"
    "input_spec.std[0] 1 1\n"
    "class_labels[0] 5 empty\n"
    "class_labels[1] 7 sitting\n"
    "metrics.accuracy 4 0.94\n"
    "metrics.eps 5 1e-05\n"
    "metrics.latency_ms 3 3.5\n"
    "params.lr 5 0.001\n"
    "labels.Zone 2 eu\n"
    "labels.board 2 pi\n"
    "labels.hw 4 rev3\n"
    "lineage.git_commit 6 abc123\n"
    "lineage.ci_run_id 0 \n"
    "lineage.ci_run_url 0 \n"
    "lineage.parent_version 5 1.1.0\n"
    "lineage.dataset 7 mats-v2\n"
    "self_test.reference_input[0] 3 0.1\n"
    "self_test.reference_output[0] 4 0.25\n"
    "self_test.reference_output[1] 1 1\n"
    "self_test.tolerance 4 0.01\n"
    "self_test.latency_budget_ms 1 5\n"
    "signature.key_id 8 ci-key-1\n";

TEST(CanonicalManifestBytes, MatchesTheDocumentedEncodingByteForByte) {
  EXPECT_EQ(CanonicalManifestBytes(SmallManifest()), kSmallManifestCanonical);
}

TEST(CanonicalManifestBytes, EmptyManifestHasEveryScalarRecord) {
  // All scalars present even when empty or zero; no repeated or map records; doubles 0 -> "0".
  EXPECT_EQ(CanonicalManifestBytes(v1::Manifest()),
            "modelfleet-manifest-v1\n"
            "model 0 \n"
            "version 0 \n"
            "format 0 \n"
            "quantization 0 \n"
            "digest 0 \n"
            "size_bytes 1 0\n"
            "version_counter 1 0\n"
            "input_spec.dtype 0 \n"
            "input_spec.layout 0 \n"
            "lineage.git_commit 0 \n"
            "lineage.ci_run_id 0 \n"
            "lineage.ci_run_url 0 \n"
            "lineage.parent_version 0 \n"
            "lineage.dataset 0 \n"
            "self_test.tolerance 1 0\n"
            "self_test.latency_budget_ms 1 0\n"
            "signature.key_id 0 \n");
}

TEST(CanonicalManifestBytes, MapsAreSortedWhateverTheInsertionOrder) {
  v1::Manifest forward = SmallManifest(), backward = SmallManifest();
  forward.mutable_labels()->clear();
  backward.mutable_labels()->clear();
  const std::vector<std::string> keys = {"a", "B", "c", "a2", "A", "b"};
  for (const auto& k : keys) (*forward.mutable_labels())[k] = "v" + k;
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) (*backward.mutable_labels())[*it] = "v" + *it;
  const std::string bytes = CanonicalManifestBytes(forward);
  EXPECT_EQ(bytes, CanonicalManifestBytes(backward));
  // Byte order: uppercase (0x41..0x5a) before lowercase, "a" before "a2".
  EXPECT_NE(bytes.find("labels.A 2 vA\nlabels.B 2 vB\nlabels.a 2 va\nlabels.a2 3 va2\n"
                       "labels.b 2 vb\nlabels.c 2 vc\nlineage.git_commit"),
            std::string::npos)
      << bytes;
}

TEST(CanonicalManifestBytes, ValuesWithSpacesAndNewlinesAreLengthDelimited) {
  v1::Manifest m;
  (*m.mutable_params())["note"] = "two words\nand a line";  // 20 bytes, no escaping
  const std::string bytes = CanonicalManifestBytes(m);
  EXPECT_NE(bytes.find("\nparams.note 20 two words\nand a line\nlineage.git_commit 0 \n"),
            std::string::npos)
      << bytes;
}

TEST(CanonicalManifestBytes, KeyIdIsCoveredAndSignatureBytesAreNot) {
  const v1::Manifest base = SmallManifest();
  v1::Manifest other_sig = base;
  other_sig.mutable_signature()->set_signature(std::string(64, 'T'));
  EXPECT_EQ(CanonicalManifestBytes(other_sig), CanonicalManifestBytes(base));
  other_sig.mutable_signature()->clear_signature();
  EXPECT_EQ(CanonicalManifestBytes(other_sig), CanonicalManifestBytes(base));

  v1::Manifest other_key = base;
  other_key.mutable_signature()->set_key_id("ci-key-2");
  EXPECT_NE(CanonicalManifestBytes(other_key), CanonicalManifestBytes(base));
}

class SignedManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = GenerateEd25519KeyPair();
    manifest_ = SmallManifest();
    manifest_.mutable_signature()->Clear();
    Status s = SignManifest(manifest_, "ci-key-1", keys_.private_key);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  Ed25519KeyPair keys_;
  v1::Manifest manifest_;
};

TEST_F(SignedManifestTest, SignThenVerifyRoundTrips) {
  EXPECT_EQ(manifest_.signature().key_id(), "ci-key-1");
  ASSERT_EQ(manifest_.signature().signature().size(), 64u);
  // The signature is Ed25519 over the canonical bytes (which include the key id).
  EXPECT_TRUE(Ed25519Verify(keys_.public_key, CanonicalManifestBytes(manifest_),
                            manifest_.signature().signature())
                  .ok());
  Status verified = VerifyManifestSignature(manifest_, keys_.public_key);
  EXPECT_TRUE(verified.ok()) << verified.ToString();
  // And the signed manifest passes validation.
  Status valid = ValidateManifest(manifest_, "manifest");
  EXPECT_TRUE(valid.ok()) << valid.ToString();
}

TEST_F(SignedManifestTest, SignWithTheRfcSeedGivesAVerifiableSignature) {
  v1::Manifest m = SmallManifest();
  ASSERT_TRUE(SignManifest(m, "rfc-1", Unhex(kRfc8032[0].secret_key)).ok());
  EXPECT_TRUE(VerifyManifestSignature(m, Unhex(kRfc8032[0].public_key)).ok());
  EXPECT_EQ(m.signature().key_id(), "rfc-1");
}

TEST_F(SignedManifestTest, ChangingAnySignedFieldBreaksVerification) {
  struct Change {
    const char* what;
    void (*apply)(v1::Manifest&);
  };
  const Change changes[] = {
      {"digest", [](v1::Manifest& m) { m.set_digest(std::string(64, 'e')); }},
      {"size", [](v1::Manifest& m) { m.set_size_bytes(1235); }},
      {"version", [](v1::Manifest& m) { m.set_version("1.2.1"); }},
      {"version_counter", [](v1::Manifest& m) { m.set_version_counter(8); }},
      {"metric value", [](v1::Manifest& m) { (*m.mutable_metrics())["accuracy"] = 0.95; }},
      {"metric added", [](v1::Manifest& m) { (*m.mutable_metrics())["f1"] = 0.9; }},
      {"label value", [](v1::Manifest& m) { (*m.mutable_labels())["hw"] = "rev4"; }},
      {"label removed", [](v1::Manifest& m) { m.mutable_labels()->erase("board"); }},
      {"param", [](v1::Manifest& m) { (*m.mutable_params())["lr"] = "0.01"; }},
      {"lineage commit", [](v1::Manifest& m) { m.mutable_lineage()->set_git_commit("abc124"); }},
      {"lineage parent", [](v1::Manifest& m) { m.mutable_lineage()->set_parent_version("1.0.0"); }},
      {"class label", [](v1::Manifest& m) { m.set_class_labels(1, "lying"); }},
      {"input mean", [](v1::Manifest& m) { m.mutable_input_spec()->set_mean(0, 0.2); }},
      {"self-test tolerance", [](v1::Manifest& m) { m.mutable_self_test()->set_tolerance(0.5); }},
      {"key id", [](v1::Manifest& m) { m.mutable_signature()->set_key_id("ci-key-2"); }},
  };
  for (const Change& c : changes) {
    v1::Manifest m = manifest_;
    c.apply(m);
    EXPECT_EQ(VerifyManifestSignature(m, keys_.public_key).code(), StatusCode::kPermissionDenied)
        << "changing the " << c.what << " kept the signature valid";
  }
}

TEST_F(SignedManifestTest, WrongKeyOrMissingSignatureIsPermissionDenied) {
  EXPECT_EQ(VerifyManifestSignature(manifest_, GenerateEd25519KeyPair().public_key).code(),
            StatusCode::kPermissionDenied);
  v1::Manifest unsigned_manifest = manifest_;
  unsigned_manifest.clear_signature();
  EXPECT_EQ(VerifyManifestSignature(unsigned_manifest, keys_.public_key).code(),
            StatusCode::kPermissionDenied);
  v1::Manifest empty_sig = manifest_;
  empty_sig.mutable_signature()->clear_signature();
  EXPECT_EQ(VerifyManifestSignature(empty_sig, keys_.public_key).code(),
            StatusCode::kPermissionDenied);
}

TEST(ValidateManifest, AcceptsTheSmallManifest) {
  Status s = ValidateManifest(SmallManifest(), "manifest");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(ValidateManifest, RejectsEachBadFieldNamingIt) {
  struct Case {
    const char* field;
    void (*apply)(v1::Manifest&);
  };
  const Case cases[] = {
      {"manifest.digest", [](v1::Manifest& m) { m.set_digest(std::string(kDigest).substr(0, 63)); }},
      {"manifest.digest",
       [](v1::Manifest& m) { m.set_digest("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"); }},
      {"manifest.digest", [](v1::Manifest& m) { m.clear_digest(); }},
      {"manifest.size_bytes", [](v1::Manifest& m) { m.set_size_bytes(0); }},
      {"manifest.version", [](v1::Manifest& m) { m.set_version("1.2"); }},
      {"manifest.version", [](v1::Manifest& m) { m.set_version("v1.2.0"); }},
      {"manifest.model", [](v1::Manifest& m) { m.set_model("Mat-Detector"); }},
      {"manifest.model", [](v1::Manifest& m) { m.clear_model(); }},
      {"manifest.metrics.accuracy",
       [](v1::Manifest& m) { (*m.mutable_metrics())["accuracy"] = std::nan(""); }},
      {"manifest.metrics.accuracy",
       [](v1::Manifest& m) {
         (*m.mutable_metrics())["accuracy"] = std::numeric_limits<double>::infinity();
       }},
      {"manifest.input_spec.dtype", [](v1::Manifest& m) { m.mutable_input_spec()->set_dtype("float64"); }},
      {"manifest.lineage.parent_version",
       [](v1::Manifest& m) { m.mutable_lineage()->set_parent_version("1.1"); }},
      {"manifest.signature.signature",
       [](v1::Manifest& m) { m.mutable_signature()->set_signature(std::string(63, 'S')); }},
      {"manifest.signature.signature",
       [](v1::Manifest& m) { m.mutable_signature()->set_signature(std::string(65, 'S')); }},
  };
  for (const Case& c : cases) {
    v1::Manifest m = SmallManifest();
    c.apply(m);
    EXPECT_TRUE(IsInvalidArgumentFor(ValidateManifest(m, "manifest"), c.field));
  }
}

TEST(ValidateManifest, RejectsAManifestLargerThanTheLimit) {
  v1::Manifest m = SmallManifest();
  // 300 KiB of valid text in a field whose own limit would also reject it: the size check
  // comes first and names the whole manifest.
  m.mutable_lineage()->set_dataset(std::string(300 * 1024, 'd'));
  ASSERT_GT(m.ByteSizeLong(), kMaxManifestBytes);
  Status s = ValidateManifest(m, "manifest");
  EXPECT_TRUE(IsInvalidArgumentFor(s, "manifest"));
  EXPECT_NE(s.message().find(std::to_string(kMaxManifestBytes)), std::string::npos) << s.message();

  // Many individually valid labels that together exceed 256 KiB: 256 values of 1024 bytes.
  v1::Manifest many = SmallManifest();
  for (int i = 0; i < 256; ++i) {
    (*many.mutable_params())["p" + std::to_string(i)] = std::string(1024, 'v');
  }
  ASSERT_GT(many.ByteSizeLong(), kMaxManifestBytes);
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateManifest(many, "manifest"), "manifest"));
}

TEST(ValidateManifest, UsesTheGivenPrefix) {
  v1::Manifest m = SmallManifest();
  m.set_size_bytes(0);
  EXPECT_TRUE(IsInvalidArgumentFor(ValidateManifest(m, "request.manifest"),
                                   "request.manifest.size_bytes"));
}

}  // namespace
// The one parser of numbers that arrive as text.
TEST(ParseNumber, TakesOnlyAWholeNumberOfTheType) {
  EXPECT_EQ(ParseNumber<int64_t>("42"), 42);
  EXPECT_EQ(ParseNumber<int64_t>("-7"), -7);
  EXPECT_EQ(ParseNumber<uint64_t>("18446744073709551615"), ~uint64_t{0});
  EXPECT_EQ(ParseNumber<double>("0.5"), 0.5);
  EXPECT_EQ(ParseNumber<double>("1e-05"), 1e-05);
  for (const char* bad : {"", " 1", "1 ", "12abc", "+1", "0x10", "1,5"}) {
    EXPECT_FALSE(ParseNumber<int64_t>(bad)) << "'" << bad << "'";
  }
  EXPECT_FALSE(ParseNumber<uint64_t>("-1"));
  EXPECT_FALSE(ParseNumber<uint64_t>("18446744073709551616"));  // out of range, not wrapped
  EXPECT_FALSE(ParseNumber<int32_t>("2147483648"));
  for (const char* bad : {"", "nan", "inf", "-inf", "1e400", "0.5x", ".", "1e"}) {
    EXPECT_FALSE(ParseNumber<double>(bad)) << "'" << bad << "'";
  }
}

// google.rpc.Status with a BadRequest detail, as the server sends it on INVALID_ARGUMENT (the
// Python e2e client decodes the same bytes with protobuf's own implementation).
TEST(RpcDetails, BadRequestRoundTripsAndMalformedBytesAreRefused) {
  const std::string bytes =
      EncodeBadRequestStatus(3, "manifest.version: is not SemVer", {"manifest.version", "is not SemVer"});
  auto violation = DecodeBadRequestField(bytes);
  ASSERT_TRUE(violation);
  EXPECT_EQ(violation->field, "manifest.version");
  EXPECT_EQ(violation->description, "is not SemVer");
  // Field 1 (code, varint 3), then the message: the layout every protobuf reader expects.
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x08\x03\x12\x1f", 4));
  // Every truncation is refused or yields nothing; none reads past the end (ASan watches).
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto cut = DecodeBadRequestField(std::string_view(bytes).substr(0, n));
    if (cut) {
      EXPECT_EQ(cut->field, "manifest.version") << n;
    }
  }
  EXPECT_FALSE(DecodeBadRequestField(""));
  EXPECT_FALSE(DecodeBadRequestField("\xff\xff\xff"));
  EXPECT_FALSE(DecodeBadRequestField(EncodeBadRequestStatus(3, "x", {"", ""}).substr(0, 5)));
}

}  // namespace modelfleet
