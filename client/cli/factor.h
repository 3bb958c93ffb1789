// `satlab experiment factor`: one ComputeGradients call over a batch whose
// rows put one sigmoid neuron (w = 1, b = 0) at outputs a in (0, 1), target
// 0, under mse and (counterfactually) bce: dC/dz at the output as a
// function of a, the a(1 - a) factor. Writes factor.csv,
// factor_summary.txt and (unless `figures` is false) the figure to `dir`.
#ifndef SATLAB_CLIENT_CLI_FACTOR_H_
#define SATLAB_CLIENT_CLI_FACTOR_H_

#include <string>

#include "absl/status/status.h"
#include "client/cli/command.h"

namespace satlab::cli {

absl::Status RunFactor(Context& ctx, const std::string& dir, bool figures);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_FACTOR_H_
