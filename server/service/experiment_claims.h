// Experiments spread over replicas (issue 14 item 4, docs/architecture.md
// "Experiments on several replicas"): with a store several replicas share
// (PostgreSQL), a RunExperiment's variants are claimed through the database
// (ExperimentStore's units) by whichever replica has a free slot, and each
// replica's ExperimentClaims runs what it claimed. Nothing is sent between
// replicas: everything goes through the store.
//
// - The replica that receives RunExperiment creates the record, offers one
//   unit per variant and holds the coordinator unit (-1): it reads the
//   variants' progress from the store every poll, streams the new epochs to
//   its client (whoever ran them), keeps the record's curves up to date
//   (GetExperiment/ListExperiments on any replica) and writes the summary.
// - Every replica (that one included) polls for free units: a variant it
//   claims is run from its start on a thread of its own, and its epochs
//   are written to the unit's progress; the claim is renewed every poll.
// - A replica that dies stops renewing: its variants are claimed again and
//   run from their start (deterministic: the same curves), its coordinator
//   unit is taken by another replica, which finishes the experiment without
//   a stream (the record ends SUCCEEDED). A replica shut down gracefully
//   gives its claims back at once.
#ifndef SATLAB_SERVER_SERVICE_EXPERIMENT_CLAIMS_H_
#define SATLAB_SERVER_SERVICE_EXPERIMENT_CLAIMS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "satlab/v1/experiment.pb.h"
#include "server/engine/spec.h"
#include "server/service/metrics_hub.h"
#include "server/store/experiment_store.h"

namespace satlab::service {

struct ExperimentClaimOptions {
  // This replica's name in the claims. Empty: the server's replica id
  // (--replica_id, else DefaultReplicaId(), so a restarted process never
  // mistakes its predecessor's claims for its own).
  std::string replica_id;
  // How long a claim lasts unless renewed (--lease_ttl): a dead replica's
  // work is taken over after at most this long.
  absl::Duration ttl = absl::Seconds(10);
  // How often a replica renews its claims, reads the progress of the
  // experiments it coordinates and looks for free work
  // (--experiment_claim_poll_ms).
  absl::Duration poll = absl::Milliseconds(500);
  // Variants this replica runs at once (--experiment_claim_slots); 0: one
  // per compute thread.
  int slots = 0;
};

// A fresh replica id: hostname-pid-random.
std::string DefaultReplicaId();

// What a coordinator streams to: a RunExperiment call on this replica.
// Called on the claims thread, which holds no lock of the sink's.
class ExperimentSink {
 public:
  virtual ~ExperimentSink() = default;
  // Queues one epoch for the client; false when the client's window is
  // full (offered again at the next poll).
  virtual bool Emit(const v1::EpochMetrics& epoch, int64_t epochs_done) = 0;
  // Queues the summary (the record is SUCCEEDED already).
  virtual void Summary(const v1::ExperimentSummary& summary,
                       int64_t epochs_done) = 0;
  // The experiment failed (a variant's error) or this replica lost it.
  virtual void End(const absl::Status& status) = 0;
};

class ExperimentClaims {
 public:
  // `store` and `hub` must outlive this. `compute_threads` sizes the slots
  // when options.slots is 0.
  ExperimentClaims(const ExperimentClaimOptions& options,
                   store::ExperimentStore* store, const engine::Limits& limits,
                   int64_t max_record_bytes, absl::Duration record_interval,
                   int compute_threads);
  // Shutdown() if not done.
  ~ExperimentClaims();

  const std::string& replica_id() const { return replica_id_; }
  absl::Duration ttl() const { return options_.ttl; }

  // Starts the poll thread.
  void Start();

  // Takes over coordinating `record` (RUNNING, its units offered with the
  // coordinator unit claimed by this replica), streaming to `sink` until
  // Detach. `data_rows` etc. are the dataset's shape for the summary.
  void Coordinate(const v1::Experiment& record, const std::string& id,
                  std::vector<std::string> labels, int64_t data_rows,
                  int input_size, int output_size, absl::Time start,
                  ExperimentSink* sink);
  // The sink is going away (its call ended with `status`): not OK and not
  // yet finished, the experiment is recorded CANCELLED (or FAILED) and its
  // units deleted, so the replicas running its variants stop. During
  // Shutdown the experiment is left to another replica instead.
  void Detach(const std::string& id, const absl::Status& status);

  // Stops polling and the variants this replica runs, and gives its claims
  // back so that other replicas take them over at once (a dead replica's
  // claims expire instead).
  void Shutdown();
  // For tests of a crash: stops everything without giving the claims back,
  // as a killed process would.
  void StopWithoutRelease();

  // Variants this replica has run to their end (tests, logs).
  int64_t variants_finished() const { return variants_finished_.load(); }

 private:
  class Coordinator;
  class VariantWorker;

  void Poll();
  void Tick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A unit ClaimFreeExperimentUnit gave this replica.
  void Adopt(const store::ExperimentUnit& unit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Stop(bool release);

  const ExperimentClaimOptions options_;
  const std::string replica_id_;
  store::ExperimentStore* const store_;
  const engine::Limits limits_;
  const int64_t max_record_bytes_;
  const absl::Duration record_interval_;
  const int slots_;
  std::atomic<int64_t> variants_finished_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<Coordinator>> coordinators_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<VariantWorker>> workers_ ABSL_GUARDED_BY(mu_);
  std::thread poll_thread_;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXPERIMENT_CLAIMS_H_
