#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace modelfleet::metrics {

namespace {

// A registration contract violation: a bug in the caller (see the header).
[[noreturn]] void ContractViolation(const std::string& what) {
  std::fprintf(stderr, "metrics: %s\n", what.c_str());
  std::abort();
}

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// `{a="x",b="y"` (no closing brace: histograms add le) or "" without labels.
void AppendLabelsOpen(std::string& out, std::span<const std::string> names, std::span<const std::string> values) {
  for (size_t i = 0; i < names.size(); ++i) {
    out += i == 0 ? '{' : ',';
    out += names[i];
    out += "=\"";
    AppendEscapedLabelValue(out, values[i]);
    out += '"';
  }
}

void AppendHeader(std::string& out, std::string_view name, std::string_view help, MetricType type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  AppendEscapedHelp(out, help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += MetricTypeName(type);
  out += '\n';
}

void AppendUnsigned(std::string& out, uint64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

void CheckNames(MetricType type, const std::string& name, const std::vector<std::string>& label_names) {
  if (!IsValidMetricName(name)) ContractViolation("invalid metric name '" + name + "'");
  if (type == MetricType::kCounter && !name.ends_with("_total")) {
    ContractViolation("counter '" + name + "' must end in _total");
  }
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label)) ContractViolation("invalid label name '" + label + "' of " + name);
    if (type == MetricType::kHistogram && label == "le") ContractViolation("histogram " + name + " may not use label le");
  }
}

}  // namespace

// ------------------------------------------------------------------ text format helpers

bool IsValidMetricName(std::string_view name) {
  if (name.empty() || !(IsNameStart(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsNameStart(c) || IsDigit(c) || c == ':'; });
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0]) || name.starts_with("__")) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsNameStart(c) || IsDigit(c); });
}

void AppendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

void AppendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

void AppendValue(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {  // 2^53: exact
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(value));
    out.append(buf, end);
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out.append(buf, end);
  }
}

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

const std::vector<double>& LatencySecondsBuckets() {
  static const std::vector<double> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10,   30};
  return bounds;
}

// ------------------------------------------------------------------ Histogram

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {}

void Histogram::Observe(double value) {
  size_t bucket = bounds_.size();  // +Inf, and NaN
  if (!bounds_.empty() && value <= bounds_.back()) {
    bucket = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  }
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ------------------------------------------------------------------ Family

template <typename Metric>
Metric& Family<Metric>::WithLabels(std::span<const std::string_view> values) {
  if (values.size() != label_names_.size()) {
    ContractViolation(name_ + " has " + std::to_string(label_names_.size()) + " label(s), given " +
                      std::to_string(values.size()) + " value(s)");
  }
  std::vector<std::string> key(values.begin(), values.end());
  std::lock_guard lock(mu_);
  auto [it, inserted] = children_.try_emplace(std::move(key));
  if (inserted) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      it->second = std::make_unique<Histogram>(bounds_);
    } else {
      it->second = std::make_unique<Metric>();
    }
  }
  return *it->second;
}

template <typename Metric>
void Family<Metric>::RenderTo(std::string& out) const {
  if constexpr (std::is_same_v<Metric, Counter>) {
    AppendHeader(out, name_, help_, MetricType::kCounter);
  } else if constexpr (std::is_same_v<Metric, Gauge>) {
    AppendHeader(out, name_, help_, MetricType::kGauge);
  } else {
    AppendHeader(out, name_, help_, MetricType::kHistogram);
  }
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      const Histogram::Snapshot s = child->Read();
      for (size_t i = 0; i <= bounds_.size(); ++i) {
        out += name_;
        out += "_bucket";
        AppendLabelsOpen(out, label_names_, values);
        out += values.empty() ? "{le=\"" : ",le=\"";
        if (i < bounds_.size()) {
          AppendValue(out, bounds_[i]);
        } else {
          out += "+Inf";
        }
        out += "\"} ";
        AppendUnsigned(out, s.cumulative[i]);
        out += '\n';
      }
      const std::string_view suffixes[] = {"_sum", "_count"};
      for (std::string_view suffix : suffixes) {
        out += name_;
        out += suffix;
        AppendLabelsOpen(out, label_names_, values);
        if (!values.empty()) out += '}';
        out += ' ';
        if (suffix == "_sum") {
          AppendValue(out, s.sum);
        } else {
          AppendUnsigned(out, s.cumulative.back());
        }
        out += '\n';
      }
    } else {
      out += name_;
      AppendLabelsOpen(out, label_names_, values);
      if (!values.empty()) out += '}';
      out += ' ';
      if constexpr (std::is_same_v<Metric, Counter>) {
        AppendUnsigned(out, child->Value());
      } else {
        AppendValue(out, child->Value());
      }
      out += '\n';
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ------------------------------------------------------------------ CollectorOutput

void CollectorOutput::Counter(std::string_view name, std::string_view help, double value, Labels labels) {
  Add(MetricType::kCounter, name, help, value, std::span(labels.begin(), labels.size()));
}

void CollectorOutput::Gauge(std::string_view name, std::string_view help, double value, Labels labels) {
  Add(MetricType::kGauge, name, help, value, std::span(labels.begin(), labels.size()));
}

void CollectorOutput::Sample(MetricType type, std::string_view name, std::string_view help, double value,
                             std::span<const std::pair<std::string, std::string>> labels) {
  std::vector<std::pair<std::string_view, std::string_view>> views(labels.begin(), labels.end());
  Add(type, name, help, value, views);
}

void CollectorOutput::Add(MetricType type, std::string_view name, std::string_view help, double value,
                          std::span<const std::pair<std::string_view, std::string_view>> labels) {
  const bool valid = type != MetricType::kHistogram && IsValidMetricName(name) &&
                     (type != MetricType::kCounter || name.ends_with("_total")) &&
                     (registered_ == nullptr || !registered_->contains(name)) &&
                     std::all_of(labels.begin(), labels.end(), [](const auto& l) { return IsValidLabelName(l.first); });
  if (!valid) {
    ++dropped_;
    return;
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), CollectedFamily{type, std::string(help), {}}).first;
  } else if (it->second.type != type) {
    ++dropped_;
    return;
  }
  std::string rendered;
  for (size_t i = 0; i < labels.size(); ++i) {
    rendered += i == 0 ? '{' : ',';
    rendered += labels[i].first;
    rendered += "=\"";
    AppendEscapedLabelValue(rendered, labels[i].second);
    rendered += '"';
  }
  if (!labels.empty()) rendered += '}';
  it->second.samples.emplace_back(std::move(rendered), value);
}

// ------------------------------------------------------------------ Registry

Registry::Registry() {
  dropped_samples_ = &AddCounter("modelfleet_metrics_dropped_samples_total",
                                 "Samples collectors computed that were dropped as invalid (a bug to fix).")
                          .Get();
}

Registry::~Registry() = default;

template <typename Metric>
Family<Metric>& Registry::Add(MetricType type, std::string name, std::string help,
                              std::vector<std::string> label_names, std::vector<double> bounds) {
  CheckNames(type, name, label_names);
  if (type == MetricType::kHistogram) {
    for (size_t i = 0; i < bounds.size(); ++i) {
      if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
        ContractViolation("bucket bounds of " + name + " must be finite and ascending");
      }
    }
  }
  std::lock_guard lock(families_mu_);
  for (const Entry& entry : entries_) {
    const auto* existing = static_cast<const Family<Metric>*>(entry.family);
    if (entry.type == type && existing->name() == name) {
      if (existing->help_ != help || existing->label_names_ != label_names || existing->bounds_ != bounds) {
        ContractViolation(name + " registered twice with different help, labels or buckets");
      }
      return *const_cast<Family<Metric>*>(existing);
    }
  }
  if (names_.contains(name)) ContractViolation(name + " registered twice with different types");
  auto family = std::shared_ptr<Family<Metric>>(
      new Family<Metric>(name, std::move(help), std::move(label_names), std::move(bounds)));
  names_.emplace(name, type);
  Family<Metric>* raw = family.get();
  entries_.push_back({type, raw, [raw](std::string& out) { raw->RenderTo(out); }});
  owned_.push_back(std::move(family));
  return *raw;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help, std::vector<std::string> label_names) {
  return Add<Counter>(MetricType::kCounter, std::move(name), std::move(help), std::move(label_names), {});
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help, std::vector<std::string> label_names) {
  return Add<Gauge>(MetricType::kGauge, std::move(name), std::move(help), std::move(label_names), {});
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  return Add<Histogram>(MetricType::kHistogram, std::move(name), std::move(help), std::move(label_names),
                        std::move(bounds));
}

CollectorRegistration Registry::AddCollector(Collector collector) {
  std::lock_guard lock(collectors_mu_);
  const uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(collector));
  return CollectorRegistration(this, id);
}

void Registry::RemoveCollector(uint64_t id) {
  std::lock_guard lock(collectors_mu_);
  collectors_.erase(id);
}

std::string Registry::Render() const {
  // Collectors first (their drops are counted in a family rendered below), under their lock,
  // so a collector being removed is never running.
  CollectorOutput collected;
  {
    std::lock_guard lock(collectors_mu_);
    std::map<std::string, MetricType, std::less<>> registered;
    {
      std::lock_guard families_lock(families_mu_);
      registered = names_;
    }
    collected.registered_ = &registered;
    for (const auto& [id, collector] : collectors_) collector(collected);
    collected.registered_ = nullptr;
  }
  if (collected.dropped_ > 0) dropped_samples_->Increment(collected.dropped_);

  std::string out;
  out.reserve(16384);
  {
    std::lock_guard lock(families_mu_);
    for (const Entry& entry : entries_) entry.render(out);
  }
  for (const auto& [name, family] : collected.families_) {
    AppendHeader(out, name, family.help, family.type);
    for (const auto& [labels, value] : family.samples) {
      out += name;
      out += labels;
      out += ' ';
      AppendValue(out, value);
      out += '\n';
    }
  }
  return out;
}

// ------------------------------------------------------------------ CollectorRegistration

CollectorRegistration& CollectorRegistration::operator=(CollectorRegistration&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

void CollectorRegistration::Reset() {
  if (registry_ != nullptr) registry_->RemoveCollector(id_);
  registry_ = nullptr;
  id_ = 0;
}

}  // namespace modelfleet::metrics
