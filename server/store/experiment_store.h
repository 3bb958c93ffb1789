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
#include <optional>
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

// A part of a running experiment that one replica works at a time
// (issue 14 item 4, docs/storage.md "Experiment claims"): unit -1 is the
// experiment's coordinator (the one that writes its record and streams it),
// unit v >= 0 its variant v. A claim is an owner (a replica id) and an
// expiry on the clock of whatever keeps the claims (the database server's
// for PostgreSQL), renewed while the owner works; a replica that dies stops
// renewing and another may take the unit over.
struct ExperimentUnit {
  std::string experiment_id;
  int32_t unit = 0;
  std::string owner;  // empty while never claimed
  absl::Time expires = absl::InfinitePast();
  bool done = false;
  // What the worker reported so far (opaque here: serialized by the
  // service). Empty from the claim calls, which do not read it.
  std::string progress;
};

inline constexpr int32_t kCoordinatorUnit = -1;

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

  // --- Claims (issue 14 item 4). Every call is one atomic step, so that of
  // replicas racing for a unit exactly one wins. `ttl` > 0 and a non-empty
  // owner, else INVALID_ARGUMENT.

  // Replaces the experiment's units (a re-run starts over) with the
  // coordinator, claimed by `owner` until `ttl` from now, and `variants`
  // unclaimed variant units.
  virtual absl::Status OfferExperimentUnits(absl::string_view id, int variants,
                                            absl::string_view owner,
                                            absl::Duration ttl) = 0;
  // Renews `owner`'s claim on a unit, or takes it if it is free or expired
  // (even when done: a coordinator unit is never done). ABORTED naming the
  // holder when another owner's claim runs; NOT_FOUND when the unit does
  // not exist (the experiment ended or was deleted).
  virtual absl::StatusOr<ExperimentUnit> ClaimExperimentUnit(
      absl::string_view id, int32_t unit, absl::string_view owner,
      absl::Duration ttl) = 0;
  // Claims for `owner` one unit that is not done and whose claim is free or
  // expired (the lowest experiment id and unit first), or nullopt when
  // there is none. Replicas calling at once get different units.
  virtual absl::StatusOr<std::optional<ExperimentUnit>> ClaimFreeExperimentUnit(
      absl::string_view owner, absl::Duration ttl) = 0;
  // Stores `progress` (and `done`) of a unit `owner` holds and renews the
  // claim. ABORTED naming the holder when another owner took it over (the
  // caller stops working on it); NOT_FOUND when the unit is gone.
  virtual absl::Status ReportExperimentUnit(absl::string_view id, int32_t unit,
                                            absl::string_view owner,
                                            absl::Duration ttl,
                                            absl::string_view progress,
                                            bool done) = 0;
  // Gives up `owner`'s claim (it expires now) so that another replica may
  // take the unit at once; nothing if `owner` does not hold it.
  virtual absl::Status ReleaseExperimentUnit(absl::string_view id, int32_t unit,
                                             absl::string_view owner) = 0;
  // The experiment's units with their progress, in unit order (empty when
  // it has none).
  virtual absl::StatusOr<std::vector<ExperimentUnit>> ListExperimentUnits(
      absl::string_view id) const = 0;
  // Removes the experiment's units (none is not an error).
  virtual absl::Status DeleteExperimentUnits(absl::string_view id) = 0;
};

// The ABORTED answer to a replica that finds another owner's claim.
absl::Status UnitHeldError(absl::string_view id, int32_t unit,
                           absl::string_view holder, absl::Time expires);

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
