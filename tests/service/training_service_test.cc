// In-process tests of every TrainingService RPC over a real gRPC channel on
// 127.0.0.1:0: happy paths, each documented error code, and proof that a
// rejected request changes nothing.
#include "server/service/training_service.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;

MATCHER_P2(StatusIs, code, substring, "") {
  return arg.code() == code &&
         std::string(arg.message()).find(substring) != std::string::npos;
}

// The parameters of a network, serialized: equal bytes <=> bitwise equal.
std::string ParamBytes(Client& client, const std::string& name) {
  auto params = client.GetParameters(name);
  EXPECT_TRUE(params.ok()) << params.status();
  return params.ok() ? params->SerializeAsString() : "";
}

class TrainingServiceTest : public ServiceTest {};

TEST_F(TrainingServiceTest, CreateNetwork_ServerAssignedId_FillsResource) {
  auto network = client_->CreateNetwork(SmallSpec(3, 4, 2, v1::LOSS_CCE, 1));
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_THAT(network->name(),
              ::testing::MatchesRegex("networks/net-[0-9a-f]{12}"));
  EXPECT_EQ(network->step(), 0);
  EXPECT_EQ(network->parameter_count(), 3 * 4 + 4 + 4 * 2 + 2);
  EXPECT_GT(network->create_time().seconds(), 1700000000);
  EXPECT_EQ(network->spec().layers(1).activation(), v1::ACTIVATION_SOFTMAX);
  auto got = client_->GetNetwork(network->name());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->SerializeAsString(), network->SerializeAsString());
}

TEST_F(TrainingServiceTest, CreateNetwork_TakenId_AlreadyExists) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  EXPECT_THAT(client_->CreateNetwork(NeuronSpec(), "neuron").status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "networks/neuron"));
}

TEST_F(TrainingServiceTest, CreateNetwork_BadId_InvalidArgument) {
  EXPECT_THAT(client_->CreateNetwork(NeuronSpec(), "Bad_Id").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "network_id"));
}

struct BadSpecCase {
  std::string label;
  std::function<void(v1::NetworkSpec&)> mutate;
  std::string field;
};

TEST_F(TrainingServiceTest, CreateNetwork_BadSpec_InvalidArgumentNamingField) {
  const std::vector<BadSpecCase> cases = {
      {"unknown activation",
       [](v1::NetworkSpec& s) {
         s.mutable_layers(0)->set_activation(static_cast<v1::Activation>(99));
       },
       "network.spec.layers[0].activation"},
      {"unspecified loss",
       [](v1::NetworkSpec& s) { s.set_loss(v1::LOSS_UNSPECIFIED); },
       "network.spec.loss"},
      {"bce on tanh outputs",
       [](v1::NetworkSpec& s) {
         s.mutable_layers(1)->set_activation(v1::ACTIVATION_TANH);
         s.set_loss(v1::LOSS_BCE);
       },
       "network.spec.loss"},
      {"softmax in a hidden layer",
       [](v1::NetworkSpec& s) {
         s.mutable_layers(0)->set_activation(v1::ACTIVATION_SOFTMAX);
       },
       "network.spec.layers[0].activation"},
      {"zero units",
       [](v1::NetworkSpec& s) { s.mutable_layers(0)->set_units(0); },
       "network.spec.layers[0].units"},
      {"zero inputs", [](v1::NetworkSpec& s) { s.set_input_size(0); },
       "network.spec.input_size"},
      {"no layers", [](v1::NetworkSpec& s) { s.clear_layers(); },
       "network.spec.layers"},
      {"negative learning rate",
       [](v1::NetworkSpec& s) {
         s.mutable_optimizer()->mutable_sgd()->set_learning_rate(-1);
       },
       "network.spec.optimizer"},
      {"unknown dtype",
       [](v1::NetworkSpec& s) { s.set_dtype(static_cast<v1::DType>(7)); },
       "network.spec.dtype"},
      {"explicit parameters of the wrong shape",
       [](v1::NetworkSpec& s) {
         s.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
         auto* p = s.mutable_init()->add_parameters();
         *p->mutable_weights() = MakeTensor(1, 1, {1});
         *p->mutable_biases() = MakeVector({1});
       },
       "network.spec.init.parameters"},
  };
  for (const auto& c : cases) {
    v1::NetworkSpec spec = SmallSpec(3, 4, 2, v1::LOSS_CCE, 1);
    c.mutate(spec);
    auto result = client_->CreateNetwork(spec);
    EXPECT_THAT(result.status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.field))
        << c.label << ": " << result.status();
  }
  auto list = client_->ListAllNetworks();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty()) << "a rejected create left a network behind";
}

TEST_F(TrainingServiceTest,
       CreateNetwork_OverParameterLimit_ResourceExhausted) {
  TearDown();
  options_.service.limits.max_parameters = 100;
  Start();
  EXPECT_THAT(
      client_->CreateNetwork(SmallSpec(30, 30, 2, v1::LOSS_CCE, 1)).status(),
      StatusIs(absl::StatusCode::kResourceExhausted, "parameters"));
}

TEST_F(TrainingServiceTest, CreateNetwork_OverNetworkLimit_ResourceExhausted) {
  TearDown();
  options_.max_networks = 2;
  Start();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec()).ok());
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec()).ok());
  EXPECT_THAT(client_->CreateNetwork(NeuronSpec()).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "max_networks"));
}

TEST_F(TrainingServiceTest, GetNetwork_Unknown_NotFound) {
  EXPECT_THAT(client_->GetNetwork("networks/nope").status(),
              StatusIs(absl::StatusCode::kNotFound, "networks/nope"));
}

TEST_F(TrainingServiceTest, GetNetwork_MalformedName_InvalidArgument) {
  EXPECT_THAT(client_->GetNetwork("nets/x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "name"));
}

TEST_F(TrainingServiceTest, ListNetworks_Pages_InNameOrderWithoutGaps) {
  for (const char* id : {"e", "a", "d", "b", "c"}) {
    ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), id).ok());
  }
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    auto page = client_->ListNetworks(2, token);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->networks_size(), 2);
    for (const auto& n : page->networks()) names.push_back(n.name());
    token = page->next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(names,
              ::testing::ElementsAre("networks/a", "networks/b", "networks/c",
                                     "networks/d", "networks/e"));
}

TEST_F(TrainingServiceTest, ListNetworks_BadPageSize_InvalidArgument) {
  EXPECT_THAT(client_->ListNetworks(-1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
  EXPECT_THAT(client_->ListNetworks(5000).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
  EXPECT_THAT(client_->ListNetworks(1, "Not A Token").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
}

TEST_F(TrainingServiceTest, DeleteNetwork_Existing_GoneAfterwards) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "doomed").ok());
  ASSERT_TRUE(client_->DeleteNetwork("networks/doomed").ok());
  EXPECT_EQ(client_->GetNetwork("networks/doomed").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->DeleteNetwork("networks/doomed").code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TrainingServiceTest, Parameters_RoundTrip_BitExactInBothPrecisions) {
  for (v1::DType dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT64}) {
    auto a =
        client_->CreateNetwork(SmallSpec(5, 7, 3, v1::LOSS_CCE, 11, dtype));
    auto b =
        client_->CreateNetwork(SmallSpec(5, 7, 3, v1::LOSS_CCE, 99, dtype));
    ASSERT_TRUE(a.ok() && b.ok());
    auto params = client_->GetParameters(a->name());
    ASSERT_TRUE(params.ok());
    // Responses carry the network's own precision.
    EXPECT_EQ(params->layers(0).weights().float_values_size() > 0,
              dtype == v1::DTYPE_FLOAT32);
    EXPECT_THAT(params->layers(0).weights().shape(),
                ::testing::ElementsAre(5, 7));
    EXPECT_THAT(params->layers(0).biases().shape(), ::testing::ElementsAre(7));
    v1::SetParametersRequest set;
    set.set_name(b->name());
    *set.mutable_layers() = params->layers();
    ASSERT_TRUE(client_->SetParameters(set).ok());
    auto copied = client_->GetParameters(b->name());
    ASSERT_TRUE(copied.ok());
    EXPECT_EQ(copied->SerializeAsString(), params->SerializeAsString());
  }
}

TEST_F(TrainingServiceTest, SetParameters_BadInput_RejectedAndUnchanged) {
  auto net = client_->CreateNetwork(SmallSpec(2, 3, 1, v1::LOSS_BCE, 5));
  ASSERT_TRUE(net.ok());
  const std::string before = ParamBytes(*client_, net->name());
  auto good = client_->GetParameters(net->name());
  ASSERT_TRUE(good.ok());

  struct Case {
    std::string label;
    std::function<void(v1::SetParametersRequest&)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"wrong weight shape",
       [](v1::SetParametersRequest& r) {
         *r.mutable_layers(1)->mutable_weights() =
             MakeTensor(3, 2, {1, 2, 3, 4, 5, 6});
       },
       "layers[1].weights: expected shape [3, 1]"},
      {"NaN bias",
       [](v1::SetParametersRequest& r) {
         r.mutable_layers(0)->mutable_biases()->set_double_values(1,
                                                                  std::nan(""));
       },
       "layers[0].biases"},
      {"missing layer",
       [](v1::SetParametersRequest& r) { r.mutable_layers()->RemoveLast(); },
       "layers: expected 2 layers, got 1"},
      {"count mismatch",
       [](v1::SetParametersRequest& r) {
         r.mutable_layers(0)
             ->mutable_weights()
             ->mutable_double_values()
             ->RemoveLast();
       },
       "layers[0].weights: shape [2, 3] needs 6 values, got 5"},
  };
  for (const auto& c : cases) {
    v1::SetParametersRequest request;
    request.set_name(net->name());
    *request.mutable_layers() = good->layers();
    // Make the change visible if it were (wrongly) applied.
    request.mutable_layers(0)->mutable_weights()->set_double_values(0, 42.0);
    c.mutate(request);
    EXPECT_THAT(client_->SetParameters(request).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.field))
        << c.label;
    EXPECT_EQ(ParamBytes(*client_, net->name()), before) << c.label;
  }
}

TEST_F(TrainingServiceTest, Forward_SingleNeuron_MatchesSigmoid) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  v1::ForwardRequest request;
  request.set_name("networks/neuron");
  *request.mutable_inputs() = MakeTensor(2, 1, {1.0, -1.0});
  request.set_include_layers(true);
  auto response = client_->Forward(request);
  ASSERT_TRUE(response.ok()) << response.status();
  const auto out = TensorValues(response->outputs());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_DOUBLE_EQ(out[0], 1 / (1 + std::exp(-4.0)));
  EXPECT_DOUBLE_EQ(out[1], 0.5);
  ASSERT_EQ(response->layers_size(), 1);
  EXPECT_THAT(TensorValues(response->layers(0).z()),
              ::testing::ElementsAre(4.0, 0.0));
}

TEST_F(TrainingServiceTest, Forward_BadInputs_InvalidArgumentNamingField) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  struct Case {
    v1::Tensor inputs;
    std::string message;
  };
  v1::Tensor both = MakeTensor(1, 1, {1});
  both.add_float_values(1);
  v1::Tensor empty;
  empty.add_shape(0);
  empty.add_shape(1);
  const std::vector<Case> cases = {
      {MakeTensor(1, 2, {1, 2}), "inputs: expected 1 columns, got 2"},
      {MakeTensor(1, 1, {std::numeric_limits<double>::infinity()}), "inputs"},
      {MakeVector({1}), "inputs: expected a rank-2 shape"},
      {both, "not both"},
      {empty, "inputs.shape[0]: expected >= 1, got 0 (empty batch)"},
  };
  for (const auto& c : cases) {
    v1::ForwardRequest request;
    request.set_name("networks/neuron");
    *request.mutable_inputs() = c.inputs;
    EXPECT_THAT(client_->Forward(request).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.inputs.DebugString();
  }
}

TEST_F(TrainingServiceTest, ComputeGradients_SeedNeuron_MseVersusBce) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  const std::string before = ParamBytes(*client_, "networks/neuron");
  v1::ComputeGradientsRequest request;
  request.set_name("networks/neuron");
  *request.mutable_batch()->mutable_inputs() = MakeTensor(1, 1, {1});
  *request.mutable_batch()->mutable_targets() = MakeTensor(1, 1, {0});
  request.add_counterfactual_losses(v1::LOSS_BCE);
  auto response = client_->ComputeGradients(request);
  ASSERT_TRUE(response.ok()) << response.status();
  const double a = 1 / (1 + std::exp(-4.0));
  const auto& mse = response->gradients();
  ASSERT_EQ(response->counterfactuals_size(), 1);
  const auto& bce = response->counterfactuals(0);
  EXPECT_EQ(mse.loss(), v1::LOSS_MSE);
  EXPECT_EQ(bce.loss(), v1::LOSS_BCE);
  EXPECT_NEAR(TensorValues(mse.layers(0).weights())[0], 0.017345, 5e-7);
  EXPECT_NEAR(TensorValues(bce.layers(0).weights())[0], 0.982014, 5e-7);
  EXPECT_NEAR(mse.saturation().output_attenuation(), a * (1 - a), 1e-12);
  EXPECT_NEAR(bce.saturation().output_attenuation(), 1.0, 1e-12);
  EXPECT_NEAR(mse.loss_value(), 0.5 * a * a, 1e-12);
  EXPECT_NEAR(bce.loss_value(), -std::log(1 - a), 1e-12);
  EXPECT_EQ(ParamBytes(*client_, "networks/neuron"), before);
}

TEST_F(TrainingServiceTest,
       ComputeGradients_IncompatibleCounterfactual_Rejected) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  v1::ComputeGradientsRequest request;
  request.set_name("networks/neuron");
  *request.mutable_batch()->mutable_inputs() = MakeTensor(1, 1, {1});
  *request.mutable_batch()->mutable_targets() = MakeTensor(1, 1, {0});
  request.add_counterfactual_losses(v1::LOSS_BCE);
  request.add_counterfactual_losses(v1::LOSS_CCE);
  EXPECT_THAT(client_->ComputeGradients(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "counterfactual_losses[1]: cce needs a softmax"));
  // bce targets must be probabilities.
  request.clear_counterfactual_losses();
  request.add_counterfactual_losses(v1::LOSS_BCE);
  *request.mutable_batch()->mutable_targets() = MakeTensor(1, 1, {2});
  EXPECT_THAT(client_->ComputeGradients(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "batch.targets"));
}

TEST_F(TrainingServiceTest, TrainStep_AdvancesStepAndChangesParameters) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  const std::string before = ParamBytes(*client_, "networks/neuron");
  auto result = client_->TrainStep("networks/neuron", MakeBatch(1, 1, 1, 0));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step(), 1);
  EXPECT_EQ(result->batch_size(), 1);
  EXPECT_FALSE(result->diverged());
  EXPECT_NE(ParamBytes(*client_, "networks/neuron"), before);
  auto network = client_->GetNetwork("networks/neuron");
  ASSERT_TRUE(network.ok());
  EXPECT_EQ(network->step(), 1);
  EXPECT_EQ(network->samples_seen(), 1);
}

TEST_F(TrainingServiceTest, TrainStep_BadBatch_RejectedAndUnchanged) {
  auto net = client_->CreateNetwork(SmallSpec(2, 3, 2, v1::LOSS_CCE, 5));
  ASSERT_TRUE(net.ok());
  const std::string before = ParamBytes(*client_, net->name());
  struct Case {
    v1::Minibatch batch;
    absl::StatusCode code;
    std::string message;
  };
  v1::Minibatch rows_mismatch = MakeBatch(3, 2, 2, 0);
  *rows_mismatch.mutable_targets() = MakeBatch(2, 2, 2, 0).targets();
  v1::Minibatch nan_target = MakeBatch(2, 2, 2, 0);
  nan_target.mutable_targets()->set_double_values(3, std::nan(""));
  v1::Minibatch wrong_targets = MakeBatch(2, 2, 3, 0);
  v1::Minibatch negative_target = MakeBatch(2, 2, 2, 0);
  negative_target.mutable_targets()->set_double_values(0, -0.5);
  v1::Minibatch missing_targets = MakeBatch(2, 2, 2, 0);
  missing_targets.clear_targets();
  const std::vector<Case> cases = {
      {rows_mismatch, absl::StatusCode::kInvalidArgument, "batch.targets"},
      {nan_target, absl::StatusCode::kInvalidArgument, "batch.targets"},
      {wrong_targets, absl::StatusCode::kInvalidArgument,
       "batch.targets: expected 2 columns, got 3"},
      {negative_target, absl::StatusCode::kInvalidArgument, "batch.targets"},
      {missing_targets, absl::StatusCode::kInvalidArgument, "batch.targets"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(client_->TrainStep(net->name(), c.batch).status(),
                StatusIs(c.code, c.message))
        << c.batch.DebugString();
  }
  EXPECT_EQ(ParamBytes(*client_, net->name()), before);
  auto network = client_->GetNetwork(net->name());
  ASSERT_TRUE(network.ok());
  EXPECT_EQ(network->step(), 0);
}

TEST_F(TrainingServiceTest, TrainStep_OverBatchRowLimit_ResourceExhausted) {
  TearDown();
  options_.service.limits.max_batch_rows = 4;
  Start();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  EXPECT_THAT(
      client_->TrainStep("networks/neuron", MakeBatch(5, 1, 1, 0)).status(),
      StatusIs(absl::StatusCode::kResourceExhausted, "batch"));
}

TEST_F(TrainingServiceTest, TrainStep_OverMessageLimit_ResourceExhausted) {
  TearDown();
  options_.max_message_bytes = 4096;
  Start();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  EXPECT_EQ(client_->TrainStep("networks/neuron", MakeBatch(1000, 1, 1, 0))
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(TrainingServiceTest, TrainStep_Diverging_ReportedNotCrashed) {
  v1::NetworkSpec spec = SmallSpec(2, 3, 1, v1::LOSS_MSE, 3);
  spec.mutable_layers(1)->set_activation(v1::ACTIVATION_IDENTITY);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(1e30);
  spec.mutable_optimizer()->mutable_sgd()->set_momentum(0);
  auto net = client_->CreateNetwork(spec);
  ASSERT_TRUE(net.ok()) << net.status();
  bool diverged = false;
  for (int i = 0; i < 20 && !diverged; ++i) {
    auto result = client_->TrainStep(net->name(), MakeBatch(4, 2, 1, i));
    ASSERT_TRUE(result.ok()) << result.status();
    diverged = result->diverged();
  }
  EXPECT_TRUE(diverged);
  EXPECT_TRUE(client_->CheckHealth("").value_or(false));
}

TEST_F(TrainingServiceTest, Evaluate_MatchesComputeGradientsLoss) {
  auto net = client_->CreateNetwork(SmallSpec(3, 5, 2, v1::LOSS_CCE, 8));
  ASSERT_TRUE(net.ok());
  const v1::Minibatch data = MakeBatch(16, 3, 2, 1);
  auto eval = client_->Evaluate(net->name(), data);
  ASSERT_TRUE(eval.ok()) << eval.status();
  v1::ComputeGradientsRequest request;
  request.set_name(net->name());
  *request.mutable_batch() = data;
  auto grad = client_->ComputeGradients(request);
  ASSERT_TRUE(grad.ok());
  EXPECT_EQ(eval->samples(), 16);
  EXPECT_DOUBLE_EQ(eval->loss(), grad->gradients().loss_value());
  EXPECT_GE(eval->accuracy(), 0.0);
  EXPECT_LE(eval->accuracy(), 1.0);
  EXPECT_EQ(eval->saturation().layers_size(), 2);
}

TEST_F(TrainingServiceTest, Determinism_SameSeedSameBatches_BitwiseEqual) {
  for (v1::DType dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT64}) {
    auto a =
        client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 42, dtype));
    auto b =
        client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 42, dtype));
    ASSERT_TRUE(a.ok() && b.ok());
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(client_->TrainStep(a->name(), MakeBatch(8, 4, 3, i)).ok());
      ASSERT_TRUE(client_->TrainStep(b->name(), MakeBatch(8, 4, 3, i)).ok());
    }
    EXPECT_EQ(ParamBytes(*client_, a->name()), ParamBytes(*client_, b->name()));
  }
}

TEST_F(TrainingServiceTest, Train_Stream_EqualsTrainStepsBitwise) {
  auto streamed = client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 7));
  auto stepped = client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 7));
  ASSERT_TRUE(streamed.ok() && stepped.ok());
  std::vector<v1::Minibatch> batches;
  for (int i = 0; i < 25; ++i) batches.push_back(MakeBatch(6, 4, 3, i));
  std::vector<int64_t> steps;
  auto last =
      client_->Train(streamed->name(), batches, TrainOptions{},
                     [&](const v1::TrainResponse& r) {
                       steps.push_back(r.result().step());
                       EXPECT_EQ(r.batches_applied(), r.result().step());
                     });
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->step(), 25);
  ASSERT_EQ(steps.size(), 25u);
  for (const auto& b : batches) {
    ASSERT_TRUE(client_->TrainStep(stepped->name(), b).ok());
  }
  EXPECT_EQ(ParamBytes(*client_, streamed->name()),
            ParamBytes(*client_, stepped->name()));
}

// Tiny steps run on the callback thread, larger ones on the executor
// (core::NetworkCore::kInlineStepWork); the Train stream always uses
// the executor. Both TrainStep paths must give the stream's parameters bit for
// bit.
TEST_F(TrainingServiceTest, TrainStep_InlineAndExecutorPaths_EqualStream) {
  constexpr int64_t kParameters = 4 * 8 + 8 + 8 * 3 + 3;
  const int tiny_rows = 6;
  const int large_rows =
      static_cast<int>(core::NetworkCore::kInlineStepWork / kParameters + 1);
  ASSERT_LE(tiny_rows * kParameters, core::NetworkCore::kInlineStepWork);
  for (const int rows : {tiny_rows, large_rows}) {
    auto streamed = client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 9));
    auto stepped = client_->CreateNetwork(SmallSpec(4, 8, 3, v1::LOSS_CCE, 9));
    ASSERT_TRUE(streamed.ok() && stepped.ok());
    std::vector<v1::Minibatch> batches;
    for (int i = 0; i < 3; ++i) batches.push_back(MakeBatch(rows, 4, 3, i));
    ASSERT_TRUE(client_
                    ->Train(streamed->name(), batches, TrainOptions{},
                            [](const v1::TrainResponse&) {})
                    .ok());
    for (const auto& b : batches) {
      auto result = client_->TrainStep(stepped->name(), b);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->batch_size(), rows);
    }
    EXPECT_EQ(ParamBytes(*client_, streamed->name()),
              ParamBytes(*client_, stepped->name()))
        << rows << " rows";
  }
}

TEST_F(TrainingServiceTest, Train_ReportEvery_ReportsMultiplesAndTheLast) {
  auto net = client_->CreateNetwork(SmallSpec(2, 3, 1, v1::LOSS_BCE, 1));
  ASSERT_TRUE(net.ok());
  std::vector<v1::Minibatch> batches(10, MakeBatch(4, 2, 1, 0));
  TrainOptions options;
  options.report_every = 3;
  std::vector<int64_t> steps;
  auto last = client_->Train(
      net->name(), batches, options,
      [&](const v1::TrainResponse& r) { steps.push_back(r.result().step()); });
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_THAT(steps, ::testing::ElementsAre(3, 6, 9, 10));
}

TEST_F(TrainingServiceTest, Train_BadBatchMidStream_EarlierStepsKept) {
  auto net = client_->CreateNetwork(SmallSpec(2, 3, 1, v1::LOSS_BCE, 1));
  ASSERT_TRUE(net.ok());
  std::vector<v1::Minibatch> batches(5, MakeBatch(4, 2, 1, 0));
  batches[3] = MakeBatch(4, 3, 1, 0);  // wrong width
  // One minibatch per message: a packed message with a bad minibatch
  // applies none of its minibatches (packed_steps_test.cc).
  TrainOptions options;
  options.batches_per_message = 1;
  auto last = client_->Train(net->name(), batches, options, nullptr);
  EXPECT_THAT(last.status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "minibatch 4 of this stream: batch.inputs: expected 2 "
                       "columns, got 3"));
  auto network = client_->GetNetwork(net->name());
  ASSERT_TRUE(network.ok());
  EXPECT_EQ(network->step(), 3);
  // The writer slot is free again.
  EXPECT_TRUE(client_->TrainStep(net->name(), batches[0]).ok());
}

TEST_F(TrainingServiceTest, Train_UnknownNetwork_NotFound) {
  auto last = client_->Train("networks/ghost", {MakeBatch(1, 1, 1, 0)},
                             TrainOptions{}, nullptr);
  // Train() reads the network first; a raw session gets the same code.
  EXPECT_EQ(last.status().code(), absl::StatusCode::kNotFound);
  auto session = client_->OpenTrainStream("networks/ghost", TrainOptions{});
  ASSERT_TRUE(session.ok());
  (*session)->Write(MakeBatch(1, 1, 1, 0));
  (*session)->WritesDone();
  v1::TrainResponse response;
  EXPECT_FALSE((*session)->Read(&response));
  EXPECT_THAT((*session)->Finish(),
              StatusIs(absl::StatusCode::kNotFound, "networks/ghost"));
}

TEST_F(TrainingServiceTest, SecondWriter_WhileStreamOpen_AbortedReadersServed) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "busy").ok());
  auto session = client_->OpenTrainStream("networks/busy", TrainOptions{});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->Write(MakeBatch(1, 1, 1, 0)));
  v1::TrainResponse response;
  ASSERT_TRUE((*session)->Read(&response));  // the stream holds the slot now
  EXPECT_THAT(
      client_->TrainStep("networks/busy", MakeBatch(1, 1, 1, 0)).status(),
      StatusIs(absl::StatusCode::kAborted, "another caller"));
  v1::SetParametersRequest set;
  set.set_name("networks/busy");
  auto* layer = set.add_layers();
  *layer->mutable_weights() = MakeTensor(1, 1, {0});
  *layer->mutable_biases() = MakeVector({0});
  EXPECT_EQ(client_->SetParameters(set).status().code(),
            absl::StatusCode::kAborted);
  auto other = client_->OpenTrainStream("networks/busy", TrainOptions{});
  ASSERT_TRUE(other.ok());
  (*other)->Write(MakeBatch(1, 1, 1, 0));
  v1::TrainResponse ignored;
  EXPECT_FALSE((*other)->Read(&ignored));
  EXPECT_EQ((*other)->Finish().code(), absl::StatusCode::kAborted);
  // Readers are not blocked by the writer slot.
  v1::ForwardRequest forward;
  forward.set_name("networks/busy");
  *forward.mutable_inputs() = MakeTensor(1, 1, {1});
  EXPECT_TRUE(client_->Forward(forward).ok());
  ASSERT_TRUE((*session)->WritesDone());
  while ((*session)->Read(&response)) {
  }
  EXPECT_TRUE((*session)->Finish().ok());
  EXPECT_TRUE(client_->TrainStep("networks/busy", MakeBatch(1, 1, 1, 0)).ok());
}

TEST_F(TrainingServiceTest, Train_NetworkDeletedMidStream_Aborted) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "vanishing").ok());
  auto session = client_->OpenTrainStream("networks/vanishing", TrainOptions{});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->Write(MakeBatch(1, 1, 1, 0)));
  v1::TrainResponse response;
  ASSERT_TRUE((*session)->Read(&response));
  ASSERT_TRUE(client_->DeleteNetwork("networks/vanishing").ok());
  (*session)->Write(MakeBatch(1, 1, 1, 0));
  (*session)->WritesDone();
  while ((*session)->Read(&response)) {
  }
  EXPECT_THAT((*session)->Finish(),
              StatusIs(absl::StatusCode::kAborted, "was deleted"));
}

TEST_F(TrainingServiceTest, Train_ClientCancels_SlotReleased) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "cancelled").ok());
  {
    auto session =
        client_->OpenTrainStream("networks/cancelled", TrainOptions{});
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*session)->Write(MakeBatch(1, 1, 1, 0)));
    v1::TrainResponse response;
    ASSERT_TRUE((*session)->Read(&response));
    (*session)->Cancel();
    EXPECT_EQ((*session)->Finish().code(), absl::StatusCode::kCancelled);
  }
  // The server releases the writer slot once it sees the cancellation.
  absl::Status status;
  for (int i = 0; i < 100; ++i) {
    status = client_->TrainStep("networks/cancelled", MakeBatch(1, 1, 1, 0))
                 .status();
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TrainingServiceTest, Deadline_Expired_DeadlineExceeded) {
  ClientOptions options;
  options.target = server_->address();
  options.timeout = absl::Microseconds(1);
  Client hasty(options);
  EXPECT_EQ(hasty.CreateNetwork(NeuronSpec()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(TrainingServiceTest, Health_TrainingServiceRegistered_Serving) {
  auto serving = client_->CheckHealth("satlab.v1.TrainingService");
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_TRUE(*serving);
  EXPECT_EQ(client_->CheckHealth("no.such.Service").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TrainingServiceTest, ConcurrentReadersAndWriter_SnapshotsConsistent) {
  auto net = client_->CreateNetwork(SmallSpec(4, 16, 3, v1::LOSS_CCE, 2));
  ASSERT_TRUE(net.ok());
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    v1::ForwardRequest forward;
    forward.set_name(net->name());
    *forward.mutable_inputs() = MakeBatch(4, 4, 3, 0).inputs();
    while (!done.load()) {
      auto r = client_->Forward(forward);
      ASSERT_TRUE(r.ok()) << r.status();
      for (double p : TensorValues(r->outputs())) ASSERT_TRUE(std::isfinite(p));
      ++reads;
    }
  });
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(client_->TrainStep(net->name(), MakeBatch(8, 4, 3, i)).ok());
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
}

TEST_F(TrainingServiceTest,
       WatchMetrics_ServerWithoutExplicitHub_ReplaysSteps) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "watched").ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        client_->TrainStep("networks/watched", MakeBatch(1, 1, 1, 0)).ok());
  }
  v1::WatchMetricsRequest request;
  request.set_name("networks/watched");
  std::vector<int64_t> steps;
  absl::Status status = client_->WatchMetrics(
      request,
      [&](const v1::WatchMetricsResponse& r) {
        if (r.event().has_step()) steps.push_back(r.event().step().step());
        return steps.size() < 2;
      },
      absl::Seconds(10));
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(steps, ::testing::ElementsAre(1, 2));
}

TEST(ServerTest, SamePortTwice_SecondFailsInsteadOfSharing) {
  service::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  auto first = service::Server::Create(options);
  ASSERT_TRUE(first.ok());
  options.listen_address = (*first)->address();
  auto second = service::Server::Create(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace satlab::testing
