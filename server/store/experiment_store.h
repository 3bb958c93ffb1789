// What the server keeps besides networks (issue 12): every experiment, and
// each network's recent metric events (so WatchMetrics replay and the
// dashboard survive a restart). Values are opaque bytes here (serialized
// protos, written by the service), so the store stays free of protobuf.
// The method names differ from NetworkStore's so that one backend object
// (the SQLite store) can implement all three interfaces.
#ifndef SATLAB_SERVER_STORE_EXPERIMENT_STORE_H_
#define SATLAB_SERVER_STORE_EXPERIMENT_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace satlab::store {

// One experiment, `experiments/{id}`.
struct ExperimentRecord {
  std::string id;
  std::string spec;  // the serialized request that defines it
  int32_t status = 0;
  std::string curves;   // serialized per-epoch curves
  std::string summary;  // serialized summary; empty until finished
  absl::Time create_time;
  absl::Time update_time;
};

class ExperimentStore {
 public:
  virtual ~ExperimentStore() = default;
  // ALREADY_EXISTS naming `experiments/{id}` if taken.
  virtual absl::Status CreateExperiment(const ExperimentRecord& record) = 0;
  // NOT_FOUND naming `experiments/{id}`.
  virtual absl::StatusOr<ExperimentRecord> LoadExperiment(
      absl::string_view id) const = 0;
  // Up to `limit` experiments with id > `after`, in id order, whole.
  virtual absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      absl::string_view after, int limit) const = 0;
  // Replaces status, curves, summary and update_time (spec and create_time
  // stay); NOT_FOUND if absent or if create_time differs (recreated).
  virtual absl::Status UpdateExperiment(const ExperimentRecord& record) = 0;
  // NOT_FOUND if absent.
  virtual absl::Status DeleteExperiment(absl::string_view id) = 0;
};

// One metric event of a network, as the service serialized it.
struct MetricRecord {
  int64_t seq = 0;  // increasing per network
  absl::Time time;
  std::string event;
};

class MetricHistoryStore {
 public:
  virtual ~MetricHistoryStore() = default;
  // Appends `events` (seq increasing, above every stored one; otherwise
  // INVALID_ARGUMENT and nothing is added) and drops the network's oldest
  // so that at most the store's per-network bound remain. One transaction.
  virtual absl::Status AppendMetrics(
      absl::string_view network_id,
      const std::vector<MetricRecord>& events) = 0;
  // Up to `limit` of the network's events with seq >= from_seq, oldest
  // first (empty for an unknown network).
  virtual absl::StatusOr<std::vector<MetricRecord>> ReadMetrics(
      absl::string_view network_id, int64_t from_seq, int limit) const = 0;
  // Removes the network's events (none is not an error).
  virtual absl::Status DeleteMetrics(absl::string_view network_id) = 0;
};

std::unique_ptr<ExperimentStore> NewInMemoryExperimentStore();
// Keeps at most `max_per_network` (>= 1) events per network.
std::unique_ptr<MetricHistoryStore> NewInMemoryMetricHistoryStore(
    int64_t max_per_network);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_EXPERIMENT_STORE_H_
