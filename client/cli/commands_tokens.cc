// `modelfleet tokens create|list|revoke` (API tokens) and
// `modelfleet enroll-tokens create|list|revoke` (fleet enrollment tokens).
#include <iostream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/v1/admin.grpc.pb.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::cli {

namespace {

Expected<v1::Role> ParseRole(const std::string& role) {
  std::string upper = role;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  v1::Role parsed;
  if (upper.empty() || !v1::Role_Parse("ROLE_" + upper, &parsed) || parsed == v1::ROLE_UNSPECIFIED) {
    return Fail(InvalidArgument("--role", "'" + role + "' is not admin, publisher, device or viewer"));
  }
  return parsed;
}

std::string RoleName(v1::Role r) {
  std::string name = v1::Role_Name(r).substr(sizeof("ROLE_") - 1);
  for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return name;
}

KeyValues DescribeToken(const v1::Token& t) {
  return {{"id", std::to_string(t.id())},
          {"name", t.name()},
          {"role", RoleName(t.role())},
          {"created by", OrDash(t.created_by())},
          {"created", FormatTime(t.create_time())},
          {"expires", t.has_expire_time() ? FormatTime(t.expire_time()) : "never"},
          {"revoked", FormatTime(t.revoke_time())}};
}

KeyValues DescribeEnrollmentToken(const v1::EnrollmentToken& t) {
  return {{"id", std::to_string(t.id())},
          {"name", t.name()},
          {"uses", std::to_string(t.uses()) + " of " +
                       (t.max_uses() == 0 ? "unlimited" : std::to_string(t.max_uses()))},
          {"auto accept", t.auto_accept() ? "yes" : "no"},
          {"created by", OrDash(t.created_by())},
          {"created", FormatTime(t.create_time())},
          {"expires", t.has_expire_time() ? FormatTime(t.expire_time()) : "never"},
          {"revoked", FormatTime(t.revoke_time())}};
}

}  // namespace

Status CreateToken(const Settings& s, const std::string& name, const std::string& role, int64_t ttl_seconds) {
  v1::CreateTokenRequest req;
  req.set_name(name);
  MF_ASSIGN_OR_RETURN(v1::Role parsed, ParseRole(role));
  req.set_role(parsed);
  req.set_ttl_seconds(ttl_seconds);
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  Rpc rpc(s);
  v1::CreateTokenResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateToken(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] {
    KeyValues kv = DescribeToken(resp.token());
    kv.emplace_back("secret", resp.secret() + "   (shown once: only its SHA-256 is stored)");
    return kv;
  });
  return Status::Ok();
}

Status ListTokens(const Settings& s, bool include_revoked) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  v1::ListTokensRequest req;
  req.set_include_revoked(include_revoked);
  Rpc rpc(s);
  v1::ListTokensResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ListTokens(&rpc.context, req, &resp), s));
  std::vector<v1::Token> tokens(resp.tokens().begin(), resp.tokens().end());
  PrintList<v1::Token>(
      s, tokens, {"ID", "NAME", "ROLE", "CREATED BY", "CREATED", "EXPIRES", "REVOKED"},
      [](const v1::Token& t) {
        return std::vector<std::string>{
            std::to_string(t.id()),      t.name(),
            RoleName(t.role()),          OrDash(t.created_by()),
            FormatTime(t.create_time()), t.has_expire_time() ? FormatTime(t.expire_time()) : "never",
            FormatTime(t.revoke_time())};
      });
  return Status::Ok();
}

Status RevokeToken(const Settings& s, int64_t id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::AdminService>(s));
  v1::RevokeTokenRequest req;
  req.set_id(id);
  Rpc rpc(s);
  v1::Token t;
  MF_RETURN_IF_ERROR(FromGrpc(stub->RevokeToken(&rpc.context, req, &t), s));
  PrintObject(s.output, t, [&] { return DescribeToken(t); });
  return Status::Ok();
}

Status CreateEnrollmentToken(const Settings& s, const std::string& name, uint32_t max_uses,
                             int64_t ttl_seconds, bool auto_accept) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::CreateEnrollmentTokenRequest req;
  req.set_name(name);
  req.set_max_uses(max_uses);
  req.set_ttl_seconds(ttl_seconds);
  req.set_auto_accept(auto_accept);
  Rpc rpc(s);
  v1::CreateEnrollmentTokenResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateEnrollmentToken(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] {
    return KeyValues{{"id", std::to_string(resp.id())},
                     {"name", name},
                     {"token", resp.token() + "   (shown once: give it to the devices' agent config)"}};
  });
  return Status::Ok();
}

Status ListEnrollmentTokens(const Settings& s) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  Rpc rpc(s);
  v1::ListEnrollmentTokensResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ListEnrollmentTokens(&rpc.context, {}, &resp), s));
  std::vector<v1::EnrollmentToken> tokens(resp.tokens().begin(), resp.tokens().end());
  PrintList<v1::EnrollmentToken>(
      s, tokens, {"ID", "NAME", "USES", "AUTO ACCEPT", "CREATED", "EXPIRES", "REVOKED"},
      [](const v1::EnrollmentToken& t) {
        return std::vector<std::string>{
            std::to_string(t.id()),
            t.name(),
            std::to_string(t.uses()) + "/" + (t.max_uses() == 0 ? "-" : std::to_string(t.max_uses())),
            t.auto_accept() ? "yes" : "no",
            FormatTime(t.create_time()),
            t.has_expire_time() ? FormatTime(t.expire_time()) : "never",
            FormatTime(t.revoke_time())};
      });
  return Status::Ok();
}

Status RevokeEnrollmentToken(const Settings& s, int64_t id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::RevokeEnrollmentTokenRequest req;
  req.set_id(id);
  Rpc rpc(s);
  v1::EnrollmentToken t;
  MF_RETURN_IF_ERROR(FromGrpc(stub->RevokeEnrollmentToken(&rpc.context, req, &t), s));
  PrintObject(s.output, t, [&] { return DescribeEnrollmentToken(t); });
  return Status::Ok();
}

}  // namespace modelfleet::cli
