// The one source of live training metrics. MetricsHub is the server's
// EventSink: every optimizer step, deletion and experiment progress becomes a
// numbered v1::MetricEvent that is
//   - kept in a bounded history ring (replay from a step),
//   - fanned out to subscribers (WatchMetrics streams, the dashboard's SSE),
//     each with a bounded buffer that drops its oldest events and counts
//     them when its reader falls behind — training never waits for a reader,
//   - folded into the latest per-network gauges that /metrics exposes (a
//     deleted network's entry is removed, so its series disappear).
//
// Thread-safe. The EventSink callbacks run on executor threads (the ones
// that train) and cost one small proto per step (two allocations, its
// arena's and its name's: NewStepEvent), one mutex per call and one
// notification per subscriber.
#ifndef SATLAB_SERVER_SERVICE_METRICS_HUB_H_
#define SATLAB_SERVER_SERVICE_METRICS_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "satlab/v1/metrics.pb.h"
#include "server/core/tenant_scope.h"
#include "server/engine/network.h"
#include "server/service/events.h"
#include "server/store/experiment_store.h"
#include "server/store/metric_feed.h"

namespace satlab::service {

struct MetricsHubOptions {
  // Events retained for replay (over all networks), >= 1.
  int64_t history_size = 10000;
  // Live events buffered per subscriber before the oldest are dropped, >= 1.
  int64_t subscriber_buffer = 1024;
  // With a history store attached (AttachHistory): new step and deletion
  // events are written to it in one batch this often, off the hot path.
  absl::Duration history_flush_interval = absl::Milliseconds(500);
  // This replica's name (--replica_id; empty: the host name). It
  // labels /metrics (satlab_replica_info) and tells the dashboard which
  // replica trains a network.
  std::string replica_id;
  // With a shared metric feed (AttachHistory's `feed`): the longest the hub
  // waits for a notification before it reads the feed anyway, which bounds
  // how late an event whose notification was lost arrives.
  absl::Duration feed_poll_interval = absl::Seconds(1);
};

// Which events a subscriber receives.
struct WatchFilter {
  // `networks/{id}` for one network (its steps and its deletion); empty for
  // every network and every experiment.
  std::string network;
  // Replay retained step events with step >= start_step (and retained
  // deletion/experiment events) before going live; -1 means live only.
  int64_t start_step = 0;
  // Non-empty: only events of networks and experiments whose stored id
  // starts with it (a tenant's prefix, core::TenantScope).
  // (Initialized so that {network, start_step} aggregates need not name it.)
  std::string tenant_prefix = std::string();
};

// `event` with its network name and experiment id as `scope`'s caller
// knows them (the hub keeps stored, tenant-scoped ids).
void ShowEventNames(const core::TenantScope& scope, v1::MetricEvent* event);

// A shared, immutable event.
using EventPtr = std::shared_ptr<const v1::MetricEvent>;

// One reader of the hub's events. Created by MetricsHub::Subscribe; the
// reader calls Pop (or WaitForEvent then Pop) and Close when done.
class MetricsSubscription {
 public:
  struct Item {
    EventPtr event;
    // Events lost just before `event` because the buffer overflowed.
    int64_t dropped_before = 0;
  };

  MetricsSubscription(WatchFilter filter, int64_t capacity);

  // The next event (replayed ones first), or nullopt when none is waiting.
  std::optional<Item> Pop();
  // Blocks up to `timeout` until an event is waiting or the subscription is
  // closed; true when an event is waiting.
  bool WaitForEvent(absl::Duration timeout);
  // Called (without the hub's locks) after each new event and once from
  // Close (closed() is then true); it must not block and must not call
  // SetListener/Close. Replaces any previous listener; after Close returns
  // it is never called again.
  void SetListener(std::function<void()> listener);
  // Stops delivery; Pop then returns what is already buffered. Idempotent;
  // also called by the hub when it shuts down.
  void Close();
  bool closed() const;
  // Total events dropped so far.
  int64_t dropped() const;
  const WatchFilter& filter() const { return filter_; }

 private:
  friend class MetricsHub;
  // Queues a live event (drops the oldest live one when full). Returns the
  // number dropped (0 or 1).
  int64_t Push(EventPtr event);
  void Notify();

  const WatchFilter filter_;
  const int64_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<EventPtr> replay_ ABSL_GUARDED_BY(mu_);
  std::deque<EventPtr> live_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_pending_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_total_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Separate from mu_ so that a listener may call Pop.
  absl::Mutex listener_mu_;
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);
};

// Latest training figures of one network (for /metrics and the dashboard).
struct NetworkGauges {
  std::string id;  // without the `networks/` prefix
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;
  double output_attenuation = 1;
  bool diverged = false;
  std::vector<engine::LayerStats> layers;
  // The replica whose step these figures are (empty for figures loaded
  // from the history at start), and whether that is another replica (its
  // series are then that replica's to expose on /metrics, not this one's).
  std::string replica;
  bool remote = false;
  // Counted since this process started (this process's steps only).
  int64_t steps_total = 0;
  int64_t samples_total = 0;
  int64_t diverged_steps_total = 0;
  absl::Time updated;
};

// Counters of the hub itself.
struct HubCounters {
  int64_t events_total = 0;
  int64_t dropped_events_total = 0;
  int64_t subscribers = 0;
  int64_t history_events = 0;
  int64_t last_sequence = 0;
  // Events not written to the history store because it failed or the
  // pending batch overflowed (0 without a store).
  int64_t history_write_failures = 0;
  // With a shared feed: events received from other replicas, reads of the
  // feed that failed (retried at the next poll), and how old the last
  // received event was when it arrived (publish + notify + read).
  int64_t feed_events_total = 0;
  int64_t feed_read_failures = 0;
  double feed_last_delay_seconds = 0;
};

class MetricsHub final : public EventSink {
 public:
  // INVALID_ARGUMENT when a size is < 1.
  static absl::StatusOr<std::unique_ptr<MetricsHub>> Create(
      const MetricsHubOptions& options);

  // EventSink.
  void OnSteps(
      absl::string_view network, size_t count,
      absl::FunctionRef<const engine::StepResult&(size_t)> result) override;
  void OnNetworkDeleted(absl::string_view network) override;
  void OnExperimentProgress(const v1::ExperimentProgress& progress) override;

  // A new subscriber, its replay already queued. After Shutdown the
  // subscription comes back closed (with nothing to replay).
  std::shared_ptr<MetricsSubscription> Subscribe(const WatchFilter& filter);

  // Latest gauges of every live network, ordered by id.
  std::vector<NetworkGauges> Networks() const;
  HubCounters Counters() const;
  const MetricsHubOptions& options() const { return options_; }
  // options().replica_id, or the host name when that is empty.
  const std::string& replica_id() const { return replica_id_; }

  // Closes every subscription (streams end) and refuses new ones; events
  // are still recorded. Idempotent.
  void Shutdown();

  // --- Metric history surviving a restart (issue 12) ---
  // Persists step and deletion events through `store` (not owned; it must
  // stay alive until DetachHistory). First loads the events `store` keeps
  // for `network_ids` (the networks that exist) into the history ring
  // (the newest history_size of them) and the gauges, and continues the
  // sequence after the largest loaded; from then on a background thread
  // appends new events every history_flush_interval. Experiment events are
  // not written (experiments are kept as experiments/{id}). Call once,
  // before any event is recorded.
  //
  // With `feed` (a store several replicas share, issue 14 item 5; not owned,
  // alive until DetachHistory) the history is also the replicas' live
  // feed: the flushes publish this hub's events through `feed` instead of
  // `store`, and a reader thread records the events other replicas publish
  // as if they happened here (same ring, subscribers, gauges; their own
  // time, this hub's sequence numbers), in the feed's order, each once: the
  // history is loaded up to the feed's position read first, and the reader
  // continues from there.
  absl::Status AttachHistory(store::MetricHistoryStore* store,
                             const std::vector<std::string>& network_ids,
                             store::MetricFeed* feed = nullptr);
  // Writes what is pending and stops the thread; events after it are kept
  // in memory only. Idempotent.
  void DetachHistory();
  ~MetricsHub() override;

 private:
  explicit MetricsHub(const MetricsHubOptions& options);

  // Numbers, timestamps and retains `event` and queues it for matching
  // subscribers, which the caller notifies after releasing mu_.
  // `remote`: received from another replica: keeps its time and is not
  // written to the store again.
  void Record(std::shared_ptr<v1::MetricEvent> event,
              std::vector<std::shared_ptr<MetricsSubscription>>& to_notify,
              bool remote = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The feed reader: records other replicas' events (ApplyRemote) after
  // each notification or feed_poll_interval.
  void ReadLoop(int64_t cursor);
  void ApplyRemote(const store::FeedRecord& record) ABSL_LOCKS_EXCLUDED(mu_);

  static bool Matches(const WatchFilter& filter, const v1::MetricEvent& event,
                      bool replay);

  // Writes pending_ to history_store_ (one flush at a time, in order).
  void FlushHistory() ABSL_LOCKS_EXCLUDED(mu_);
  void FlushLoop();

  const MetricsHubOptions options_;
  const std::string replica_id_;
  // Names this process in the feed: replica_id_ plus a random suffix, so a
  // restarted replica (or two given one id by mistake) still differ.
  const std::string origin_;
  // Set by AttachHistory before the threads start; never changed after.
  store::MetricFeed* feed_ = nullptr;
  std::thread reader_;
  // Serializes flushes, so batches reach the store in sequence order.
  absl::Mutex flush_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::thread flusher_;
  mutable absl::Mutex mu_;
  store::MetricHistoryStore* history_store_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Step and deletion events not yet written (at most history_size).
  std::vector<EventPtr> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_flusher_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_reader_ ABSL_GUARDED_BY(mu_) = false;
  int64_t feed_events_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t feed_read_failures_ ABSL_GUARDED_BY(mu_) = 0;
  double feed_last_delay_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t history_write_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<EventPtr> history_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<MetricsSubscription>> subscribers_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, NetworkGauges, std::less<>> networks_
      ABSL_GUARDED_BY(mu_);
  int64_t dropped_total_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_METRICS_HUB_H_
