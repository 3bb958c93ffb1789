// The plans of `satlab experiment PRESET` (each reproduces a published
// observation) and of an ExperimentSpec file:
//   nielsen  one sigmoid neuron, x = 1 -> y = 0, eta = 0.15, 300 epochs, from
//            (w, b) = (0.6, 0.9) and (2, 2), mse vs bce (Nielsen, NNDL ch. 3)
//   glorot   deep sigmoid net, +-1/sqrt(fan_in) init, softmax+cce vs
//            sigmoid+mse, per-layer saturation (Glorot & Bengio 2010, fig. 2)
//   digits   sklearn's 8x8 digits: softmax+cce vs sigmoid+mse vs softmax+mse
// (`factor` is not a plan of RunExperiment calls: see factor.h.)
#ifndef SATLAB_CLIENT_CLI_PRESETS_H_
#define SATLAB_CLIENT_CLI_PRESETS_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/cli/experiment_plan.h"

namespace satlab::cli {

// Where Debian's python3-sklearn keeps the digits data set.
inline constexpr char kDigitsPath[] =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// `epochs` 0 keeps the preset's own.
Plan NielsenPlan(int epochs);
// `digits`: the digits CSV (64 pixel columns 0..16, then the label).
absl::StatusOr<Plan> GlorotPlan(int epochs, const std::string& digits);
absl::StatusOr<Plan> DigitsPlan(int epochs, const std::string& digits);
// An ExperimentSpec in proto3 JSON; the plan is named after the file.
absl::StatusOr<Plan> SpecFilePlan(const std::string& path, int epochs);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_PRESETS_H_
