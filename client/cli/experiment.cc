// `satlab experiment PRESET|spec.json --out DIR`: runs saturation
// experiments through RunExperiment (or, for `factor`, one ComputeGradients
// call), prints a summary table, and writes every curve as CSV and JSON and
// every figure as PNG and SVG (rendered by gnuplot) into DIR.
//
// Presets (each reproduces a published observation):
//   nielsen  one sigmoid neuron, x = 1 -> y = 0, eta = 0.15, 300 epochs, from
//            (w, b) = (0.6, 0.9) and (2, 2), mse vs bce (Nielsen, NNDL ch. 3)
//   factor   dC/dz at the output under mse and cross-entropy as a function
//            of the output a: the a(1 - a) factor
//   glorot   deep sigmoid net, +-1/sqrt(fan_in) init, softmax+cce vs
//            sigmoid+mse, per-layer saturation (Glorot & Bengio 2010, fig. 2)
//   digits   sklearn's 8x8 digits: softmax+cce vs sigmoid+mse vs softmax+mse
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/args.h"
#include "client/cli/commands.h"
#include "client/cli/data.h"
#include "client/cli/figures.h"
#include "client/cli/format.h"
#include "client/cli/progress.h"
#include "client/cli/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {
namespace {

constexpr char kDigitsPath[] =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// Per-layer columns of the curves CSV, after the 8 fixed ones.
constexpr int kFixedColumns = 8;
constexpr int kLayerColumns = 6;
constexpr const char* kLayerFields[kLayerColumns] = {
    "mean_derivative", "saturated_fraction",   "mean_activation",
    "dead_units",      "weight_gradient_norm", "bias_gradient_norm"};

// One RunExperiment call of a plan; its variants are renumbered after the
// previous runs' and their labels get `suffix`.
struct Run {
  v1::ExperimentSpec spec;
  std::string suffix;
};

// What `satlab experiment X` does.
struct Plan {
  std::string name;   // file stem in --out
  std::string title;  // figure titles
  std::vector<Run> runs;
  bool classification = true;
  // Plot the output unit's activation a (single-neuron presets).
  bool plot_output = false;
};

// One variant's curve over all epochs (epoch 0 first).
struct Curve {
  int variant = 0;
  int run = 0;  // index into Plan::runs
  std::string label;
  std::vector<v1::EpochMetrics> epochs;
  v1::VariantSummary summary;
};

v1::ExperimentVariant Variant(const std::string& label, v1::Activation output,
                              v1::Loss loss) {
  v1::ExperimentVariant v;
  v.set_label(label);
  v.set_output_activation(output);
  v.set_loss(loss);
  return v;
}

void SetSgd(v1::ExperimentSpec* spec, double learning_rate) {
  spec->mutable_optimizer()->mutable_sgd()->set_learning_rate(learning_rate);
}

// Nielsen ch. 3: one sigmoid neuron, x = 1, y = 0, eta = 0.15, 300 epochs.
Plan NielsenPlan(int epochs) {
  Plan plan;
  plan.name = "nielsen";
  plan.title = "One sigmoid neuron learning x = 1 -> y = 0 (eta = 0.15)";
  plan.classification = false;
  plan.plot_output = true;
  for (const auto& [w, b] : {std::pair{0.6, 0.9}, std::pair{2.0, 2.0}}) {
    Run run;
    v1::ExperimentSpec& spec = run.spec;
    spec.set_display_name(absl::StrCat("nielsen, start w=", w, " b=", b));
    spec.mutable_dataset()->mutable_builtin()->set_kind(
        v1::DATASET_KIND_SINGLE_SAMPLE);
    v1::Initialization* init = spec.mutable_init();
    init->set_scheme(v1::INIT_SCHEME_EXPLICIT);
    v1::LayerParameters* p = init->add_parameters();
    *p->mutable_weights() = MakeTensor(1, 1, {w});
    *p->mutable_biases() = MakeVector({b});
    *spec.add_variants() = Variant("mse", v1::ACTIVATION_SIGMOID, v1::LOSS_MSE);
    *spec.add_variants() = Variant("bce", v1::ACTIVATION_SIGMOID, v1::LOSS_BCE);
    spec.set_epochs(epochs > 0 ? epochs : 300);
    spec.set_no_shuffle(true);
    SetSgd(&spec, 0.15);
    spec.set_dtype(v1::DTYPE_FLOAT64);
    run.suffix = absl::StrCat(" from w=", w, " b=", b);
    plan.runs.push_back(std::move(run));
  }
  return plan;
}

absl::StatusOr<v1::Minibatch> ReadDigits(const std::string& path) {
  SATLAB_ASSIGN_OR_RETURN(csv, ReadCsv(path));
  DatasetOptions options;
  options.target_columns = 1;
  options.one_hot = 10;
  options.input_scale = 1.0 / 16.0;  // pixels 0..16 -> [0, 1]
  SATLAB_ASSIGN_OR_RETURN(data, SplitDataset(csv, options));
  v1::Minibatch batch;
  *batch.mutable_inputs() = ToTensor(data.inputs);
  *batch.mutable_targets() = ToTensor(data.targets);
  return batch;
}

// Glorot & Bengio (2010), fig. 2: sigmoid hidden layers with the standard
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init; the top hidden layer saturates
// (activations pushed to 0) early in training.
absl::StatusOr<Plan> GlorotPlan(int epochs, const std::string& digits) {
  Plan plan;
  plan.name = "glorot";
  plan.title = "Deep sigmoid net (digits, 4 hidden layers, standard init)";
  Run run;
  v1::ExperimentSpec& spec = run.spec;
  spec.set_display_name("glorot");
  SATLAB_ASSIGN_OR_RETURN(batch, ReadDigits(digits));
  *spec.mutable_dataset()->mutable_inline_() = std::move(batch);
  for (int l = 0; l < 4; ++l) {
    v1::LayerSpec* layer = spec.add_hidden_layers();
    layer->set_units(100);
    layer->set_activation(v1::ACTIVATION_SIGMOID);
  }
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_UNIFORM_FAN_IN);
  spec.mutable_init()->set_seed(1);
  *spec.add_variants() =
      Variant("softmax+cce", v1::ACTIVATION_SOFTMAX, v1::LOSS_CCE);
  *spec.add_variants() =
      Variant("sigmoid+mse", v1::ACTIVATION_SIGMOID, v1::LOSS_MSE);
  spec.set_epochs(epochs > 0 ? epochs : 40);
  spec.set_batch_size(10);
  spec.set_shuffle_seed(1);
  SetSgd(&spec, 0.1);
  plan.runs.push_back(std::move(run));
  return plan;
}

absl::StatusOr<Plan> DigitsPlan(int epochs, const std::string& digits) {
  Plan plan;
  plan.name = "digits";
  plan.title = "Handwritten digits (8x8, 1797 images), 64-30-10";
  Run run;
  v1::ExperimentSpec& spec = run.spec;
  spec.set_display_name("digits");
  SATLAB_ASSIGN_OR_RETURN(batch, ReadDigits(digits));
  *spec.mutable_dataset()->mutable_inline_() = std::move(batch);
  v1::LayerSpec* layer = spec.add_hidden_layers();
  layer->set_units(30);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_UNIFORM_FAN_IN);
  spec.mutable_init()->set_seed(1);
  *spec.add_variants() =
      Variant("softmax+cce", v1::ACTIVATION_SOFTMAX, v1::LOSS_CCE);
  *spec.add_variants() =
      Variant("sigmoid+mse", v1::ACTIVATION_SIGMOID, v1::LOSS_MSE);
  *spec.add_variants() =
      Variant("softmax+mse", v1::ACTIVATION_SOFTMAX, v1::LOSS_MSE);
  spec.set_epochs(epochs > 0 ? epochs : 30);
  spec.set_batch_size(10);
  spec.set_shuffle_seed(1);
  SetSgd(&spec, 0.5);
  plan.runs.push_back(std::move(run));
  return plan;
}

absl::StatusOr<Plan> SpecFilePlan(const std::string& path, int epochs) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  Run run;
  google::protobuf::util::JsonParseOptions options;
  const auto status = google::protobuf::util::JsonStringToMessage(
      text.str(), &run.spec, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an ExperimentSpec in proto3 JSON: ",
                     status.message().as_string()));
  }
  if (epochs > 0) run.spec.set_epochs(epochs);
  Plan plan;
  std::string stem = path.substr(path.find_last_of('/') + 1);
  if (absl::EndsWith(stem, ".json")) stem.resize(stem.size() - 5);
  plan.name = stem;
  plan.title = run.spec.display_name().empty() ? stem : run.spec.display_name();
  const auto& data = run.spec.dataset();
  plan.classification =
      !(data.has_builtin() &&
        data.builtin().kind() == v1::DATASET_KIND_SINGLE_SAMPLE);
  plan.plot_output = !plan.classification && run.spec.hidden_layers().empty();
  plan.runs.push_back(std::move(run));
  return plan;
}

std::string CleanLabel(std::string label) {
  return absl::StrReplaceAll(label, {{",", ";"}, {"\"", "'"}, {"\n", " "}});
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

// 1-based CSV column of layer `l`'s field `f`.
int LayerColumn(int l, int f) {
  return kFixedColumns + kLayerColumns * l + f + 1;
}

// "x:(column 1 == v ? y : undefined)".
std::string Using(int variant, const std::string& x, const std::string& y) {
  return absl::StrCat(x, ":($1==", variant, " ? ", y, " : 1/0)");
}

std::vector<Figure> CurveFigures(const Plan& plan,
                                 const std::vector<Curve>& curves,
                                 int hidden_layers) {
  const std::string csv = plan.name + ".csv";
  const std::string epoch_label = "epoch (passes over the training data)";
  auto per_variant = [&](const std::string& y) {
    std::vector<Series> series;
    for (const Curve& c : curves) {
      series.push_back({csv, Using(c.variant, "3", y), c.label, "", "lines"});
    }
    return series;
  };
  std::vector<Figure> figures;

  // Learning curves: one panel per run (e.g. per starting point), so each
  // compares its losses from identical parameters.
  const int runs = static_cast<int>(plan.runs.size());
  Figure loss{plan.name + "_loss",
              plan.title + ": learning curves",
              {},
              runs,
              runs > 1 ? 1300 : 960,
              runs > 1 ? 560 : 600};
  for (int r = 0; r < runs; ++r) {
    Panel panel{plan.runs[r].spec.display_name(),
                epoch_label,
                "mean cost per sample (mse: ½(a−y)²; ce: nats)",
                false,
                "set yrange [0:*]",
                {}};
    for (const Curve& c : curves) {
      if (c.run != r) continue;
      panel.series.push_back(
          {csv, Using(c.variant, "3", "$5"), c.label, "", "lines"});
    }
    loss.panels.push_back(panel);
  }
  figures.push_back(loss);

  if (plan.classification) {
    Figure acc{plan.name + "_accuracy", plan.title + ": accuracy", {}, 1};
    acc.panels.push_back({"", epoch_label,
                          "training accuracy (fraction classified correctly)",
                          false, "set yrange [0:1.02]\nset key bottom right",
                          per_variant("$6")});
    figures.push_back(acc);
  }

  Figure att{plan.name + "_attenuation",
             plan.title + ": output attenuation ‖δ‖/‖a−y‖",
             {},
             1};
  att.panels.push_back(
      {"", epoch_label,
       "‖δ‖ / ‖a − y‖ at the output (1 = no attenuation; log scale)", true,
       "set yrange [*:2]\nset key bottom right", per_variant("$7")});
  figures.push_back(att);

  if (plan.plot_output) {
    Figure out{
        plan.name + "_output", plan.title + ": output a (target 0)", {}, 1};
    out.panels.push_back({"", epoch_label, "output activation a = σ(w·1 + b)",
                          false, "set yrange [0:1]",
                          per_variant(absl::StrCat("$", LayerColumn(0, 2)))});
    figures.push_back(out);
  }

  if (hidden_layers > 0) {
    // Per variant: one line per hidden layer.
    auto per_layer = [&](const Curve& c, int field) {
      std::vector<Series> series;
      for (int l = 0; l < hidden_layers; ++l) {
        series.push_back(
            {csv,
             Using(c.variant, "3", absl::StrCat("$", LayerColumn(l, field))),
             absl::StrCat("hidden layer ", l + 1,
                          l + 1 == hidden_layers ? " (top)" : ""),
             "", "lines"});
      }
      return series;
    };
    Figure act{plan.name + "_activations",
               plan.title + ": mean activation per hidden layer",
               {},
               static_cast<int>(std::min<size_t>(curves.size(), 3)),
               std::min<int>(1500, 520 * static_cast<int>(curves.size())),
               520};
    Figure sat{plan.name + "_saturation",
               plan.title + ": mean f′(z) per hidden layer",
               {},
               act.columns,
               act.width,
               520};
    for (const Curve& c : curves) {
      act.panels.push_back({c.label, epoch_label,
                            "mean sigmoid activation a over units and samples",
                            false, "set yrange [0:1]", per_layer(c, 2)});
      sat.panels.push_back(
          {c.label, epoch_label,
           "mean σ′(z) = a(1 − a) (0.25 = unsaturated; → 0 = saturated)", false,
           "set yrange [0:0.26]\nset key bottom left", per_layer(c, 0)});
    }
    figures.push_back(act);
    figures.push_back(sat);
  }
  return figures;
}

// Loss at epoch e of a curve ("-" when missing).
std::string LossAt(const Curve& c, int e) {
  for (const auto& m : c.epochs) {
    if (m.epoch() == e) return Num(m.loss());
  }
  return "-";
}

absl::Status RunPlan(Context& ctx, const Plan& plan, const std::string& dir,
                     bool figures, absl::Duration timeout, int parallelism) {
  int64_t total = 0;
  for (const Run& run : plan.runs) {
    total += static_cast<int64_t>(run.spec.variants_size()) *
             (run.spec.epochs() + 1);
  }
  ProgressBar bar(total, ctx.progress && !ctx.json);
  std::vector<Curve> curves;
  nlohmann::json runs_json = nlohmann::json::array();
  int64_t done_before = 0;
  int hidden_layers = 0;
  int epochs = 0;
  double elapsed = 0;
  for (const Run& run : plan.runs) {
    v1::RunExperimentRequest request;
    *request.mutable_spec() = run.spec;
    if (parallelism > 0) request.mutable_spec()->set_parallelism(parallelism);
    const int offset = static_cast<int>(curves.size());
    for (int v = 0; v < run.spec.variants_size(); ++v) {
      Curve c;
      c.variant = offset + v;
      c.run = static_cast<int>(&run - plan.runs.data());
      curves.push_back(c);
    }
    hidden_layers = std::max(hidden_layers, run.spec.hidden_layers_size());
    epochs = std::max(epochs, run.spec.epochs());
    auto summary = ctx.client->RunExperiment(
        request,
        [&](const v1::RunExperimentResponse& m) {
          if (m.has_epoch()) {
            Curve& c = curves[offset + m.epoch().variant()];
            c.label = CleanLabel(m.epoch().label() + run.suffix);
            c.epochs.push_back(m.epoch());
            c.epochs.back().set_variant(c.variant);
            c.epochs.back().set_label(c.label);
          }
          bar.Update(done_before + m.epochs_done(),
                     absl::StrCat(run.spec.display_name(), " ", m.epochs_done(),
                                  "/", m.epochs_total()));
          return true;
        },
        timeout);
    if (!summary.ok()) {
      bar.Finish("failed");
      return summary.status();
    }
    done_before += static_cast<int64_t>(run.spec.variants_size()) *
                   (run.spec.epochs() + 1);
    elapsed += summary->elapsed_seconds();
    for (const v1::VariantSummary& s : summary->variants()) {
      Curve& c = curves[offset + s.variant()];
      c.summary = s;
      c.summary.set_variant(c.variant);
      c.summary.set_label(c.label);
    }
    v1::ExperimentSpec spec_copy = run.spec;
    if (spec_copy.dataset().has_inline_()) {
      // The data is in the CSV the user gave; keep the JSON readable.
      spec_copy.mutable_dataset()->mutable_inline_()->Clear();
    }
    runs_json.push_back(
        {{"spec", MessageJson(spec_copy)}, {"summary", MessageJson(*summary)}});
  }
  bar.Finish(absl::StrFormat("done in %.2f s of server compute", elapsed));
  for (Curve& c : curves) {
    std::sort(
        c.epochs.begin(), c.epochs.end(),
        [](const auto& a, const auto& b) { return a.epoch() < b.epoch(); });
  }

  // Files.
  SATLAB_RETURN_IF_ERROR(MakeDir(dir));
  const int layers = hidden_layers + 1;
  SATLAB_RETURN_IF_ERROR(WriteFile(absl::StrCat(dir, "/", plan.name, ".csv"),
                                   CurvesCsv(curves, layers)));
  nlohmann::json curves_json = nlohmann::json::array();
  for (const Curve& c : curves) {
    nlohmann::json epochs_json = nlohmann::json::array();
    for (const auto& e : c.epochs) epochs_json.push_back(MessageJson(e));
    curves_json.push_back({{"variant", c.variant},
                           {"label", c.label},
                           {"summary", MessageJson(c.summary)},
                           {"epochs", epochs_json}});
  }
  const nlohmann::json all = {{"preset", plan.name},
                              {"title", plan.title},
                              {"runs", runs_json},
                              {"curves", curves_json}};
  SATLAB_RETURN_IF_ERROR(
      WriteFile(absl::StrCat(dir, "/", plan.name, ".json"), all.dump() + "\n"));

  // Summary table (also written as <name>_summary.txt).
  const int e1 = epochs / 6, e2 = epochs / 2;
  Table table({"VARIANT", "LOSS@0", absl::StrCat("LOSS@", e1),
               absl::StrCat("LOSS@", e2), absl::StrCat("LOSS@", epochs),
               "ACCURACY", "EPOCHS_TO_HALF", "ATTEN@0", "MEAN_ATTEN",
               "DIVERGED"});
  for (const Curve& c : curves) {
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
  SATLAB_RETURN_IF_ERROR(WriteFile(
      absl::StrCat(dir, "/", plan.name, "_summary.txt"), table.ToString()));
  if (ctx.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Curve& c : curves) out.push_back(MessageJson(c.summary));
    std::cout
        << nlohmann::json({{"preset", plan.name}, {"variants", out}}).dump(1)
        << "\n";
  } else {
    std::cout << table.ToString();
  }

  if (!figures) return absl::OkStatus();
  if (!GnuplotAvailable()) {
    std::cerr << "note: gnuplot not found; wrote CSV/JSON only\n";
    return absl::OkStatus();
  }
  for (const Figure& f : CurveFigures(plan, curves, hidden_layers)) {
    SATLAB_RETURN_IF_ERROR(RenderFigure(f, dir));
  }
  if (ctx.progress && !ctx.json) {
    std::cerr << "wrote " << dir << "/" << plan.name
              << "{.csv,.json,_summary.txt} and figures (.png, .svg, .gp)\n";
  }
  return absl::OkStatus();
}

// The `factor` preset: one ComputeGradients call over a batch whose rows
// put one sigmoid neuron (w = 1, b = 0) at outputs a in (0, 1), target 0,
// under mse and (counterfactually) bce.
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
  Figure f{"factor",
           "Output gradient δ = ∂C/∂z of a sigmoid unit with target y = 0",
           {},
           1};
  f.panels.push_back(
      {"",
       "output a = σ(z)  (target y = 0: larger a = more wrong)",
       "δ = ∂C/∂z per sample",
       false,
       "set key top left\nset xrange [0:1]\nset yrange [0:1]\n"
       "set label 1 'a=0.6: a(1−a) = 0.24' at 0.6,0.24 point pt 7 offset "
       "1,-1\n"
       "set label 2 'a=0.95: a(1−a) = 0.0475' at 0.95,0.0475 point pt 7 "
       "right offset -1,3",
       {{"factor.csv", "1:4", "cross-entropy: δ = a − y", "", "lines"},
        {"factor.csv", "1:3", "mse: δ = (a − y)·a(1 − a)", "", "lines"},
        {"factor.csv", "1:2", "the factor σ′(z) = a(1 − a)", "dashtype 2",
         "lines"}}});
  SATLAB_RETURN_IF_ERROR(RenderFigure(f, dir));
  if (ctx.progress && !ctx.json) {
    std::cerr << "wrote " << dir
              << "/factor{.csv,_summary.txt,.png,.svg,.gp}\n";
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunExperimentCommand(Context& ctx,
                                  const std::vector<std::string>& argv) {
  Args args(
      "satlab experiment nielsen|factor|glorot|digits|SPEC.json "
      "[--out DIR]",
      "Runs a saturation experiment; writes curves (CSV, JSON) and "
      "figures (PNG, SVG via gnuplot) to --out.");
  args.Positional("PRESET|SPEC.json",
                  "a preset name, or an ExperimentSpec in proto3 JSON")
      .Option("out", "output directory", "satlab-experiment")
      .Option("epochs", "override the preset's epochs (0 = keep)", "0")
      .Option("digits", "the digits CSV (64 pixel columns 0..16 + label)",
              kDigitsPath)
      .Option("parallelism", "variants trained at once (0 = server default)",
              "0")
      .Option("timeout", "deadline of each run in seconds (0 = none)", "0")
      .Flag("no-figures", "write CSV/JSON only");
  SATLAB_RETURN_IF_ERROR(args.Parse(argv));
  if (args.help_requested()) {
    std::cout << args.Help();
    return absl::OkStatus();
  }
  SATLAB_ASSIGN_OR_RETURN(what, args.Arg(0, "PRESET|SPEC.json"));
  SATLAB_ASSIGN_OR_RETURN(epochs, args.GetInt("epochs"));
  SATLAB_ASSIGN_OR_RETURN(parallelism, args.GetInt("parallelism"));
  SATLAB_ASSIGN_OR_RETURN(timeout_s, args.GetDouble("timeout"));
  const std::string dir = args.Get("out");
  const bool figures = !args.GetFlag("no-figures");
  const absl::Duration timeout =
      timeout_s > 0 ? absl::Seconds(timeout_s) : absl::InfiniteDuration();
  if (epochs < 0 || epochs > 1'000'000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--epochs: expected 0..1000000, got ", epochs));
  }
  const int e = static_cast<int>(epochs);
  if (what == "factor") return RunFactor(ctx, dir, figures);
  Plan plan;
  if (what == "nielsen") {
    plan = NielsenPlan(e);
  } else if (what == "glorot") {
    SATLAB_ASSIGN_OR_RETURN(p, GlorotPlan(e, args.Get("digits")));
    plan = std::move(p);
  } else if (what == "digits") {
    SATLAB_ASSIGN_OR_RETURN(p, DigitsPlan(e, args.Get("digits")));
    plan = std::move(p);
  } else if (absl::EndsWith(what, ".json")) {
    SATLAB_ASSIGN_OR_RETURN(p, SpecFilePlan(what, e));
    plan = std::move(p);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "PRESET: expected nielsen, factor, glorot, digits or a .json spec, "
        "got \"",
        what, "\""));
  }
  return RunPlan(ctx, plan, dir, figures, timeout,
                 static_cast<int>(parallelism));
}

}  // namespace satlab::cli
