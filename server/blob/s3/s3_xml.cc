#include "blob/s3/s3_xml.h"

#include <charconv>
#include <cstdint>

namespace modelfleet::blob::s3 {
namespace {

// Finds the elements <tag ...>inner</tag> (or <tag/>) and returns their raw inner text.
std::vector<std::string_view> RawElements(std::string_view xml, std::string_view tag,
                                          size_t max_count) {
  std::vector<std::string_view> found;
  const std::string open = "<" + std::string(tag);
  const std::string close = "</" + std::string(tag) + ">";
  size_t pos = 0;
  while (found.size() < max_count) {
    pos = xml.find(open, pos);
    if (pos == std::string_view::npos) break;
    size_t after = pos + open.size();
    if (after >= xml.size()) break;
    const char next = xml[after];
    if (next != '>' && next != '/' && next != ' ' && next != '\t' && next != '\r' &&
        next != '\n') {
      pos = after;  // a longer tag name sharing the prefix (<KeyCount> for <Key>)
      continue;
    }
    const size_t tag_end = xml.find('>', after);
    if (tag_end == std::string_view::npos) break;
    if (xml[tag_end - 1] == '/') {  // <tag/>
      found.emplace_back();
      pos = tag_end + 1;
      continue;
    }
    const size_t close_pos = xml.find(close, tag_end + 1);
    if (close_pos == std::string_view::npos) break;
    found.push_back(xml.substr(tag_end + 1, close_pos - tag_end - 1));
    pos = close_pos + close.size();
  }
  return found;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

std::vector<std::string_view> XmlRawElements(std::string_view xml, std::string_view tag) {
  return RawElements(xml, tag, SIZE_MAX);
}

std::string XmlUnescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    const size_t semi = text.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out.push_back(text[i++]);
      continue;
    }
    const std::string_view entity = text.substr(i + 1, semi - i - 1);
    std::optional<uint32_t> code_point;
    if (entity == "amp") code_point = '&';
    else if (entity == "lt") code_point = '<';
    else if (entity == "gt") code_point = '>';
    else if (entity == "quot") code_point = '"';
    else if (entity == "apos") code_point = '\'';
    else if (entity.size() > 1 && entity[0] == '#') {
      const bool hex = entity[1] == 'x' || entity[1] == 'X';
      const std::string_view digits = entity.substr(hex ? 2 : 1);
      uint32_t value = 0;
      auto [ptr, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), value, hex ? 16 : 10);
      if (!digits.empty() && ec == std::errc() && ptr == digits.data() + digits.size() &&
          value <= 0x10FFFF) {
        code_point = value;
      }
    }
    if (!code_point) {
      out.push_back(text[i++]);
      continue;
    }
    AppendUtf8(out, *code_point);
    i = semi + 1;
  }
  return out;
}

std::optional<std::string> XmlFirstElement(std::string_view xml, std::string_view tag) {
  auto found = RawElements(xml, tag, 1);
  if (found.empty()) return std::nullopt;
  return XmlUnescape(found.front());
}

std::vector<std::string> XmlAllElements(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  for (std::string_view raw : RawElements(xml, tag, SIZE_MAX)) out.push_back(XmlUnescape(raw));
  return out;
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

Status StatusFromS3Error(std::string_view operation, long http_status, std::string_view body) {
  const std::optional<std::string> code = XmlFirstElement(body, "Code");
  const std::optional<std::string> message = XmlFirstElement(body, "Message");
  std::string text = std::string(operation) + ": HTTP " + std::to_string(http_status);
  if (code) text += " " + *code;
  if (message && !message->empty()) text += ": " + *message;

  if (code) {
    static const char* const kUnauthenticated[] = {
        "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed",
        "InvalidToken",       "ExpiredToken",          "TokenRefreshRequired",
        "RequestTimeTooSkewed", "MissingSecurityHeader", "InvalidSecurity"};
    static const char* const kUnavailable[] = {"SlowDown",      "ServiceUnavailable",
                                               "InternalError", "RequestTimeout",
                                               "OperationAborted", "XMinioServerNotInitialized"};
    for (const char* c : kUnauthenticated) {
      if (*code == c) return Unauthenticated(text + " (check the S3 access key and secret)");
    }
    for (const char* c : kUnavailable) {
      if (*code == c) return Unavailable(text);
    }
    if (*code == "AccessDenied" || *code == "AllAccessDisabled" || *code == "AccountProblem") {
      return PermissionDenied(text);
    }
    if (*code == "NoSuchKey") return NotFound(text);
    if (*code == "NoSuchBucket") return FailedPrecondition(text + " (bucket does not exist)");
    if (*code == "NoSuchUpload") {
      return Status(StatusCode::kAborted, text + " (the multipart upload was aborted)");
    }
    if (*code == "InvalidRange") return Status(StatusCode::kOutOfRange, text);
  }
  if (http_status == 401) return Unauthenticated(text);
  if (http_status == 403) return PermissionDenied(text);
  if (http_status == 404) return NotFound(text);
  if (http_status == 416) return Status(StatusCode::kOutOfRange, text);
  if (http_status == 408 || http_status == 429 || http_status >= 500) return Unavailable(text);
  return Internal(text);
}

}  // namespace modelfleet::blob::s3
