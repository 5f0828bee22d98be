#include "events/event_types.h"

#include <algorithm>

namespace modelfleet::events {

namespace {

struct FamilyReaders {
  std::string_view family;
  std::vector<v1::Role> roles;
};

const std::vector<FamilyReaders>& Readers() {
  static const auto* readers = new std::vector<FamilyReaders>{
      {"model", {v1::ROLE_ADMIN, v1::ROLE_PUBLISHER, v1::ROLE_VIEWER}},
      {"version", {v1::ROLE_ADMIN, v1::ROLE_PUBLISHER, v1::ROLE_VIEWER}},
      {"alias", {v1::ROLE_ADMIN, v1::ROLE_PUBLISHER, v1::ROLE_VIEWER}},
      {"rollout", {v1::ROLE_ADMIN, v1::ROLE_PUBLISHER, v1::ROLE_VIEWER}},
      {"device", {v1::ROLE_ADMIN, v1::ROLE_VIEWER}},
      {"deployment", {v1::ROLE_ADMIN, v1::ROLE_VIEWER}},
      {"publisher_key", {v1::ROLE_ADMIN}},
      {"token", {v1::ROLE_ADMIN}},
      {"webhook", {v1::ROLE_ADMIN}},
  };
  return *readers;
}

}  // namespace

std::string_view FamilyOf(std::string_view type) { return type.substr(0, type.find('.')); }

bool MayRead(v1::Role role, std::string_view type) {
  const std::string_view family = FamilyOf(type);
  for (const auto& [name, roles] : Readers()) {
    if (name == family) return std::find(roles.begin(), roles.end(), role) != roles.end();
  }
  return false;  // a family nobody was granted: nobody reads it
}

std::vector<std::string> FamiliesVisibleTo(v1::Role role) {
  std::vector<std::string> families;
  for (const auto& [name, roles] : Readers()) {
    if (std::find(roles.begin(), roles.end(), role) != roles.end()) families.emplace_back(name);
  }
  return families;
}

bool IsKnownType(std::string_view type) {
  return std::any_of(std::begin(kEventTypes), std::end(kEventTypes),
                     [&](const EventTypeInfo& info) { return info.type == type; });
}

}  // namespace modelfleet::events
