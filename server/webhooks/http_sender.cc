// The one file that includes cpp-httplib's client (see check_layering.py).
#include <httplib.h>

#include <chrono>
#include <exception>

#include "webhooks/delivery.h"

namespace modelfleet::webhooks {

namespace {

class HttpSender final : public WebhookSender {
 public:
  WebhookResponse Post(const WebhookRequest& request, std::chrono::milliseconds timeout) override {
    try {
      // "scheme://host:port" and the path; the URL was validated at creation.
      const std::string& url = request.url;
      const size_t authority = url.find("://") + 3;
      const size_t slash = url.find('/', authority);
      const std::string origin = url.substr(0, slash);
      const std::string path = slash == std::string::npos ? "/" : url.substr(slash);
      httplib::Client client(origin);
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
      const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout - seconds);
      client.set_connection_timeout(seconds.count(), micros.count());
      client.set_read_timeout(seconds.count(), micros.count());
      client.set_write_timeout(seconds.count(), micros.count());
      client.set_follow_location(false);
      client.set_keep_alive(false);
      httplib::Headers headers;
      for (const auto& [name, value] : request.headers) headers.emplace(name, value);
      auto result = client.Post(path, headers, request.body, "application/json");
      if (!result) return {0, httplib::to_string(result.error())};
      WebhookResponse response{result->status, {}};
      if (!response.delivered()) response.error = "HTTP " + std::to_string(result->status);
      return response;
    } catch (const std::exception& e) {
      return {0, e.what()};
    }
  }
};

}  // namespace

std::unique_ptr<WebhookSender> MakeHttpSender() { return std::make_unique<HttpSender>(); }

}  // namespace modelfleet::webhooks
