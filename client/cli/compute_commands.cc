// The commands that compute on a network: forward, grad, step, train, eval.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/command.h"
#include "client/cli/data.h"
#include "client/cli/format.h"
#include "client/cli/progress.h"
#include "client/cli/status_macros.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {
namespace {

constexpr char kNameHelp[] = "networks/ID or ID";
constexpr int kMaxColumns = 1 << 20;

// --inputs/--targets as matrices: "1,2;3,4" or @file.csv.
struct BatchOptions {
  std::string inputs;
  std::string targets;
};

// --data and how to split and scale it.
struct DataOptions {
  std::string data;
  int target_columns = 1;
  int one_hot = 0;
  double input_scale = 1;
};

void AddBatchOptions(CLI::App& app, BatchOptions* o) {
  app.add_option("--inputs", o->inputs, "inputs: 1,2;3,4 or @file.csv")
      ->type_name("M");
  app.add_option("--targets", o->targets, "targets: 0;1 or @file.csv")
      ->type_name("M");
}

// `with_targets` false when the command's --targets is a matrix (eval), in
// which case it declares --targets itself.
void AddDataOptions(CLI::App& app, DataOptions* o, bool with_targets) {
  app.add_option("--data", o->data,
                 "CSV file (.csv or .csv.gz); the last --targets columns "
                 "are targets")
      ->type_name("FILE");
  if (with_targets) {
    AddInteger(app, "--targets", &o->target_columns,
               "number of target columns at the end of each row", 1,
               kMaxColumns)
        ->capture_default_str();
  }
  AddInteger(app, "--one-hot", &o->one_hot,
             "the target column holds class indices 0..N-1: "
             "expand to N one-hot columns",
             0, kMaxColumns)
      ->capture_default_str();
  AddNumber(app, "--input-scale", &o->input_scale,
            "multiply every input by this")
      ->capture_default_str();
}

// An inline matrix that does not parse is a usage error; a file that does
// not is a failure reading data.
absl::StatusOr<Matrix> MatrixArg(const std::string& text,
                                 const std::string& what) {
  auto m = ParseMatrix(text, what);
  if (!m.ok() && !absl::StartsWith(text, "@")) {
    return UsageError(m.status().message());
  }
  return m;
}

absl::StatusOr<v1::Minibatch> BatchFromOptions(const BatchOptions& o) {
  if (o.inputs.empty() || o.targets.empty()) {
    return UsageError(
        "give --inputs and --targets (e.g. --inputs 1 --targets 0, or "
        "--inputs @x.csv --targets @y.csv)");
  }
  SATLAB_ASSIGN_OR_RETURN(x, MatrixArg(o.inputs, "--inputs"));
  SATLAB_ASSIGN_OR_RETURN(y, MatrixArg(o.targets, "--targets"));
  v1::Minibatch batch;
  *batch.mutable_inputs() = ToTensor(x);
  *batch.mutable_targets() = ToTensor(y);
  return batch;
}

absl::StatusOr<Dataset> LoadDataset(const DataOptions& o) {
  SATLAB_ASSIGN_OR_RETURN(csv, ReadCsv(o.data));
  DatasetOptions options;
  options.target_columns = o.target_columns;
  options.one_hot = o.one_hot;
  options.input_scale = o.input_scale;
  return SplitDataset(csv, options);
}

// A tensor's values as "[a, b; c, d]" when small, its norm when large.
absl::StatusOr<std::string> Brief(const v1::Tensor& t,
                                  absl::string_view field) {
  SATLAB_ASSIGN_OR_RETURN(m, MatrixFromTensor(t, field));
  const std::vector<double>& v = m.values;
  if (v.size() > 8) {
    double sq = 0;
    for (double x : v) sq += x * x;
    return absl::StrCat("(", v.size(), " values, norm ", Num(std::sqrt(sq)),
                        ")");
  }
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) {
      out += (m.cols > 0 && i % static_cast<size_t>(m.cols) == 0) ? "; " : ", ";
    }
    out += Num(v[i]);
  }
  return out + "]";
}

void PrintStats(const v1::SaturationStats& stats) {
  Table table(
      {"LAYER", "MEAN_F'(Z)", "SATURATED", "DEAD", "|DW|", "|DB|", "MEAN_A"});
  for (const auto& l : stats.layers()) {
    table.AddRow({absl::StrCat(l.layer()), Num(l.mean_derivative()),
                  Num(l.saturated_fraction()), absl::StrCat(l.dead_units()),
                  Num(l.weight_gradient_norm()), Num(l.bias_gradient_norm()),
                  Num(l.mean_activation())});
  }
  std::cout << table.ToString();
}

absl::Status PrintForward(const v1::ForwardResponse& response) {
  SATLAB_ASSIGN_OR_RETURN(out, MatrixFromTensor(response.outputs(), "outputs"));
  Table table({"ROW", "OUTPUT"});
  for (int64_t r = 0; r < out.rows; ++r) {
    std::vector<std::string> cells;
    for (int64_t c = 0; c < out.cols; ++c) {
      cells.push_back(Num(out.values[r * out.cols + c]));
    }
    table.AddRow({absl::StrCat(r), absl::StrJoin(cells, " ")});
  }
  std::cout << table.ToString();
  for (int i = 0; i < response.layers_size(); ++i) {
    const std::string field = absl::StrCat("layers[", i, "]");
    SATLAB_ASSIGN_OR_RETURN(z, Brief(response.layers(i).z(), field + ".z"));
    SATLAB_ASSIGN_OR_RETURN(a, Brief(response.layers(i).a(), field + ".a"));
    std::cout << "layer " << i << ": z = " << z << "  a = " << a << "\n";
  }
  return absl::OkStatus();
}

absl::Status PrintGradients(const std::string& name,
                            const v1::ComputeGradientsResponse& response) {
  std::vector<const v1::Gradients*> all = {&response.gradients()};
  for (const auto& g : response.counterfactuals()) all.push_back(&g);
  const int layers = response.gradients().layers_size();
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i]->layers_size() != layers) {
      return absl::DataLossError(absl::StrCat(
          "counterfactuals[", i - 1, "].layers: expected ", layers,
          " layers like gradients.layers, got ", all[i]->layers_size()));
    }
  }
  std::cout << name << " at step " << response.step() << "\n\n";
  Table table({"LOSS", "", "VALUE", "ATTENUATION", "OUTPUT_DELTA"});
  for (size_t i = 0; i < all.size(); ++i) {
    SATLAB_ASSIGN_OR_RETURN(delta,
                            Brief(all[i]->output_delta(), "output_delta"));
    table.AddRow({LossName(all[i]->loss()),
                  i == 0 ? "(own)" : "(counterfactual)",
                  Num(all[i]->loss_value()),
                  Num(all[i]->saturation().output_attenuation()), delta});
  }
  std::cout << table.ToString() << "\n";
  Table grads({"LAYER", "LOSS", "DC/DW", "DC/DB"});
  for (int l = 0; l < layers; ++l) {
    const std::string field = absl::StrCat("layers[", l, "]");
    for (const v1::Gradients* g : all) {
      SATLAB_ASSIGN_OR_RETURN(w, Brief(g->layers(l).weights(), field));
      SATLAB_ASSIGN_OR_RETURN(b, Brief(g->layers(l).biases(), field));
      grads.AddRow({absl::StrCat(l), LossName(g->loss()), w, b});
    }
  }
  std::cout << grads.ToString() << "\nsaturation (" << LossName(all[0]->loss())
            << "):\n";
  PrintStats(response.gradients().saturation());
  return absl::OkStatus();
}

void PrintStep(const v1::StepResult& r) {
  std::cout << "step " << r.step() << "  loss " << Num(r.loss())
            << "  accuracy " << Num(r.accuracy()) << "  attenuation "
            << Num(r.saturation().output_attenuation())
            << (r.diverged() ? "  DIVERGED" : "") << "\n";
  PrintStats(r.saturation());
}

struct TrainCommandOptions {
  std::string name;
  DataOptions data;
  int epochs = 1;
  int batch_size = 32;
  uint64_t shuffle_seed = 0;
  bool no_shuffle = false;
  // A response per message: the progress bar needs no more, and a
  // response per step would cost more than the tiny steps themselves.
  int report_every = TrainOptions().batches_per_message;
  int batches_per_message = TrainOptions().batches_per_message;
};

// Trains epoch by epoch (one Train stream each), evaluating on the whole
// dataset after every epoch.
absl::Status RunTrain(Context& ctx, const TrainCommandOptions& o) {
  const std::string name = NetworkNameArg(o.name);
  SATLAB_ASSIGN_OR_RETURN(data, LoadDataset(o.data));
  TrainOptions options;
  options.report_every = o.report_every;
  options.batches_per_message = o.batches_per_message;
  const int64_t per_epoch =
      (data.inputs.rows + o.batch_size - 1) / o.batch_size;
  ProgressBar bar(o.epochs * per_epoch, ctx.progress && !ctx.json);
  Table table({"EPOCH", "STEP", "LOSS", "ACCURACY", "ATTENUATION"});
  nlohmann::json json_epochs = nlohmann::json::array();
  v1::Minibatch all;
  *all.mutable_inputs() = ToTensor(data.inputs);
  *all.mutable_targets() = ToTensor(data.targets);
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    auto batches =
        EpochBatches(data, o.batch_size, !o.no_shuffle, o.shuffle_seed, epoch);
    const int64_t base = epoch * per_epoch;
    auto last = ctx.client->Train(
        name, batches, options, [&](const v1::TrainResponse& r) {
          bar.Update(
              base + std::clamp<int64_t>(r.batches_applied(), 0, per_epoch),
              absl::StrCat("epoch ", epoch + 1, "/", o.epochs, " loss ",
                           Num(r.result().loss())));
        });
    if (!last.ok()) {
      bar.Finish("failed");
      return last.status();
    }
    // The epoch's figures over the whole dataset, after the epoch.
    SATLAB_ASSIGN_OR_RETURN(eval, ctx.client->Evaluate(name, all));
    table.AddRow({absl::StrCat(epoch + 1), absl::StrCat(eval.step()),
                  Num(eval.loss()), Num(eval.accuracy()),
                  Num(eval.saturation().output_attenuation())});
    json_epochs.push_back(
        {{"epoch", epoch + 1},
         {"step", eval.step()},
         {"loss", eval.loss()},
         {"accuracy", eval.accuracy()},
         {"outputAttenuation", eval.saturation().output_attenuation()}});
  }
  bar.Finish("done");
  if (ctx.json) {
    std::cout << nlohmann::json{{"name", name}, {"epochs", json_epochs}}.dump(2)
              << "\n";
  } else {
    std::cout << table.ToString();
  }
  return absl::OkStatus();
}

}  // namespace

Action DeclareForward(CLI::App& app) {
  struct Options {
    std::string name;
    std::string inputs;
    bool layers = false;
  };
  auto o = std::make_shared<Options>();
  app.description("Runs inputs through a network.");
  app.add_option("NAME", o->name, kNameHelp)->required();
  app.add_option("--inputs", o->inputs,
                 "rows separated by ';', values by ',' (1,2;3,4), or "
                 "@file.csv")
      ->type_name("M")
      ->required();
  app.add_flag("--layers", o->layers, "also print every layer's z and a");
  return [o](Context& ctx) -> absl::Status {
    SATLAB_ASSIGN_OR_RETURN(x, MatrixArg(o->inputs, "--inputs"));
    v1::ForwardRequest request;
    request.set_name(NetworkNameArg(o->name));
    *request.mutable_inputs() = ToTensor(x);
    request.set_include_layers(o->layers);
    SATLAB_ASSIGN_OR_RETURN(response, ctx.client->Forward(request));
    if (ctx.json) {
      std::cout << ToJson(response) << "\n";
      return absl::OkStatus();
    }
    return PrintForward(response);
  };
}

Action DeclareGrad(CLI::App& app) {
  struct Options {
    std::string name;
    BatchOptions batch;
    std::string counterfactual;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Loss, gradients, output delta and saturation for one minibatch; "
      "parameters stay as they are. --counterfactual computes the same "
      "under other losses, on the same batch and parameters.");
  app.add_option("NAME", o->name, kNameHelp)->required();
  AddBatchOptions(app, &o->batch);
  app.add_option("--counterfactual", o->counterfactual,
                 "comma-separated losses, e.g. bce")
      ->type_name("LOSS,...");
  return [o](Context& ctx) -> absl::Status {
    v1::ComputeGradientsRequest request;
    request.set_name(NetworkNameArg(o->name));
    SATLAB_ASSIGN_OR_RETURN(batch, BatchFromOptions(o->batch));
    *request.mutable_batch() = std::move(batch);
    for (absl::string_view l :
         absl::StrSplit(o->counterfactual, ',', absl::SkipEmpty())) {
      auto loss = ParseLoss(std::string(l));
      if (!loss.ok()) {
        return UsageError(
            absl::StrCat("--counterfactual: ", loss.status().message()));
      }
      request.add_counterfactual_losses(*loss);
    }
    SATLAB_ASSIGN_OR_RETURN(response, ctx.client->ComputeGradients(request));
    if (ctx.json) {
      std::cout << ToJson(response) << "\n";
      return absl::OkStatus();
    }
    return PrintGradients(request.name(), response);
  };
}

Action DeclareStep(CLI::App& app) {
  struct Options {
    std::string name;
    BatchOptions batch;
  };
  auto o = std::make_shared<Options>();
  app.description("One optimizer step on one minibatch.");
  app.add_option("NAME", o->name, kNameHelp)->required();
  AddBatchOptions(app, &o->batch);
  return [o](Context& ctx) -> absl::Status {
    SATLAB_ASSIGN_OR_RETURN(batch, BatchFromOptions(o->batch));
    SATLAB_ASSIGN_OR_RETURN(
        result, ctx.client->TrainStep(NetworkNameArg(o->name), batch));
    if (ctx.json) {
      std::cout << ToJson(result) << "\n";
    } else {
      PrintStep(result);
    }
    return absl::OkStatus();
  };
}

Action DeclareTrain(CLI::App& app) {
  auto o = std::make_shared<TrainCommandOptions>();
  app.description(
      "Trains a network on a CSV dataset through one Train stream, with a "
      "progress bar; prints the loss per epoch.");
  app.add_option("NAME", o->name, kNameHelp)->required();
  AddInteger(app, "--epochs", &o->epochs, "passes over the data", 1, 1'000'000)
      ->capture_default_str();
  AddInteger(app, "--batch-size", &o->batch_size, "rows per minibatch", 1,
             std::numeric_limits<int32_t>::max())
      ->capture_default_str();
  AddInteger(app, "--shuffle-seed", &o->shuffle_seed,
             "seed of the per-epoch shuffle", 0,
             std::numeric_limits<int64_t>::max())
      ->capture_default_str();
  app.add_flag("--no-shuffle", o->no_shuffle, "keep the file's row order");
  AddInteger(app, "--report-every", &o->report_every,
             "server sends a result every this many steps", 1,
             std::numeric_limits<int32_t>::max())
      ->capture_default_str();
  AddInteger(app, "--batches-per-message", &o->batches_per_message,
             "minibatches sent per stream message (1: one each, for servers "
             "before several per message existed)",
             1, 1024)
      ->capture_default_str();
  AddDataOptions(app, &o->data, /*with_targets=*/true);
  app.get_option("--data")->required();
  return [o](Context& ctx) { return RunTrain(ctx, *o); };
}

Action DeclareEval(CLI::App& app) {
  struct Options {
    std::string name;
    BatchOptions batch;
    DataOptions data;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Loss, accuracy and saturation over a dataset (--data FILE.csv, or "
      "--inputs M --targets M); no update.");
  app.add_option("NAME", o->name, kNameHelp)->required();
  app.add_option("--inputs", o->batch.inputs, "inputs: 1,2;3,4 or @file.csv")
      ->type_name("M");
  app.add_option("--targets", o->batch.targets,
                 "targets: 0;1 or @file.csv; with --data, the number of "
                 "target columns at the end of each row (default 1)")
      ->type_name("M|N");
  AddDataOptions(app, &o->data, /*with_targets=*/false);
  return [o](Context& ctx) -> absl::Status {
    v1::Minibatch data;
    if (!o->data.data.empty()) {
      DataOptions options = o->data;
      if (!o->batch.targets.empty() &&
          (!absl::SimpleAtoi(o->batch.targets, &options.target_columns) ||
           options.target_columns < 1)) {
        return UsageError(absl::StrCat(
            "--targets: with --data, expected a number of columns >= 1, "
            "got \"",
            o->batch.targets, "\""));
      }
      SATLAB_ASSIGN_OR_RETURN(d, LoadDataset(options));
      *data.mutable_inputs() = ToTensor(d.inputs);
      *data.mutable_targets() = ToTensor(d.targets);
    } else {
      SATLAB_ASSIGN_OR_RETURN(batch, BatchFromOptions(o->batch));
      data = std::move(batch);
    }
    SATLAB_ASSIGN_OR_RETURN(
        result, ctx.client->Evaluate(NetworkNameArg(o->name), data));
    if (ctx.json) {
      std::cout << ToJson(result) << "\n";
      return absl::OkStatus();
    }
    std::cout << "samples " << result.samples() << "  loss "
              << Num(result.loss()) << "  accuracy " << Num(result.accuracy())
              << "  attenuation "
              << Num(result.saturation().output_attenuation()) << "  (step "
              << result.step() << ")\n";
    PrintStats(result.saturation());
    return absl::OkStatus();
  };
}

}  // namespace satlab::cli
