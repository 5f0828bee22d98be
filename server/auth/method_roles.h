// The single table of which roles may call which RPC. Every RPC the server serves has an
// entry (a test checks this against the service descriptors); a method missing from the
// table is denied to everyone.
#pragma once

#include <string_view>
#include <vector>

#include "auth/principal.h"
#include "modelfleet/status.h"

namespace modelfleet::auth {

// Full gRPC method name: "/modelfleet.v1.RegistryService/PushVersion".
// OK if `principal`'s role may call `method`; PERMISSION_DENIED (naming the role and the
// method) otherwise.
Status AuthorizeMethod(const Principal& principal, std::string_view method);

// The roles allowed for `method`; empty if the method is unknown.
std::vector<v1::Role> AllowedRoles(std::string_view method);

}  // namespace modelfleet::auth
