// `modelfleet devices list|show|accept|reject|decommission|preauthorize|history`.
#include <iostream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/device_view.h"
#include "cli/output.h"
#include "modelfleet/v1/fleet.grpc.pb.h"

namespace modelfleet::cli {

namespace {

std::string Short(const std::string& enum_name, const char* prefix) {
  return enum_name.rfind(prefix, 0) == 0 ? enum_name.substr(std::string(prefix).size()) : enum_name;
}

std::string Running(const v1::Device& d) {
  std::vector<std::string> parts;
  for (const auto& r : d.running()) parts.push_back(r.model() + "@" + r.version());
  return OrDash(Join(parts, ","));
}

// The device's events, oldest first, every page.
Expected<std::vector<v1::DeviceEvent>> FetchHistory(const Settings& s, v1::FleetService::Stub& stub,
                                                    const std::string& device_id) {
  v1::ListDeviceHistoryRequest req;
  req.set_device_id(device_id);
  return ListAll(s, stub, &v1::FleetService::Stub::ListDeviceHistory, req,
                 [](const v1::ListDeviceHistoryResponse& r) -> const auto& { return r.events(); });
}

KeyValues DescribeDevice(const v1::Device& d) {
  const auto& a = d.attributes();
  KeyValues kv = {{"device id", d.device_id()},
                  {"hardware id", d.hardware_id()},
                  {"admission", Short(v1::DeviceAdmission_Name(d.admission()), "DEVICE_ADMISSION_")},
                  {"site", OrDash(a.site())},
                  {"hardware revision", OrDash(a.hardware_revision())},
                  {"firmware", OrDash(a.firmware_version())},
                  {"sensor grid", std::to_string(a.sensor_rows()) + "x" + std::to_string(a.sensor_cols())},
                  {"labels", AlignedLines(TextEntries(a.labels()))},
                  {"running", Running(d)},
                  {"agent state", Short(v1::AgentState_Name(d.agent_state()), "AGENT_STATE_")}};
  if (d.current_deployment_id().empty()) {
    kv.emplace_back("deployment", "-");
  } else {
    kv.emplace_back("deployment", DeploymentLabel(d) + (d.current_rollout_id().empty()
                                                            ? ""
                                                            : " (" + d.current_deployment_id() + ")"));
    // In full, however long: it is what the operator came for.
    if (IsFailedStep(d.current_deployment_step())) kv.emplace_back("failure reason", OrDash(d.current_deployment_reason()));
  }
  kv.emplace_back("last seen", FormatTime(d.last_seen()));
  return kv;
}

}  // namespace

Status ListDevices(const Settings& s, const std::string& filter) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::ListDevicesRequest req;
  req.set_filter(filter);
  MF_ASSIGN_OR_RETURN(std::vector<v1::Device> devices,
                      ListAll(s, *stub, &v1::FleetService::Stub::ListDevices, req,
                              [](const v1::ListDevicesResponse& r) -> const auto& { return r.devices(); }));

  PrintList<v1::Device>(
      s, devices,
      {"DEVICE ID", "HARDWARE ID", "ADMISSION", "SITE", "HW REV", "RUNNING", "DEPLOYMENT", "LAST SEEN"},
      [&](const v1::Device& d) {
        return std::vector<std::string>{d.device_id(),
                                        d.hardware_id(),
                                        Short(v1::DeviceAdmission_Name(d.admission()), "DEVICE_ADMISSION_"),
                                        OrDash(d.attributes().site()),
                                        OrDash(d.attributes().hardware_revision()),
                                        Running(d),
                                        DeploymentLabel(d),
                                        FormatTime(d.last_seen())};
      });
  return Status::Ok();
}

Status ShowDevice(const Settings& s, const std::string& device_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  v1::GetDeviceRequest req;
  req.set_device_id(device_id);
  v1::Device d;
  {
    Rpc rpc(s);
    MF_RETURN_IF_ERROR(FromGrpc(stub->GetDevice(&rpc.context, req, &d), s));
  }
  PrintObject(s.output, d, [&] { return DescribeDevice(d); });
  return Status::Ok();
}

Status SetDeviceAdmission(const Settings& s, const std::string& device_id, const std::string& verb,
                          const std::string& reason) {
  v1::SetDeviceAdmissionRequest req;
  if (verb == "accept") {
    req.set_admission(v1::DEVICE_ADMISSION_ACCEPTED);
  } else if (verb == "reject") {
    req.set_admission(v1::DEVICE_ADMISSION_REJECTED);
  } else if (verb == "decommission") {
    req.set_admission(v1::DEVICE_ADMISSION_DECOMMISSIONED);
  } else {
    return InvalidArgument("verb", "'" + verb + "' is not accept, reject or decommission");
  }
  req.set_device_id(device_id);
  req.set_reason(reason);
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  Rpc rpc(s);
  v1::Device d;
  MF_RETURN_IF_ERROR(FromGrpc(stub->SetDeviceAdmission(&rpc.context, req, &d), s));
  PrintObject(s.output, d, [&] { return DescribeDevice(d); });
  return Status::Ok();
}

Status PreauthorizeDevice(const Settings& s, const PreauthorizeOptions& o) {
  v1::PreauthorizeDeviceRequest req;
  req.set_hardware_id(o.hardware_id);
  auto* a = req.mutable_attributes();
  a->set_hardware_revision(o.hardware_revision);
  a->set_firmware_version(o.firmware_version);
  a->set_site(o.site);
  a->set_sensor_rows(o.sensor_rows);
  a->set_sensor_cols(o.sensor_cols);
  for (const auto& kv : o.labels) {
    MF_ASSIGN_OR_RETURN(auto p, SplitPair(kv, '=', "--label"));
    (*a->mutable_labels())[p.first] = p.second;
  }
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  Rpc rpc(s);
  v1::Device d;
  MF_RETURN_IF_ERROR(FromGrpc(stub->PreauthorizeDevice(&rpc.context, req, &d), s));
  PrintObject(s.output, d, [&] { return DescribeDevice(d); });
  return Status::Ok();
}

Status DeviceHistory(const Settings& s, const std::string& device_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::FleetService>(s));
  MF_ASSIGN_OR_RETURN(std::vector<v1::DeviceEvent> events, FetchHistory(s, *stub, device_id));
  PrintList<v1::DeviceEvent>(s, events, {"TIME", "KIND", "DETAIL"}, [](const v1::DeviceEvent& e) {
    return std::vector<std::string>{FormatTime(e.time()), e.kind(), OrDash(e.detail())};
  });
  return Status::Ok();
}

}  // namespace modelfleet::cli
