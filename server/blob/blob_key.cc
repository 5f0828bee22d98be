#include "blob/blob_store.h"

namespace modelfleet::blob {

Status ValidateBlobKey(const std::string& key) {
  if (key.empty()) return InvalidArgument("key", "is empty");
  if (key.size() > 512) return InvalidArgument("key", "is longer than 512 characters");
  size_t start = 0;
  while (true) {
    size_t slash = key.find('/', start);
    std::string segment = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return InvalidArgument("key", "'" + key + "' has an empty, '.' or '..' segment");
    }
    for (char c : segment) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
      if (!ok) return InvalidArgument("key", "'" + key + "' may contain only [A-Za-z0-9._-] and '/'");
    }
    if (slash == std::string::npos) return Status::Ok();
    start = slash + 1;
  }
}

}  // namespace modelfleet::blob
