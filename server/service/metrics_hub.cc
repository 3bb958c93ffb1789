#include "server/service/metrics_hub.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/service/convert.h"

namespace satlab::service {
namespace {

constexpr absl::string_view kNetworkPrefix = "networks/";

absl::string_view IdOf(absl::string_view network) {
  absl::ConsumePrefix(&network, kNetworkPrefix);
  return network;
}

}  // namespace

// --- MetricsSubscription ---

MetricsSubscription::MetricsSubscription(WatchFilter filter, int64_t capacity)
    : filter_(std::move(filter)), capacity_(capacity) {}

std::optional<MetricsSubscription::Item> MetricsSubscription::Pop() {
  absl::MutexLock lock(&mu_);
  if (!replay_.empty()) {
    Item item{std::move(replay_.front()), 0};
    replay_.pop_front();
    return item;
  }
  if (live_.empty()) return std::nullopt;
  Item item{std::move(live_.front()), dropped_pending_};
  live_.pop_front();
  dropped_pending_ = 0;
  return item;
}

bool MetricsSubscription::WaitForEvent(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || !replay_.empty() || !live_.empty();
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return !replay_.empty() || !live_.empty();
}

void MetricsSubscription::SetListener(std::function<void()> listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void MetricsSubscription::Close() {
  bool first;
  {
    absl::MutexLock lock(&mu_);
    first = !closed_;
    closed_ = true;
  }
  // Wake a listener-driven reader once more so that it sees closed(), then
  // cut the listener off. Taking listener_mu_ also waits for a listener call
  // running on another thread, even when the subscription was closed
  // already: after Close returns, the reader may be destroyed.
  absl::MutexLock lock(&listener_mu_);
  std::function<void()> listener = std::move(listener_);
  listener_ = nullptr;
  if (first && listener) listener();
}

bool MetricsSubscription::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

int64_t MetricsSubscription::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_total_;
}

int64_t MetricsSubscription::Push(EventPtr event) {
  absl::MutexLock lock(&mu_);
  if (closed_) return 0;
  int64_t dropped = 0;
  if (static_cast<int64_t>(live_.size()) >= capacity_) {
    live_.pop_front();
    ++dropped_pending_;
    ++dropped_total_;
    dropped = 1;
  }
  live_.push_back(std::move(event));
  return dropped;
}

void MetricsSubscription::Notify() {
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_();
}

// --- MetricsHub ---

absl::StatusOr<std::unique_ptr<MetricsHub>> MetricsHub::Create(
    const MetricsHubOptions& options) {
  if (options.history_size < 1 || options.subscriber_buffer < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics options: history_size and subscriber_buffer must be >= 1, "
        "got ",
        options.history_size, " and ", options.subscriber_buffer));
  }
  return std::unique_ptr<MetricsHub>(new MetricsHub(options));
}

bool MetricsHub::Matches(const WatchFilter& filter,
                         const v1::MetricEvent& event, bool replay) {
  if (!filter.network.empty() && event.network() != filter.network) {
    return false;
  }
  if (!replay) return true;
  if (filter.start_step < 0) return false;
  if (event.has_step()) return event.step().step() >= filter.start_step;
  return true;
}

void MetricsHub::OnStep(absl::string_view network,
                        const engine::StepResult& result) {
  auto event = std::make_shared<v1::MetricEvent>();
  event->set_network(std::string(network));
  StepResultToProto(result, event->mutable_step());

  std::vector<std::shared_ptr<MetricsSubscription>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    const absl::string_view id = IdOf(network);
    auto it = networks_.find(id);
    if (it == networks_.end()) {
      it = networks_.emplace(std::string(id), NetworkGauges{}).first;
      it->second.id = std::string(id);
    }
    NetworkGauges& g = it->second;
    g.step = result.step;
    g.loss = result.loss;
    g.accuracy = result.accuracy;
    g.output_attenuation = result.stats.output_attenuation;
    g.diverged = result.diverged;
    g.layers = result.stats.layers;
    ++g.steps_total;
    g.samples_total += result.batch_size;
    if (result.diverged) ++g.diverged_steps_total;
    Record(std::move(event), to_notify);
  }
  for (const auto& sub : to_notify) sub->Notify();
}

void MetricsHub::OnNetworkDeleted(absl::string_view network) {
  auto event = std::make_shared<v1::MetricEvent>();
  event->set_network(std::string(network));
  event->set_network_deleted(true);
  std::vector<std::shared_ptr<MetricsSubscription>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    auto it = networks_.find(IdOf(network));
    if (it != networks_.end()) networks_.erase(it);
    Record(std::move(event), to_notify);
  }
  for (const auto& sub : to_notify) sub->Notify();
}

void MetricsHub::OnExperimentProgress(const v1::ExperimentProgress& progress) {
  auto event = std::make_shared<v1::MetricEvent>();
  *event->mutable_experiment() = progress;
  std::vector<std::shared_ptr<MetricsSubscription>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    Record(std::move(event), to_notify);
  }
  for (const auto& sub : to_notify) sub->Notify();
}

void MetricsHub::Record(
    std::shared_ptr<v1::MetricEvent> event,
    std::vector<std::shared_ptr<MetricsSubscription>>& to_notify) {
  event->set_sequence(next_sequence_++);
  TimeToProto(absl::Now(), event->mutable_time());
  EventPtr shared = std::move(event);
  history_.push_back(shared);
  if (static_cast<int64_t>(history_.size()) > options_.history_size) {
    history_.pop_front();
  }
  size_t live = 0;
  for (size_t i = 0; i < subscribers_.size(); ++i) {
    std::shared_ptr<MetricsSubscription> sub = subscribers_[i].lock();
    if (sub == nullptr || sub->closed()) continue;  // forgotten below
    subscribers_[live++] = subscribers_[i];
    if (!Matches(sub->filter(), *shared, /*replay=*/false)) continue;
    dropped_total_ += sub->Push(shared);
    to_notify.push_back(std::move(sub));
  }
  subscribers_.resize(live);
}

std::shared_ptr<MetricsSubscription> MetricsHub::Subscribe(
    const WatchFilter& filter) {
  auto sub =
      std::make_shared<MetricsSubscription>(filter, options_.subscriber_buffer);
  absl::MutexLock lock(&mu_);
  if (shut_down_) {
    sub->Close();
    return sub;
  }
  if (filter.start_step >= 0) {
    absl::MutexLock sub_lock(&sub->mu_);
    for (const EventPtr& event : history_) {
      if (Matches(filter, *event, /*replay=*/true))
        sub->replay_.push_back(event);
    }
  }
  subscribers_.push_back(sub);
  return sub;
}

std::vector<NetworkGauges> MetricsHub::Networks() const {
  absl::MutexLock lock(&mu_);
  std::vector<NetworkGauges> out;
  out.reserve(networks_.size());
  for (const auto& [id, gauges] : networks_) out.push_back(gauges);
  return out;
}

HubCounters MetricsHub::Counters() const {
  absl::MutexLock lock(&mu_);
  HubCounters c;
  c.events_total = next_sequence_ - 1;
  c.dropped_events_total = dropped_total_;
  for (const auto& weak : subscribers_) {
    auto sub = weak.lock();
    if (sub != nullptr && !sub->closed()) ++c.subscribers;
  }
  c.history_events = static_cast<int64_t>(history_.size());
  c.last_sequence = next_sequence_ - 1;
  return c;
}

void MetricsHub::Shutdown() {
  std::vector<std::shared_ptr<MetricsSubscription>> subs;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& weak : subscribers_) {
      if (auto sub = weak.lock()) subs.push_back(std::move(sub));
    }
    subscribers_.clear();
  }
  for (const auto& sub : subs) sub->Close();
}

}  // namespace satlab::service
