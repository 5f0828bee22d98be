#include "grpc/rpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include <deque>
#include <string>
#include <unordered_map>

#include "modelfleet/status.h"

namespace modelfleet::grpc_edge {

namespace {

// The process-wide method names. Names are never removed (a few dozen, for the process's
// life), so a reader needs no lock: an index, once handed out, names the same string forever.
struct MethodTable {
  std::mutex mu;
  std::unordered_map<std::string, size_t> index;
  std::deque<std::string> names;  // stable addresses
  std::array<std::atomic<const std::string*>, kMaxRpcMethods> by_index{};
};

MethodTable& Methods() {
  static MethodTable* const table = new MethodTable;  // never destroyed: calls may outlive main's locals
  return *table;
}

std::atomic<RpcMetrics*> installed{nullptr};

// "/modelfleet.v1.DeviceService/CheckIn" -> {"modelfleet.v1.DeviceService", "CheckIn"}.
std::pair<std::string, std::string> SplitMethod(std::string_view full) {
  if (full.starts_with('/')) full.remove_prefix(1);
  const size_t slash = full.rfind('/');
  if (slash == std::string_view::npos) return {"", std::string(full)};
  return {std::string(full.substr(0, slash)), std::string(full.substr(slash + 1))};
}

}  // namespace

size_t RpcMethodIndex(std::string_view full_method) {
  MethodTable& table = Methods();
  std::lock_guard lock(table.mu);
  if (auto it = table.index.find(std::string(full_method)); it != table.index.end()) return it->second;
  if (table.names.size() >= kMaxRpcMethods) return kNoRpcMethod;
  const size_t index = table.names.size();
  const std::string& name = table.names.emplace_back(full_method);
  table.index.emplace(name, index);
  table.by_index[index].store(&name, std::memory_order_release);
  return index;
}

std::string_view RpcMethodName(size_t index) {
  if (index >= kMaxRpcMethods) return {};
  const std::string* name = Methods().by_index[index].load(std::memory_order_acquire);
  return name == nullptr ? std::string_view() : std::string_view(*name);
}

// ------------------------------------------------------------------ MethodMetrics

MethodMetrics::MethodMetrics(metrics::Family<metrics::Counter>& handled, metrics::Histogram& handling,
                             std::string service, std::string method)
    : handled_family_(handled), handling_(handling), service_(std::move(service)), method_(std::move(method)) {
  HandledCounter(static_cast<size_t>(grpc::StatusCode::OK));  // exported as 0 from the start
}

metrics::Counter& MethodMetrics::HandledCounter(size_t code) {
  const size_t slot = code < kCodes ? code : kCodes;
  if (metrics::Counter* counter = handled_[slot].load(std::memory_order_acquire); counter != nullptr) return *counter;
  std::lock_guard lock(create_mu_);
  if (metrics::Counter* counter = handled_[slot].load(std::memory_order_acquire); counter != nullptr) return *counter;
  const std::string_view code_name =
      slot < kCodes ? StatusCodeName(static_cast<StatusCode>(slot)) : std::string_view("UNKNOWN");
  metrics::Counter& counter = handled_family_.WithLabels({service_, method_, code_name});
  handled_[slot].store(&counter, std::memory_order_release);
  return counter;
}

void MethodMetrics::Record(grpc::StatusCode code, std::chrono::steady_clock::duration elapsed) {
  HandledCounter(static_cast<size_t>(code)).Increment();
  handling_.ObserveDuration(elapsed);
}

// ------------------------------------------------------------------ RpcMetrics

RpcMetrics::RpcMetrics(metrics::Registry& registry, const std::vector<std::string_view>& services)
    : handled_(registry.AddCounter("modelfleet_grpc_server_handled_total",
                                   "gRPC calls completed by the server, by method and status code.",
                                   {"service", "method", "code"})),
      handling_(registry.AddHistogram("modelfleet_grpc_server_handling_seconds",
                                      "Time from a gRPC handler's start to its status, by method.",
                                      {"service", "method"}, metrics::LatencySecondsBuckets())) {
  for (std::string_view name : services) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(name));
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      ForMethod(RpcMethodIndex("/" + service->full_name() + "/" + service->method(i)->name()));
    }
  }
}

RpcMetrics::~RpcMetrics() {
  RpcMetrics* self = this;
  installed.compare_exchange_strong(self, nullptr);  // never leave a dangling recorder behind
}

MethodMetrics* RpcMetrics::ForMethod(size_t index) {
  if (index >= kMaxRpcMethods) return nullptr;
  if (MethodMetrics* m = by_index_[index].load(std::memory_order_acquire); m != nullptr) return m;
  return Create(index);
}

MethodMetrics* RpcMetrics::Create(size_t index) {
  std::lock_guard lock(create_mu_);
  if (MethodMetrics* m = by_index_[index].load(std::memory_order_acquire); m != nullptr) return m;
  const std::string_view name = RpcMethodName(index);
  if (name.empty()) return nullptr;
  auto [service, method] = SplitMethod(name);
  metrics::Histogram& handling = handling_.WithLabels({service, method});
  auto created = std::make_unique<MethodMetrics>(handled_, handling, std::move(service), std::move(method));
  MethodMetrics* raw = created.get();
  owned_.push_back(std::move(created));
  by_index_[index].store(raw, std::memory_order_release);
  return raw;
}

RpcMetrics* InstalledRpcMetrics() { return installed.load(std::memory_order_acquire); }

ScopedRpcMetricsInstall::ScopedRpcMetricsInstall(RpcMetrics& metrics) {
  installed.store(&metrics, std::memory_order_release);
}

ScopedRpcMetricsInstall::~ScopedRpcMetricsInstall() { installed.store(nullptr, std::memory_order_release); }

}  // namespace modelfleet::grpc_edge
