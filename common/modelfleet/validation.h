// Syntax rules for names and versions, shared by the server, the agent and the CLI.
// Each returns OK or INVALID_ARGUMENT naming `field` and saying what is wrong.
#pragma once

#include <string>
#include <string_view>

#include "modelfleet/status.h"

namespace modelfleet {

// Model names: [a-z0-9][a-z0-9._-]{0,62}
Status ValidateModelName(std::string_view name, const std::string& field);
// Alias names: [a-z][a-z0-9_-]{0,62}
Status ValidateAliasName(std::string_view alias, const std::string& field);
// Semantic Versioning 2.0.0 (https://semver.org), at most 128 characters.
Status ValidateSemVer(std::string_view version, const std::string& field);
// Identifiers such as key ids: [A-Za-z0-9._-]{1,64}
Status ValidateIdentifier(std::string_view id, const std::string& field);
// Free text (descriptions, reasons): at most `max_bytes`, valid UTF-8, no NUL.
Status ValidateText(std::string_view text, size_t max_bytes, const std::string& field);

bool IsValidUtf8(std::string_view s);

}  // namespace modelfleet
