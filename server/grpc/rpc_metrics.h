// RPC metrics of the gRPC edge, recorded by the per-call guard (GuardCall, and the CheckIn
// reactor) rather than a gRPC interceptor: an interceptor costs an allocation per call and
// hook dispatch on every batch of the call, the guard two clock reads and three relaxed
// atomic additions.
//
//   modelfleet_grpc_server_handled_total{service,method,code}   counter
//   modelfleet_grpc_server_handling_seconds{service,method}      histogram (LatencySecondsBuckets)
//
// service is "modelfleet.v1.DeviceService", method "CheckIn", code the status code's name
// ("OK", "NOT_FOUND"): all bounded by the services' descriptors. Handling time runs from the
// handler's entry to its status (for CheckIn: to the reactor's Finish, on whichever thread).
// Calls answered UNAVAILABLE while the server drains are counted too. Only methods whose
// handlers run through the guard are measured (all of modelfleet's; not gRPC's own health
// and reflection services).
//
// How a call finds its counters without a lookup: each call site interns its method name once
// (a function-local static, RpcMethodIndex) into a process-wide table of names; the installed
// RpcMetrics keeps its per-method counters in an array by that index. A method first seen at
// run time that no descriptor announced gets its counters then, once, under a lock.
//
// One RpcMetrics per server, over that server's metrics::Registry. GuardCall is a free
// function, so the server makes its RpcMetrics the process's recorder with a
// ScopedRpcMetricsInstall; with none installed, the guard records nothing (tests, tools).
#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "metrics/metrics.h"

namespace modelfleet::grpc_edge {

// Index of a full method name ("/modelfleet.v1.DeviceService/CheckIn") in the process-wide
// table, assigning the next one at first sight; kNoRpcMethod when the table is full.
// Thread-safe; takes a lock: call once per call site and keep the result.
inline constexpr size_t kMaxRpcMethods = 1024;
inline constexpr size_t kNoRpcMethod = kMaxRpcMethods;
size_t RpcMethodIndex(std::string_view full_method);
// The name at `index` ("" if none): lets a call site check that its cached index is its own.
std::string_view RpcMethodName(size_t index);

// The counters of one method. Record is lock-free except the first time a method sees a
// status code other than OK (that child is created then, once).
class MethodMetrics {
 public:
  MethodMetrics(metrics::Family<metrics::Counter>& handled, metrics::Histogram& handling, std::string service,
                std::string method);
  void Record(grpc::StatusCode code, std::chrono::steady_clock::duration elapsed);

 private:
  static constexpr size_t kCodes = 17;  // grpc::StatusCode values 0..16
  metrics::Counter& HandledCounter(size_t code);

  metrics::Family<metrics::Counter>& handled_family_;
  metrics::Histogram& handling_;
  const std::string service_, method_;
  std::array<std::atomic<metrics::Counter*>, kCodes + 1> handled_{};  // by code; last: out of range
  std::mutex create_mu_;
};

class RpcMetrics {
 public:
  // Registers the two families in `registry` and creates every method's counters (OK, and the
  // histogram) for the services named in `services` (full names, as
  // v1::DeviceService::service_full_name() gives them; their methods are read from the
  // generated descriptors), so every method is exported from the start. A name without a
  // generated descriptor is skipped (its calls are still counted, from the first).
  // REQUIRES: `registry` outlives this object.
  RpcMetrics(metrics::Registry& registry, const std::vector<std::string_view>& services);
  ~RpcMetrics();
  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  // The counters of the method at `index` (RpcMethodIndex), created on first use if no
  // descriptor announced it; nullptr for kNoRpcMethod. Lock-free once created.
  MethodMetrics* ForMethod(size_t index);

 private:
  MethodMetrics* Create(size_t index);

  metrics::Family<metrics::Counter>& handled_;
  metrics::Family<metrics::Histogram>& handling_;
  std::array<std::atomic<MethodMetrics*>, kMaxRpcMethods> by_index_{};
  std::mutex create_mu_;
  std::vector<std::unique_ptr<MethodMetrics>> owned_;
};

// The process's installed recorder (nullptr: none). Read on every call.
RpcMetrics* InstalledRpcMetrics();

// Makes `metrics` the recorder of every guarded call for this object's lifetime, and none
// again after. REQUIRES: no handler runs when it is destroyed (declare it before the
// grpc::Server and the services, so they are gone first), and at most one at a time.
class ScopedRpcMetricsInstall {
 public:
  explicit ScopedRpcMetricsInstall(RpcMetrics& metrics);
  ~ScopedRpcMetricsInstall();
  ScopedRpcMetricsInstall(const ScopedRpcMetricsInstall&) = delete;
  ScopedRpcMetricsInstall& operator=(const ScopedRpcMetricsInstall&) = delete;
};

// Measures one call for the installed recorder, from construction to Done(). Costs one atomic
// load when none is installed. Copyable (a callback call carries it to the thread finishing it).
class CallMeasurement {
 public:
  CallMeasurement() = default;  // measures nothing
  explicit CallMeasurement(size_t method_index) {
    if (RpcMetrics* metrics = InstalledRpcMetrics(); metrics != nullptr) {
      method_ = metrics->ForMethod(method_index);
      if (method_ != nullptr) start_ = std::chrono::steady_clock::now();
    }
  }
  void Done(grpc::StatusCode code) const {
    if (method_ != nullptr) method_->Record(code, std::chrono::steady_clock::now() - start_);
  }

 private:
  MethodMetrics* method_ = nullptr;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace modelfleet::grpc_edge
