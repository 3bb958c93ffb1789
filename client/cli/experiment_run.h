// The run loop of `satlab experiment`: a plan's RunExperiment calls one
// after another, their streamed epochs and summaries gathered into curves.
#ifndef SATLAB_CLIENT_CLI_EXPERIMENT_RUN_H_
#define SATLAB_CLIENT_CLI_EXPERIMENT_RUN_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cli/command.h"
#include "client/cli/experiment_plan.h"

namespace satlab::cli {

// The curves of a plan, filled from the server's messages. Variant numbers
// come from the wire: each is checked against the current run's variants,
// so a wrong one is DATA_LOSS, never an index out of range.
class CurveSet {
 public:
  // Adds one curve per variant of plan.runs[run], numbered after the
  // curves already there; later messages belong to this run.
  void BeginRun(const Plan& plan, int run);
  // An epoch of the current run (RunExperimentResponse.epoch).
  absl::Status AddEpoch(const v1::EpochMetrics& epoch);
  // A variant's summary of the current run (ExperimentSummary.variants).
  absl::Status AddSummary(const v1::VariantSummary& summary);
  // The curves, epochs in ascending order.
  std::vector<Curve> Take();

 private:
  // The curve of `variant` of the current run; `field` names it in errors.
  absl::StatusOr<Curve*> Find(int variant, const std::string& field);

  std::vector<Curve> curves_;
  int offset_ = 0;    // first curve of the current run
  int variants_ = 0;  // variants of the current run
  std::string suffix_;
};

// Runs every RunExperiment call of `plan` with a progress bar.
// `parallelism` > 0 overrides the specs'; `timeout` is each call's deadline.
// A non-empty `id` names the runs `experiments/{id}` (one run) or
// `experiments/{id}-{n}` (n = 1, 2, ...): run again with the same id, the
// server streams the kept runs back instead of training (ExperimentRunId).
absl::StatusOr<PlanResult> RunPlan(Context& ctx, const Plan& plan,
                                   absl::Duration timeout, int parallelism,
                                   const std::string& id = "");

// The experiment_id of run `run` of `plan` under `id`.
std::string ExperimentRunId(const Plan& plan, int run, const std::string& id);

// Writes NAME.csv, NAME.json, NAME_summary.txt and (if `figures`) the
// figures to `dir`, and prints the summary table (or JSON with --json).
absl::Status WriteResults(Context& ctx, const Plan& plan,
                          const PlanResult& result, const std::string& dir,
                          bool figures);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_EXPERIMENT_RUN_H_
