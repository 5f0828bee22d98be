// `modelfleet webhooks add|list|remove|test|deliveries|replay`: event subscriptions by URL.
#include <iostream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "modelfleet/v1/webhooks.grpc.pb.h"

namespace modelfleet::cli {

namespace {

std::string Types(const v1::Webhook& w) {
  std::string out;
  for (const auto& t : w.event_types()) out += (out.empty() ? "" : ",") + t;
  return out.empty() ? "*" : out;
}

KeyValues DescribeWebhook(const v1::Webhook& w) {
  return {{"id", std::to_string(w.id())},
          {"url", w.url()},
          {"types", Types(w)},
          {"created by", OrDash(w.created_by())},
          {"created", FormatTime(w.created_at())},
          {"pending", std::to_string(w.pending())},
          {"dead", std::to_string(w.dead())}};
}

std::string StateName(v1::WebhookDeliveryState state) {
  std::string name = v1::WebhookDeliveryState_Name(state).substr(sizeof("WEBHOOK_DELIVERY_STATE_") - 1);
  for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return name;
}

Expected<v1::WebhookDeliveryState> ParseState(const std::string& state) {
  if (state.empty()) return v1::WEBHOOK_DELIVERY_STATE_UNSPECIFIED;
  std::string upper = state;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  v1::WebhookDeliveryState parsed;
  if (!v1::WebhookDeliveryState_Parse("WEBHOOK_DELIVERY_STATE_" + upper, &parsed) ||
      parsed == v1::WEBHOOK_DELIVERY_STATE_UNSPECIFIED) {
    return Fail(InvalidArgument("--state", "'" + state + "' is not pending, delivered or dead"));
  }
  return parsed;
}

}  // namespace

Status AddWebhook(const Settings& s, const std::string& url, const std::vector<std::string>& types) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  v1::CreateWebhookRequest req;
  req.set_url(url);
  for (const auto& t : types) req.add_event_types(t);
  Rpc rpc(s);
  v1::CreateWebhookResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->CreateWebhook(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] {
    KeyValues kv = DescribeWebhook(resp.webhook());
    kv.emplace_back("secret", resp.secret() + "   (shown once: verify Modelfleet-Signature with it)");
    return kv;
  });
  return Status::Ok();
}

Status ListWebhooks(const Settings& s) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  Rpc rpc(s);
  v1::ListWebhooksResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ListWebhooks(&rpc.context, v1::ListWebhooksRequest(), &resp), s));
  std::vector<v1::Webhook> hooks(resp.webhooks().begin(), resp.webhooks().end());
  PrintList<v1::Webhook>(s, hooks, {"ID", "URL", "TYPES", "PENDING", "DEAD", "CREATED BY", "CREATED"},
                         [](const v1::Webhook& w) {
                           return std::vector<std::string>{std::to_string(w.id()),
                                                           w.url(),
                                                           Types(w),
                                                           std::to_string(w.pending()),
                                                           std::to_string(w.dead()),
                                                           OrDash(w.created_by()),
                                                           FormatTime(w.created_at())};
                         });
  return Status::Ok();
}

Status RemoveWebhook(const Settings& s, int64_t id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  v1::DeleteWebhookRequest req;
  req.set_id(id);
  Rpc rpc(s);
  v1::DeleteWebhookResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->DeleteWebhook(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] { return KeyValues{{"removed", std::to_string(id)}}; });
  return Status::Ok();
}

Status TestWebhook(const Settings& s, int64_t id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  v1::TestWebhookRequest req;
  req.set_id(id);
  Rpc rpc(s);
  v1::TestWebhookResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->TestWebhook(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] {
    return KeyValues{{"delivered", resp.delivered() ? "yes" : "no"},
                     {"http status", resp.http_status() == 0 ? "-" : std::to_string(resp.http_status())},
                     {"error", OrDash(resp.error())}};
  });
  if (!resp.delivered())
    return FailedPrecondition("the receiver did not accept the test event: " + resp.error());
  return Status::Ok();
}

Status ListWebhookDeliveries(const Settings& s, int64_t id, const std::string& state) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  v1::ListDeliveriesRequest req;
  req.set_webhook_id(id);
  MF_ASSIGN_OR_RETURN(auto parsed, ParseState(state));
  req.set_state(parsed);
  req.set_page_size(1000);
  Rpc rpc(s);
  v1::ListDeliveriesResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ListDeliveries(&rpc.context, req, &resp), s));
  std::vector<v1::WebhookDelivery> items(resp.deliveries().begin(), resp.deliveries().end());
  PrintList<v1::WebhookDelivery>(
      s, items, {"ID", "EVENT", "TYPE", "STATE", "ATTEMPTS", "LAST STATUS", "NEXT ATTEMPT", "LAST ERROR"},
      [](const v1::WebhookDelivery& d) {
        return std::vector<std::string>{
            std::to_string(d.id()),
            std::to_string(d.event_id()),
            d.event_type(),
            StateName(d.state()),
            std::to_string(d.attempts()),
            d.last_http_status() == 0 ? "-" : std::to_string(d.last_http_status()),
            d.state() == v1::WEBHOOK_DELIVERY_STATE_PENDING ? FormatTime(d.next_attempt_at()) : "-",
            OrDash(d.last_error())};
      });
  return Status::Ok();
}

Status ReplayWebhookDeliveries(const Settings& s, int64_t id, int64_t delivery_id) {
  MF_ASSIGN_OR_RETURN(auto stub, MakeStub<v1::WebhookService>(s));
  v1::ReplayDeliveriesRequest req;
  req.set_webhook_id(id);
  req.set_delivery_id(delivery_id);
  Rpc rpc(s);
  v1::ReplayDeliveriesResponse resp;
  MF_RETURN_IF_ERROR(FromGrpc(stub->ReplayDeliveries(&rpc.context, req, &resp), s));
  PrintObject(s.output, resp, [&] { return KeyValues{{"replayed", std::to_string(resp.replayed())}}; });
  return Status::Ok();
}

}  // namespace modelfleet::cli
