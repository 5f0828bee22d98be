// FilterLexer: the tokens shared by the registry's version filters and the fleet's device
// selectors: whitespace, words ([A-Za-z0-9._-]+), double-quoted strings (backslash escapes
// only a quote or a backslash); and errors that name the request field and
// column they refer to ("filter: expected a number at column 17").
#pragma once

#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "modelfleet/status.h"

namespace modelfleet {

class FilterLexer {
 public:
  FilterLexer(std::string_view input, std::string field) : in_(input), field_(std::move(field)) {}

  const std::string& field() const { return field_; }
  bool AtEnd() const { return pos_ >= in_.size(); }
  std::string_view input() const { return in_; }

  void SkipSpace() {
    while (!AtEnd() && std::isspace(static_cast<unsigned char>(in_[pos_]))) ++pos_;
  }
  static bool IsWordChar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  }
  // Skips spaces, then takes the longest run of word characters (possibly empty).
  std::string_view Word() {
    SkipSpace();
    size_t start = pos_;
    while (!AtEnd() && IsWordChar(in_[pos_])) ++pos_;
    return in_.substr(start, pos_ - start);
  }
  // A double-quoted string; `what` names what was expected in the error.
  Expected<std::string> QuotedString(std::string_view what) {
    SkipSpace();
    if (AtEnd() || in_[pos_] != '"') return Error("expected " + std::string(what));
    size_t open = pos_++;
    std::string out;
    while (!AtEnd() && in_[pos_] != '"') {
      if (in_[pos_] == '\\') {
        ++pos_;
        if (AtEnd() || (in_[pos_] != '"' && in_[pos_] != '\\')) {
          return Error("bad escape in string (only \\\" and \\\\ are allowed)");
        }
      }
      out.push_back(in_[pos_++]);
    }
    if (AtEnd()) return ErrorAt(open, "unterminated string starting");
    ++pos_;
    return out;
  }

  std::unexpected<Status> ErrorAt(size_t pos, std::string_view what) const {
    return Fail(InvalidArgument(field_, std::string(what) + " at column " + std::to_string(pos + 1)));
  }
  std::unexpected<Status> Error(std::string_view what) const { return ErrorAt(pos_, what); }

 protected:
  // Parsers built on the lexer read and move the cursor directly.
  std::string_view in_;
  std::string field_;
  size_t pos_ = 0;
};

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace modelfleet
