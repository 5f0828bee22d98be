// RPC metrics of the gRPC edge (server/grpc/rpc_metrics.h): the per-call guard records every
// call by method and code into the installed RpcMetrics, every method of the services is
// exported from the start, and nothing is recorded when none is installed.
#include "grpc/rpc_metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "grpc/call_context.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "promtool.h"

namespace modelfleet::grpc_edge {
namespace {

bool Contains(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

TEST(RpcMetricsTest, EveryMethodOfTheServicesIsExportedFromTheStart) {
  // The services' descriptors are registered by fleet.pb.cc, which a static link keeps only
  // when something refers to it: name one of its messages (the server's handlers do).
  ASSERT_NE(v1::CheckInRequest::descriptor(), nullptr);
  metrics::Registry registry;
  RpcMetrics rpc(registry, {v1::DeviceService::service_full_name(), v1::FleetService::service_full_name()});
  const std::string text = registry.Render();
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handled_total{service=\"modelfleet.v1.DeviceService\","
                             "method=\"CheckIn\",code=\"OK\"} 0\n"))
      << text;
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handling_seconds_count{service=\"modelfleet.v1.FleetService\","
                             "method=\"ListRollouts\"} 0\n"))
      << text;
  const testing::PromtoolVerdict verdict = testing::CheckWithPromtool(text);
  EXPECT_TRUE(verdict.ok) << verdict.output;
}

TEST(RpcMetricsTest, GuardedCallsAreCountedByMethodAndCode) {
  metrics::Registry registry;
  RpcMetrics rpc(registry, {v1::DeviceService::service_full_name()});
  {
    ScopedRpcMetricsInstall install(rpc);
    for (int i = 0; i < 3; ++i) {
      (void)GuardCall("/modelfleet.v1.DeviceService/Enroll", [] { return grpc::Status::OK; });
    }
    (void)GuardCall("/modelfleet.v1.DeviceService/Enroll",
                    [] { return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no"); });
    (void)GuardCall("/modelfleet.v1.DeviceService/Enroll", []() -> grpc::Status { throw std::runtime_error("bug"); });
    // A method no descriptor announced gets its counters at first sight.
    (void)GuardCall("/test.Other/Ping", [] { return grpc::Status::OK; });
  }
  (void)GuardCall("/modelfleet.v1.DeviceService/Enroll", [] { return grpc::Status::OK; });  // none installed
  const std::string text = registry.Render();
  const std::string enroll = "service=\"modelfleet.v1.DeviceService\",method=\"Enroll\"";
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handled_total{" + enroll + ",code=\"OK\"} 3\n")) << text;
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handled_total{" + enroll + ",code=\"PERMISSION_DENIED\"} 1\n"))
      << text;
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handled_total{" + enroll + ",code=\"INTERNAL\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handling_seconds_count{" + enroll + "} 5\n")) << text;
  EXPECT_TRUE(Contains(text, "modelfleet_grpc_server_handled_total{service=\"test.Other\",method=\"Ping\",code=\"OK\"} 1\n"))
      << text;
  EXPECT_EQ(InstalledRpcMetrics(), nullptr);
}

// Regression guard for the per-call-site cache of the method index: one Body type (a function
// pointer) serving two methods must not count both under the first.
grpc::Status Ok() { return grpc::Status::OK; }

TEST(RpcMetricsTest, ABodyTypeSharedByTwoMethodsCountsEachUnderItsOwnName) {
  metrics::Registry registry;
  RpcMetrics rpc(registry, {});
  ScopedRpcMetricsInstall install(rpc);
  (void)GuardCall("/test.Shared/First", &Ok);
  (void)GuardCall("/test.Shared/Second", &Ok);
  (void)GuardCall("/test.Shared/Second", &Ok);
  const std::string text = registry.Render();
  EXPECT_TRUE(Contains(text, "{service=\"test.Shared\",method=\"First\",code=\"OK\"} 1\n")) << text;
  EXPECT_TRUE(Contains(text, "{service=\"test.Shared\",method=\"Second\",code=\"OK\"} 2\n")) << text;
}

TEST(RpcMetricsTest, CallsFromManyThreadsAreAllCounted) {
  metrics::Registry registry;
  RpcMetrics rpc(registry, {v1::DeviceService::service_full_name()});
  ScopedRpcMetricsInstall install(rpc);
  constexpr int kThreads = 4, kCalls = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < kCalls; ++i) {
        (void)GuardCall("/modelfleet.v1.DeviceService/ReportDeployment", [i] {
          return i % 10 == 0 ? grpc::Status(grpc::StatusCode::NOT_FOUND, "x") : grpc::Status::OK;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  const std::string text = registry.Render();
  const std::string report = "service=\"modelfleet.v1.DeviceService\",method=\"ReportDeployment\"";
  EXPECT_TRUE(Contains(text, "{" + report + ",code=\"OK\"} " + std::to_string(kThreads * kCalls * 9 / 10) + "\n"))
      << text;
  EXPECT_TRUE(Contains(text, "{" + report + ",code=\"NOT_FOUND\"} " + std::to_string(kThreads * kCalls / 10) + "\n"))
      << text;
}

}  // namespace
}  // namespace modelfleet::grpc_edge
