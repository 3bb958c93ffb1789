// Live metric events shared by the replicas of one store (issue 14 item 5).
// Each replica publishes the step and deletion events its MetricsHub
// records; every other replica reads them back in one global order and
// feeds them to its own WatchMetrics streams and dashboard. The events
// themselves are the metric history (MetricHistoryStore's rows); the feed
// numbers them across replicas and wakes the readers.
//
// Only a store several processes share has one (PostgreSQL: LISTEN/NOTIFY
// wakes a reader, the numbered rows let it catch up on whatever a missed
// notification announced). The in-memory and SQLite stores have none: one
// process, one hub, nothing to share. Values are opaque bytes (serialized
// protos written by the service), so the store stays free of protobuf.
#ifndef SATLAB_SERVER_STORE_METRIC_FEED_H_
#define SATLAB_SERVER_STORE_METRIC_FEED_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace satlab::store {

// One event to publish.
struct FeedEntry {
  std::string network;  // `networks/{stored id}`
  absl::Time time;
  // The network was deleted: its history goes, and readers are told.
  bool deleted = false;
  std::string event;  // the serialized event (unused when deleted)
  // The publisher's own number of the event, increasing over its entries
  // (a retry skips those at or below the last one published).
  int64_t origin_seq = 0;
};

// One event read back.
struct FeedRecord {
  // Increasing over the whole feed (gaps are possible); the cursor.
  int64_t seq = 0;
  std::string network;
  // Who published it (MetricFeed::Publish's `origin`).
  std::string origin;
  absl::Time time;
  bool deleted = false;
  // Empty for deletions and for events of the reader's own origin.
  std::string event;
};

class MetricFeed {
 public:
  virtual ~MetricFeed() = default;
  // Appends `entries` in order, as `origin` (unique per process), to the
  // metric history (each network keeps its newest events only, as
  // AppendMetrics) in one transaction, and wakes the readers. A deletion
  // drops the network's history. Entries whose origin_seq is at or below
  // the last one `origin` published are skipped, so publishing a batch
  // again after an error whose outcome is unknown (a lost COMMIT) is safe.
  // UNAVAILABLE when the store cannot answer.
  virtual absl::Status Publish(absl::string_view origin,
                               const std::vector<FeedEntry>& entries) = 0;
  // The largest seq published so far (0 when none): a new reader starts
  // after it.
  virtual absl::StatusOr<int64_t> LastSeq() = 0;
  // Up to `limit` records with seq > `after`, in seq order; those of
  // `own_origin` without their event. A record whose network was trimmed
  // or deleted before it was read is gone (the reader skips it).
  virtual absl::StatusOr<std::vector<FeedRecord>> Read(
      int64_t after, absl::string_view own_origin, int limit) = 0;
  // Blocks until something was published since the last call (true), or
  // `timeout` passed or Interrupt was called (false). A reader calls Read
  // after either: a notification may have been lost (a broken connection
  // is made again on the next call).
  virtual bool WaitForPublish(absl::Duration timeout) = 0;
  // Makes a running or the next WaitForPublish return at once.
  virtual void Interrupt() = 0;
};

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_METRIC_FEED_H_
