// `modelfleet models create|list|show|archive`.
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/v1/registry.grpc.pb.h"

namespace modelfleet::cli {

namespace {

KeyValues DescribeModel(const v1::Model& m) {
  return {{"name", m.name()},
          {"task", OrDash(m.task())},
          {"description", OrDash(m.description())},
          {"class labels", OrDash(Join({m.class_labels().begin(), m.class_labels().end()}, ", "))},
          {"archived", m.archived() ? "yes" : "no"},
          {"created by", OrDash(m.created_by())},
          {"created", FormatTime(m.create_time())},
          {"updated", FormatTime(m.update_time())}};
}

}  // namespace

Status CreateModel(const Settings& s, const ModelSpec& spec) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::CreateModelRequest req;
  req.mutable_model()->set_name(spec.name);
  req.mutable_model()->set_task(spec.task);
  req.mutable_model()->set_description(spec.description);
  for (const auto& l : spec.class_labels) req.mutable_model()->add_class_labels(l);
  Rpc rpc(s);
  v1::Model model;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateModel(&rpc.context, req, &model), s));
  PrintObject(s.output, model, [&] { return DescribeModel(model); });
  return Status::Ok();
}

Status ListModels(const Settings& s, bool include_archived) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::ListModelsRequest req;
  req.set_include_archived(include_archived);
  MF_ASSIGN_OR_RETURN(std::vector<v1::Model> models,
                      ListAll(s, *stub, &v1::RegistryService::Stub::ListModels, req,
                              [](const v1::ListModelsResponse& r) -> const auto& { return r.models(); }));
  PrintList<v1::Model>(s, models, {"NAME", "TASK", "CLASSES", "ARCHIVED", "CREATED"}, [](const v1::Model& m) {
    return std::vector<std::string>{m.name(), OrDash(m.task()), std::to_string(m.class_labels_size()),
                                    m.archived() ? "yes" : "no", FormatTime(m.create_time())};
  });
  return Status::Ok();
}

Status ShowModel(const Settings& s, const std::string& name) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::GetModelRequest req;
  req.set_name(name);
  Rpc rpc(s);
  v1::Model model;
  MF_RETURN_IF_ERROR(FromGrpc(stub->GetModel(&rpc.context, req, &model), s));
  PrintObject(s.output, model, [&] { return DescribeModel(model); });
  return Status::Ok();
}

Status ArchiveModel(const Settings& s, const std::string& name) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::RegistryService>(s));
  v1::ArchiveModelRequest req;
  req.set_name(name);
  Rpc rpc(s);
  v1::Model model;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ArchiveModel(&rpc.context, req, &model), s));
  PrintObject(s.output, model, [&] { return DescribeModel(model); });
  return Status::Ok();
}

}  // namespace modelfleet::cli
