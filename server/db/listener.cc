#include "db/listener.h"

#include <pqxx/pqxx>

namespace modelfleet::db {

namespace {

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& connection, const std::string& channel, std::vector<std::string>* out)
      : pqxx::notification_receiver(connection, channel), out_(out) {}
  void operator()(const std::string& payload, int) override { out_->push_back(payload); }

 private:
  std::vector<std::string>* out_;
};

}  // namespace

struct Listener::Impl {
  explicit Impl(const std::string& conninfo) : connection(conninfo) {}
  pqxx::connection connection;
  std::vector<std::string> received;
  std::unique_ptr<Receiver> receiver;  // after `received` and `connection`: destroyed first
};

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Listener::~Listener() = default;

Expected<std::unique_ptr<Listener>> Listener::Open(const std::string& conninfo, const std::string& channel) {
  try {
    auto impl = std::make_unique<Impl>(conninfo);
    impl->receiver = std::make_unique<Receiver>(impl->connection, channel, &impl->received);
    // libpqxx sends LISTEN lazily, with the next statement or wait: make it happen now, so
    // nothing committed after Open returns goes unheard.
    impl->connection.get_notifs();
    pqxx::nontransaction(impl->connection).exec("SELECT 1");
    return std::unique_ptr<Listener>(new Listener(std::move(impl)));
  } catch (const std::exception& e) {
    return Fail(Unavailable(std::string("cannot listen for notifications: ") + e.what()));
  }
}

Expected<std::vector<std::string>> Listener::Wait(std::chrono::milliseconds timeout) {
  try {
    impl_->received.clear();
    if (impl_->connection.get_notifs() == 0) {
      const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
      impl_->connection.await_notification(static_cast<long>(micros / 1000000), static_cast<long>(micros % 1000000));
    }
    if (!impl_->connection.is_open()) return Fail(Unavailable("the listening connection was lost"));
    return std::move(impl_->received);
  } catch (const std::exception& e) {
    return Fail(Unavailable(std::string("the listening connection failed: ") + e.what()));
  }
}

}  // namespace modelfleet::db
