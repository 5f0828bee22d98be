// A dedicated PostgreSQL connection that LISTENs on one channel (NOTIFY's receiving end).
// Not from the Pool: a listening connection is held for as long as the listener lives.
// libpqxx stays inside server/db/ like the pool's.
//
// Not thread-safe: one thread owns a Listener.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::db {

class Listener {
 public:
  // Connects and issues LISTEN `channel`. UNAVAILABLE if the database cannot be reached.
  static Expected<std::unique_ptr<Listener>> Open(const std::string& conninfo, const std::string& channel);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Waits up to `timeout` for notifications and returns their payloads (empty on timeout).
  // UNAVAILABLE when the connection broke: open a new Listener (and re-read what may have been
  // missed meanwhile).
  Expected<std::vector<std::string>> Wait(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modelfleet::db
