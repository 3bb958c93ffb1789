#include "server/service/metrics_hub.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/arena.h"
#include "server/service/convert.h"

namespace satlab::service {
namespace {

constexpr absl::string_view kNetworkPrefix = "networks/";

absl::string_view IdOf(absl::string_view network) {
  absl::ConsumePrefix(&network, kNetworkPrefix);
  return network;
}

// A step event in an arena that lives in the same allocation: its
// submessages (the result, its saturation, one per layer, the time, the
// name) are laid out in the holder's first block instead of taking one
// heap allocation each, and are freed together when the last reader (the
// history ring, a subscriber's buffer, a pending store write) lets go.
// The block fits a network of a handful of layers; a deeper one's event
// continues in blocks the arena allocates.
std::shared_ptr<v1::MetricEvent> NewStepEvent(
    absl::string_view network, const engine::StepResult& result) {
  struct Holder {
    alignas(16) char block[768];
    google::protobuf::Arena arena{block, sizeof(block)};
  };
  auto holder = std::make_shared<Holder>();
  auto* event =
      google::protobuf::Arena::CreateMessage<v1::MetricEvent>(&holder->arena);
  event->set_network(std::string(network));
  StepResultToProto(result, event->mutable_step());
  return std::shared_ptr<v1::MetricEvent>(std::move(holder), event);
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
    return "satlab";
  }
  return name;
}

// `replica#<64 random bits>`.
std::string OriginOf(absl::string_view replica) {
  std::random_device random;
  const uint64_t nonce = (uint64_t{random()} << 32) ^ random();
  return absl::StrCat(replica, "#", absl::Hex(nonce, absl::kZeroPad16));
}

// The replica of an origin (OriginOf's inverse).
absl::string_view ReplicaOf(absl::string_view origin) {
  const size_t hash = origin.rfind('#');
  return hash == absl::string_view::npos ? origin : origin.substr(0, hash);
}

// Feed records read per query.
constexpr int kFeedPage = 1000;

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

MetricsHub::MetricsHub(const MetricsHubOptions& options)
    : options_(options),
      replica_id_(options.replica_id.empty() ? HostName() : options.replica_id),
      origin_(OriginOf(replica_id_)) {}

absl::StatusOr<std::unique_ptr<MetricsHub>> MetricsHub::Create(
    const MetricsHubOptions& options) {
  if (options.feed_poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics options: feed_poll_interval must be > 0, got ",
                     absl::FormatDuration(options.feed_poll_interval)));
  }
  if (options.history_flush_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics options: history_flush_interval must be > 0, "
                     "got ",
                     absl::FormatDuration(options.history_flush_interval)));
  }
  if (options.history_size < 1 || options.subscriber_buffer < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics options: history_size and subscriber_buffer must be >= 1, "
        "got ",
        options.history_size, " and ", options.subscriber_buffer));
  }
  return std::unique_ptr<MetricsHub>(new MetricsHub(options));
}

void ShowEventNames(const core::TenantScope& scope, v1::MetricEvent* event) {
  if (scope.prefix().empty()) return;
  absl::string_view network = event->network();
  if (absl::ConsumePrefix(&network, "networks/")) {
    event->set_network(NetworkName(scope.Shown(network)));
  }
  if (event->has_experiment()) {
    event->mutable_experiment()->set_experiment_id(
        std::string(scope.Shown(event->experiment().experiment_id())));
  }
}

bool MetricsHub::Matches(const WatchFilter& filter,
                         const v1::MetricEvent& event, bool replay) {
  if (!filter.network.empty() && event.network() != filter.network) {
    return false;
  }
  if (!filter.tenant_prefix.empty() &&
      !(event.has_experiment()
            ? absl::StartsWith(event.experiment().experiment_id(),
                               filter.tenant_prefix)
            : absl::StartsWith(
                  event.network(),
                  absl::StrCat("networks/", filter.tenant_prefix)))) {
    return false;
  }
  if (!replay) return true;
  if (filter.start_step < 0) return false;
  if (event.has_step()) return event.step().step() >= filter.start_step;
  return true;
}

void MetricsHub::OnSteps(
    absl::string_view network, size_t count,
    absl::FunctionRef<const engine::StepResult&(size_t)> result) {
  if (count == 0) return;
  // Built before the lock, so other trainers wait only for the recording.
  absl::InlinedVector<std::shared_ptr<v1::MetricEvent>, 32> events;
  events.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    events.push_back(NewStepEvent(network, result(i)));
  }

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
    for (size_t i = 0; i < count; ++i) {
      const engine::StepResult& r = result(i);
      ++g.steps_total;
      g.samples_total += r.batch_size;
      if (r.diverged) ++g.diverged_steps_total;
    }
    const engine::StepResult& last = result(count - 1);
    g.step = last.step;
    g.loss = last.loss;
    g.accuracy = last.accuracy;
    g.output_attenuation = last.stats.output_attenuation;
    g.diverged = last.diverged;
    g.layers = last.stats.layers;
    if (g.replica != replica_id_) g.replica = replica_id_;  // no copy per step
    g.remote = false;
    for (auto& event : events) Record(std::move(event), to_notify);
  }
  // A subscriber that matched several of the steps is woken once.
  std::sort(to_notify.begin(), to_notify.end());
  to_notify.erase(std::unique(to_notify.begin(), to_notify.end()),
                  to_notify.end());
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
    std::vector<std::shared_ptr<MetricsSubscription>>& to_notify, bool remote) {
  event->set_sequence(next_sequence_++);
  if (!remote) TimeToProto(absl::Now(), event->mutable_time());
  EventPtr shared = std::move(event);
  if (history_store_ != nullptr && !remote && !shared->network().empty()) {
    if (static_cast<int64_t>(pending_.size()) >= options_.history_size) {
      // The store falls behind: drop the oldest pending, counted.
      pending_.erase(pending_.begin());
      ++history_write_failures_;
    }
    pending_.push_back(shared);
  }
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
  c.history_write_failures = history_write_failures_;
  c.feed_events_total = feed_events_;
  c.feed_read_failures = feed_read_failures_;
  c.feed_last_delay_seconds = feed_last_delay_seconds_;
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

// --- Metric history in a store ---

absl::Status MetricsHub::AttachHistory(
    store::MetricHistoryStore* store,
    const std::vector<std::string>& network_ids, store::MetricFeed* feed) {
  // The feed's position first: what the history holds up to it is loaded
  // below, what comes after it the reader records.
  int64_t cursor = 0;
  if (feed != nullptr) {
    absl::StatusOr<int64_t> last = feed->LastSeq();
    if (!last.ok()) return last.status();
    cursor = *last;
  }
  // Read in pages, keeping only the newest history_size overall, so the
  // memory used stays bounded by the ring's size whatever the store holds.
  constexpr int kPage = 1000;
  std::deque<EventPtr> loaded;
  int64_t max_sequence = 0;
  for (const std::string& id : network_ids) {
    const std::string name = absl::StrCat(kNetworkPrefix, id);
    int64_t from = 0;
    bool more = true;
    while (more) {
      auto page = store->ReadMetrics(name, from, kPage);
      if (!page.ok()) return page.status();
      more = static_cast<int>(page->size()) == kPage;
      for (const store::MetricRecord& record : *page) {
        if (feed != nullptr && record.seq > cursor) {
          more = false;  // the reader's to record
          break;
        }
        auto event = std::make_shared<v1::MetricEvent>();
        if (!event->ParseFromString(record.event)) {
          return absl::DataLossError(absl::StrCat("metric history of ", name,
                                                  ": event ", record.seq,
                                                  " does not parse"));
        }
        // The store's numbering: with a feed it orders every replica's
        // events (each numbered its own way when recorded).
        event->set_sequence(record.seq);
        max_sequence = std::max(max_sequence, record.seq);
        loaded.push_back(std::move(event));
      }
      if (!page->empty()) from = page->back().seq + 1;
      // Per network the newest come last: trim as we go.
      while (static_cast<int64_t>(loaded.size()) > 2 * options_.history_size) {
        loaded.pop_front();
      }
    }
  }
  std::vector<EventPtr> events(loaded.begin(), loaded.end());
  std::stable_sort(events.begin(), events.end(),
                   [](const EventPtr& a, const EventPtr& b) {
                     return a->sequence() < b->sequence();
                   });
  if (static_cast<int64_t>(events.size()) > options_.history_size) {
    events.erase(events.begin(), events.end() - options_.history_size);
  }
  absl::MutexLock lock(&mu_);
  for (EventPtr& event : events) {
    if (event->has_step()) {
      const v1::StepResult& step = event->step();
      NetworkGauges& g = networks_[std::string(IdOf(event->network()))];
      g.id = std::string(IdOf(event->network()));
      g.step = step.step();
      g.loss = step.loss();
      g.accuracy = step.accuracy();
      g.output_attenuation = step.saturation().output_attenuation();
      g.diverged = step.diverged();
    }
    history_.push_back(std::move(event));
  }
  next_sequence_ = std::max(next_sequence_, max_sequence + 1);
  history_store_ = store;
  stop_flusher_ = false;
  flusher_ = std::thread([this] { FlushLoop(); });
  if (feed != nullptr) {
    feed_ = feed;
    stop_reader_ = false;
    reader_ = std::thread([this, cursor] { ReadLoop(cursor); });
  }
  return absl::OkStatus();
}

void MetricsHub::FlushLoop() {
  while (true) {
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_flusher_),
                           options_.history_flush_interval);
      stop = stop_flusher_;
    }
    FlushHistory();
    if (stop) return;
  }
}

void MetricsHub::FlushHistory() {
  absl::MutexLock flush(&flush_mu_);
  std::vector<EventPtr> batch;
  store::MetricHistoryStore* store;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(pending_);
    store = history_store_;
  }
  if (store == nullptr || batch.empty()) return;
  if (feed_ != nullptr) {
    // Shared: one transaction, in the order recorded; the feed numbers the
    // events for every replica.
    std::vector<store::FeedEntry> entries(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::MetricEvent& event = *batch[i];
      entries[i].network = event.network();
      entries[i].time = absl::FromUnixSeconds(event.time().seconds()) +
                        absl::Nanoseconds(event.time().nanos());
      entries[i].deleted = event.has_network_deleted();
      if (!entries[i].deleted) entries[i].event = event.SerializeAsString();
      entries[i].origin_seq = event.sequence();
    }
    if (!feed_->Publish(origin_, entries).ok()) {
      // Tried again with the next flush (the feed skips what a failed
      // attempt did commit), within the pending bound.
      absl::MutexLock lock(&mu_);
      batch.insert(batch.end(), pending_.begin(), pending_.end());
      pending_.swap(batch);
      const int64_t excess =
          static_cast<int64_t>(pending_.size()) - options_.history_size;
      if (excess > 0) {
        pending_.erase(pending_.begin(), pending_.begin() + excess);
        history_write_failures_ += excess;
      }
    }
    return;
  }
  // Per network, in order; a deletion drops what came before it.
  std::map<std::string, std::vector<store::MetricRecord>> groups;
  int64_t failed = 0;
  for (const EventPtr& event : batch) {
    if (event->has_network_deleted()) {
      groups.erase(event->network());
      if (!store->DeleteMetrics(event->network()).ok()) ++failed;
      continue;
    }
    store::MetricRecord& record = groups[event->network()].emplace_back();
    record.seq = event->sequence();
    record.time = absl::FromUnixSeconds(event->time().seconds()) +
                  absl::Nanoseconds(event->time().nanos());
    record.event = event->SerializeAsString();
  }
  for (const auto& [network, records] : groups) {
    absl::Status s = store->AppendMetrics(network, records);
    if (absl::IsInvalidArgument(s)) {
      // Rows of an earlier network of that name whose deletion never
      // reached the store (a crash): they are stale, drop them.
      if (store->DeleteMetrics(network).ok()) {
        s = store->AppendMetrics(network, records);
      }
    }
    if (!s.ok()) failed += static_cast<int64_t>(records.size());
  }
  if (failed > 0) {
    absl::MutexLock lock(&mu_);
    history_write_failures_ += failed;
  }
}

void MetricsHub::ReadLoop(int64_t cursor) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_reader_) return;
    }
    // Everything after the cursor, page by page: after a notification, and
    // after a timeout or a broken connection (the catch-up for lost ones).
    while (true) {
      absl::StatusOr<std::vector<store::FeedRecord>> page =
          feed_->Read(cursor, origin_, kFeedPage);
      if (!page.ok()) {
        absl::MutexLock lock(&mu_);
        ++feed_read_failures_;
        break;
      }
      for (const store::FeedRecord& record : *page) {
        cursor = record.seq;
        if (record.origin != origin_) ApplyRemote(record);
      }
      if (static_cast<int>(page->size()) < kFeedPage) break;
    }
    feed_->WaitForPublish(options_.feed_poll_interval);
  }
}

void MetricsHub::ApplyRemote(const store::FeedRecord& record) {
  auto event = std::make_shared<v1::MetricEvent>();
  if (record.deleted) {
    event->set_network(record.network);
    event->set_network_deleted(true);
    TimeToProto(record.time, event->mutable_time());
  } else if (!event->ParseFromString(record.event) ||
             event->network() != record.network) {
    absl::MutexLock lock(&mu_);
    ++feed_read_failures_;  // not ours to understand: skipped
    return;
  }
  const absl::Duration delay = absl::Now() - record.time;
  std::vector<std::shared_ptr<MetricsSubscription>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    const absl::string_view id = IdOf(record.network);
    if (record.deleted) {
      auto it = networks_.find(id);
      if (it != networks_.end()) networks_.erase(it);
    } else if (event->has_step()) {
      auto it = networks_.find(id);
      if (it == networks_.end()) {
        it = networks_.emplace(std::string(id), NetworkGauges{}).first;
        it->second.id = std::string(id);
      }
      NetworkGauges& g = it->second;
      const v1::StepResult& step = event->step();
      g.step = step.step();
      g.loss = step.loss();
      g.accuracy = step.accuracy();
      g.output_attenuation = step.saturation().output_attenuation();
      g.diverged = step.diverged();
      g.layers.clear();
      for (const v1::LayerStats& layer : step.saturation().layers()) {
        engine::LayerStats& s = g.layers.emplace_back();
        s.mean_derivative = layer.mean_derivative();
        s.saturated_fraction = layer.saturated_fraction();
        s.dead_units = layer.dead_units();
        s.weight_gradient_norm = layer.weight_gradient_norm();
        s.bias_gradient_norm = layer.bias_gradient_norm();
        s.mean_activation = layer.mean_activation();
      }
      g.replica = std::string(ReplicaOf(record.origin));
      g.remote = true;
      g.updated = absl::Now();
    }
    ++feed_events_;
    feed_last_delay_seconds_ = absl::ToDoubleSeconds(delay);
    Record(std::move(event), to_notify, /*remote=*/true);
  }
  for (const auto& sub : to_notify) sub->Notify();
}

void MetricsHub::DetachHistory() {
  {
    absl::MutexLock lock(&mu_);
    if (history_store_ == nullptr || stop_flusher_) return;
    stop_flusher_ = true;
    stop_reader_ = true;
  }
  if (reader_.joinable()) {
    feed_->Interrupt();
    reader_.join();
  }
  flusher_.join();  // its last pass writes what is pending
  absl::MutexLock lock(&mu_);
  history_store_ = nullptr;
  pending_.clear();
}

MetricsHub::~MetricsHub() { DetachHistory(); }

}  // namespace satlab::service
