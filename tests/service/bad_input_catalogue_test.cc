// The bad-input catalogue (issue 10): malformed, out-of-range and hostile
// requests against every RPC of one in-process server. Each case names the
// gRPC code it must get and a substring naming the field; after each one the
// fixture networks (metadata and parameters, byte for byte) and the network
// count must be unchanged, and the server must still answer. Failures print
// the case's name. docs/reliability/input.md lists the table.
//
// Limits whose enforcement other parts of issue 10 own (memory budget,
// huge Forward, deadlines, idle streams) have their own tests.
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.pb.h"
#include "tests/service/raw_call.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;
using Code = absl::StatusCode;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Fixtures: a float64 softmax+cce network that has trained one step (so it
// has momentum state), and a float32 sigmoid+bce one.
constexpr char kA[] = "networks/fx-a";
constexpr char kB[] = "networks/fx-b";

struct Case {
  std::string name;
  std::function<absl::Status()> call;
  Code code;
  std::string field;  // a substring of the message naming the field
};

// Whether `message` names a field twice in a row ("inputs.inputs"); numbers
// ("1.1") are not field names.
bool HasDoubledSegment(absl::string_view message) {
  auto in_word = [](char c) { return absl::ascii_isalnum(c) || c == '_'; };
  size_t i = 0;
  while (i < message.size()) {
    size_t end = i;
    while (end < message.size() && in_word(message[end])) ++end;
    if (end == i) {
      ++i;
      continue;
    }
    const absl::string_view word = message.substr(i, end - i);
    const size_t next = end + 1 + word.size();
    if (!absl::ascii_isdigit(word[0]) && end < message.size() &&
        message[end] == '.' && message.substr(end + 1, word.size()) == word &&
        (next == message.size() || !in_word(message[next]))) {
      return true;
    }
    i = end;
  }
  return false;
}

// A valid spec (2 inputs, 3 tanh, 1 sigmoid, mse) that cases break.
v1::NetworkSpec BaseSpec() { return SmallSpec(2, 3, 1, v1::LOSS_MSE, 5); }

// A valid experiment that cases break.
v1::RunExperimentRequest BaseExperiment() {
  v1::RunExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_display_name("catalogue");
  v1::BuiltinDataset* data = spec->mutable_dataset()->mutable_builtin();
  data->set_kind(v1::DATASET_KIND_XOR);
  data->set_samples(8);
  data->set_single_output(true);
  v1::LayerSpec* hidden = spec->add_hidden_layers();
  hidden->set_units(3);
  hidden->set_activation(v1::ACTIVATION_TANH);
  v1::ExperimentVariant* variant = spec->add_variants();
  variant->set_output_activation(v1::ACTIVATION_SIGMOID);
  variant->set_loss(v1::LOSS_MSE);
  spec->set_epochs(1);
  spec->set_batch_size(4);
  return request;
}

v1::Tensor Tensor2(int64_t rows, int64_t cols, std::vector<double> values) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  for (double v : values) t.add_double_values(v);
  return t;
}

// A valid minibatch for fx-a: 2 rows of 2 inputs, one-hot over 2 outputs.
v1::Minibatch BatchA() { return MakeBatch(2, 2, 2, 1); }
// For fx-b: 2 rows of 2 inputs, 0/1 targets in one column.
v1::Minibatch BatchB() { return MakeBatch(2, 2, 1, 1); }

class BadInputCatalogueTest : public ServiceTest {
 protected:
  void SetUp() override {
    // Small limits keep the over-limit cases cheap; two networks at most,
    // so a create that validation wrongly let through would fail loudly
    // (and change nothing) instead of adding a network.
    options_.max_networks = 2;
    options_.service.limits.max_layers = 8;
    options_.service.limits.max_units = 4096;
    options_.service.limits.max_parameters = 200'000;
    options_.service.limits.max_batch_rows = 1000;
    Start();
    ASSERT_TRUE(
        client_->CreateNetwork(SmallSpec(2, 3, 2, v1::LOSS_CCE, 1), "fx-a")
            .ok());
    ASSERT_TRUE(client_->TrainStep(kA, BatchA()).ok());
    ASSERT_TRUE(
        client_
            ->CreateNetwork(
                SmallSpec(2, 4, 1, v1::LOSS_BCE, 2, v1::DTYPE_FLOAT32), "fx-b")
            .ok());
  }

  // Everything a failed call must leave alone, serialized.
  std::vector<std::string> State() {
    std::vector<std::string> state;
    for (const char* name : {kA, kB}) {
      auto network = client_->GetNetwork(name);
      EXPECT_TRUE(network.ok()) << network.status();
      state.push_back(network.ok() ? network->SerializeAsString() : "");
      auto params = client_->GetParameters(name);
      EXPECT_TRUE(params.ok()) << params.status();
      state.push_back(params.ok() ? params->SerializeAsString() : "");
    }
    auto list = client_->ListNetworks(1000);
    EXPECT_TRUE(list.ok()) << list.status();
    state.push_back(absl::StrCat(list.ok() ? list->networks_size() : -1));
    return state;
  }

  absl::Status Create(const v1::NetworkSpec& spec, absl::string_view id = "") {
    return client_->CreateNetwork(spec, id).status();
  }
  absl::Status Create(const std::function<void(v1::NetworkSpec&)>& change) {
    v1::NetworkSpec spec = BaseSpec();
    change(spec);
    return Create(spec);
  }
  absl::Status SetParams(
      const std::function<void(v1::SetParametersRequest&)>& change) {
    auto params = client_->GetParameters(kA);
    if (!params.ok()) return params.status();
    v1::SetParametersRequest request;
    request.set_name(kA);
    *request.mutable_layers() = params->layers();
    change(request);
    return client_->SetParameters(request).status();
  }
  absl::Status Forward(const v1::Tensor& inputs, const char* name = kA) {
    v1::ForwardRequest request;
    request.set_name(name);
    *request.mutable_inputs() = inputs;
    return client_->Forward(request).status();
  }
  absl::Status Gradients(
      const std::function<void(v1::ComputeGradientsRequest&)>& change) {
    v1::ComputeGradientsRequest request;
    request.set_name(kA);
    *request.mutable_batch() = BatchA();
    change(request);
    return client_->ComputeGradients(request).status();
  }
  absl::Status Step(const std::function<void(v1::Minibatch&)>& change,
                    const char* name = kA) {
    v1::Minibatch batch = std::string(name) == kA ? BatchA() : BatchB();
    change(batch);
    return client_->TrainStep(name, batch).status();
  }
  absl::Status Evaluate(const std::function<void(v1::Minibatch&)>& change) {
    v1::Minibatch data = BatchA();
    change(data);
    return client_->Evaluate(kA, data).status();
  }
  // A Train stream of these messages (raw bytes), then a half-close.
  absl::Status Train(const std::vector<std::string>& messages) {
    return FromGrpc(
        RawCall(client_->channel(), TrainingMethod("Train"), messages).status);
  }
  static std::string TrainMessage(absl::string_view name,
                                  const v1::Minibatch* batch,
                                  int report_every = 0) {
    v1::TrainRequest request;
    request.set_name(std::string(name));
    if (batch != nullptr) *request.mutable_batch() = *batch;
    request.set_report_every(report_every);
    return request.SerializeAsString();
  }
  absl::Status Watch(absl::string_view name, int64_t start_step) {
    v1::WatchMetricsRequest request;
    request.set_name(std::string(name));
    request.set_start_step(start_step);
    // A valid request would stream until the deadline; these end at once.
    return client_->WatchMetrics(
        request, [](const v1::WatchMetricsResponse&) { return false; },
        absl::Seconds(10));
  }
  absl::Status Experiment(
      const std::function<void(v1::ExperimentSpec&)>& change) {
    v1::RunExperimentRequest request = BaseExperiment();
    change(*request.mutable_spec());
    return client_
        ->RunExperiment(
            request, [](const v1::RunExperimentResponse&) { return true; },
            absl::Seconds(30))
        .status();
  }
  // One raw request message to a unary or server-streaming method.
  absl::Status Raw(absl::string_view method, const std::string& bytes) {
    return FromGrpc(RawCall(client_->channel(),
                            TrainingMethod(std::string(method)), {bytes})
                        .status);
  }

  std::vector<Case> Cases();
};

std::vector<Case> BadInputCatalogueTest::Cases() {
  using S = v1::NetworkSpec;
  const v1::Minibatch batch_a = BatchA();
  const std::string long_name = "networks/" + std::string(1000, 'a');
  return {
      // --- CreateNetwork: ids --------------------------------------------
      {"create.id_uppercase", [=] { return Create(BaseSpec(), "Net"); },
       Code::kInvalidArgument, "network_id"},
      {"create.id_starts_with_digit",
       [=] { return Create(BaseSpec(), "1net"); }, Code::kInvalidArgument,
       "network_id"},
      {"create.id_64_characters",
       [=] { return Create(BaseSpec(), std::string(64, 'a')); },
       Code::kInvalidArgument, "network_id"},
      {"create.id_with_slash", [=] { return Create(BaseSpec(), "a/b"); },
       Code::kInvalidArgument, "network_id"},
      {"create.id_taken", [=] { return Create(BaseSpec(), "fx-a"); },
       Code::kAlreadyExists, "fx-a"},
      {"create.id_not_utf8",
       [=] {
         v1::CreateNetworkRequest request;
         *request.mutable_network()->mutable_spec() = BaseSpec();
         return Raw("CreateNetwork",
                    request.SerializeAsString() + StringField(2, "n\xff"));
       },
       Code::kInvalidArgument, "satlab.v1.CreateNetworkRequest"},
      {"create.over_network_limit", [=] { return Create(BaseSpec()); },
       Code::kResourceExhausted, "networks"},
      // --- CreateNetwork: sizes -----------------------------------------
      {"create.input_size_zero",
       [=] { return Create([](S& s) { s.set_input_size(0); }); },
       Code::kInvalidArgument, "network.spec.input_size"},
      {"create.input_size_negative",
       [=] { return Create([](S& s) { s.set_input_size(-5); }); },
       Code::kInvalidArgument, "network.spec.input_size"},
      {"create.input_size_over_limit",
       [=] { return Create([](S& s) { s.set_input_size(4097); }); },
       Code::kResourceExhausted, "network.spec.input_size"},
      {"create.no_layers",
       [=] { return Create([](S& s) { s.clear_layers(); }); },
       Code::kInvalidArgument, "network.spec.layers"},
      {"create.too_many_layers",
       [=] {
         return Create([](S& s) {
           for (int i = 0; i < 8; ++i) *s.add_layers() = s.layers(0);
         });
       },
       Code::kResourceExhausted, "network.spec.layers"},
      {"create.units_zero",
       [=] { return Create([](S& s) { s.mutable_layers(0)->set_units(0); }); },
       Code::kInvalidArgument, "network.spec.layers[0].units"},
      {"create.units_over_limit",
       [=] {
         return Create([](S& s) { s.mutable_layers(0)->set_units(4097); });
       },
       Code::kResourceExhausted, "network.spec.layers[0].units"},
      {"create.parameters_over_limit",
       [=] {
         return Create([](S& s) {
           s.set_input_size(1000);
           s.mutable_layers(0)->set_units(1000);
         });
       },
       Code::kResourceExhausted, "parameters"},
      // --- CreateNetwork: enums, pairs, placement -------------------------
      {"create.activation_unspecified",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(0)->set_activation(v1::ACTIVATION_UNSPECIFIED);
         });
       },
       Code::kInvalidArgument, "network.spec.layers[0].activation"},
      {"create.activation_unknown_enum",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(1)->set_activation(static_cast<v1::Activation>(99));
         });
       },
       Code::kInvalidArgument, "network.spec.layers[1].activation"},
      {"create.softmax_on_hidden_layer",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(0)->set_activation(v1::ACTIVATION_SOFTMAX);
         });
       },
       Code::kInvalidArgument, "network.spec.layers[0].activation"},
      {"create.leaky_slope_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(0)->set_activation(v1::ACTIVATION_LEAKY_RELU);
           s.mutable_layers(0)->set_leaky_relu_slope(-0.1);
         });
       },
       Code::kInvalidArgument, "network.spec.layers[0].leaky_relu_slope"},
      {"create.leaky_slope_one",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(0)->set_activation(v1::ACTIVATION_LEAKY_RELU);
           s.mutable_layers(0)->set_leaky_relu_slope(1.0);
         });
       },
       Code::kInvalidArgument, "leaky_relu_slope"},
      {"create.leaky_slope_nan",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(0)->set_activation(v1::ACTIVATION_LEAKY_RELU);
           s.mutable_layers(0)->set_leaky_relu_slope(kNaN);
         });
       },
       Code::kInvalidArgument, "leaky_relu_slope"},
      {"create.loss_unspecified",
       [=] { return Create([](S& s) { s.set_loss(v1::LOSS_UNSPECIFIED); }); },
       Code::kInvalidArgument, "network.spec.loss"},
      {"create.loss_unknown_enum",
       [=] {
         return Create([](S& s) { s.set_loss(static_cast<v1::Loss>(7)); });
       },
       Code::kInvalidArgument, "network.spec.loss"},
      {"create.bce_on_relu_output",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(1)->set_activation(v1::ACTIVATION_RELU);
           s.set_loss(v1::LOSS_BCE);
         });
       },
       Code::kInvalidArgument, "network.spec.loss"},
      {"create.cce_on_sigmoid_output",
       [=] { return Create([](S& s) { s.set_loss(v1::LOSS_CCE); }); },
       Code::kInvalidArgument, "network.spec.loss"},
      {"create.bce_on_softmax_output",
       [=] {
         return Create([](S& s) {
           s.mutable_layers(1)->set_activation(v1::ACTIVATION_SOFTMAX);
           s.set_loss(v1::LOSS_BCE);
         });
       },
       Code::kInvalidArgument, "network.spec.loss"},
      {"create.dtype_unknown_enum",
       [=] {
         return Create([](S& s) { s.set_dtype(static_cast<v1::DType>(5)); });
       },
       Code::kInvalidArgument, "network.spec.dtype"},
      {"create.theta_negative",
       [=] { return Create([](S& s) { s.set_saturation_threshold(-0.1); }); },
       Code::kInvalidArgument, "network.spec.saturation_threshold"},
      {"create.theta_one",
       [=] { return Create([](S& s) { s.set_saturation_threshold(1.0); }); },
       Code::kInvalidArgument, "saturation_threshold"},
      {"create.theta_nan",
       [=] { return Create([](S& s) { s.set_saturation_threshold(kNaN); }); },
       Code::kInvalidArgument, "saturation_threshold"},
      // --- CreateNetwork: initialization ----------------------------------
      {"create.init_scheme_unknown_enum",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(static_cast<v1::InitScheme>(42));
         });
       },
       Code::kInvalidArgument, "network.spec.init.scheme"},
      {"create.init_normal_std_zero",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_NORMAL);
         });
       },
       Code::kInvalidArgument, "network.spec.init.std"},
      {"create.init_normal_mean_inf",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_NORMAL);
           s.mutable_init()->set_std(1);
           s.mutable_init()->set_mean(kInf);
         });
       },
       Code::kInvalidArgument, "network.spec.init.mean"},
      {"create.init_normal_std_beyond_float32",
       [=] {
         return Create([](S& s) {
           s.set_dtype(v1::DTYPE_FLOAT32);
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_NORMAL);
           s.mutable_init()->set_std(1e38);
         });
       },
       Code::kInvalidArgument, "network.spec.init.std"},
      {"create.init_explicit_without_parameters",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters"},
      {"create.init_explicit_wrong_weight_shape",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(3, 2, {0, 0, 0, 0, 0, 0});
           *l0->mutable_biases() = MakeVector({0, 0, 0});
           auto* l1 = s.mutable_init()->add_parameters();
           *l1->mutable_weights() = MakeTensor(3, 1, {0, 0, 0});
           *l1->mutable_biases() = MakeVector({0});
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters[0].weights"},
      {"create.init_explicit_nan_bias",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 0});
           *l0->mutable_biases() = MakeVector({0, kNaN, 0});
           auto* l1 = s.mutable_init()->add_parameters();
           *l1->mutable_weights() = MakeTensor(3, 1, {0, 0, 0});
           *l1->mutable_biases() = MakeVector({0});
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters[0]"},
      {"create.init_parameters_without_explicit",
       [=] {
         return Create([](S& s) {
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 0});
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters"},
      // --- CreateNetwork: optimizers --------------------------------------
      {"create.sgd_learning_rate_zero",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_learning_rate(0);
         });
       },
       Code::kInvalidArgument, "network.spec.optimizer.sgd.learning_rate"},
      {"create.sgd_learning_rate_nan",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_learning_rate(kNaN);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.learning_rate"},
      {"create.sgd_learning_rate_inf",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_learning_rate(kInf);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.learning_rate"},
      {"create.sgd_momentum_one",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_momentum(1.0);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.momentum"},
      {"create.sgd_momentum_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_momentum(-0.5);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.momentum"},
      {"create.sgd_nesterov_without_momentum",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_momentum(0);
           s.mutable_optimizer()->mutable_sgd()->set_nesterov(true);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.nesterov"},
      {"create.sgd_weight_decay_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_sgd()->set_weight_decay(-1e-4);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.weight_decay"},
      {"create.adam_learning_rate_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(-0.01);
         });
       },
       Code::kInvalidArgument, "network.spec.optimizer.adam.learning_rate"},
      {"create.adam_beta1_one",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
           s.mutable_optimizer()->mutable_adam()->set_beta1(1.0);
         });
       },
       Code::kInvalidArgument, "optimizer.adam.beta1"},
      {"create.adam_beta2_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
           s.mutable_optimizer()->mutable_adam()->set_beta2(-0.9);
         });
       },
       Code::kInvalidArgument, "optimizer.adam.beta2"},
      {"create.adam_epsilon_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
           s.mutable_optimizer()->mutable_adam()->set_epsilon(-1e-8);
         });
       },
       Code::kInvalidArgument, "optimizer.adam.epsilon"},
      {"create.float32_learning_rate_overflows",
       [=] {
         return Create([](S& s) {
           s.set_dtype(v1::DTYPE_FLOAT32);
           s.mutable_optimizer()->mutable_sgd()->set_learning_rate(1e300);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.learning_rate"},
      {"create.float32_learning_rate_rounds_to_zero",
       [=] {
         return Create([](S& s) {
           s.set_dtype(v1::DTYPE_FLOAT32);
           s.mutable_optimizer()->mutable_sgd()->set_learning_rate(1e-300);
         });
       },
       Code::kInvalidArgument, "optimizer.sgd.learning_rate"},
      {"create.init_explicit_biases_two_rows",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 0});
           *l0->mutable_biases() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 0});
           auto* l1 = s.mutable_init()->add_parameters();
           *l1->mutable_weights() = MakeTensor(3, 1, {0, 0, 0});
           *l1->mutable_biases() = MakeVector({0});
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters[0].biases"},
      {"create.init_explicit_beyond_float32",
       [=] {
         return Create([](S& s) {
           s.set_dtype(v1::DTYPE_FLOAT32);
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 1e39});
           *l0->mutable_biases() = MakeVector({0, 0, 0});
           auto* l1 = s.mutable_init()->add_parameters();
           *l1->mutable_weights() = MakeTensor(3, 1, {0, 0, 0});
           *l1->mutable_biases() = MakeVector({0});
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters[0].weights"},
      {"create.init_explicit_extra_layer",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           for (int i = 0; i < 3; ++i) {
             auto* l = s.mutable_init()->add_parameters();
             *l->mutable_weights() = MakeTensor(1, 1, {0});
             *l->mutable_biases() = MakeVector({0});
           }
         });
       },
       Code::kInvalidArgument, "network.spec.init.parameters"},
      {"create.units_negative",
       [=] { return Create([](S& s) { s.mutable_layers(1)->set_units(-1); }); },
       Code::kInvalidArgument, "network.spec.layers[1].units"},
      {"create.softmax_one_hidden_of_three",
       [=] {
         return Create([](S& s) {
           *s.add_layers() = s.layers(1);
           s.mutable_layers(1)->set_activation(v1::ACTIVATION_SOFTMAX);
         });
       },
       Code::kInvalidArgument, "network.spec.layers[1].activation"},
      {"create.normal_std_negative",
       [=] {
         return Create([](S& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_NORMAL);
           s.mutable_init()->set_std(-1);
         });
       },
       Code::kInvalidArgument, "network.spec.init.std"},
      {"create.adam_weight_decay_nan",
       [=] {
         return Create([](S& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
           s.mutable_optimizer()->mutable_adam()->set_weight_decay(kNaN);
         });
       },
       Code::kInvalidArgument, "optimizer.adam.weight_decay"},
      {"create.float32_adam_epsilon_rounds_to_zero",
       [=] {
         return Create([](S& s) {
           s.set_dtype(v1::DTYPE_FLOAT32);
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
           s.mutable_optimizer()->mutable_adam()->set_epsilon(1e-50);
         });
       },
       Code::kInvalidArgument, "optimizer.adam.epsilon"},
      {"create.undecodable",
       [=] { return Raw("CreateNetwork", Garbage(64, 1)); },
       Code::kInvalidArgument, "satlab.v1.CreateNetworkRequest"},
      // --- GetNetwork / ListNetworks / DeleteNetwork: names and pages -----
      {"get.name_empty", [=] { return client_->GetNetwork("").status(); },
       Code::kInvalidArgument, "name"},
      {"get.name_without_collection",
       [=] { return client_->GetNetwork("fx-a").status(); },
       Code::kInvalidArgument, "name"},
      {"get.name_wrong_collection",
       [=] { return client_->GetNetwork("network/fx-a").status(); },
       Code::kInvalidArgument, "name"},
      {"get.name_uppercase_id",
       [=] { return client_->GetNetwork("networks/FX-A").status(); },
       Code::kInvalidArgument, "name"},
      {"get.name_too_long",
       [=] { return client_->GetNetwork(long_name).status(); },
       Code::kInvalidArgument, "name"},
      {"get.name_not_utf8",
       [=] { return Raw("GetNetwork", StringField(1, "networks/\xc3\x28")); },
       Code::kInvalidArgument, "satlab.v1.GetNetworkRequest"},
      {"get.unknown",
       [=] { return client_->GetNetwork("networks/nope").status(); },
       Code::kNotFound, "networks/nope"},
      {"get.undecodable", [=] { return Raw("GetNetwork", "\xff\xff\xff\xff"); },
       Code::kInvalidArgument, "satlab.v1.GetNetworkRequest"},
      {"list.page_size_negative",
       [=] { return client_->ListNetworks(-1).status(); },
       Code::kInvalidArgument, "page_size"},
      {"list.page_size_over_1000",
       [=] { return client_->ListNetworks(1001).status(); },
       Code::kInvalidArgument, "page_size"},
      {"list.page_token_malformed",
       [=] { return client_->ListNetworks(10, "!!").status(); },
       Code::kInvalidArgument, "page_token"},
      {"list.page_token_too_long",
       [=] {
         return client_->ListNetworks(10, std::string(5000, 'a')).status();
       },
       Code::kInvalidArgument, "page_token"},
      {"list.undecodable", [=] { return Raw("ListNetworks", Garbage(64, 2)); },
       Code::kInvalidArgument, "satlab.v1.ListNetworksRequest"},
      {"delete.name_malformed",
       [=] { return client_->DeleteNetwork("networks/"); },
       Code::kInvalidArgument, "name"},
      {"delete.unknown",
       [=] { return client_->DeleteNetwork("networks/nope"); }, Code::kNotFound,
       "networks/nope"},
      {"delete.undecodable",
       [=] { return Raw("DeleteNetwork", Garbage(64, 3)); },
       Code::kInvalidArgument, "satlab.v1.DeleteNetworkRequest"},
      // --- GetParameters / SetParameters ----------------------------------
      {"get_parameters.unknown",
       [=] { return client_->GetParameters("networks/nope").status(); },
       Code::kNotFound, "networks/nope"},
      {"get_parameters.undecodable",
       [=] { return Raw("GetParameters", Garbage(64, 4)); },
       Code::kInvalidArgument, "satlab.v1.GetParametersRequest"},
      {"set_parameters.missing_layer",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers()->RemoveLast();
         });
       },
       Code::kInvalidArgument, "layers: expected 2 layers, got 1"},
      {"set_parameters.weights_wrong_shape",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           *r.mutable_layers(0)->mutable_weights() =
               MakeTensor(3, 2, {0, 0, 0, 0, 0, 0});
         });
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.biases_wrong_shape",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           *r.mutable_layers(1)->mutable_biases() = MakeVector({0, 0, 0});
         });
       },
       Code::kInvalidArgument, "layers[1].biases"},
      {"set_parameters.weights_rank_3",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers(0)->mutable_weights()->add_shape(1);
         });
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.weights_nan",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers(0)->mutable_weights()->set_double_values(3, kNaN);
         });
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.biases_inf",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers(1)->mutable_biases()->set_double_values(0, -kInf);
         });
       },
       Code::kInvalidArgument, "layers[1].biases"},
      {"set_parameters.float_and_double_values",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers(0)->mutable_weights()->add_float_values(1);
         });
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.value_count_mismatch",
       [=] {
         return SetParams([](v1::SetParametersRequest& r) {
           r.mutable_layers(0)->mutable_weights()->add_double_values(1);
         });
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.beyond_float32",
       [=] {
         auto params = client_->GetParameters(kB);
         if (!params.ok()) return params.status();
         v1::SetParametersRequest request;
         request.set_name(kB);
         for (const auto& layer : params->layers()) {
           v1::LayerParameters* out = request.add_layers();
           out->mutable_weights()->mutable_shape()->CopyFrom(
               layer.weights().shape());
           for (float v : layer.weights().float_values()) {
             out->mutable_weights()->add_double_values(v);
           }
           out->mutable_biases()->mutable_shape()->CopyFrom(
               layer.biases().shape());
           for (float v : layer.biases().float_values()) {
             out->mutable_biases()->add_double_values(v);
           }
         }
         request.mutable_layers(0)->mutable_weights()->set_double_values(0,
                                                                         1e39);
         return client_->SetParameters(request).status();
       },
       Code::kInvalidArgument, "layers[0].weights"},
      {"set_parameters.unknown",
       [=] {
         v1::SetParametersRequest request;
         request.set_name("networks/nope");
         return client_->SetParameters(request).status();
       },
       Code::kNotFound, "networks/nope"},
      {"set_parameters.undecodable",
       [=] { return Raw("SetParameters", Garbage(64, 5)); },
       Code::kInvalidArgument, "satlab.v1.SetParametersRequest"},
      // --- Forward ---------------------------------------------------------
      {"forward.wrong_columns",
       [=] {
         return Forward(Tensor2(1, 3, {0, 0, 0}));
       },
       Code::kInvalidArgument, "inputs: expected 2 columns, got 3"},
      {"forward.rank_1",
       [=] {
         return Forward(MakeVector({0, 0}));
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.missing_inputs", [=] { return Forward(v1::Tensor()); },
       Code::kInvalidArgument, "inputs"},
      {"forward.empty_batch", [=] { return Forward(Tensor2(0, 2, {})); },
       Code::kInvalidArgument, "inputs.shape[0]"},
      {"forward.negative_dimension",
       [=] { return Forward(Tensor2(1, -2, {})); }, Code::kInvalidArgument,
       "inputs.shape[1]"},
      {"forward.value_count_mismatch",
       [=] {
         return Forward(Tensor2(2, 2, {0, 0, 0}));
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.nan",
       [=] {
         return Forward(Tensor2(1, 2, {0, kNaN}));
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.inf",
       [=] {
         return Forward(Tensor2(1, 2, {-kInf, 0}));
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.float32_overflow",
       [=] {
         return Forward(Tensor2(1, 2, {1e39, 0}), kB);
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.shape_product_overflows",
       [=] { return Forward(Tensor2(int64_t{1} << 40, int64_t{1} << 40, {})); },
       Code::kInvalidArgument, "inputs"},
      {"forward.over_batch_rows",
       [=] { return Forward(Tensor2(1001, 2, std::vector<double>(2002, 0))); },
       Code::kResourceExhausted, "inputs"},
      {"forward.unknown",
       [=] {
         return Forward(Tensor2(1, 2, {0, 0}), "networks/nope");
       },
       Code::kNotFound, "networks/nope"},
      {"forward.rank_3",
       [=] {
         v1::Tensor t = Tensor2(1, 2, {0, 0});
         t.add_shape(1);
         return Forward(t);
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.float_and_double_values",
       [=] {
         v1::Tensor t = Tensor2(1, 2, {0, 0});
         t.add_float_values(0);
         t.add_float_values(0);
         return Forward(t);
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.float32_nan",
       [=] {
         v1::Tensor t;
         t.add_shape(1);
         t.add_shape(2);
         t.add_float_values(0);
         t.add_float_values(std::numeric_limits<float>::quiet_NaN());
         return Forward(t, kB);
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.int64_min_dimension",
       [=] {
         return Forward(Tensor2(std::numeric_limits<int64_t>::min(), 2, {}));
       },
       Code::kInvalidArgument, "inputs.shape[0]"},
      {"forward.include_layers_bad_inputs",
       [=] {
         v1::ForwardRequest request;
         request.set_name(kA);
         *request.mutable_inputs() = Tensor2(1, 3, {0, 0, 0});
         request.set_include_layers(true);
         return client_->Forward(request).status();
       },
       Code::kInvalidArgument, "inputs"},
      {"forward.undecodable", [=] { return Raw("Forward", Garbage(64, 6)); },
       Code::kInvalidArgument, "satlab.v1.ForwardRequest"},
      // --- ComputeGradients ------------------------------------------------
      {"gradients.counterfactual_unknown_enum",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.add_counterfactual_losses(static_cast<v1::Loss>(99));
         });
       },
       Code::kInvalidArgument, "counterfactual_losses[0]"},
      {"gradients.counterfactual_unspecified",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.add_counterfactual_losses(v1::LOSS_MSE);
           r.add_counterfactual_losses(v1::LOSS_UNSPECIFIED);
         });
       },
       Code::kInvalidArgument, "counterfactual_losses[1]"},
      {"gradients.counterfactual_bce_on_softmax",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.add_counterfactual_losses(v1::LOSS_BCE);
         });
       },
       Code::kInvalidArgument, "counterfactual_losses[0]"},
      {"gradients.too_many_counterfactuals",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           for (int i = 0; i < 100000; ++i) {
             r.add_counterfactual_losses(v1::LOSS_MSE);
           }
         });
       },
       Code::kInvalidArgument, "counterfactual_losses"},
      {"gradients.targets_wrong_columns",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           *r.mutable_batch()->mutable_targets() = MakeTensor(2, 1, {0, 1});
         });
       },
       Code::kInvalidArgument, "batch.targets"},
      {"gradients.targets_rows_mismatch",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           *r.mutable_batch()->mutable_targets() = MakeTensor(1, 2, {0, 1});
         });
       },
       Code::kInvalidArgument, "batch.targets"},
      {"gradients.missing_targets",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.mutable_batch()->clear_targets();
         });
       },
       Code::kInvalidArgument, "batch.targets"},
      {"gradients.cce_negative_target",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.mutable_batch()->mutable_targets()->set_double_values(0, -1);
         });
       },
       Code::kInvalidArgument, "batch.targets"},
      {"gradients.unknown",
       [=] {
         return Gradients([](v1::ComputeGradientsRequest& r) {
           r.set_name("networks/nope");
         });
       },
       Code::kNotFound, "networks/nope"},
      {"gradients.undecodable",
       [=] { return Raw("ComputeGradients", Garbage(64, 7)); },
       Code::kInvalidArgument, "satlab.v1.ComputeGradientsRequest"},
      // --- TrainStep ---------------------------------------------------------
      {"step.inputs_nan",
       [=] {
         return Step([](v1::Minibatch& b) {
           b.mutable_inputs()->set_double_values(1, kNaN);
         });
       },
       Code::kInvalidArgument, "batch.inputs"},
      {"step.targets_inf",
       [=] {
         return Step([](v1::Minibatch& b) {
           b.mutable_targets()->set_double_values(0, kInf);
         });
       },
       Code::kInvalidArgument, "batch.targets"},
      {"step.bce_target_above_one",
       [=] {
         return Step(
             [](v1::Minibatch& b) {
               b.mutable_targets()->set_double_values(0, 1.5);
             },
             kB);
       },
       Code::kInvalidArgument, "batch.targets"},
      {"step.float32_overflow",
       [=] {
         return Step(
             [](v1::Minibatch& b) {
               b.mutable_inputs()->set_double_values(0, -1e39);
             },
             kB);
       },
       Code::kInvalidArgument, "batch.inputs"},
      {"step.empty_batch",
       [=] {
         return Step([](v1::Minibatch& b) {
           *b.mutable_inputs() = Tensor2(0, 2, {});
           *b.mutable_targets() = Tensor2(0, 2, {});
         });
       },
       Code::kInvalidArgument, "batch.inputs"},
      {"step.missing_batch",
       [=] { return Step([](v1::Minibatch& b) { b.Clear(); }); },
       Code::kInvalidArgument, "batch.inputs"},
      {"step.inputs_wrong_columns",
       [=] {
         return Step([](v1::Minibatch& b) {
           *b.mutable_inputs() = MakeTensor(2, 1, {0, 0});
         });
       },
       Code::kInvalidArgument, "batch.inputs"},
      {"step.over_batch_rows",
       [=] {
         return Step([](v1::Minibatch& b) {
           *b.mutable_inputs() = Tensor2(1001, 2, std::vector<double>(2002, 0));
           *b.mutable_targets() =
               Tensor2(1001, 2, std::vector<double>(2002, 0));
         });
       },
       Code::kResourceExhausted, "batch.inputs"},
      {"step.unknown",
       [=] { return Step([](v1::Minibatch&) {}, "networks/nope"); },
       Code::kNotFound, "networks/nope"},
      {"step.undecodable", [=] { return Raw("TrainStep", Garbage(64, 8)); },
       Code::kInvalidArgument, "satlab.v1.TrainStepRequest"},
      // --- Evaluate --------------------------------------------------------
      {"evaluate.inputs_wrong_columns",
       [=] {
         return Evaluate([](v1::Minibatch& b) {
           *b.mutable_inputs() = MakeTensor(2, 3, {0, 0, 0, 0, 0, 0});
         });
       },
       Code::kInvalidArgument, "data.inputs"},
      {"evaluate.targets_nan",
       [=] {
         return Evaluate([](v1::Minibatch& b) {
           b.mutable_targets()->set_double_values(1, kNaN);
         });
       },
       Code::kInvalidArgument, "data.targets"},
      {"evaluate.over_batch_rows",
       [=] {
         return Evaluate([](v1::Minibatch& b) {
           *b.mutable_inputs() = Tensor2(1001, 2, std::vector<double>(2002, 0));
           *b.mutable_targets() =
               Tensor2(1001, 2, std::vector<double>(2002, 0));
         });
       },
       Code::kResourceExhausted, "data.inputs"},
      {"evaluate.undecodable", [=] { return Raw("Evaluate", Garbage(64, 9)); },
       Code::kInvalidArgument, "satlab.v1.EvaluateRequest"},
      // --- Train stream ----------------------------------------------------
      {"train.first_message_without_name",
       [=] { return Train({TrainMessage("", &batch_a)}); },
       Code::kInvalidArgument, "name"},
      {"train.unknown_network",
       [=] { return Train({TrainMessage("networks/nope", &batch_a)}); },
       Code::kNotFound, "networks/nope"},
      {"train.name_malformed",
       [=] { return Train({TrainMessage("fx-a", &batch_a)}); },
       Code::kInvalidArgument, "name"},
      {"train.report_every_negative",
       [=] { return Train({TrainMessage(kA, &batch_a, -1)}); },
       Code::kInvalidArgument, "report_every"},
      {"train.switched_name",
       [=] {
         return Train({TrainMessage(kA, nullptr), TrainMessage(kB, &batch_a)});
       },
       Code::kInvalidArgument, "name"},
      {"train.bad_first_batch",
       [=] {
         v1::Minibatch bad = batch_a;
         bad.mutable_inputs()->set_double_values(0, kNaN);
         return Train({TrainMessage(kA, &bad)});
       },
       Code::kInvalidArgument, "batch.inputs"},
      {"train.undecodable_first_message",
       [=] { return Train({Garbage(64, 11)}); }, Code::kInvalidArgument,
       "satlab.v1.TrainRequest"},
      {"train.undecodable_after_name",
       [=] {
         return Train({TrainMessage(kA, nullptr), "\xff\xff\xff\xff"});
       },
       Code::kInvalidArgument, "request message 2"},
      {"train.bad_batch_after_name_only",
       [=] {
         v1::Minibatch bad = batch_a;
         *bad.mutable_targets() = MakeTensor(2, 1, {0, 1});
         return Train({TrainMessage(kA, nullptr), TrainMessage("", &bad)});
       },
       Code::kInvalidArgument, "batch.targets"},
      {"train.name_too_long",
       [=] { return Train({TrainMessage(long_name, &batch_a)}); },
       Code::kInvalidArgument, "name"},
      {"train.bce_target_out_of_range",
       [=] {
         v1::Minibatch bad = BatchB();
         bad.mutable_targets()->set_double_values(1, -0.5);
         return Train({TrainMessage(kB, &bad)});
       },
       Code::kInvalidArgument, "batch.targets"},
      {"train.name_not_utf8",
       [=] { return Train({StringField(1, "networks/fx-a\xff")}); },
       Code::kInvalidArgument, "satlab.v1.TrainRequest"},
      // --- WatchMetrics ----------------------------------------------------
      {"watch.start_step_below_minus_one", [=] { return Watch("", -2); },
       Code::kInvalidArgument, "start_step"},
      {"watch.name_malformed", [=] { return Watch("fx-a", 0); },
       Code::kInvalidArgument, "name"},
      {"watch.unknown", [=] { return Watch("networks/nope", 0); },
       Code::kNotFound, "networks/nope"},
      {"watch.undecodable",
       [=] { return Raw("WatchMetrics", Garbage(64, 12)); },
       Code::kInvalidArgument, "satlab.v1.WatchMetricsRequest"},
      // --- RunExperiment ---------------------------------------------------
      {"experiment.no_variants",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) { s.clear_variants(); });
       },
       Code::kInvalidArgument, "spec.variants"},
      {"experiment.too_many_variants",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           for (int i = 0; i < 16; ++i) *s.add_variants() = s.variants(0);
         });
       },
       Code::kResourceExhausted, "spec.variants"},
      {"experiment.epochs_zero",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) { s.set_epochs(0); });
       },
       Code::kInvalidArgument, "spec.epochs"},
      {"experiment.epochs_over_limit",
       [=] {
         return Experiment(
             [](v1::ExperimentSpec& s) { s.set_epochs(100'001); });
       },
       Code::kResourceExhausted, "spec.epochs"},
      {"experiment.batch_size_negative",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) { s.set_batch_size(-1); });
       },
       Code::kInvalidArgument, "spec.batch_size"},
      {"experiment.parallelism_negative",
       [=] {
         return Experiment(
             [](v1::ExperimentSpec& s) { s.set_parallelism(-1); });
       },
       Code::kInvalidArgument, "spec.parallelism"},
      {"experiment.dataset_missing",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) { s.clear_dataset(); });
       },
       Code::kInvalidArgument, "spec.dataset"},
      {"experiment.dataset_kind_unspecified",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_kind(
               v1::DATASET_KIND_UNSPECIFIED);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.kind"},
      {"experiment.dataset_kind_unknown_enum",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_kind(
               static_cast<v1::DatasetKind>(77));
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.kind"},
      {"experiment.dataset_samples_negative",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_samples(-4);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.samples"},
      {"experiment.dataset_samples_over_limit",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_samples(100'001);
         });
       },
       Code::kResourceExhausted, "spec.dataset.builtin.samples"},
      {"experiment.dataset_noise_negative",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_noise(-1);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.noise"},
      {"experiment.dataset_noise_nan",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_noise(kNaN);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.noise"},
      {"experiment.k_blobs_one_class",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_kind(
               v1::DATASET_KIND_K_BLOBS);
           s.mutable_dataset()->mutable_builtin()->set_single_output(false);
           s.mutable_dataset()->mutable_builtin()->set_classes(1);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.classes"},
      {"experiment.single_output_with_three_classes",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_kind(
               v1::DATASET_KIND_K_BLOBS);
         });
       },
       Code::kInvalidArgument, "spec.dataset.builtin.single_output"},
      {"experiment.inline_inputs_nan",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           v1::Minibatch data = MakeBatch(4, 2, 1, 0);
           data.mutable_inputs()->set_double_values(2, kNaN);
           *s.mutable_dataset()->mutable_inline_() = data;
         });
       },
       Code::kInvalidArgument, "spec.dataset.inline.inputs"},
      {"experiment.inline_rows_mismatch",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           v1::Minibatch data = MakeBatch(4, 2, 1, 0);
           *data.mutable_targets() = MakeTensor(3, 1, {0, 1, 0});
           *s.mutable_dataset()->mutable_inline_() = data;
         });
       },
       Code::kInvalidArgument, "spec.dataset.inline.targets"},
      {"experiment.hidden_softmax",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_hidden_layers(0)->set_activation(v1::ACTIVATION_SOFTMAX);
         });
       },
       Code::kInvalidArgument, "spec.hidden_layers[0].activation"},
      {"experiment.hidden_units_zero",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_hidden_layers(0)->set_units(0);
         });
       },
       Code::kInvalidArgument, "spec.hidden_layers[0].units"},
      {"experiment.variant_loss_unspecified",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_variants(0)->set_loss(v1::LOSS_UNSPECIFIED);
         });
       },
       Code::kInvalidArgument, "spec.variants[0].loss"},
      {"experiment.variant_output_unknown_enum",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_variants(0)->set_output_activation(
               static_cast<v1::Activation>(12));
         });
       },
       Code::kInvalidArgument, "spec.variants[0].output_activation"},
      {"experiment.variant_bce_on_tanh",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_variants(0)->set_output_activation(v1::ACTIVATION_TANH);
           s.mutable_variants(0)->set_loss(v1::LOSS_BCE);
         });
       },
       Code::kInvalidArgument, "spec.variants[0].loss"},
      {"experiment.variant_hidden_softmax",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_variants(0)->set_hidden_activation(v1::ACTIVATION_SOFTMAX);
         });
       },
       Code::kInvalidArgument, "spec.variants[0].hidden_activation"},
      {"experiment.variant_optimizer_momentum_one",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           auto* sgd =
               s.mutable_variants(0)->mutable_optimizer()->mutable_sgd();
           sgd->set_learning_rate(0.1);
           sgd->set_momentum(1);
         });
       },
       Code::kInvalidArgument, "spec.variants[0].optimizer.sgd.momentum"},
      {"experiment.optimizer_learning_rate_zero",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_optimizer()->mutable_adam()->set_learning_rate(0);
         });
       },
       Code::kInvalidArgument, "spec.optimizer.adam.learning_rate"},
      {"experiment.init_scheme_unknown_enum",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_init()->set_scheme(static_cast<v1::InitScheme>(-3));
         });
       },
       Code::kInvalidArgument, "spec.init.scheme"},
      {"experiment.display_name_too_long",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.set_display_name(std::string(1 << 20, 'd'));
         });
       },
       Code::kInvalidArgument, "spec.display_name: expected at most 256 bytes"},
      {"experiment.label_too_long",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_variants(0)->set_label(std::string(129, 'l'));
         });
       },
       Code::kInvalidArgument,
       "spec.variants[0].label: expected at most 128 bytes, got 129"},
      {"experiment.dtype_unknown_enum",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.set_dtype(static_cast<v1::DType>(9));
         });
       },
       Code::kInvalidArgument, "spec.dtype"},
      {"experiment.theta_above_one",
       [=] {
         return Experiment(
             [](v1::ExperimentSpec& s) { s.set_saturation_threshold(2); });
       },
       Code::kInvalidArgument, "spec.saturation_threshold"},
      {"experiment.too_many_hidden_layers",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           for (int i = 0; i < 8; ++i) {
             *s.add_hidden_layers() = s.hidden_layers(0);
           }
         });
       },
       Code::kResourceExhausted, "spec.hidden_layers"},
      {"experiment.batch_size_over_rows_limit",
       [=] {
         return Experiment(
             [](v1::ExperimentSpec& s) { s.set_batch_size(1001); });
       },
       Code::kResourceExhausted, "spec.batch_size"},
      {"experiment.inline_inputs_rank_1",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           v1::Minibatch data = MakeBatch(4, 2, 1, 0);
           *data.mutable_inputs() = MakeVector({0, 1, 0, 1});
           *s.mutable_dataset()->mutable_inline_() = data;
         });
       },
       Code::kInvalidArgument, "spec.dataset.inline.inputs"},
      {"experiment.inline_bce_target_out_of_range",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           v1::Minibatch data = MakeBatch(4, 2, 1, 0);
           data.mutable_targets()->set_double_values(2, 3.0);
           *s.mutable_dataset()->mutable_inline_() = data;
           s.mutable_variants(0)->set_loss(v1::LOSS_BCE);
         });
       },
       Code::kInvalidArgument, "spec.variants[0].loss"},
      {"experiment.init_explicit_wrong_shape",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
           auto* l0 = s.mutable_init()->add_parameters();
           *l0->mutable_weights() = MakeTensor(1, 1, {0});
           *l0->mutable_biases() = MakeVector({0});
         });
       },
       Code::kInvalidArgument, "spec.init.parameters"},
      {"experiment.experiment_spec_missing",
       [=] {
         return client_
             ->RunExperiment(
                 v1::RunExperimentRequest(),
                 [](const v1::RunExperimentResponse&) { return true; },
                 absl::Seconds(30))
             .status();
       },
       Code::kInvalidArgument, "spec.dataset"},
      {"experiment.work_over_limit",
       [=] {
         return Experiment([](v1::ExperimentSpec& s) {
           s.mutable_dataset()->mutable_builtin()->set_samples(100'000);
           s.set_epochs(100'000);
         });
       },
       Code::kResourceExhausted, "spec.epochs"},
      {"experiment.undecodable",
       [=] { return Raw("RunExperiment", Garbage(64, 13)); },
       Code::kInvalidArgument, "satlab.v1.RunExperimentRequest"},
  };
}

TEST(DoubledSegmentTest, FindsRepeatedFieldNamesOnly) {
  EXPECT_TRUE(HasDoubledSegment("inputs.inputs: expected 2 columns"));
  EXPECT_TRUE(HasDoubledSegment("x: spec.spec"));
  EXPECT_FALSE(HasDoubledSegment("batch.inputs: expected 2 columns"));
  EXPECT_FALSE(HasDoubledSegment("layers[0].layers"));
  EXPECT_FALSE(HasDoubledSegment("ab.abc and abc.ab"));
  EXPECT_FALSE(HasDoubledSegment("1.1 and 0.5"));
}

TEST_F(BadInputCatalogueTest, EveryCase_RightCodeAndField_StateUnchanged) {
  const std::vector<Case> cases = Cases();
  ASSERT_GE(cases.size(), 80u);
  const std::vector<std::string> before = State();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status = c.call();
    EXPECT_EQ(status.code(), c.code) << c.name << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field)) << c.name;
    EXPECT_FALSE(HasDoubledSegment(status.message()))
        << c.name << ": " << status.message();
    // Error messages stay short whatever the request carried.
    EXPECT_LE(status.message().size(), 1024u) << c.name;
    EXPECT_EQ(State(), before) << c.name << " changed state";
    auto health = client_->CheckHealth("");
    EXPECT_TRUE(health.ok() && *health) << c.name << ": server not serving";
  }
  // The fixtures still train.
  EXPECT_TRUE(client_->TrainStep(kA, BatchA()).ok());
  EXPECT_TRUE(client_->TrainStep(kB, BatchB()).ok());
  // The table, for docs/reliability/input.md.
  for (const Case& c : cases) {
    std::cout << "| " << c.name << " | " << absl::StatusCodeToString(c.code)
              << " | `" << c.field << "` |\n";
  }
}

}  // namespace
}  // namespace satlab::testing
