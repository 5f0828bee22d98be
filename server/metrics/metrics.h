// Prometheus metrics of one server: counters, gauges and histograms kept in atomics, plus
// collectors that compute samples at scrape time, rendered in the text exposition format 0.0.4.
//
// The hot path never looks anything up: a caller asks its family for a child once (by label
// values, under the family's lock) and keeps the reference; Increment/Set/Observe on it are
// lock-free atomics. Children live as long as the Registry, so those references stay valid
// until it is destroyed.
//
// Label values must come from bounded sets (a method name, a status code, a state; never a
// device id, a token or a version string a client chose): every distinct set of values is a
// child kept forever and a series Prometheus stores.
//
// Names: families and collected samples are `modelfleet_*` by convention, in base units with
// the unit as suffix (`_seconds`, `_bytes`), counters ending `_total` (promtool's lint).
//
// Registration contract violations (an invalid name or label name, a counter not ending in
// `_total`, a name registered twice with a different type, help or labels, the wrong number of
// label values) are bugs in the caller, found by the first test that registers: they abort
// with a message on stderr rather than render output Prometheus would refuse.
//
// Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace modelfleet::metrics {

// A monotonically increasing count (events, bytes). Lock-free.
class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down. Lock-free.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (upper bounds, ascending; +Inf implied), with their
// sum. Lock-free: Observe is two atomic additions and a search of the bounds.
class Histogram {
 public:
  // `bounds` belongs to the family and outlives the histogram.
  explicit Histogram(const std::vector<double>& bounds);

  // A value goes into the first bucket whose bound is >= it; NaN into +Inf only.
  void Observe(double value);
  void ObserveDuration(std::chrono::steady_clock::duration elapsed) {
    Observe(std::chrono::duration<double>(elapsed).count());
  }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
  };
  // Buckets are read one by one while others may observe: a snapshot is consistent in itself
  // (cumulative, +Inf equal to the count) but may miss observations made while it was taken.
  Snapshot Read() const;

 private:
  const std::vector<double>& bounds_;
  // Per bucket, not cumulative (one increment per observation); size bounds_.size() + 1.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Bucket bounds in seconds for request handling, from 100 us to 30 s.
const std::vector<double>& LatencySecondsBuckets();

// The Content-Type of what Registry::Render returns.
inline constexpr char kTextFormatContentType[] = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };
std::string_view MetricTypeName(MetricType type);  // "counter", "gauge", "histogram"

class Registry;

// One metric name with a fixed list of label names; a child per distinct list of label values.
template <typename Metric>
class Family {
 public:
  // The child for `values` (one per label name, in order), created the first time. Takes the
  // family's lock: call it once and keep the reference (valid for the registry's lifetime).
  // REQUIRES (checked, aborts): values.size() == label_names().size().
  Metric& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Metric& WithLabels(std::span<const std::string_view> values);
  // The child without labels. REQUIRES (checked): the family has no label names.
  Metric& Get() { return WithLabels({}); }

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> bounds)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}
  void RenderTo(std::string& out) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;  // sorted: stable output
};

// Where a collector writes the samples it computes at scrape time. Samples of one name from
// any number of calls and collectors form one family (HELP and TYPE from the first).
// A sample with an invalid name or label name, a counter not ending in `_total`, a type that
// differs from the name's first sample, or a name the registry holds as a family is dropped
// and counted in modelfleet_metrics_dropped_samples_total (collectors run in production: a
// scrape never aborts the server).
class CollectorOutput {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;
  void Counter(std::string_view name, std::string_view help, double value, Labels labels = {});
  void Gauge(std::string_view name, std::string_view help, double value, Labels labels = {});
  // The same, with labels built at run time.
  void Sample(MetricType type, std::string_view name, std::string_view help, double value,
              std::span<const std::pair<std::string, std::string>> labels);

 private:
  friend class Registry;
  struct CollectedFamily {
    MetricType type;
    std::string help;
    std::vector<std::pair<std::string, double>> samples;  // rendered label set, value
  };
  void Add(MetricType type, std::string_view name, std::string_view help, double value,
           std::span<const std::pair<std::string_view, std::string_view>> labels);
  std::map<std::string, CollectedFamily, std::less<>> families_;
  const std::map<std::string, MetricType, std::less<>>* registered_ = nullptr;
  uint64_t dropped_ = 0;
};

using Collector = std::function<void(CollectorOutput&)>;

class CollectorRegistration;

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family, or returns the one registered under `name` with the same type, help
  // and label names. REQUIRES (checked, aborts): valid names, counters ending in `_total`, no
  // label named "le" on a histogram, bounds ascending and finite.
  Family<Counter>& AddCounter(std::string name, std::string help, std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // Runs `collector` at every Render, after the families, until the returned registration is
  // destroyed or reset. Removing waits for a Render in progress, so once the registration is
  // gone the collector never runs again: destroy it before what the collector reads.
  // REQUIRES: the collector does not call back into this registry; the registration does not
  // outlive the registry.
  [[nodiscard]] CollectorRegistration AddCollector(Collector collector);

  // Everything in the text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4):
  // families in registration order, then collected families sorted by name; HELP and TYPE
  // once per family. Renders are serialized (collectors run one scrape at a time).
  std::string Render() const;

 private:
  friend class CollectorRegistration;
  struct Entry {
    MetricType type;
    const void* family;  // Family<Counter|Gauge|Histogram>
    std::function<void(std::string&)> render;
  };
  template <typename Metric>
  Family<Metric>& Add(MetricType type, std::string name, std::string help, std::vector<std::string> label_names,
                      std::vector<double> bounds);
  void RemoveCollector(uint64_t id);

  mutable std::mutex families_mu_;
  std::vector<Entry> entries_;
  std::vector<std::shared_ptr<void>> owned_;  // the families
  std::map<std::string, MetricType, std::less<>> names_;

  mutable std::mutex collectors_mu_;  // held while collectors run: removal waits for them
  std::map<uint64_t, Collector> collectors_;
  uint64_t next_collector_ = 1;
  Counter* dropped_samples_ = nullptr;
};

// Keeps a collector registered; destroying or Reset() removes it. Move-only.
class CollectorRegistration {
 public:
  CollectorRegistration() = default;
  CollectorRegistration(CollectorRegistration&& other) noexcept { *this = std::move(other); }
  CollectorRegistration& operator=(CollectorRegistration&& other) noexcept;
  ~CollectorRegistration() { Reset(); }
  void Reset();

 private:
  friend class Registry;
  CollectorRegistration(Registry* registry, uint64_t id) : registry_(registry), id_(id) {}
  Registry* registry_ = nullptr;
  uint64_t id_ = 0;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Text-format helpers, exposed for tests.
bool IsValidMetricName(std::string_view name);  // [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidLabelName(std::string_view name);   // [a-zA-Z_][a-zA-Z0-9_]*, not starting "__"
// Appends `value` escaped for a label value (\\, \", \n).
void AppendEscapedLabelValue(std::string& out, std::string_view value);
// Appends `help` escaped for a HELP line (\\, \n).
void AppendEscapedHelp(std::string& out, std::string_view help);
// Appends a sample value: integers without a fraction, others in the shortest form that
// round-trips, "+Inf", "-Inf", "NaN".
void AppendValue(std::string& out, double value);

}  // namespace modelfleet::metrics
