#include "client/cli/factor.h"

#include <cmath>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/experiment_figures.h"
#include "client/cli/experiment_report.h"
#include "client/cli/format.h"
#include "client/cli/status_macros.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {

absl::Status RunFactor(Context& ctx, const std::string& dir, bool figures) {
  std::vector<double> as;
  for (int i = 1; i < 1000; ++i) as.push_back(i / 1000.0);
  std::vector<double> z;
  for (double a : as) z.push_back(std::log(a / (1 - a)));  // logit

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
  SATLAB_ASSIGN_OR_RETURN(network, ctx.client->CreateNetwork(spec));

  v1::ComputeGradientsRequest request;
  request.set_name(network.name());
  *request.mutable_batch()->mutable_inputs() =
      MakeTensor(static_cast<int64_t>(z.size()), 1, z);
  *request.mutable_batch()->mutable_targets() = MakeTensor(
      static_cast<int64_t>(z.size()), 1, std::vector<double>(z.size(), 0.0));
  request.add_counterfactual_losses(v1::LOSS_BCE);
  auto response = ctx.client->ComputeGradients(request);
  (void)ctx.client->DeleteNetwork(network.name());  // best effort
  if (!response.ok()) return response.status();
  if (response->counterfactuals_size() != 1) {
    return absl::DataLossError(absl::StrCat(
        "factor: expected 1 counterfactual (bce) in the response, got ",
        response->counterfactuals_size()));
  }
  const std::vector<double> mse =
      TensorValues(response->gradients().output_delta());
  const std::vector<double> bce =
      TensorValues(response->counterfactuals(0).output_delta());
  if (mse.size() != as.size() || bce.size() != as.size()) {
    return absl::DataLossError("factor: unexpected output_delta size");
  }

  SATLAB_RETURN_IF_ERROR(MakeDir(dir));
  std::string csv =
      "a,sigmoid_derivative,delta_mse,delta_bce,attenuation_mse\n";
  for (size_t i = 0; i < as.size(); ++i) {
    const double a = 1 / (1 + std::exp(-z[i]));
    absl::StrAppend(&csv, CsvNum(a), ",", CsvNum(a * (1 - a)), ",",
                    CsvNum(mse[i]), ",", CsvNum(bce[i]), ",",
                    CsvNum(mse[i] / bce[i]), "\n");
  }
  SATLAB_RETURN_IF_ERROR(WriteFile(dir + "/factor.csv", csv));

  Table table({"A", "A(1-A)", "DELTA_MSE", "DELTA_BCE", "MSE/BCE"});
  for (double a : {0.5, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999}) {
    const size_t i = static_cast<size_t>(std::lround(a * 1000)) - 1;
    table.AddRow({Num(as[i]), Num(as[i] * (1 - as[i])), Num(mse[i]),
                  Num(bce[i]), Num(mse[i] / bce[i])});
  }
  SATLAB_RETURN_IF_ERROR(
      WriteFile(dir + "/factor_summary.txt", table.ToString()));
  if (ctx.json) {
    std::cout << nlohmann::json::parse(ToJson(*response)).dump(1) << "\n";
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
