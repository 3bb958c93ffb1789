// Validation of specs, batches and parameters: code and message per case.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::Mat;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::Vec;
using ::satlab::engine::testing::View;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// input 4 -> relu 8 -> softmax 3, cce, SGD.
NetworkSpec ValidSpec() {
  NetworkSpec spec;
  spec.input_size = 4;
  spec.layers = {{8, Activation::kRelu}, {3, Activation::kSoftmax}};
  spec.loss = Loss::kCce;
  return spec;
}

std::vector<LayerParams> ValidParams() {
  return {{RowMatrix<double>::Constant(4, 8, 0.1), RowVector<double>::Zero(8)},
          {RowMatrix<double>::Constant(8, 3, 0.2), RowVector<double>::Zero(3)}};
}

struct SpecCase {
  std::string name;
  std::function<void(NetworkSpec&)> mutate;
  absl::StatusCode code;
  std::string message;
};

class SpecValidation : public ::testing::TestWithParam<SpecCase> {};

TEST_P(SpecValidation, BadSpec_RejectedNamingField) {
  const SpecCase& c = GetParam();
  NetworkSpec spec = ValidSpec();
  c.mutate(spec);
  const absl::Status status = ValidateSpec(spec, Limits{}, "network.spec");
  EXPECT_EQ(status.code(), c.code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  const auto net = Network::Create(spec, Limits{}, "network.spec");
  EXPECT_EQ(net.status(), status);
}

SpecCase Invalid(std::string name, std::function<void(NetworkSpec&)> mutate,
                 std::string message) {
  return {std::move(name), std::move(mutate),
          absl::StatusCode::kInvalidArgument, std::move(message)};
}

SpecCase Exhausted(std::string name, std::function<void(NetworkSpec&)> mutate,
                   std::string message) {
  return {std::move(name), std::move(mutate),
          absl::StatusCode::kResourceExhausted, std::move(message)};
}

void UseAdam(NetworkSpec& s) {
  s.optimizer.kind = OptimizerKind::kAdam;
  s.optimizer.learning_rate = 0.001;
}

void UseExplicit(NetworkSpec& s) {
  s.init.scheme = InitScheme::kExplicit;
  s.init.explicit_params = ValidParams();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SpecValidation,
    ::testing::Values(
        Invalid(
            "InputSizeZero", [](NetworkSpec& s) { s.input_size = 0; },
            "network.spec.input_size: expected >= 1, got 0"),
        Exhausted(
            "InputSizeOverLimit", [](NetworkSpec& s) { s.input_size = 70000; },
            "network.spec.input_size: expected at most 65536, got 70000"),
        Invalid(
            "NoLayers", [](NetworkSpec& s) { s.layers.clear(); },
            "network.spec.layers: expected at least 1 layer, got 0"),
        Exhausted(
            "TooManyLayers",
            [](NetworkSpec& s) {
              s.layers.insert(s.layers.begin(), 64, {2, Activation::kTanh});
            },
            "network.spec.layers: expected at most 64 layers, got 66"),
        Invalid(
            "UnitsZero", [](NetworkSpec& s) { s.layers[0].units = 0; },
            "network.spec.layers[0].units: expected >= 1, got 0"),
        Exhausted(
            "UnitsOverLimit", [](NetworkSpec& s) { s.layers[1].units = 65537; },
            "network.spec.layers[1].units: expected at most 65536"),
        Invalid(
            "UnknownActivation",
            [](NetworkSpec& s) {
              s.layers[1].activation = static_cast<Activation>(99);
            },
            "network.spec.layers[1].activation: expected a valid "
            "activation, got 99"),
        Invalid(
            "HiddenSoftmax",
            [](NetworkSpec& s) {
              s.layers[0].activation = Activation::kSoftmax;
            },
            "network.spec.layers[0].activation: softmax is allowed on the "
            "output layer only"),
        Invalid(
            "LeakySlopeOne",
            [](NetworkSpec& s) {
              s.layers[0].activation = Activation::kLeakyRelu;
              s.layers[0].leaky_relu_slope = 1;
            },
            "network.spec.layers[0].leaky_relu_slope: expected in [0, 1), "
            "got 1"),
        Invalid(
            "LeakySlopeNegative",
            [](NetworkSpec& s) {
              s.layers[0].activation = Activation::kLeakyRelu;
              s.layers[0].leaky_relu_slope = -0.1;
            },
            "network.spec.layers[0].leaky_relu_slope"),
        Invalid(
            "BceOnRelu",
            [](NetworkSpec& s) {
              s.layers[1].activation = Activation::kRelu;
              s.loss = Loss::kBce;
            },
            "network.spec.loss: bce needs a sigmoid output layer, got "
            "relu"),
        Invalid(
            "CceOnSigmoid",
            [](NetworkSpec& s) {
              s.layers[1].activation = Activation::kSigmoid;
            },
            "network.spec.loss: cce needs a softmax output layer, got "
            "sigmoid"),
        Invalid(
            "UnknownLoss",
            [](NetworkSpec& s) { s.loss = static_cast<Loss>(9); },
            "network.spec.loss: expected mse, bce or cce, got 9"),
        Invalid(
            "UnknownDtype",
            [](NetworkSpec& s) { s.dtype = static_cast<DType>(5); },
            "network.spec.dtype: expected float32 or float64, got 5"),
        Invalid(
            "ThresholdZero", [](NetworkSpec& s) { s.saturation_threshold = 0; },
            "network.spec.saturation_threshold: expected in (0, 1), got 0"),
        Invalid(
            "ThresholdOne", [](NetworkSpec& s) { s.saturation_threshold = 1; },
            "network.spec.saturation_threshold: expected in (0, 1), got 1"),
        Invalid(
            "ThresholdNaN",
            [](NetworkSpec& s) { s.saturation_threshold = kNaN; },
            "network.spec.saturation_threshold"),
        Exhausted(
            "TooManyParameters",
            [](NetworkSpec& s) {
              s.layers[0].units = 60000;
              s.layers.insert(s.layers.begin(), {60000, Activation::kRelu});
            },
            "expected at most 50000000 parameters, got"),
        Invalid(
            "LearningRateZero",
            [](NetworkSpec& s) { s.optimizer.learning_rate = 0; },
            "network.spec.optimizer.sgd.learning_rate: expected finite > "
            "0, got 0"),
        Invalid(
            "LearningRateInf",
            [](NetworkSpec& s) { s.optimizer.learning_rate = kInf; },
            "network.spec.optimizer.sgd.learning_rate"),
        Invalid(
            "LearningRateNaN",
            [](NetworkSpec& s) { s.optimizer.learning_rate = kNaN; },
            "network.spec.optimizer.sgd.learning_rate"),
        Invalid(
            "LearningRateOverflowsFloat32",
            [](NetworkSpec& s) {
              s.dtype = DType::kFloat32;
              s.optimizer.learning_rate = 1e39;
            },
            "network.spec.optimizer.sgd.learning_rate: 1e+39 is not a "
            "finite float32"),
        Invalid(
            "AdamEpsilonUnderflowsFloat32",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.dtype = DType::kFloat32;
              s.optimizer.epsilon = 1e-50;
            },
            "network.spec.optimizer.adam.epsilon: 1e-50 rounds to 0 in "
            "float32"),
        Invalid(
            "MomentumOne", [](NetworkSpec& s) { s.optimizer.momentum = 1; },
            "network.spec.optimizer.sgd.momentum: expected in [0, 1), got "
            "1"),
        Invalid(
            "NesterovWithoutMomentum",
            [](NetworkSpec& s) { s.optimizer.nesterov = true; },
            "network.spec.optimizer.sgd.nesterov: expected momentum > 0"),
        Invalid(
            "NegativeWeightDecay",
            [](NetworkSpec& s) { s.optimizer.weight_decay = -1; },
            "network.spec.optimizer.sgd.weight_decay: expected finite >= "
            "0, got -1"),
        Invalid(
            "UnknownOptimizer",
            [](NetworkSpec& s) {
              s.optimizer.kind = static_cast<OptimizerKind>(7);
            },
            "network.spec.optimizer: expected sgd or adam, got 7"),
        Invalid(
            "AdamLearningRateNegative",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.optimizer.learning_rate = -1;
            },
            "network.spec.optimizer.adam.learning_rate"),
        Invalid(
            "AdamBeta1One",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.optimizer.beta1 = 1;
            },
            "network.spec.optimizer.adam.beta1: expected in [0, 1), got 1"),
        Invalid(
            "AdamBeta2Negative",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.optimizer.beta2 = -0.5;
            },
            "network.spec.optimizer.adam.beta2"),
        Invalid(
            "AdamEpsilonZero",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.optimizer.epsilon = 0;
            },
            "network.spec.optimizer.adam.epsilon: expected finite > 0, "
            "got 0"),
        Invalid(
            "AdamWeightDecayNaN",
            [](NetworkSpec& s) {
              UseAdam(s);
              s.optimizer.weight_decay = kNaN;
            },
            "network.spec.optimizer.adam.weight_decay"),
        Invalid(
            "UnknownInitScheme",
            [](NetworkSpec& s) { s.init.scheme = static_cast<InitScheme>(42); },
            "network.spec.init.scheme: expected a valid scheme, got 42"),
        Invalid(
            "NormalStdZero",
            [](NetworkSpec& s) {
              s.init.scheme = InitScheme::kNormal;
              s.init.std = 0;
            },
            "network.spec.init.std: expected finite > 0, got 0"),
        Invalid(
            "NormalDrawsOverflowFloat32",
            [](NetworkSpec& s) {
              s.dtype = DType::kFloat32;
              s.init.scheme = InitScheme::kNormal;
              s.init.std = 1e38;
            },
            "network.spec.init.std: expected |mean| + 9 std <= "
            "3.40282e+38"),
        Invalid(
            "NormalMeanInf",
            [](NetworkSpec& s) {
              s.init.scheme = InitScheme::kNormal;
              s.init.mean = kInf;
            },
            "network.spec.init.mean"),
        Invalid(
            "ParametersWithoutExplicit",
            [](NetworkSpec& s) { s.init.explicit_params = ValidParams(); },
            "network.spec.init.parameters: expected none with scheme "
            "uniform_fan_in, got 2 entries"),
        Invalid(
            "ExplicitCount",
            [](NetworkSpec& s) {
              UseExplicit(s);
              s.init.explicit_params.pop_back();
            },
            "network.spec.init.parameters: expected 2 layers, got 1"),
        Invalid(
            "ExplicitWeightShape",
            [](NetworkSpec& s) {
              UseExplicit(s);
              s.init.explicit_params[1].weights.resize(3, 8);
            },
            "network.spec.init.parameters[1].weights: expected shape [8, "
            "3], got [3, 8]"),
        Invalid(
            "ExplicitBiasShape",
            [](NetworkSpec& s) {
              UseExplicit(s);
              s.init.explicit_params[0].biases.resize(7);
            },
            "network.spec.init.parameters[0].biases: expected shape [8], "
            "got [7]"),
        Invalid(
            "ExplicitNaN",
            [](NetworkSpec& s) {
              UseExplicit(s);
              s.init.explicit_params[0].weights(1, 2) = kNaN;
            },
            "network.spec.init.parameters[0].weights: non-finite value nan "
            "at (1, 2)"),
        Invalid(
            "ExplicitOverflowsFloat32",
            [](NetworkSpec& s) {
              UseExplicit(s);
              s.dtype = DType::kFloat32;
              s.init.explicit_params[1].biases(2) = 1e300;
            },
            "network.spec.init.parameters[1].biases: value 1e+300 at (0, "
            "2) overflows float32")),
    [](const ::testing::TestParamInfo<SpecCase>& param) {
      return param.param.name;
    });

TEST(SpecValidation, EveryAllowedPair_Accepted) {
  for (int a = 0; a <= static_cast<int>(Activation::kSoftmax); ++a) {
    for (Loss loss : {Loss::kMse, Loss::kBce, Loss::kCce}) {
      NetworkSpec spec = ValidSpec();
      spec.layers[1].activation = static_cast<Activation>(a);
      spec.loss = loss;
      const bool allowed = loss == Loss::kMse ||
                           (loss == Loss::kBce && spec.layers[1].activation ==
                                                      Activation::kSigmoid) ||
                           (loss == Loss::kCce &&
                            spec.layers[1].activation == Activation::kSoftmax);
      EXPECT_EQ(ValidateSpec(spec, Limits{}, "network.spec").ok(), allowed)
          << LossName(loss) << " " << ActivationName(spec.layers[1].activation);
    }
  }
}

TEST(CheckLossActivation, CallerField_UsedInMessage) {
  const absl::Status s =
      CheckLossActivation(Loss::kCce, Activation::kTanh, "compare_losses[1]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "compare_losses[1]: cce needs a softmax output layer, got tanh");
}

struct BatchCase {
  std::string name;
  // Mutates inputs x [5, 4] / targets y [5, 3] before the views are made.
  std::function<void(RowMatrix<double>& x, RowMatrix<double>& y)> mutate;
  Loss loss;
  absl::StatusCode code;
  std::string message;
};

class BatchValidation : public ::testing::TestWithParam<BatchCase> {};

TEST_P(BatchValidation, BadBatch_RejectedNamingField) {
  const BatchCase& c = GetParam();
  auto net = MakeNetwork(ValidSpec());
  RowMatrix<double> x = RowMatrix<double>::Constant(5, 4, 0.5);
  RowMatrix<double> y = RowMatrix<double>::Zero(5, 3);
  y.col(0).setOnes();
  c.mutate(x, y);
  const MatrixView yv = View(y);
  const absl::Status status =
      net->ValidateBatch(View(x), &yv, c.loss, "batch", /*max_rows=*/10);
  EXPECT_EQ(status.code(), c.code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  // The same check on float32 views.
  const RowMatrix<float> x32 = x.cast<float>();
  const RowMatrix<float> y32 = y.cast<float>();
  const MatrixView yv32 = View(y32);
  EXPECT_EQ(net->ValidateBatch(View(x32), &yv32, c.loss, "batch", 10).code(),
            c.code);
  // The same message under an element of a repeated field and at the top
  // level: the names are joined only after a check fails, so a joining
  // mistake shows only here.
  for (const auto& [path, prefix] :
       std::vector<std::pair<FieldPath, std::string>>{
           {FieldPath("batches", 12), "batches[12]."}, {FieldPath(), ""}}) {
    const absl::Status named =
        net->ValidateBatch(View(x), &yv, c.loss, path, /*max_rows=*/10);
    EXPECT_EQ(named.code(), c.code) << named;
    EXPECT_THAT(std::string(named.message()),
                HasSubstr(absl::StrReplaceAll(c.message, {{"batch.", prefix}})))
        << prefix;
  }
}

using Matrix = RowMatrix<double>;

INSTANTIATE_TEST_SUITE_P(
    Cases, BatchValidation,
    ::testing::Values(
        BatchCase{"Valid", [](Matrix&, Matrix&) {}, Loss::kCce,
                  absl::StatusCode::kOk, ""},
        BatchCase{"MseAnyTargets", [](Matrix&, Matrix& y) { y(0, 0) = 5; },
                  Loss::kMse, absl::StatusCode::kOk, ""},
        BatchCase{"InputColumns", [](Matrix& x, Matrix&) { x.resize(5, 3); },
                  Loss::kCce, absl::StatusCode::kInvalidArgument,
                  "batch.inputs: expected 4 columns, got 3"},
        BatchCase{"EmptyBatch",
                  [](Matrix& x, Matrix& y) {
                    x.resize(0, 4);
                    y.resize(0, 3);
                  },
                  Loss::kCce, absl::StatusCode::kInvalidArgument,
                  "batch.inputs: expected at least 1 row, got 0"},
        BatchCase{"TooManyRows",
                  [](Matrix& x, Matrix& y) {
                    x = Matrix::Zero(11, 4);
                    y = Matrix::Zero(11, 3);
                  },
                  Loss::kMse, absl::StatusCode::kResourceExhausted,
                  "batch.inputs: expected at most 10 rows, got 11"},
        BatchCase{"TargetRows",
                  [](Matrix&, Matrix& y) { y = Matrix::Zero(4, 3); },
                  Loss::kMse, absl::StatusCode::kInvalidArgument,
                  "batch.targets: expected 5 rows (as batch.inputs), got 4"},
        BatchCase{"TargetColumns",
                  [](Matrix&, Matrix& y) { y = Matrix::Zero(5, 2); },
                  Loss::kMse, absl::StatusCode::kInvalidArgument,
                  "batch.targets: expected 3 columns, got 2"},
        BatchCase{"InputNaN", [](Matrix& x, Matrix&) { x(2, 1) = kNaN; },
                  Loss::kCce, absl::StatusCode::kInvalidArgument,
                  "batch.inputs: non-finite value nan at (2, 1)"},
        BatchCase{"TargetInf", [](Matrix&, Matrix& y) { y(0, 2) = -kInf; },
                  Loss::kMse, absl::StatusCode::kInvalidArgument,
                  "batch.targets: non-finite value -inf at (0, 2)"},
        BatchCase{"CceTargetAboveOne",
                  [](Matrix&, Matrix& y) { y(1, 0) = 1.5; }, Loss::kCce,
                  absl::StatusCode::kInvalidArgument,
                  "batch.targets: cce needs targets in [0, 1], got 1.5 at (1, "
                  "0)"},
        BatchCase{"BceTargetNegative",
                  [](Matrix&, Matrix& y) { y(3, 2) = -0.25; }, Loss::kBce,
                  absl::StatusCode::kInvalidArgument,
                  "batch.targets: bce needs targets in [0, 1], got -0.25 at "
                  "(3, 2)"}),
    [](const ::testing::TestParamInfo<BatchCase>& param) {
      return param.param.name;
    });

TEST(BatchValidation, NoData_Rejected) {
  auto net = MakeNetwork(ValidSpec());
  const MatrixView none{nullptr, nullptr, 5, 4};
  const absl::Status s =
      net->ValidateBatch(none, nullptr, Loss::kMse, "minibatch", 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("minibatch.inputs: expected exactly one of float32 or "
                        "float64 data, got none"));
}

TEST(BatchValidation, Float64BeyondFloat32Range_RejectedForFloat32Network) {
  NetworkSpec spec = ValidSpec();
  spec.dtype = DType::kFloat32;
  auto net = MakeNetwork(spec);
  RowMatrix<double> x = RowMatrix<double>::Zero(2, 4);
  x(1, 3) = 1e39;
  const absl::Status s =
      net->ValidateBatch(View(x), nullptr, Loss::kMse, "batch", 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("batch.inputs: value 1e+39 at (1, 3) overflows "
                        "float32"));
  // The same values are fine for a float64 network.
  auto f64 = MakeNetwork(ValidSpec());
  EXPECT_TRUE(
      f64->ValidateBatch(View(x), nullptr, Loss::kMse, "batch", 10).ok());
}

TEST(BatchValidation, InputsOnly_Accepted) {
  auto net = MakeNetwork(ValidSpec());
  const RowMatrix<float> x = RowMatrix<float>::Zero(2, 4);
  EXPECT_TRUE(
      net->ValidateBatch(View(x), nullptr, Loss::kCce, "batch", 10).ok());
}

struct ParamsCase {
  std::string name;
  std::function<void(std::vector<LayerParams>&)> mutate;
  DType dtype;
  std::string message;
};

class SetParametersValidation : public ::testing::TestWithParam<ParamsCase> {};

TEST_P(SetParametersValidation, BadParameters_RejectedNothingChanged) {
  const ParamsCase& c = GetParam();
  NetworkSpec spec = ValidSpec();
  spec.dtype = c.dtype;
  auto net = MakeNetwork(spec);
  const std::vector<LayerParams> before = Params(*net);
  std::vector<LayerParams> params = ValidParams();
  c.mutate(params);
  const absl::Status s = net->SetParameters(params, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  const std::vector<LayerParams> after = Params(*net);
  for (size_t l = 0; l < before.size(); ++l) {
    EXPECT_TRUE(after[l].weights == before[l].weights) << l;
    EXPECT_TRUE(after[l].biases == before[l].biases) << l;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SetParametersValidation,
    ::testing::Values(
        ParamsCase{"Count",
                   [](std::vector<LayerParams>& p) { p.push_back(p[0]); },
                   DType::kFloat64, "layers: expected 2 layers, got 3"},
        ParamsCase{"WeightShape",
                   [](std::vector<LayerParams>& p) {
                     p[1].weights = RowMatrix<double>::Zero(3, 8);
                   },
                   DType::kFloat64,
                   "layers[1].weights: expected shape [8, 3], got [3, 8]"},
        ParamsCase{"BiasShape",
                   [](std::vector<LayerParams>& p) {
                     p[0].biases = RowVector<double>::Zero(9);
                   },
                   DType::kFloat64,
                   "layers[0].biases: expected shape [8], got [9]"},
        ParamsCase{
            "NaNInLastLayer",
            [](std::vector<LayerParams>& p) { p[1].weights(7, 2) = kNaN; },
            DType::kFloat64,
            "layers[1].weights: non-finite value nan at (7, 2)"},
        ParamsCase{
            "OverflowsFloat32",
            [](std::vector<LayerParams>& p) { p[0].weights(0, 1) = -1e39; },
            DType::kFloat32,
            "layers[0].weights: value -1e+39 at (0, 1) "
            "overflows float32"}),
    [](const ::testing::TestParamInfo<ParamsCase>& param) {
      return param.param.name;
    });

TEST(SetParameters, ValidParameters_ExactRoundTrip) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    NetworkSpec spec = ValidSpec();
    spec.dtype = dtype;
    auto net = MakeNetwork(spec);
    std::vector<LayerParams> params = ValidParams();
    params[0].weights(1, 1) = 0.375;
    params[1].biases(2) = -2.5;
    ASSERT_TRUE(net->SetParameters(params, false).ok());
    const std::vector<LayerParams> got = Params(*net);
    // float32 holds each value rounded once.
    auto rounded = [&](const RowMatrix<double>& m) -> RowMatrix<double> {
      if (dtype == DType::kFloat64) return m;
      return m.cast<float>().cast<double>();
    };
    EXPECT_TRUE(got[0].weights == rounded(params[0].weights));
    EXPECT_EQ(got[0].weights(1, 1), 0.375);
    EXPECT_TRUE(got[1].biases == rounded(params[1].biases));
    EXPECT_EQ(got[1].biases(2), -2.5);
  }
}

}  // namespace
}  // namespace satlab::engine
