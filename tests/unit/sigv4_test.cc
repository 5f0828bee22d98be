// AWS Signature V4 checked against the worked examples published in the AWS S3 API documentation
// ("Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"):
// access key AKIAIOSFODNN7EXAMPLE, secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, timestamp
// 20130524T000000Z, bucket examplebucket (virtual-hosted style), region us-east-1. Each example
// compares the canonical request, the string to sign and the signature with the published ones.
#include "blob/s3/sigv4.h"

#include <gtest/gtest.h>

#include <string>

namespace modelfleet::blob::s3 {
namespace {

constexpr char kAmzDate[] = "20130524T000000Z";
constexpr char kHost[] = "examplebucket.s3.amazonaws.com";
constexpr char kEmptyHash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

SigV4Credentials ExampleCredentials() {
  return {.access_key = "AKIAIOSFODNN7EXAMPLE",
          .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
          .region = "us-east-1",
          .service = "s3"};
}

SigV4Signature MustSign(const SigV4Request& request) {
  auto signed_request = SignRequest(request, ExampleCredentials(), kAmzDate);
  EXPECT_TRUE(signed_request.has_value()) << signed_request.error().ToString();
  return signed_request.value_or(SigV4Signature{});
}

TEST(SigV4AwsExamples, GetObjectWithRange) {
  SigV4Request request{.method = "GET",
                       .path = "/test.txt",
                       .query = {},
                       .headers = {{"Host", kHost},
                                   {"Range", "bytes=0-9"},
                                   {"x-amz-content-sha256", kEmptyHash},
                                   {"x-amz-date", kAmzDate}},
                       .payload_hash = kEmptyHash};
  const SigV4Signature s = MustSign(request);
  EXPECT_EQ(s.canonical_request,
            "GET\n"
            "/test.txt\n"
            "\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "range:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n"
            "\n"
            "host;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n"
            "20130524T000000Z\n"
            "20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4AwsExamples, PutObjectWithReservedCharacterInKey) {
  auto payload_hash = Sha256Hex(std::string_view("Welcome to Amazon S3."));
  ASSERT_TRUE(payload_hash.has_value());
  ASSERT_EQ(*payload_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  SigV4Request request{.method = "PUT",
                       .path = "/test$file.text",
                       .query = {},
                       .headers = {{"Host", kHost},
                                   {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                   {"x-amz-date", kAmzDate},
                                   {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                   {"x-amz-content-sha256", *payload_hash}},
                       .payload_hash = *payload_hash};
  const SigV4Signature s = MustSign(request);
  EXPECT_EQ(s.canonical_request,
            "PUT\n"
            "/test%24file.text\n"
            "\n"
            "date:Fri, 24 May 2013 00:00:00 GMT\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
            "x-amz-date:20130524T000000Z\n"
            "x-amz-storage-class:REDUCED_REDUNDANCY\n"
            "\n"
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n"
            "20130524T000000Z\n"
            "20130524/us-east-1/s3/aws4_request\n"
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  EXPECT_EQ(s.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
}

TEST(SigV4AwsExamples, GetBucketLifecycleQueryWithoutValue) {
  SigV4Request request{.method = "GET",
                       .path = "/",
                       .query = {{"lifecycle", ""}},
                       .headers = {{"Host", kHost},
                                   {"x-amz-date", kAmzDate},
                                   {"x-amz-content-sha256", kEmptyHash}},
                       .payload_hash = kEmptyHash};
  const SigV4Signature s = MustSign(request);
  EXPECT_EQ(s.canonical_request,
            "GET\n"
            "/\n"
            "lifecycle=\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n"
            "\n"
            "host;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n"
            "20130524T000000Z\n"
            "20130524/us-east-1/s3/aws4_request\n"
            "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  EXPECT_EQ(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4AwsExamples, ListObjectsSortsQueryParameters) {
  // Given in the opposite order to the canonical one: signing must sort them.
  SigV4Request request{.method = "GET",
                       .path = "/",
                       .query = {{"prefix", "J"}, {"max-keys", "2"}},
                       .headers = {{"x-amz-date", kAmzDate},
                                   {"x-amz-content-sha256", kEmptyHash},
                                   {"Host", kHost}},
                       .payload_hash = kEmptyHash};
  const SigV4Signature s = MustSign(request);
  EXPECT_EQ(s.canonical_request,
            "GET\n"
            "/\n"
            "max-keys=2&prefix=J\n"
            "host:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n"
            "\n"
            "host;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s.string_to_sign,
            "AWS4-HMAC-SHA256\n"
            "20130524T000000Z\n"
            "20130524/us-east-1/s3/aws4_request\n"
            "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
  EXPECT_EQ(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// The signing-key derivation example of the AWS general reference (service iam).
TEST(SigV4, SigningKeyMatchesPublishedDerivation) {
  auto key = SigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
  ASSERT_TRUE(key.has_value());
  std::string hex;
  for (uint8_t b : *key) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 0xf]);
  }
  EXPECT_EQ(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(SigV4, EmptyPayloadHashConstantIsSha256OfNothing) {
  auto hash = Sha256Hex(std::string_view());
  ASSERT_TRUE(hash.has_value());
  EXPECT_EQ(*hash, kEmptyPayloadSha256);
}

TEST(SigV4, ChangingAnySignedInputChangesTheSignature) {
  SigV4Request base{.method = "GET",
                    .path = "/bucket/sha256/ab",
                    .query = {},
                    .headers = {{"host", "127.0.0.1:9000"},
                                {"x-amz-date", kAmzDate},
                                {"x-amz-content-sha256", kEmptyHash}},
                    .payload_hash = kEmptyHash};
  const std::string original = MustSign(base).signature;
  SigV4Request other_path = base;
  other_path.path = "/bucket/sha256/ac";
  SigV4Request other_host = base;
  other_host.headers[0].second = "127.0.0.1:9001";
  SigV4Request other_query = base;
  other_query.query = {{"uploads", ""}};
  EXPECT_NE(MustSign(other_path).signature, original);
  EXPECT_NE(MustSign(other_host).signature, original);
  EXPECT_NE(MustSign(other_query).signature, original);
  auto other_secret = SignRequest(base, {"AKIAIOSFODNN7EXAMPLE", "other", "us-east-1", "s3"},
                                  kAmzDate);
  ASSERT_TRUE(other_secret.has_value());
  EXPECT_NE(other_secret->signature, original);
}

TEST(SigV4, RejectsMalformedTimestamp) {
  SigV4Request request{.method = "GET", .path = "/", .query = {}, .headers = {},
                       .payload_hash = kEmptyHash};
  for (const char* bad : {"", "20130524", "2013-05-24T00:00:00Z", "20130524T000000", "2013052XT000000Z"}) {
    auto result = SignRequest(request, ExampleCredentials(), bad);
    ASSERT_FALSE(result.has_value()) << bad;
    EXPECT_EQ(result.error().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(SigV4, FormatsAmzDateInUtc) {
  EXPECT_EQ(FormatAmzDate(1369353600), "20130524T000000Z");  // 2013-05-24 00:00:00 UTC
  EXPECT_EQ(FormatAmzDate(0), "19700101T000000Z");
  EXPECT_EQ(FormatAmzDate(1709251199), "20240229T235959Z");  // leap day
}

TEST(UriEncode, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UriEncode("AZaz09-._~", true), "AZaz09-._~");
  EXPECT_EQ(UriEncode("a b", true), "a%20b");  // space is %20, never '+'
  EXPECT_EQ(UriEncode("a+b=c&d", true), "a%2Bb%3Dc%26d");
  EXPECT_EQ(UriEncode("*!'()$", true), "%2A%21%27%28%29%24");
  EXPECT_EQ(UriEncode("100%", true), "100%25");
  EXPECT_EQ(UriEncode("", true), "");
}

TEST(UriEncode, SlashIsKeptOnlyInPaths) {
  EXPECT_EQ(UriEncode("sha256/ab", false), "sha256/ab");
  EXPECT_EQ(UriEncode("sha256/ab", true), "sha256%2Fab");
}

TEST(UriEncode, EncodesUtf8BytesWithUpperCaseHex) {
  EXPECT_EQ(UriEncode("\xE2\x82\xAC", true), "%E2%82%AC");  // U+20AC EURO SIGN
  EXPECT_EQ(UriEncode("\xC3\xA9", false), "%C3%A9");       // U+00E9
  EXPECT_EQ(UriEncode(std::string_view("\x00\xff", 2), true), "%00%FF");
}

TEST(CanonicalUri, EncodesOnceAndDoesNotNormalize) {
  EXPECT_EQ(CanonicalUri(""), "/");
  EXPECT_EQ(CanonicalUri("/"), "/");
  EXPECT_EQ(CanonicalUri("/test$file.text"), "/test%24file.text");
  // S3 keys are taken literally: no dot-segment removal, no slash merging.
  EXPECT_EQ(CanonicalUri("/bucket/a//b/../c/./d"), "/bucket/a//b/../c/./d");
  // A '%' in the raw key is data, so it is encoded (S3 does not double-encode; this is the one
  // encoding of the raw key).
  EXPECT_EQ(CanonicalUri("/bucket/a%2Fb"), "/bucket/a%252Fb");
  EXPECT_EQ(CanonicalUri("/bucket/my file.txt"), "/bucket/my%20file.txt");
}

TEST(CanonicalQueryString, SortsByEncodedNameThenValue) {
  EXPECT_EQ(CanonicalQueryString({}), "");
  EXPECT_EQ(CanonicalQueryString({{"b", "1"}, {"a", "2"}, {"a", "1"}}), "a=1&a=2&b=1");
  // Upper case sorts before lower case (byte order), as does '%' before letters.
  EXPECT_EQ(CanonicalQueryString({{"a", "x"}, {"B", "y"}, {"~", "z"}, {"a b", "w"}}),
            "B=y&a=x&a%20b=w&~=z");
  EXPECT_EQ(CanonicalQueryString({{"prefix", "sha256/a b"}, {"list-type", "2"}}),
            "list-type=2&prefix=sha256%2Fa%20b");
  EXPECT_EQ(CanonicalQueryString({{"uploadId", "x+y/z="}, {"partNumber", "3"}}),
            "partNumber=3&uploadId=x%2By%2Fz%3D");
}

TEST(CanonicalizeHeaders, LowerCasesTrimsCollapsesAndJoinsRepeats) {
  CanonicalHeaders h = CanonicalizeHeaders({{"X-Amz-Meta-B", "  two   spaces  here "},
                                            {"Host", "h:1"},
                                            {"x-amz-meta-a", "1"},
                                            {"X-AMZ-META-A", "2"}});
  EXPECT_EQ(h.block,
            "host:h:1\n"
            "x-amz-meta-a:1,2\n"
            "x-amz-meta-b:two spaces here\n");
  EXPECT_EQ(h.signed_headers, "host;x-amz-meta-a;x-amz-meta-b");
}

}  // namespace
}  // namespace modelfleet::blob::s3
