// Optimizer updates against hand-computed values, on one linear neuron:
// z = x w + b, identity output, mse, x = 2, y = 0, w0 = 1, b0 = 0.5, so
// r = x w + b - y, dC/dw = x r, dC/db = r (first step: 5 and 2.5).
#include "server/engine/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::Mat;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::Vec;
using ::satlab::engine::testing::View;

constexpr double kX = 2, kY = 0, kW0 = 1, kB0 = 0.5;

std::unique_ptr<Network> Neuron(const OptimizerSpec& optimizer) {
  NetworkSpec spec =
      testing::ExplicitSpec({{1, Activation::kIdentity}}, 1,
                            {{Mat(1, 1, {kW0}), Vec({kB0})}}, Loss::kMse);
  spec.optimizer = optimizer;
  return MakeNetwork(spec);
}

// Independent scalar re-statement of the update rules.
struct Reference {
  double p[2] = {kW0, kB0};  // w, b
  double m[2] = {0, 0};
  double v[2] = {0, 0};
  int t = 0;

  void Step(const OptimizerSpec& o) {
    const double r = kX * p[0] + p[1] - kY;
    const double g[2] = {kX * r, r};
    ++t;
    for (int i = 0; i < 2; ++i) {
      const double gi = g[i] + o.weight_decay * p[i];
      if (o.kind == OptimizerKind::kAdam) {
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
        const double m_hat = m[i] / (1 - std::pow(o.beta1, t));
        const double v_hat = v[i] / (1 - std::pow(o.beta2, t));
        p[i] -= o.learning_rate * m_hat / (std::sqrt(v_hat) + o.epsilon);
      } else {
        m[i] = o.momentum * m[i] + gi;
        p[i] -= o.learning_rate * (o.nesterov ? gi + o.momentum * m[i] : m[i]);
      }
    }
  }
};

struct OptimizerCase {
  std::string name;
  OptimizerSpec spec;
  // Hand-computed (w, b) after the first step.
  double w1, b1;
};

OptimizerSpec Sgd(double lr, double momentum, bool nesterov, double wd) {
  OptimizerSpec o;
  o.learning_rate = lr;
  o.momentum = momentum;
  o.nesterov = nesterov;
  o.weight_decay = wd;
  return o;
}

OptimizerSpec Adam(double lr, double wd) {
  OptimizerSpec o;
  o.kind = OptimizerKind::kAdam;
  o.learning_rate = lr;
  o.weight_decay = wd;
  return o;
}

class OptimizerUpdate : public ::testing::TestWithParam<OptimizerCase> {};

TEST_P(OptimizerUpdate, TwoSteps_MatchHandComputedValues) {
  const OptimizerCase& c = GetParam();
  auto net = Neuron(c.spec);
  ASSERT_NE(net, nullptr);
  const RowMatrix<double> x = Mat(1, 1, {kX});
  const RowMatrix<double> y = Mat(1, 1, {kY});
  Reference reference;
  for (int step = 1; step <= 2; ++step) {
    const StepResult result = *net->TrainStep(View(x), View(y));
    reference.Step(c.spec);
    EXPECT_FALSE(result.diverged);
    EXPECT_EQ(result.step, step);
    const double w = Get<double>(net->weights(0))(0, 0);
    const double b = Get<double>(net->biases(0))(0, 0);
    if (step == 1) {
      EXPECT_NEAR(w, c.w1, 1e-12);
      EXPECT_NEAR(b, c.b1, 1e-12);
    }
    EXPECT_NEAR(w, reference.p[0], 1e-14) << "step " << step;
    EXPECT_NEAR(b, reference.p[1], 1e-14) << "step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, OptimizerUpdate,
    ::testing::Values(
        // w = 1 - 0.1 * 5, b = 0.5 - 0.1 * 2.5.
        OptimizerCase{"Sgd", Sgd(0.1, 0, false, 0), 0.5, 0.25},
        // g' = g + 0.1 p: w = 1 - 0.1 * 5.1, b = 0.5 - 0.1 * 2.55.
        OptimizerCase{"SgdWeightDecay", Sgd(0.1, 0, false, 0.1), 0.49, 0.245},
        // First step v = g: as plain SGD (the second step differs).
        OptimizerCase{"Momentum", Sgd(0.1, 0.9, false, 0), 0.5, 0.25},
        // p -= lr (g + 0.9 g): w = 1 - 0.95, b = 0.5 - 0.475.
        OptimizerCase{"Nesterov", Sgd(0.1, 0.9, true, 0), 0.05, 0.025},
        OptimizerCase{"NesterovWeightDecay", Sgd(0.1, 0.9, true, 0.1),
                      1 - 0.1 * 1.9 * 5.1, 0.5 - 0.1 * 1.9 * 2.55},
        // t = 1: m_hat = g, v_hat = g^2, step lr g / (|g| + eps).
        OptimizerCase{"Adam", Adam(0.1, 0), 1 - 0.1 * 5 / (5 + 1e-8),
                      0.5 - 0.1 * 2.5 / (2.5 + 1e-8)},
        OptimizerCase{"AdamWeightDecay", Adam(0.1, 0.1),
                      1 - 0.1 * 5.1 / (5.1 + 1e-8),
                      0.5 - 0.1 * 2.55 / (2.55 + 1e-8)}),
    [](const ::testing::TestParamInfo<OptimizerCase>& param) {
      return param.param.name;
    });

// Momentum second step: v = 0.9 * 5 + 2.5 = 7 -> w = 0.5 - 0.7;
// v_b = 0.9 * 2.5 + 1.25 = 3.5 -> b = 0.25 - 0.35.
TEST(OptimizerUpdate, MomentumSecondStep_UsesVelocity) {
  auto net = Neuron(Sgd(0.1, 0.9, false, 0));
  const RowMatrix<double> x = Mat(1, 1, {kX});
  const RowMatrix<double> y = Mat(1, 1, {kY});
  EXPECT_TRUE(net->TrainStep(View(x), View(y)).ok());
  EXPECT_TRUE(net->TrainStep(View(x), View(y)).ok());
  EXPECT_NEAR(Get<double>(net->weights(0))(0, 0), -0.2, 1e-15);
  EXPECT_NEAR(Get<double>(net->biases(0))(0, 0), -0.1, 1e-15);
}

// After SetParameters(p0, reset), a step equals a fresh network's first step.
TEST(OptimizerState, ResetOnSetParameters_RestartsMomentsAndAdamStep) {
  const RowMatrix<double> x = Mat(1, 1, {kX});
  const RowMatrix<double> y = Mat(1, 1, {kY});
  for (const OptimizerSpec& o : {Sgd(0.1, 0.9, false, 0), Adam(0.1, 0)}) {
    auto fresh = Neuron(o);
    EXPECT_TRUE(fresh->TrainStep(View(x), View(y)).ok());
    const std::vector<LayerParams> initial = {{Mat(1, 1, {kW0}), Vec({kB0})}};
    for (bool reset : {true, false}) {
      auto used = Neuron(o);
      EXPECT_TRUE(used->TrainStep(View(x), View(y)).ok());
      EXPECT_TRUE(used->TrainStep(View(x), View(y)).ok());
      ASSERT_TRUE(used->SetParameters(initial, reset).ok());
      EXPECT_TRUE(used->TrainStep(View(x), View(y)).ok());
      const bool same = Params(*used)[0].weights == Params(*fresh)[0].weights;
      EXPECT_EQ(same, reset) << "reset " << reset;
      EXPECT_EQ(used->step(), 3);
    }
  }
}

// An update staged in ranges (multiples of 64 elements, in any order, as a
// step team stages them) has the same bits as one range per tensor, for
// every optimizer; nothing changes before Commit; a non-finite new value
// is reported by the range that holds it, and only by that one.
template <typename T>
void ExpectStagedRangesAgree(const OptimizerSpec& spec) {
  Rng rng(17);
  ParamSet<T> params, grads;
  for (const auto& [rows, cols] : {std::pair{300, 20}, std::pair{20, 3}}) {
    params.weights.push_back(
        testing::Uniform(rng, rows, cols, -2, 2).template cast<T>());
    params.biases.push_back(
        testing::Uniform(rng, 1, cols, -1, 1).template cast<T>());
    grads.weights.push_back(
        testing::Uniform(rng, rows, cols, -5, 5).template cast<T>());
    grads.biases.push_back(
        testing::Uniform(rng, 1, cols, -5, 5).template cast<T>());
  }
  Optimizer<T> whole(spec, params), pieces(spec, params);
  ParamSet<T> a = params, b = params;
  std::vector<ParamSet<T>> staged_a, staged_b;
  for (int step = 0; step < 3; ++step) {
    // Stage writes the new parameters over these copies of the gradients.
    ParamSet<T> next_a = grads, next_b = grads;
    whole.PrepareStaging(a, &staged_a);
    pieces.PrepareStaging(b, &staged_b);
    const ParamSet<T> before = b;
    for (size_t t = 0; t < 4; ++t) {
      const auto [g_a, size] = TensorAt(next_a, t);
      ASSERT_TRUE(whole.Stage(a, t, 0, size, g_a, &staged_a));
      T* const g_b = TensorAt(next_b, t).first;
      for (int64_t begin = (size - 1) / 192 * 192; begin >= 0; begin -= 192) {
        ASSERT_TRUE(pieces.Stage(b, t, begin, std::min(size, begin + 192), g_b,
                                 &staged_b));
      }
    }
    for (int l = 0; l < 2; ++l) {
      ASSERT_TRUE(b.weights[l] == before.weights[l]) << "staging wrote " << l;
    }
    whole.Commit(&a, &next_a, &staged_a);
    pieces.Commit(&b, &next_b, &staged_b);
    ASSERT_FALSE(a.weights[0] == before.weights[0]) << "no update at all";
    ASSERT_TRUE(next_a.weights[0] == before.weights[0]) << "not swapped";
  }
  for (int l = 0; l < 2; ++l) {
    EXPECT_TRUE(a.weights[l] == b.weights[l]) << l;
    EXPECT_TRUE(a.biases[l] == b.biases[l]) << l;
  }
  EXPECT_EQ(whole.slots().size(), pieces.slots().size());
  for (size_t i = 0; i < whole.slots().size(); ++i) {
    for (int l = 0; l < 2; ++l) {
      EXPECT_TRUE(whole.slots()[i]->weights[l] == pieces.slots()[i]->weights[l])
          << "slot " << i << " layer " << l;
    }
  }
  // Element 5 * 20 + 5 = 105 of tensor 0 (in [64, 128)) overflows.
  ParamSet<T> next = grads;
  next.weights[0](5, 5) = std::numeric_limits<T>::infinity();
  whole.PrepareStaging(a, &staged_a);
  T* const g = next.weights[0].data();
  EXPECT_TRUE(whole.Stage(a, 0, 0, 64, g, &staged_a));
  EXPECT_FALSE(whole.Stage(a, 0, 64, 128, g, &staged_a));
  EXPECT_TRUE(whole.Stage(a, 0, 128, 6000, g, &staged_a));
}

TEST(OptimizerState, StagedInRanges_SameBitsAsWholeTensors) {
  for (const OptimizerSpec& spec :
       {Sgd(0.05, 0, false, 0.01), Sgd(0.05, 0.9, false, 0),
        Sgd(0.05, 0.9, true, 0.01), Adam(0.01, 0.01)}) {
    ExpectStagedRangesAgree<double>(spec);
    ExpectStagedRangesAgree<float>(spec);
  }
}

// A weight of 1e308 set from outside makes the next update overflow
// (w - 3 (g + w) = -2e308), which must be refused whole.
TEST(OptimizerState, PlainSgdAfterHugeSetParameters_OverflowRefused) {
  auto net = Neuron(Sgd(3, 0, false, 1));
  const RowMatrix<double> x = Mat(1, 1, {kX});
  const RowMatrix<double> y = Mat(1, 1, {kY});
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(net->TrainStep(View(x), View(y))->diverged);
  }
  const std::vector<LayerParams> huge = {{Mat(1, 1, {1e308}), Vec({0})}};
  ASSERT_TRUE(net->SetParameters(huge, false).ok());
  const RowMatrix<double> tiny_x = Mat(1, 1, {1e-300});  // x w = 1e8
  const StepResult r = *net->TrainStep(View(tiny_x), View(y));
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(r.diverged);
  EXPECT_EQ(Get<double>(net->weights(0))(0, 0), 1e308);
  EXPECT_EQ(Get<double>(net->biases(0))(0, 0), 0.0);
}

TEST(TrainStep, Result_ReportsLossBeforeUpdateAndCounts) {
  auto net = Neuron(Sgd(0.1, 0, false, 0));
  const RowMatrix<double> x = Mat(3, 1, {kX, kX, kX});
  const RowMatrix<double> y = Mat(3, 1, {kY, kY, kY});
  const StepResult first = *net->TrainStep(View(x), View(y));
  EXPECT_DOUBLE_EQ(first.loss, 0.5 * 2.5 * 2.5);
  EXPECT_EQ(first.batch_size, 3);
  EXPECT_EQ(first.step, 1);
  EXPECT_EQ(net->samples_seen(), 3);
  const StepResult second = *net->TrainStep(View(x), View(y));
  EXPECT_DOUBLE_EQ(second.loss, 0.5 * 1.25 * 1.25);
  EXPECT_EQ(net->step(), 2);
  EXPECT_EQ(net->samples_seen(), 6);
}

}  // namespace
}  // namespace satlab::engine
