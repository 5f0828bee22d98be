#include "events/event_notifier.h"

#include <spdlog/spdlog.h>

#include <charconv>

#include "db/listener.h"

namespace modelfleet::events {

namespace {

// How long FollowEvents waits before it looks at `cancelled` again.
constexpr std::chrono::milliseconds kCancelCheck{250};
constexpr int kFollowPage = 500;

}  // namespace

EventNotifier::EventNotifier(EventLog& log, std::string conninfo, std::chrono::milliseconds poll_interval)
    : log_(log), conninfo_(std::move(conninfo)), poll_interval_(poll_interval) {}

EventNotifier::~EventNotifier() { Stop(); }

void EventNotifier::Start() { thread_ = std::thread([this] { Run(); }); }

void EventNotifier::Stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EventNotifier::Heard(int64_t id) {
  int64_t seen = newest_.load();
  bool advanced = false;
  while (id > seen && !(advanced = newest_.compare_exchange_weak(seen, id))) {
  }
  if (!advanced) return;
  { std::lock_guard lock(mu_); }  // a waiter between its check and its wait sees the new id
  changed_.notify_all();
}

bool EventNotifier::WaitForNewerThan(int64_t after_id, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  changed_.wait_until(lock, deadline, [&] { return stopped_.load() || newest_.load() > after_id; });
  return !stopped_.load() && newest_.load() > after_id;
}

void EventNotifier::Run() {
  std::unique_ptr<db::Listener> listener;
  bool reported_down = false;
  while (!stopped_) {
    if (!listener) {
      auto opened = db::Listener::Open(conninfo_, kEventChannel);
      if (opened) {
        listener = std::move(*opened);
        if (reported_down) spdlog::info("event notifier: listening again");
        reported_down = false;
      } else if (!reported_down) {
        spdlog::warn("event notifier: {} (retrying; waiters fall back to polling)", opened.error().ToString());
        reported_down = true;
      }
    }
    // After a (re)connect and on every idle interval: what committed while nobody listened.
    if (auto head = log_.Head()) Heard(*head);
    if (!listener) {
      std::unique_lock lock(mu_);
      changed_.wait_for(lock, std::min(poll_interval_, std::chrono::milliseconds(1000)), [&] { return stopped_.load(); });
      continue;
    }
    // Short waits so Stop() is noticed quickly; the head is re-read every poll_interval.
    const auto poll_at = std::chrono::steady_clock::now() + poll_interval_;
    while (!stopped_ && listener && std::chrono::steady_clock::now() < poll_at) {
      auto payloads = listener->Wait(std::chrono::milliseconds(200));
      if (!payloads) {
        spdlog::warn("event notifier: {}", payloads.error().ToString());
        listener.reset();
        break;
      }
      for (const std::string& payload : *payloads) {
        int64_t id = 0;
        if (std::from_chars(payload.data(), payload.data() + payload.size(), id).ec == std::errc()) Heard(id);
      }
    }
  }
}

Status FollowEvents(EventLog& log, EventNotifier& notifier, int64_t after_id, const EventFilter& filter,
                    v1::Role role, const EventSink& sink, const std::function<bool()>& cancelled) {
  MF_RETURN_IF_ERROR(ValidateFilter(filter, "filter"));
  if (after_id < 0) {
    MF_ASSIGN_OR_RETURN(after_id, log.Head());
  }
  while (true) {
    if (cancelled()) return Status(StatusCode::kCancelled, "the reader went away");
    if (notifier.stopped()) return Unavailable("the server is shutting down; resume after event " + std::to_string(after_id));
    MF_ASSIGN_OR_RETURN(EventPage page, log.List(after_id, filter, role, kFollowPage));
    for (const v1::Event& event : page.events) MF_RETURN_IF_ERROR(sink(event));
    after_id = page.next_after_id;
    if (static_cast<int>(page.events.size()) == kFollowPage) continue;  // more backlog
    notifier.WaitForNewerThan(after_id, std::chrono::steady_clock::now() + kCancelCheck);
  }
}

}  // namespace modelfleet::events
