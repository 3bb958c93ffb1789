// The files and tables of `satlab experiment`: the curves as CSV (one row
// per variant and epoch, the layout the figures' gnuplot scripts read) and
// JSON, the summary table, and the directory they go to.
#ifndef SATLAB_CLIENT_CLI_EXPERIMENT_REPORT_H_
#define SATLAB_CLIENT_CLI_EXPERIMENT_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/cli/experiment_plan.h"
#include "client/cli/format.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {

// 1-based CSV column of hidden layer `layer`'s field `field` in CurvesCsv
// (fields: 0 mean_derivative, 1 saturated_fraction, 2 mean_activation,
// 3 dead_units, 4 weight_gradient_norm, 5 bias_gradient_norm).
int LayerColumn(int layer, int field);

// variant,label,epoch,step,loss,accuracy,output_attenuation,diverged, then
// six columns per layer (`layers` of them; empty where a curve has fewer).
std::string CurvesCsv(const std::vector<Curve>& curves, int layers);

// {"preset", "title", "runs", "curves"}: everything, as written to NAME.json.
nlohmann::json ExperimentJson(const Plan& plan, const PlanResult& result);

// VARIANT, LOSS@0, three more epochs, ACCURACY, EPOCHS_TO_HALF, ...
Table SummaryTable(const Plan& plan, const PlanResult& result);

// A number with every digit (for CSV files).
std::string CsvNum(double x);
// A message as a JSON value.
nlohmann::json MessageJson(const google::protobuf::Message& message);

// mkdir -p.
absl::Status MakeDir(const std::string& dir);
// INTERNAL when `path` cannot be written.
absl::Status WriteFile(const std::string& path, const std::string& text);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_EXPERIMENT_REPORT_H_
