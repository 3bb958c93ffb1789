#include "client/cli/factor.h"

#include <cmath>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/experiment_figures.h"
#include "client/cli/experiment_report.h"
#include "client/cli/format.h"
#include "client/cli/status_macros.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {
namespace {

// The outputs a = 0.001 .. 0.999 the batch puts the neuron at.
constexpr int kSteps = 1000;

// dC/dz at the output for each a, under mse and bce.
struct Deltas {
  std::vector<double> mse;
  std::vector<double> bce;
  // What --json prints.
  v1::ComputeGradientsResponse response;
};

// One sigmoid neuron with w = 1, b = 0: its output for input z is σ(z).
v1::NetworkSpec NeuronSpec() {
  v1::NetworkSpec spec;
  spec.set_input_size(1);
  v1::LayerSpec* layer = spec.add_layers();
  layer->set_units(1);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(v1::LOSS_MSE);
  spec.set_dtype(v1::DTYPE_FLOAT64);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
  v1::LayerParameters* p = spec.mutable_init()->add_parameters();
  *p->mutable_weights() = MakeTensor(1, 1, {1.0});
  *p->mutable_biases() = MakeVector({0.0});
  return spec;
}

// Creates the neuron, computes the output deltas for inputs z (targets 0)
// under mse and counterfactually bce, deletes the neuron. DATA_LOSS when
// the response does not hold one delta per input for each loss.
absl::StatusOr<Deltas> ComputeDeltas(Context& ctx,
                                     const std::vector<double>& z) {
  SATLAB_ASSIGN_OR_RETURN(network, ctx.client->CreateNetwork(NeuronSpec()));
  v1::ComputeGradientsRequest request;
  request.set_name(network.name());
  const auto rows = static_cast<int64_t>(z.size());
  *request.mutable_batch()->mutable_inputs() = MakeTensor(rows, 1, z);
  *request.mutable_batch()->mutable_targets() =
      MakeTensor(rows, 1, std::vector<double>(z.size(), 0.0));
  request.add_counterfactual_losses(v1::LOSS_BCE);
  auto response = ctx.client->ComputeGradients(request);
  (void)ctx.client->DeleteNetwork(network.name());  // best effort
  if (!response.ok()) return response.status();
  if (response->counterfactuals_size() != 1) {
    return absl::DataLossError(absl::StrCat(
        "factor: expected 1 counterfactual (bce) in the response, got ",
        response->counterfactuals_size()));
  }
  Deltas deltas{TensorValues(response->gradients().output_delta()),
                TensorValues(response->counterfactuals(0).output_delta()),
                *std::move(response)};
  if (deltas.mse.size() != z.size() || deltas.bce.size() != z.size()) {
    return absl::DataLossError(absl::StrCat(
        "factor: expected ", z.size(), " output deltas per loss, got ",
        deltas.mse.size(), " (mse) and ", deltas.bce.size(), " (bce)"));
  }
  return deltas;
}

std::string FactorCsv(const std::vector<double>& z, const Deltas& d) {
  std::string csv =
      "a,sigmoid_derivative,delta_mse,delta_bce,attenuation_mse\n";
  for (size_t i = 0; i < z.size(); ++i) {
    const double a = 1 / (1 + std::exp(-z[i]));
    absl::StrAppend(&csv, CsvNum(a), ",", CsvNum(a * (1 - a)), ",",
                    CsvNum(d.mse[i]), ",", CsvNum(d.bce[i]), ",",
                    CsvNum(d.mse[i] / d.bce[i]), "\n");
  }
  return csv;
}

// A few outputs a: the factor, both deltas and their ratio.
Table FactorTable(const std::vector<double>& as, const Deltas& d) {
  Table table({"A", "A(1-A)", "DELTA_MSE", "DELTA_BCE", "MSE/BCE"});
  for (double a : {0.5, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999}) {
    const size_t i = static_cast<size_t>(std::lround(a * kSteps)) - 1;
    table.AddRow({Num(as[i]), Num(as[i] * (1 - as[i])), Num(d.mse[i]),
                  Num(d.bce[i]), Num(d.mse[i] / d.bce[i])});
  }
  return table;
}

}  // namespace

absl::Status RunFactor(Context& ctx, const std::string& dir, bool figures) {
  std::vector<double> as;
  for (int i = 1; i < kSteps; ++i)
    as.push_back(static_cast<double>(i) / kSteps);
  std::vector<double> z;
  for (double a : as) z.push_back(std::log(a / (1 - a)));  // logit

  SATLAB_ASSIGN_OR_RETURN(deltas, ComputeDeltas(ctx, z));
  SATLAB_RETURN_IF_ERROR(MakeDir(dir));
  SATLAB_RETURN_IF_ERROR(WriteFile(dir + "/factor.csv", FactorCsv(z, deltas)));
  const Table table = FactorTable(as, deltas);
  SATLAB_RETURN_IF_ERROR(
      WriteFile(dir + "/factor_summary.txt", table.ToString()));
  if (ctx.json) {
    std::cout << nlohmann::json::parse(ToJson(deltas.response)).dump(1) << "\n";
  } else {
    std::cout << table.ToString();
  }
  if (!figures) return absl::OkStatus();
  if (!GnuplotAvailable()) {
    std::cerr << "note: gnuplot not found; wrote CSV only\n";
    return absl::OkStatus();
  }
  SATLAB_RETURN_IF_ERROR(RenderFigure(FactorFigure(), dir));
  if (ctx.progress && !ctx.json) {
    std::cerr << "wrote " << dir
              << "/factor{.csv,_summary.txt,.png,.svg,.gp}\n";
  }
  return absl::OkStatus();
}

}  // namespace satlab::cli
