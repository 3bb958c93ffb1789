#include "client/cli/commands.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/args.h"
#include "client/cli/data.h"
#include "client/cli/format.h"
#include "client/cli/progress.h"
#include "client/cli/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace satlab::cli {
namespace {

// Parses argv; on --help prints the help and returns false.
absl::StatusOr<bool> ParseArgs(Args& args,
                               const std::vector<std::string>& argv) {
  SATLAB_RETURN_IF_ERROR(args.Parse(argv));
  if (args.help_requested()) {
    std::cout << args.Help();
    return false;
  }
  return true;
}

void PrintNetworks(const std::vector<v1::Network>& networks) {
  Table table({"NAME", "ARCHITECTURE", "LOSS", "DTYPE", "STEP", "SAMPLES",
               "PARAMETERS"});
  for (const auto& n : networks) {
    table.AddRow({n.name(), Architecture(n.spec()), LossName(n.spec().loss()),
                  n.spec().dtype() == v1::DTYPE_FLOAT32 ? "float32" : "float64",
                  absl::StrCat(n.step()), absl::StrCat(n.samples_seen()),
                  absl::StrCat(n.parameter_count())});
  }
  std::cout << table.ToString();
}

// A tensor's values as "[a, b; c, d]" when small, its norm when large.
std::string Brief(const v1::Tensor& t) {
  std::vector<double> v = TensorValues(t);
  if (v.size() > 8) {
    double sq = 0;
    for (double x : v) sq += x * x;
    return absl::StrCat("(", v.size(), " values, norm ", Num(std::sqrt(sq)),
                        ")");
  }
  std::vector<std::string> cells;
  const int64_t cols = t.shape_size() == 2 ? t.shape(1) : 0;
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += (cols > 0 && i % cols == 0) ? "; " : ", ";
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

// `text` itself, or the contents of the file when it is "@path".
absl::StatusOr<std::string> TextOrFile(const std::string& text) {
  if (!absl::StartsWith(text, "@")) return text;
  std::ifstream in(text.substr(1));
  if (!in) return absl::NotFoundError("cannot open " + text.substr(1));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// One network as a table, or as JSON with --json.
void PrintNetwork(const Context& ctx, const v1::Network& network) {
  if (ctx.json) {
    std::cout << ToJson(network) << "\n";
  } else {
    PrintNetworks({network});
  }
}

absl::StatusOr<v1::Minibatch> BatchFromArgs(const Args& args) {
  if (!args.Has("inputs") || !args.Has("targets")) {
    return absl::InvalidArgumentError(
        "give --inputs and --targets (e.g. --inputs 1 --targets 0, or "
        "--inputs @x.csv --targets @y.csv)");
  }
  SATLAB_ASSIGN_OR_RETURN(x, ParseMatrix(args.Get("inputs"), "--inputs"));
  SATLAB_ASSIGN_OR_RETURN(y, ParseMatrix(args.Get("targets"), "--targets"));
  v1::Minibatch batch;
  *batch.mutable_inputs() = ToTensor(x);
  *batch.mutable_targets() = ToTensor(y);
  return batch;
}

Args& DataOptions(Args& args) {
  return args
      .Option("data",
              "CSV file (.csv or .csv.gz); the last --targets columns "
              "are targets")
      .Option("targets", "number of target columns at the end of each row", "1")
      .Option("one-hot",
              "the target column holds class indices 0..N-1: "
              "expand to N one-hot columns",
              "0")
      .Option("input-scale", "multiply every input by this", "1");
}

absl::StatusOr<Dataset> DatasetFromArgs(const Args& args) {
  SATLAB_ASSIGN_OR_RETURN(csv, ReadCsv(args.Get("data")));
  DatasetOptions options;
  SATLAB_ASSIGN_OR_RETURN(targets, args.GetInt("targets"));
  SATLAB_ASSIGN_OR_RETURN(one_hot, args.GetInt("one-hot"));
  SATLAB_ASSIGN_OR_RETURN(scale, args.GetDouble("input-scale"));
  options.target_columns = static_cast<int>(targets);
  options.one_hot = static_cast<int>(one_hot);
  options.input_scale = scale;
  return SplitDataset(csv, options);
}

// --- commands ---

absl::Status Create(Context& ctx, const std::vector<std::string>& argv) {
  Args args(
      "satlab create [ID] --input-size N --layers U:ACT[,U:ACT...] "
      "--loss LOSS [options]",
      "Creates a network. ID is optional (the server assigns one).");
  args.Positional("ID", "network id: [a-z][a-z0-9-]*, at most 63 characters")
      .Option("spec",
              "read the whole NetworkSpec from a proto3 JSON file "
              "(other spec options are ignored)")
      .Option("input-size", "number of input features")
      .Option("layers",
              "comma-separated units:activation, first hidden "
              "to output, e.g. 30:sigmoid,10:softmax")
      .Option("loss", "mse, bce or cce")
      .Option("init",
              "zeros, uniform_fan_in, glorot_uniform, glorot_normal, "
              "he_normal, normal, explicit",
              "uniform_fan_in")
      .Option("seed", "seed of the initialization", "0")
      .Option("mean", "mean of --init normal", "0")
      .Option("std", "standard deviation of --init normal", "1")
      .Option("params",
              "--init explicit: parameters as JSON "
              "{\"layers\":[{\"weights\":[[..]],\"biases\":[..]}]} "
              "or @file.json")
      .Option("optimizer", "sgd or adam", "sgd")
      .Option("lr", "learning rate", "0.1")
      .Option("momentum", "SGD momentum", "0")
      .Flag("nesterov", "SGD with Nesterov momentum")
      .Option("weight-decay", "L2 penalty coefficient", "0")
      .Option("dtype", "float32 or float64", "float64")
      .Option("theta", "saturation threshold: f'(z) < theta * max f'", "0.1");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();

  v1::NetworkSpec spec;
  if (args.Has("spec")) {
    SATLAB_ASSIGN_OR_RETURN(text, TextOrFile("@" + args.Get("spec")));
    if (auto s = google::protobuf::util::JsonStringToMessage(text, &spec);
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(args.Get("spec"), ": ", s.ToString()));
    }
  } else {
    if (!args.Has("input-size") || !args.Has("layers") || !args.Has("loss")) {
      return absl::InvalidArgumentError(
          "create needs --input-size, --layers and --loss (or --spec); see "
          "satlab create --help");
    }
    SATLAB_ASSIGN_OR_RETURN(input_size, args.GetInt("input-size"));
    spec.set_input_size(static_cast<int32_t>(input_size));
    for (const std::string& layer :
         std::vector<std::string>(absl::StrSplit(args.Get("layers"), ','))) {
      std::vector<std::string> parts = absl::StrSplit(layer, ':');
      int units;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &units)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--layers: expected units:activation, got \"", layer, "\""));
      }
      SATLAB_ASSIGN_OR_RETURN(activation, ParseActivation(parts[1]));
      v1::LayerSpec* l = spec.add_layers();
      l->set_units(units);
      l->set_activation(activation);
    }
    SATLAB_ASSIGN_OR_RETURN(loss, ParseLoss(args.Get("loss")));
    spec.set_loss(loss);
    v1::InitScheme scheme;
    if (!v1::InitScheme_Parse(
            absl::StrCat("INIT_SCHEME_",
                         absl::AsciiStrToUpper(args.Get("init"))),
            &scheme)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--init: unknown scheme \"", args.Get("init"), "\""));
    }
    v1::Initialization* init = spec.mutable_init();
    init->set_scheme(scheme);
    SATLAB_ASSIGN_OR_RETURN(seed, args.GetInt("seed"));
    init->set_seed(static_cast<uint64_t>(seed));
    SATLAB_ASSIGN_OR_RETURN(mean, args.GetDouble("mean"));
    SATLAB_ASSIGN_OR_RETURN(std_dev, args.GetDouble("std"));
    init->set_mean(mean);
    init->set_std(std_dev);
    if (args.Has("params")) {
      SATLAB_ASSIGN_OR_RETURN(text, TextOrFile(args.Get("params")));
      v1::SetParametersRequest parsed;
      SATLAB_RETURN_IF_ERROR(ParamsFromJson(text, &parsed));
      *init->mutable_parameters() = parsed.layers();
      init->set_scheme(v1::INIT_SCHEME_EXPLICIT);
    }
    SATLAB_ASSIGN_OR_RETURN(lr, args.GetDouble("lr"));
    SATLAB_ASSIGN_OR_RETURN(weight_decay, args.GetDouble("weight-decay"));
    if (args.Get("optimizer") == "adam") {
      spec.mutable_optimizer()->mutable_adam()->set_learning_rate(lr);
      spec.mutable_optimizer()->mutable_adam()->set_weight_decay(weight_decay);
    } else if (args.Get("optimizer") == "sgd") {
      SATLAB_ASSIGN_OR_RETURN(momentum, args.GetDouble("momentum"));
      v1::Sgd* sgd = spec.mutable_optimizer()->mutable_sgd();
      sgd->set_learning_rate(lr);
      sgd->set_momentum(momentum);
      sgd->set_nesterov(args.GetFlag("nesterov"));
      sgd->set_weight_decay(weight_decay);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--optimizer: expected sgd or adam, got \"",
                       args.Get("optimizer"), "\""));
    }
    const std::string dtype = args.Get("dtype");
    if (dtype != "float32" && dtype != "float64") {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dtype: expected float32 or float64, got \"", dtype, "\""));
    }
    spec.set_dtype(dtype == "float32" ? v1::DTYPE_FLOAT32 : v1::DTYPE_FLOAT64);
    SATLAB_ASSIGN_OR_RETURN(theta, args.GetDouble("theta"));
    spec.set_saturation_threshold(theta);
  }
  const std::string id = args.positional().empty() ? "" : args.positional()[0];
  SATLAB_ASSIGN_OR_RETURN(network, ctx.client->CreateNetwork(spec, id));
  PrintNetwork(ctx, network);
  return absl::OkStatus();
}

absl::Status Get(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab get NAME", "Shows a network.");
  args.Positional("NAME", "networks/ID or ID");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  SATLAB_ASSIGN_OR_RETURN(network,
                          ctx.client->GetNetwork(NetworkNameArg(name)));
  PrintNetwork(ctx, network);
  return absl::OkStatus();
}

absl::Status List(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab list [--page-size N] [--page-token T]",
            "Lists networks in name order (every page unless --page-size).");
  args.Option("page-size", "networks per page (one page only)")
      .Option("page-token", "token printed after the previous page");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  if (args.Has("page-size")) {
    SATLAB_ASSIGN_OR_RETURN(size, args.GetInt("page-size"));
    SATLAB_ASSIGN_OR_RETURN(page,
                            ctx.client->ListNetworks(static_cast<int>(size),
                                                     args.Get("page-token")));
    if (ctx.json) {
      std::cout << ToJson(page) << "\n";
      return absl::OkStatus();
    }
    PrintNetworks({page.networks().begin(), page.networks().end()});
    if (!page.next_page_token().empty()) {
      std::cout << "next page: --page-token " << page.next_page_token() << "\n";
    }
    return absl::OkStatus();
  }
  SATLAB_ASSIGN_OR_RETURN(all, ctx.client->ListAllNetworks());
  if (ctx.json) {
    v1::ListNetworksResponse response;
    for (auto& n : all) *response.add_networks() = n;
    std::cout << ToJson(response) << "\n";
  } else {
    PrintNetworks(all);
  }
  return absl::OkStatus();
}

absl::Status Delete(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab delete NAME", "Deletes a network.");
  args.Positional("NAME", "networks/ID or ID");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  SATLAB_RETURN_IF_ERROR(ctx.client->DeleteNetwork(NetworkNameArg(name)));
  if (ctx.json) {
    std::cout << "{}\n";
  } else {
    std::cout << "deleted " << NetworkNameArg(name) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Params(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab params get NAME | satlab params set NAME JSON|@FILE",
            "Reads or replaces every layer's weights and biases, as JSON "
            "{\"layers\":[{\"weights\":[[..]],\"biases\":[..]}]} (weights "
            "are [fan_in][units]).");
  args.Positional("get|set", "read or write")
      .Positional("NAME", "networks/ID or ID")
      .Positional("JSON", "set: the parameters, or @file.json")
      .Flag("reset-optimizer", "set: also zero momentum / Adam moments");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(verb, args.Arg(0, "get|set"));
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(1, "NAME"));
  if (verb == "get") {
    SATLAB_ASSIGN_OR_RETURN(params,
                            ctx.client->GetParameters(NetworkNameArg(name)));
    // Parameters are data: JSON is the readable form too.
    std::cout << ParamsToJson(params).dump(ctx.json ? -1 : 2) << "\n";
    return absl::OkStatus();
  }
  if (verb != "set") {
    return absl::InvalidArgumentError(
        absl::StrCat("params: expected get or set, got \"", verb, "\""));
  }
  SATLAB_ASSIGN_OR_RETURN(arg, args.Arg(2, "JSON"));
  SATLAB_ASSIGN_OR_RETURN(text, TextOrFile(arg));
  v1::SetParametersRequest request;
  request.set_name(NetworkNameArg(name));
  request.set_reset_optimizer_state(args.GetFlag("reset-optimizer"));
  SATLAB_RETURN_IF_ERROR(ParamsFromJson(text, &request));
  SATLAB_ASSIGN_OR_RETURN(network, ctx.client->SetParameters(request));
  if (ctx.json) {
    std::cout << ToJson(network) << "\n";
  } else {
    std::cout << "set parameters of " << network.name() << " (step "
              << network.step() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status ForwardCmd(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab forward NAME --inputs M [--layers]",
            "Runs inputs through a network.");
  args.Positional("NAME", "networks/ID or ID")
      .Option("inputs",
              "rows separated by ';', values by ',' (1,2;3,4), or "
              "@file.csv")
      .Flag("layers", "also print every layer's z and a");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  SATLAB_ASSIGN_OR_RETURN(x, ParseMatrix(args.Get("inputs"), "--inputs"));
  v1::ForwardRequest request;
  request.set_name(NetworkNameArg(name));
  *request.mutable_inputs() = ToTensor(x);
  request.set_include_layers(args.GetFlag("layers"));
  SATLAB_ASSIGN_OR_RETURN(response, ctx.client->Forward(request));
  if (ctx.json) {
    std::cout << ToJson(response) << "\n";
    return absl::OkStatus();
  }
  Table table({"ROW", "OUTPUT"});
  const std::vector<double> out = TensorValues(response.outputs());
  const int64_t cols = response.outputs().shape(1);
  for (int64_t r = 0; r < response.outputs().shape(0); ++r) {
    std::vector<std::string> cells;
    for (int64_t c = 0; c < cols; ++c) cells.push_back(Num(out[r * cols + c]));
    table.AddRow({absl::StrCat(r), absl::StrJoin(cells, " ")});
  }
  std::cout << table.ToString();
  for (int i = 0; i < response.layers_size(); ++i) {
    std::cout << "layer " << i << ": z = " << Brief(response.layers(i).z())
              << "  a = " << Brief(response.layers(i).a()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Grad(Context& ctx, const std::vector<std::string>& argv) {
  Args args(
      "satlab grad NAME --inputs M --targets M [--counterfactual LOSS,...]",
      "Loss, gradients, output delta and saturation for one minibatch; "
      "parameters stay as they are. --counterfactual computes the same "
      "under other losses, on the same batch and parameters.");
  args.Positional("NAME", "networks/ID or ID")
      .Option("inputs", "inputs: 1,2;3,4 or @file.csv")
      .Option("targets", "targets: 0;1 or @file.csv")
      .Option("counterfactual", "comma-separated losses, e.g. bce");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  v1::ComputeGradientsRequest request;
  request.set_name(NetworkNameArg(name));
  SATLAB_ASSIGN_OR_RETURN(batch, BatchFromArgs(args));
  *request.mutable_batch() = std::move(batch);
  if (args.Has("counterfactual")) {
    for (const std::string& l : std::vector<std::string>(absl::StrSplit(
             args.Get("counterfactual"), ',', absl::SkipEmpty()))) {
      SATLAB_ASSIGN_OR_RETURN(loss, ParseLoss(l));
      request.add_counterfactual_losses(loss);
    }
  }
  SATLAB_ASSIGN_OR_RETURN(response, ctx.client->ComputeGradients(request));
  if (ctx.json) {
    std::cout << ToJson(response) << "\n";
    return absl::OkStatus();
  }
  std::vector<const v1::Gradients*> all = {&response.gradients()};
  for (const auto& g : response.counterfactuals()) all.push_back(&g);
  std::cout << request.name() << " at step " << response.step() << "\n\n";
  Table table({"LOSS", "", "VALUE", "ATTENUATION", "OUTPUT_DELTA"});
  for (size_t i = 0; i < all.size(); ++i) {
    table.AddRow({LossName(all[i]->loss()),
                  i == 0 ? "(own)" : "(counterfactual)",
                  Num(all[i]->loss_value()),
                  Num(all[i]->saturation().output_attenuation()),
                  Brief(all[i]->output_delta())});
  }
  std::cout << table.ToString() << "\n";
  Table grads({"LAYER", "LOSS", "DC/DW", "DC/DB"});
  for (int l = 0; l < response.gradients().layers_size(); ++l) {
    for (const v1::Gradients* g : all) {
      grads.AddRow({absl::StrCat(l), LossName(g->loss()),
                    Brief(g->layers(l).weights()),
                    Brief(g->layers(l).biases())});
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

absl::Status Step(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab step NAME --inputs M --targets M",
            "One optimizer step on one minibatch.");
  args.Positional("NAME", "networks/ID or ID")
      .Option("inputs", "inputs: 1,2;3,4 or @file.csv")
      .Option("targets", "targets: 0;1 or @file.csv");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  SATLAB_ASSIGN_OR_RETURN(batch, BatchFromArgs(args));
  SATLAB_ASSIGN_OR_RETURN(result,
                          ctx.client->TrainStep(NetworkNameArg(name), batch));
  if (ctx.json) {
    std::cout << ToJson(result) << "\n";
  } else {
    PrintStep(result);
  }
  return absl::OkStatus();
}

absl::Status Train(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab train NAME --data FILE.csv [--epochs N] [--batch-size B]",
            "Trains a network on a CSV dataset through one Train stream, "
            "with a progress bar; prints the loss per epoch.");
  args.Positional("NAME", "networks/ID or ID")
      .Option("epochs", "passes over the data", "1")
      .Option("batch-size", "rows per minibatch", "32")
      .Option("shuffle-seed", "seed of the per-epoch shuffle", "0")
      .Flag("no-shuffle", "keep the file's row order")
      .Option("report-every", "server sends a result every this many steps",
              "1");
  DataOptions(args);
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name_arg, args.Arg(0, "NAME"));
  const std::string name = NetworkNameArg(name_arg);
  if (!args.Has("data"))
    return absl::InvalidArgumentError("train needs --data");
  SATLAB_ASSIGN_OR_RETURN(data, DatasetFromArgs(args));
  SATLAB_ASSIGN_OR_RETURN(epochs, args.GetInt("epochs"));
  SATLAB_ASSIGN_OR_RETURN(batch_size, args.GetInt("batch-size"));
  SATLAB_ASSIGN_OR_RETURN(seed, args.GetInt("shuffle-seed"));
  SATLAB_ASSIGN_OR_RETURN(report_every, args.GetInt("report-every"));
  if (epochs < 1 || batch_size < 1 || report_every < 1) {
    return absl::InvalidArgumentError(
        "--epochs, --batch-size and --report-every must be >= 1");
  }
  TrainOptions options;
  options.report_every = static_cast<int>(report_every);
  const int64_t per_epoch = (data.inputs.rows + batch_size - 1) / batch_size;
  ProgressBar bar(epochs * per_epoch, ctx.progress && !ctx.json);
  Table table({"EPOCH", "STEP", "LOSS", "ACCURACY", "ATTENUATION"});
  nlohmann::json json_epochs = nlohmann::json::array();
  v1::Minibatch all;
  *all.mutable_inputs() = ToTensor(data.inputs);
  *all.mutable_targets() = ToTensor(data.targets);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    auto batches = EpochBatches(data, batch_size, !args.GetFlag("no-shuffle"),
                                static_cast<uint64_t>(seed), epoch);
    const int64_t base = epoch * per_epoch;
    auto last = ctx.client->Train(
        name, batches, options, [&](const v1::TrainResponse& r) {
          bar.Update(base + r.batches_applied(),
                     absl::StrCat("epoch ", epoch + 1, "/", epochs, " loss ",
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

absl::Status Eval(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab eval NAME (--data FILE.csv | --inputs M --targets M)",
            "Loss, accuracy and saturation over a dataset; no update.");
  args.Positional("NAME", "networks/ID or ID")
      .Option("inputs", "inputs: 1,2;3,4 or @file.csv")
      .Option("targets", "targets: 0;1 or @file.csv");
  DataOptions(args);
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  SATLAB_ASSIGN_OR_RETURN(name, args.Arg(0, "NAME"));
  v1::Minibatch data;
  if (args.Has("data")) {
    SATLAB_ASSIGN_OR_RETURN(d, DatasetFromArgs(args));
    *data.mutable_inputs() = ToTensor(d.inputs);
    *data.mutable_targets() = ToTensor(d.targets);
  } else {
    SATLAB_ASSIGN_OR_RETURN(batch, BatchFromArgs(args));
    data = std::move(batch);
  }
  SATLAB_ASSIGN_OR_RETURN(result,
                          ctx.client->Evaluate(NetworkNameArg(name), data));
  if (ctx.json) {
    std::cout << ToJson(result) << "\n";
    return absl::OkStatus();
  }
  std::cout << "samples " << result.samples() << "  loss " << Num(result.loss())
            << "  accuracy " << Num(result.accuracy()) << "  attenuation "
            << Num(result.saturation().output_attenuation()) << "  (step "
            << result.step() << ")\n";
  PrintStats(result.saturation());
  return absl::OkStatus();
}

absl::Status Health(Context& ctx, const std::vector<std::string>& argv) {
  Args args("satlab health [SERVICE]",
            "grpc.health.v1 check; exit 0 when SERVING (for container "
            "health checks).");
  args.Positional("SERVICE",
                  "service name (default satlab.v1.TrainingService;"
                  " \"\" for the whole server)");
  SATLAB_ASSIGN_OR_RETURN(go, ParseArgs(args, argv));
  if (!go) return absl::OkStatus();
  const std::string service = args.positional().empty()
                                  ? "satlab.v1.TrainingService"
                                  : args.positional()[0];
  SATLAB_ASSIGN_OR_RETURN(serving, ctx.client->CheckHealth(service));
  if (ctx.json) {
    std::cout << nlohmann::json{{"service", service},
                                {"status", serving ? "SERVING" : "NOT_SERVING"}}
                     .dump()
              << "\n";
  } else {
    std::cout << (service.empty() ? "server" : service) << ": "
              << (serving ? "SERVING" : "NOT_SERVING") << "\n";
  }
  if (!serving) return absl::UnavailableError(service + " is not serving");
  return absl::OkStatus();
}

}  // namespace

std::string NetworkNameArg(const std::string& arg) {
  return absl::StartsWith(arg, "networks/") ? arg : "networks/" + arg;
}

const std::vector<Command>& AllCommands() {
  static const auto* commands = new std::vector<Command>{
      {"create", "create a network", Create},
      {"get", "show a network", Get},
      {"list", "list networks", List},
      {"delete", "delete a network", Delete},
      {"params", "get or set weights and biases (JSON)", Params},
      {"forward", "run inputs through a network", ForwardCmd},
      {"grad", "loss, gradients and saturation, with counterfactual losses",
       Grad},
      {"step", "one optimizer step", Step},
      {"train", "train on a CSV dataset (progress bar)", Train},
      {"eval", "evaluate on a dataset", Eval},
      {"experiment", "run a saturation experiment (preset or spec.json)",
       RunExperimentCommand},
      {"health", "health check (exit 0 when serving)", Health},
  };
  return *commands;
}

}  // namespace satlab::cli
