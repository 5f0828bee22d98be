#include "modelfleet/validation.h"

namespace modelfleet {

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// semver: numeric identifiers have no leading zeros.
bool IsNumericIdentifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return s.size() == 1 || s[0] != '0';
}

bool IsDotSeparated(std::string_view s, bool numeric_without_leading_zero) {
  if (s.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (part.empty()) return false;
    bool all_digits = true;
    for (char c : part) {
      if (!(IsAlnum(c) || c == '-')) return false;
      if (c < '0' || c > '9') all_digits = false;
    }
    if (numeric_without_leading_zero && all_digits && !IsNumericIdentifier(part)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

Status ValidateModelName(std::string_view name, const std::string& field) {
  if (name.empty()) return InvalidArgument(field, "is required");
  if (name.size() > 63) return InvalidArgument(field, "is longer than 63 characters");
  if (!IsLowerAlnum(name[0])) {
    return InvalidArgument(field, "must start with a lowercase letter or digit");
  }
  for (char c : name) {
    if (!(IsLowerAlnum(c) || c == '.' || c == '_' || c == '-')) {
      return InvalidArgument(field, "may contain only a-z, 0-9, '.', '_' and '-'");
    }
  }
  return Status::Ok();
}

Status ValidateAliasName(std::string_view alias, const std::string& field) {
  if (alias.empty()) return InvalidArgument(field, "is required");
  if (alias.size() > 63) return InvalidArgument(field, "is longer than 63 characters");
  if (!(alias[0] >= 'a' && alias[0] <= 'z')) {
    return InvalidArgument(field, "must start with a lowercase letter");
  }
  for (char c : alias) {
    if (!(IsLowerAlnum(c) || c == '_' || c == '-')) {
      return InvalidArgument(field, "may contain only a-z, 0-9, '_' and '-'");
    }
  }
  return Status::Ok();
}

Status ValidateSemVer(std::string_view v, const std::string& field) {
  if (v.empty()) return InvalidArgument(field, "is required");
  if (v.size() > 128) return InvalidArgument(field, "is longer than 128 characters");
  const auto bad = [&] {
    return InvalidArgument(field, "'" + std::string(v) +
                                      "' is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])");
  };
  std::string_view rest = v;
  std::string_view build, pre;
  if (size_t plus = rest.find('+'); plus != rest.npos) {
    build = rest.substr(plus + 1);
    rest = rest.substr(0, plus);
    if (!IsDotSeparated(build, false)) return bad();
  }
  if (size_t dash = rest.find('-'); dash != rest.npos) {
    pre = rest.substr(dash + 1);
    rest = rest.substr(0, dash);
    if (!IsDotSeparated(pre, true)) return bad();
  }
  int parts = 0;
  size_t start = 0;
  while (true) {
    size_t dot = rest.find('.', start);
    std::string_view part = rest.substr(start, dot == rest.npos ? rest.npos : dot - start);
    if (!IsNumericIdentifier(part) || part.size() > 18) return bad();
    ++parts;
    if (dot == rest.npos) break;
    start = dot + 1;
  }
  if (parts != 3) return bad();
  return Status::Ok();
}

Status ValidateIdentifier(std::string_view id, const std::string& field) {
  if (id.empty()) return InvalidArgument(field, "is required");
  if (id.size() > 64) return InvalidArgument(field, "is longer than 64 characters");
  for (char c : id) {
    if (!(IsAlnum(c) || c == '.' || c == '_' || c == '-')) {
      return InvalidArgument(field, "may contain only A-Z, a-z, 0-9, '.', '_' and '-'");
    }
  }
  return Status::Ok();
}

bool IsValidUtf8(std::string_view s) {
  // RFC 3629 section 4: the second byte's range depends on the first byte, which rules out
  // overlong forms, UTF-16 surrogates and code points above U+10FFFF.
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t continuation;
    unsigned char second_min = 0x80, second_max = 0xbf;
    if (c < 0x80) {
      continuation = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
      continuation = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      continuation = 2;
      if (c == 0xe0) second_min = 0xa0;
      if (c == 0xed) second_max = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      continuation = 3;
      if (c == 0xf0) second_min = 0x90;
      if (c == 0xf4) second_max = 0x8f;
    } else {
      return false;  // stray continuation byte, overlong lead, or out of range
    }
    if (continuation > s.size() - i - 1) return false;
    for (size_t k = 1; k <= continuation; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < second_min || b > second_max) : (b >> 6) != 0x2) return false;
    }
    i += continuation + 1;
  }
  return true;
}

Status ValidateText(std::string_view text, size_t max_bytes, const std::string& field) {
  if (text.size() > max_bytes) {
    return InvalidArgument(field, "is longer than " + std::to_string(max_bytes) + " bytes");
  }
  if (text.find('\0') != text.npos) return InvalidArgument(field, "contains a NUL byte");
  if (!IsValidUtf8(text)) return InvalidArgument(field, "is not valid UTF-8");
  return Status::Ok();
}

}  // namespace modelfleet
