#include "client/cli/experiment_report.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace satlab::cli {
namespace {

// Per-layer columns of the curves CSV, after the 8 fixed ones.
constexpr int kFixedColumns = 8;
constexpr int kLayerColumns = 6;
constexpr const char* kLayerFields[kLayerColumns] = {
    "mean_derivative", "saturated_fraction",   "mean_activation",
    "dead_units",      "weight_gradient_norm", "bias_gradient_norm"};

// Loss at epoch e of a curve ("-" when missing).
std::string LossAt(const Curve& c, int e) {
  for (const auto& m : c.epochs) {
    if (m.epoch() == e) return Num(m.loss());
  }
  return "-";
}

}  // namespace

int LayerColumn(int l, int f) {
  return kFixedColumns + kLayerColumns * l + f + 1;
}

absl::Status MakeDir(const std::string& dir) {
  std::string path;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    path.append(part.data(), part.size());
    if (!path.empty() && mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create directory ", path,
                                              ": ", std::strerror(errno)));
    }
    path += "/";
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string CsvNum(double x) { return absl::StrFormat("%.17g", x); }

// One row per (variant, epoch), variants in order, epochs ascending.
std::string CurvesCsv(const std::vector<Curve>& curves, int layers) {
  std::string out =
      "variant,label,epoch,step,loss,accuracy,output_attenuation,diverged";
  for (int l = 0; l < layers; ++l) {
    for (const char* field : kLayerFields) {
      absl::StrAppend(&out, ",layer", l, "_", field);
    }
  }
  out += "\n";
  for (const Curve& c : curves) {
    for (const v1::EpochMetrics& e : c.epochs) {
      absl::StrAppend(&out, c.variant, ",", c.label, ",", e.epoch(), ",",
                      e.step(), ",", CsvNum(e.loss()), ",",
                      CsvNum(e.accuracy()), ",",
                      CsvNum(e.saturation().output_attenuation()), ",",
                      e.diverged() ? 1 : 0);
      for (int l = 0; l < layers; ++l) {
        if (l >= e.saturation().layers_size()) {
          out += ",,,,,,";
          continue;
        }
        const v1::LayerStats& s = e.saturation().layers(l);
        absl::StrAppend(&out, ",", CsvNum(s.mean_derivative()), ",",
                        CsvNum(s.saturated_fraction()), ",",
                        CsvNum(s.mean_activation()), ",", s.dead_units(), ",",
                        CsvNum(s.weight_gradient_norm()), ",",
                        CsvNum(s.bias_gradient_norm()));
      }
      out += "\n";
    }
  }
  return out;
}

nlohmann::json MessageJson(const google::protobuf::Message& m) {
  return nlohmann::json::parse(ToJson(m));
}

nlohmann::json ExperimentJson(const Plan& plan, const PlanResult& result) {
  nlohmann::json curves_json = nlohmann::json::array();
  for (const Curve& c : result.curves) {
    nlohmann::json epochs_json = nlohmann::json::array();
    for (const auto& e : c.epochs) epochs_json.push_back(MessageJson(e));
    curves_json.push_back({{"variant", c.variant},
                           {"label", c.label},
                           {"summary", MessageJson(c.summary)},
                           {"epochs", epochs_json}});
  }
  return {{"preset", plan.name},
          {"title", plan.title},
          {"runs", result.runs},
          {"curves", curves_json}};
}

Table SummaryTable(const Plan& plan, const PlanResult& result) {
  const int epochs = result.epochs;
  const int e1 = epochs / 6, e2 = epochs / 2;
  Table table({"VARIANT", "LOSS@0", absl::StrCat("LOSS@", e1),
               absl::StrCat("LOSS@", e2), absl::StrCat("LOSS@", epochs),
               "ACCURACY", "EPOCHS_TO_HALF", "ATTEN@0", "MEAN_ATTEN",
               "DIVERGED"});
  for (const Curve& c : result.curves) {
    const auto& s = c.summary;
    table.AddRow(
        {c.label, Num(s.initial_loss()), LossAt(c, e1), LossAt(c, e2),
         Num(s.final_loss()),
         plan.classification ? Num(s.final_accuracy()) : "-",
         s.epochs_to_half_loss() > 0 ? absl::StrCat(s.epochs_to_half_loss())
                                     : "never",
         Num(s.initial_output_attenuation()), Num(s.mean_output_attenuation()),
         s.diverged() ? "yes" : "no"});
  }
  return table;
}

}  // namespace satlab::cli
