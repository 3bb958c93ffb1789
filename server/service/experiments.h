// Experiments as resources, `experiments/{id}` (issue 12): names, the
// conversion between pb::Experiment and the store's opaque record, and the
// startup sweep that marks runs a restart interrupted. The RPC handlers
// (GetExperiment, ListExperiments, DeleteExperiment) are in
// experiments.cc too; RunExperiment records through ExperimentReactor.
#ifndef SATLAB_SERVER_SERVICE_EXPERIMENTS_H_
#define SATLAB_SERVER_SERVICE_EXPERIMENTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "satlab/v1/experiment.pb.h"
#include "server/store/experiment_store.h"

namespace satlab::service {

inline constexpr absl::string_view kExperimentPrefix = "experiments/";

// `experiments/{id}` -> id; INVALID_ARGUMENT naming `field` otherwise (ids
// follow the network id rules).
absl::StatusOr<std::string> ParseExperimentName(absl::string_view name,
                                                absl::string_view field);
std::string ExperimentName(absl::string_view id);

// The store record of `experiment` (its id from `name`). The record's
// `curves` bytes hold a pb::Experiment with only curves, error,
// curves_truncated and epochs_total set; `summary` the ExperimentSummary.
store::ExperimentRecord RecordOf(const v1::Experiment& experiment);
// The same without the spec, for ExperimentStore::UpdateExperiment, which
// keeps the stored spec: a running experiment is recorded every
// experiment_record_interval, and its spec holds the whole data set (up to
// max_experiment_record_bytes) that serializing again would copy each time.
store::ExperimentRecord ProgressRecordOf(const v1::Experiment& experiment);
// The experiment a record holds; without curves unless `with_curves`.
// DATA_LOSS naming it when its bytes do not parse.
absl::StatusOr<v1::Experiment> ExperimentOf(const store::ExperimentRecord& r,
                                            bool with_curves);

// Marks every experiment still RUNNING in `store` FAILED: at startup no
// call runs them any more (one server per data directory), so they were
// interrupted by a crash or restart.
absl::Status MarkInterruptedExperiments(store::ExperimentStore* store);

// The same for replicas sharing a store (PostgreSQL), where a RUNNING
// record may be another replica's live run: only records RUNNING with no
// units (written before experiments were claimed through the store) and
// not updated for 2 x `ttl` are marked FAILED. Those with units are the
// claims' business: a dead replica's are taken over (experiment_claims.h).
absl::Status MarkOrphanedExperiments(store::ExperimentStore* store,
                                     absl::Duration ttl);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXPERIMENTS_H_
