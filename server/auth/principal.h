// Who is calling: the identity an authenticated bearer token stands for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "modelfleet/v1/admin.pb.h"

namespace modelfleet::auth {

struct Principal {
  int64_t token_id = 0;
  std::string name;
  v1::Role role = v1::ROLE_UNSPECIFIED;

  // How this principal is recorded in audit columns (created_by, alias history actor).
  std::string Actor() const { return name + "#" + std::to_string(token_id); }
};

// "admin", "publisher", "device", "viewer"; ParseRole is the inverse (nullopt if unknown).
std::string RoleName(v1::Role role);
std::optional<v1::Role> ParseRole(std::string_view name);

}  // namespace modelfleet::auth
