#include "modelfleet/rpc_details.h"

#include <cstdint>

namespace modelfleet {

namespace {

constexpr int kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void AppendVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void AppendBytes(std::string& out, int field, std::string_view bytes) {
  AppendVarint(out, static_cast<uint64_t>(field) << 3 | kLengthDelimited);
  AppendVarint(out, bytes.size());
  out.append(bytes);
}

// A bounds-checked reader of one message's fields.
class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : rest_(bytes) {}

  // The next field's number and wire type; false at the end or on malformed input (ok() tells).
  bool Next(int& field, int& type) {
    if (rest_.empty() || !ok_) return false;
    uint64_t key = 0;
    if (!Varint(key)) return false;
    field = static_cast<int>(key >> 3);
    type = static_cast<int>(key & 7);
    return field > 0 || Fail();
  }
  bool Bytes(std::string_view& value) {
    uint64_t size = 0;
    if (!Varint(size) || size > rest_.size()) return Fail();
    value = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return true;
  }
  bool Skip(int type) {
    uint64_t ignored = 0;
    std::string_view bytes;
    switch (type) {
      case kVarint: return Varint(ignored);
      case kLengthDelimited: return Bytes(bytes);
      case kFixed64: return Advance(8);
      case kFixed32: return Advance(4);
      default: return Fail();  // groups are not used by these messages
    }
  }
  bool ok() const { return ok_; }

 private:
  bool Varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) return Fail();
      const auto byte = static_cast<uint8_t>(rest_.front());
      rest_.remove_prefix(1);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return Fail();
  }
  bool Advance(size_t n) {
    if (n > rest_.size()) return Fail();
    rest_.remove_prefix(n);
    return true;
  }
  bool Fail() {
    ok_ = false;
    return false;
  }

  std::string_view rest_;
  bool ok_ = true;
};

// The length-delimited fields numbered `wanted` of `message`, in order; calls `each` until it
// returns true. False if the message is malformed.
template <typename Each>
bool ForEachBytesField(std::string_view message, int wanted, Each each) {
  WireReader reader(message);
  int field = 0, type = 0;
  while (reader.Next(field, type)) {
    if (field == wanted && type == kLengthDelimited) {
      std::string_view value;
      if (!reader.Bytes(value)) return false;
      if (each(value)) return true;
    } else if (!reader.Skip(type)) {
      return false;
    }
  }
  return reader.ok();
}

}  // namespace

std::string EncodeBadRequest(const FieldViolation& violation) {
  std::string field_violation;
  AppendBytes(field_violation, 1, violation.field);
  AppendBytes(field_violation, 2, violation.description);
  std::string bad_request;
  AppendBytes(bad_request, 1, field_violation);
  return bad_request;
}

std::string EncodeBadRequestStatus(int code, std::string_view message, const FieldViolation& violation) {
  std::string any;
  AppendBytes(any, 1, kBadRequestTypeUrl);
  AppendBytes(any, 2, EncodeBadRequest(violation));
  std::string status;
  AppendVarint(status, 1 << 3 | kVarint);
  AppendVarint(status, static_cast<uint64_t>(static_cast<int64_t>(code)));  // int32: sign-extended
  AppendBytes(status, 2, message);
  AppendBytes(status, 3, any);
  return status;
}

std::optional<FieldViolation> DecodeBadRequestField(std::string_view status_bytes) {
  std::optional<FieldViolation> found;
  ForEachBytesField(status_bytes, 3, [&](std::string_view any) {
    std::string_view type_url, value;
    bool has_value = false;
    ForEachBytesField(any, 1, [&](std::string_view url) { return type_url = url, true; });
    ForEachBytesField(any, 2, [&](std::string_view v) { return value = v, has_value = true; });
    if (type_url != kBadRequestTypeUrl || !has_value) return false;
    ForEachBytesField(value, 1, [&](std::string_view violation) {
      FieldViolation v;
      ForEachBytesField(violation, 1, [&](std::string_view f) { return v.field = std::string(f), true; });
      ForEachBytesField(violation, 2, [&](std::string_view d) { return v.description = std::string(d), true; });
      found = std::move(v);
      return true;
    });
    return found.has_value();
  });
  return found;
}

}  // namespace modelfleet
