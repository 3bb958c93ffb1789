// The figures of `satlab experiment`, as figures.h descriptions over the
// CSV files experiment_report.h and factor.h write.
#ifndef SATLAB_CLIENT_CLI_EXPERIMENT_FIGURES_H_
#define SATLAB_CLIENT_CLI_EXPERIMENT_FIGURES_H_

#include <vector>

#include "client/cli/experiment_plan.h"
#include "client/cli/figures.h"

namespace satlab::cli {

// Learning curves (a panel per run), accuracy (classification plans),
// output attenuation, the output a (plot_output plans), and per hidden
// layer the mean activation and mean f'(z) (a panel per variant).
std::vector<Figure> CurveFigures(const Plan& plan,
                                 const std::vector<Curve>& curves,
                                 int hidden_layers);

// dC/dz under cross-entropy and mse against the output a, over factor.csv.
Figure FactorFigure();

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_EXPERIMENT_FIGURES_H_
