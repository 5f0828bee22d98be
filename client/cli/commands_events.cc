// `modelfleet events tail`: the server's event log, one line per event.
#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/v1/events.grpc.pb.h"

namespace modelfleet::cli {

namespace {

constexpr int kPageSize = 500;

// "42  2026-01-02 15:04:05Z  rollout.paused  rollout/ro-3  admin#1  {"reason":"..."}"
std::string EventLineOf(const v1::Event& e) {
  std::string payload;
  (void)google::protobuf::util::MessageToJsonString(e.payload(), &payload);
  return std::to_string(e.id()) + "  " + FormatTime(e.time()) + "  " + e.type() + "  " + e.subject_kind() + "/" +
         e.subject_id() + "  " + e.actor() + "  " + payload;
}

void Print(const Settings& s, const v1::Event& e) {
  if (s.output == OutputFormat::kJson) {
    std::cout << ToJson(e) << std::endl;  // one object per line, as `rollouts watch -o json`
  } else {
    std::cout << EventLineOf(e) << std::endl;
  }
}

}  // namespace

Status TailEvents(const Settings& s, const TailEventsOptions& o) {
  v1::EventFilter filter;
  for (const std::string& type : o.types) filter.add_types(type);
  if (!o.subject.empty()) {
    const size_t slash = o.subject.find('/');
    filter.set_subject_kind(o.subject.substr(0, slash));
    if (slash != std::string::npos) filter.set_subject_id(o.subject.substr(slash + 1));
  }
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::EventService>(s));
  if (o.follow) {
    v1::WatchEventsRequest req;
    req.set_after_id(o.since);
    *req.mutable_filter() = filter;
    Rpc rpc(s, /*streaming=*/true);
    auto reader = stub->WatchEvents(&rpc.context, req);
    v1::Event event;
    while (reader->Read(&event)) Print(s, event);
    return FromGrpc(reader->Finish(), s);
  }
  int64_t after = o.since;
  while (true) {
    v1::ListEventsRequest req;
    req.set_after_id(after);
    req.set_page_size(kPageSize);
    *req.mutable_filter() = filter;
    Rpc rpc(s);
    v1::ListEventsResponse resp;
    MF_RETURN_IF_ERROR(FromGrpc(stub->ListEvents(&rpc.context, req, &resp), s));
    for (const v1::Event& event : resp.events()) Print(s, event);
    if (resp.events_size() < kPageSize || resp.next_after_id() <= after) return Status::Ok();
    after = resp.next_after_id();
  }
}

}  // namespace modelfleet::cli
