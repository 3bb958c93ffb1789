#include "client/cli/presets.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/data.h"
#include "client/cli/status_macros.h"
#include "client/client.h"
#include "google/protobuf/util/json_util.h"

namespace satlab::cli {
namespace {

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

// The matrix as float32 values when every value converts to float and back
// unchanged (the digits: pixels / 16 and one-hot targets), else as float64.
// The experiment's dataset is float64 on the server, which widens float
// tensors exactly: the same data, in half the bytes to serialize, send,
// parse and store with the experiment.
v1::Tensor CompactTensor(const Matrix& m) {
  for (const double v : m.values) {
    if (static_cast<double>(static_cast<float>(v)) != v) return ToTensor(m);
  }
  v1::Tensor t;
  t.add_shape(m.rows);
  t.add_shape(m.cols);
  auto* values = t.mutable_float_values();
  values->Reserve(static_cast<int>(m.values.size()));
  for (const double v : m.values)
    values->AddAlreadyReserved(static_cast<float>(v));
  return t;
}

absl::StatusOr<v1::Minibatch> ReadDigits(const std::string& path) {
  SATLAB_ASSIGN_OR_RETURN(csv, ReadCsv(path));
  DatasetOptions options;
  options.target_columns = 1;
  options.one_hot = 10;
  options.input_scale = 1.0 / 16.0;  // pixels 0..16 -> [0, 1]
  SATLAB_ASSIGN_OR_RETURN(data, SplitDataset(csv, options));
  v1::Minibatch batch;
  *batch.mutable_inputs() = CompactTensor(data.inputs);
  *batch.mutable_targets() = CompactTensor(data.targets);
  return batch;
}

}  // namespace

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

}  // namespace satlab::cli
