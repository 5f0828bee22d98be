// `modelfleet alias set|move|history`.
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/v1/registry.grpc.pb.h"

namespace modelfleet::cli {

Status SetAlias(const Settings& s, const std::string& model, const std::string& alias,
                const std::string& version, const std::string& reason, const std::string& expected_current) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::SetAliasRequest req;
  req.set_model(model);
  req.set_alias(alias);
  req.set_version(version);
  req.set_reason(reason);
  req.set_expected_current_version(expected_current);
  Rpc rpc(s);
  v1::Alias a;
  grpc::Status status = stub->SetAlias(&rpc.context, req, &a);
  if (status.error_code() == grpc::StatusCode::ABORTED) {
    return Status(StatusCode::kAborted,
                  model + "@" + alias + " was not at " +
                      (expected_current == "-" ? std::string("nothing (it exists)") : expected_current) +
                      ", nothing moved: " + status.error_message());
  }
  MF_RETURN_IF_ERROR(FromGrpc(status, s));
  PrintObject(s.output, a, [&] {
    return KeyValues{{"alias", a.model() + "@" + a.alias()},
                     {"version", a.version()},
                     {"updated by", OrDash(a.updated_by())},
                     {"updated", FormatTime(a.update_time())}};
  });
  return Status::Ok();
}

Status AliasHistory(const Settings& s, const std::string& model, const std::string& alias) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::ListAliasHistoryRequest req;
  req.set_model(model);
  req.set_alias(alias);
  MF_ASSIGN_OR_RETURN(std::vector<v1::AliasChange> changes,
                      ListAll(s, *stub, &v1::RegistryService::Stub::ListAliasHistory, req,
                              [](const v1::ListAliasHistoryResponse& r) -> const auto& { return r.changes(); }));
  PrintList<v1::AliasChange>(
      s, changes, {"TIME", "ALIAS", "FROM", "TO", "ACTOR", "REASON"}, [](const v1::AliasChange& c) {
        return std::vector<std::string>{FormatTime(c.time()),   c.alias(),         OrDash(c.from_version()),
                                        OrDash(c.to_version()), OrDash(c.actor()), OrDash(c.reason())};
      });
  return Status::Ok();
}

}  // namespace modelfleet::cli
