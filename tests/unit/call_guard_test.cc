// The gRPC edge's last-resort exception barrier and call register (server/grpc/call_context.h):
// a handler that throws gives INTERNAL with an incident id the server logged, never gRPC's
// anonymous UNKNOWN; calls are counted while they run; a draining server refuses new calls.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <new>
#include <stdexcept>
#include <thread>

#include "grpc/call_context.h"

namespace modelfleet::grpc_edge {
namespace {

TEST(CallGuardTest, AnExceptionBecomesInternalWithAnIncidentId) {
  grpc::Status s = GuardCall("/test.Service/Throws",
                             []() -> grpc::Status { throw std::out_of_range("basic_string::substr"); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(s.error_message().find("internal error E"), std::string::npos) << s.error_message();
  // The id is not the exception text: nothing internal leaks to the caller.
  EXPECT_EQ(s.error_message().find("substr"), std::string::npos) << s.error_message();
  grpc::Status other = GuardCall("/test.Service/Throws", []() -> grpc::Status { throw std::bad_alloc(); });
  EXPECT_EQ(other.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(other.error_message(), s.error_message()) << "each incident gets its own id";
  grpc::Status odd = GuardCall("/test.Service/Throws", []() -> grpc::Status { throw 42; });
  EXPECT_EQ(odd.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(CallsInFlight::Get().Describe(), "") << "a call that threw is no longer in flight";
}

TEST(CallGuardTest, CountsCallsWhileTheyRunAndPassesTheirStatusThrough) {
  std::string seen;
  grpc::Status s = GuardCall("/test.Service/Slow", [&]() -> grpc::Status {
    seen = CallsInFlight::Get().Describe();
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such thing");
  });
  EXPECT_EQ(seen, "1 x /test.Service/Slow");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no such thing");
  EXPECT_EQ(CallsInFlight::Get().Describe(), "");
}

// Last: draining is one-way for the process-wide register.
TEST(CallGuardTest, DrainingRefusesNewCallsAndWaitsForTheOnesInFlight) {
  CallsInFlight& calls = CallsInFlight::Get();
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  std::thread in_flight([&] {
    GuardCall("/test.Service/Long", [&]() -> grpc::Status {
      started = true;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return grpc::Status::OK;
    });
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  calls.StartDraining();
  bool ran = false;
  grpc::Status refused = GuardCall("/test.Service/New", [&]() -> grpc::Status {
    ran = true;
    return grpc::Status::OK;
  });
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(ran);
  EXPECT_FALSE(calls.WaitUntilIdle(std::chrono::steady_clock::now() + std::chrono::milliseconds(20)));
  EXPECT_EQ(calls.Describe(), "1 x /test.Service/Long");
  release = true;
  EXPECT_TRUE(calls.WaitUntilIdle(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  in_flight.join();
}

}  // namespace
}  // namespace modelfleet::grpc_edge
