#include "client/cli/create.h"

#include <iostream>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli/command.h"
#include "client/cli/data.h"
#include "client/cli/format.h"
#include "client/cli/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace satlab::cli {
namespace {

// --spec: a whole NetworkSpec in proto3 JSON.
absl::StatusOr<v1::NetworkSpec> SpecFromFile(const std::string& path) {
  SATLAB_ASSIGN_OR_RETURN(text, TextOrFile("@" + path));
  v1::NetworkSpec spec;
  if (auto s = google::protobuf::util::JsonStringToMessage(text, &spec);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.ToString()));
  }
  return spec;
}

// --layers "30:sigmoid,10:softmax" appended to spec.layers.
absl::Status AddLayers(const std::string& text, v1::NetworkSpec* spec) {
  for (absl::string_view layer : absl::StrSplit(text, ',')) {
    const std::vector<std::string> parts = absl::StrSplit(layer, ':');
    int32_t units;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &units)) {
      return UsageError(absl::StrCat(
          "--layers: expected units:activation, got \"", layer, "\""));
    }
    auto activation = ParseActivation(parts[1]);
    if (!activation.ok()) {
      return UsageError(
          absl::StrCat("--layers: ", activation.status().message()));
    }
    v1::LayerSpec* l = spec->add_layers();
    l->set_units(units);
    l->set_activation(*activation);
  }
  return absl::OkStatus();
}

// --init, --seed, --mean, --std and --params.
absl::StatusOr<v1::Initialization> InitFromOptions(
    const CreateOptions& options) {
  v1::Initialization init;
  auto scheme =
      ParseEnumName(v1::InitScheme_descriptor(), options.init, "scheme");
  if (!scheme.ok()) {
    return UsageError(absl::StrCat("--init: ", scheme.status().message()));
  }
  init.set_scheme(static_cast<v1::InitScheme>(*scheme));
  init.set_seed(options.seed);
  init.set_mean(options.mean);
  init.set_std(options.std_dev);
  if (!options.params.empty()) {
    SATLAB_ASSIGN_OR_RETURN(text, TextOrFile(options.params));
    v1::SetParametersRequest parsed;
    SATLAB_RETURN_IF_ERROR(ParamsFromJson(text, &parsed));
    *init.mutable_parameters() = parsed.layers();
    init.set_scheme(v1::INIT_SCHEME_EXPLICIT);
  }
  return init;
}

// --optimizer with --lr, --momentum, --nesterov and --weight-decay.
absl::StatusOr<v1::Optimizer> OptimizerFromOptions(
    const CreateOptions& options) {
  v1::Optimizer optimizer;
  if (options.optimizer == "adam") {
    optimizer.mutable_adam()->set_learning_rate(options.learning_rate);
    optimizer.mutable_adam()->set_weight_decay(options.weight_decay);
  } else if (options.optimizer == "sgd") {
    v1::Sgd* sgd = optimizer.mutable_sgd();
    sgd->set_learning_rate(options.learning_rate);
    sgd->set_momentum(options.momentum);
    sgd->set_nesterov(options.nesterov);
    sgd->set_weight_decay(options.weight_decay);
  } else {
    return UsageError(absl::StrCat("--optimizer: expected sgd or adam, got \"",
                                   options.optimizer, "\""));
  }
  return optimizer;
}

absl::StatusOr<v1::DType> DTypeFromOption(const std::string& dtype) {
  if (dtype == "float32") return v1::DTYPE_FLOAT32;
  if (dtype == "float64") return v1::DTYPE_FLOAT64;
  return UsageError(absl::StrCat("--dtype: expected float32 or float64, got \"",
                                 dtype, "\""));
}

absl::Status RunCreate(Context& ctx, const CreateOptions& options) {
  SATLAB_ASSIGN_OR_RETURN(spec, NetworkSpecFromOptions(options));
  SATLAB_ASSIGN_OR_RETURN(network, ctx.client->CreateNetwork(spec, options.id));
  if (ctx.json) {
    std::cout << ToJson(network) << "\n";
  } else {
    std::cout << NetworksTable({network});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::NetworkSpec> NetworkSpecFromOptions(
    const CreateOptions& options) {
  if (!options.spec_file.empty()) return SpecFromFile(options.spec_file);
  if (options.input_size == 0 || options.layers.empty() ||
      options.loss.empty()) {
    return UsageError(
        "create needs --input-size, --layers and --loss (or --spec)");
  }
  v1::NetworkSpec spec;
  spec.set_input_size(options.input_size);
  SATLAB_RETURN_IF_ERROR(AddLayers(options.layers, &spec));
  auto loss = ParseLoss(options.loss);
  if (!loss.ok()) {
    return UsageError(absl::StrCat("--loss: ", loss.status().message()));
  }
  spec.set_loss(*loss);
  SATLAB_ASSIGN_OR_RETURN(init, InitFromOptions(options));
  *spec.mutable_init() = std::move(init);
  SATLAB_ASSIGN_OR_RETURN(optimizer, OptimizerFromOptions(options));
  *spec.mutable_optimizer() = std::move(optimizer);
  SATLAB_ASSIGN_OR_RETURN(dtype, DTypeFromOption(options.dtype));
  spec.set_dtype(dtype);
  spec.set_saturation_threshold(options.theta);
  return spec;
}

Action DeclareCreate(CLI::App& app) {
  auto options = std::make_shared<CreateOptions>();
  CreateOptions& o = *options;
  app.description(
      "Creates a network. ID is optional (the server assigns one).");
  app.add_option("ID", o.id,
                 "network id: [a-z][a-z0-9-]*, at most 63 characters");
  app.add_option("--spec", o.spec_file,
                 "read the whole NetworkSpec from a proto3 JSON file "
                 "(other spec options are ignored)")
      ->type_name("FILE");
  AddInteger(app, "--input-size", &o.input_size, "number of input features",
             std::numeric_limits<int32_t>::min(),
             std::numeric_limits<int32_t>::max());
  app.add_option(
         "--layers", o.layers,
         absl::StrCat(
             "comma-separated units:activation, first hidden "
             "to output, e.g. 30:sigmoid,10:softmax; "
             "activations: ",
             absl::StrJoin(EnumNames(v1::Activation_descriptor()), ", ")))
      ->type_name("U:ACT,...");
  app.add_option("--loss", o.loss,
                 absl::StrJoin(EnumNames(v1::Loss_descriptor()), ", "))
      ->type_name("LOSS");
  app.add_option("--init", o.init,
                 absl::StrJoin(EnumNames(v1::InitScheme_descriptor()), ", "))
      ->capture_default_str()
      ->type_name("SCHEME");
  AddInteger(app, "--seed", &o.seed, "seed of the initialization", 0,
             std::numeric_limits<int64_t>::max())
      ->capture_default_str();
  AddNumber(app, "--mean", &o.mean, "mean of --init normal")
      ->capture_default_str();
  AddNumber(app, "--std", &o.std_dev, "standard deviation of --init normal")
      ->capture_default_str();
  app.add_option("--params", o.params,
                 "--init explicit: parameters as JSON "
                 "{\"layers\":[{\"weights\":[[..]],\"biases\":[..]}]} "
                 "or @file.json")
      ->type_name("JSON");
  app.add_option("--optimizer", o.optimizer, "sgd or adam")
      ->capture_default_str()
      ->type_name("NAME");
  AddNumber(app, "--lr", &o.learning_rate, "learning rate")
      ->capture_default_str();
  AddNumber(app, "--momentum", &o.momentum, "SGD momentum")
      ->capture_default_str();
  app.add_flag("--nesterov", o.nesterov, "SGD with Nesterov momentum");
  AddNumber(app, "--weight-decay", &o.weight_decay, "L2 penalty coefficient")
      ->capture_default_str();
  app.add_option("--dtype", o.dtype, "float32 or float64")
      ->capture_default_str()
      ->type_name("TYPE");
  AddNumber(app, "--theta", &o.theta,
            "saturation threshold: f'(z) < theta * max f'")
      ->capture_default_str();
  return [options](Context& ctx) { return RunCreate(ctx, *options); };
}

}  // namespace satlab::cli
