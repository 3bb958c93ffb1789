// Network behaviour: determinism, divergence, saturation statistics, forward
// results, precision conversion, chunked evaluation, cloning.
#include "server/engine/network.h"

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::Mat;
using ::satlab::engine::testing::OneHot;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::ToDouble;
using ::satlab::engine::testing::Uniform;
using ::satlab::engine::testing::Vec;
using ::satlab::engine::testing::View;

NetworkSpec Classifier(DType dtype, OptimizerKind kind) {
  NetworkSpec spec;
  spec.input_size = 20;
  spec.layers = {{32, Activation::kRelu},
                 {16, Activation::kTanh},
                 {5, Activation::kSoftmax}};
  spec.loss = Loss::kCce;
  spec.dtype = dtype;
  spec.init.scheme = InitScheme::kHeNormal;
  spec.init.seed = 99;
  spec.optimizer.kind = kind;
  spec.optimizer.learning_rate = kind == OptimizerKind::kAdam ? 0.01 : 0.1;
  spec.optimizer.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0;
  spec.optimizer.weight_decay = 1e-4;
  return spec;
}

template <typename T>
bool BitwiseEqual(const Network& a, const Network& b) {
  for (int l = 0; l < a.num_layers(); ++l) {
    const RowMatrix<T>& wa = Get<T>(a.weights(l));
    const RowMatrix<T>& wb = Get<T>(b.weights(l));
    const RowMatrix<T>& ba = Get<T>(a.biases(l));
    const RowMatrix<T>& bb = Get<T>(b.biases(l));
    if (std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(T)) != 0 ||
        std::memcmp(ba.data(), bb.data(), ba.size() * sizeof(T)) != 0) {
      return false;
    }
  }
  return true;
}

template <typename T>
void TrainSteps(Network* net, uint64_t data_seed, int steps) {
  Rng rng(data_seed);
  for (int s = 0; s < steps; ++s) {
    const RowMatrix<T> x = Uniform(rng, 16, 20, -1, 1).cast<T>();
    const RowMatrix<T> y = OneHot(rng, 16, 5).cast<T>();
    const StepResult r = *net->TrainStep(View(x), View(y));
    ASSERT_FALSE(r.diverged);
  }
}

template <typename T>
void CheckDeterminism(OptimizerKind kind) {
  const DType dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  auto a = MakeNetwork(Classifier(dtype, kind));
  auto b = MakeNetwork(Classifier(dtype, kind));
  TrainSteps<T>(a.get(), 5, 30);
  TrainSteps<T>(b.get(), 5, 30);
  EXPECT_TRUE(BitwiseEqual<T>(*a, *b));
  // A clone continues exactly like its original.
  auto c = *a->Clone();
  EXPECT_EQ(c->step(), 30);
  EXPECT_EQ(c->samples_seen(), 30 * 16);
  TrainSteps<T>(a.get(), 6, 10);
  TrainSteps<T>(c.get(), 6, 10);
  EXPECT_TRUE(BitwiseEqual<T>(*a, *c));
  // ... and is independent of it.
  TrainSteps<T>(c.get(), 7, 1);
  EXPECT_FALSE(BitwiseEqual<T>(*a, *c));
}

TEST(Determinism, SameSeedSameBatches_BitwiseIdenticalParameters) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    CheckDeterminism<float>(kind);
    CheckDeterminism<double>(kind);
  }
}

// One identity neuron, x = 2, y = 0, w = 1, b = 0.5: dC/dw = 5, so
// lr 1e308 (float64) or 1e38 (float32) makes w - lr dC/dw overflow.
TEST(Divergence, UpdateOverflows_ReportedParametersUnchanged) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (bool momentum : {false, true}) {
      NetworkSpec spec = testing::ExplicitSpec({{1, Activation::kIdentity}}, 1,
                                               {{Mat(1, 1, {1}), Vec({0.5})}},
                                               Loss::kMse, dtype);
      spec.optimizer.learning_rate = dtype == DType::kFloat32 ? 1e38 : 1e308;
      spec.optimizer.momentum = momentum ? 0.5 : 0;
      auto net = MakeNetwork(spec);
      ASSERT_NE(net, nullptr);
      const RowMatrix<double> x = Mat(2, 1, {2, 2});
      const RowMatrix<double> y = Mat(2, 1, {0, 0});
      const StepResult r = *net->TrainStep(View(x), View(y));
      EXPECT_TRUE(r.diverged);
      EXPECT_TRUE(std::isfinite(r.loss));
      EXPECT_EQ(r.step, 1);
      EXPECT_EQ(net->step(), 1);
      EXPECT_EQ(net->samples_seen(), 2);
      const std::vector<LayerParams> after = Params(*net);
      EXPECT_EQ(after[0].weights(0, 0), 1);
      EXPECT_EQ(after[0].biases(0), 0.5);
    }
  }
}

TEST(Divergence, InfiniteLoss_ReportedParametersUnchanged) {
  // z = 1e300 * 1e300 = inf: loss and gradients are not finite.
  NetworkSpec spec =
      testing::ExplicitSpec({{1, Activation::kIdentity}}, 1,
                            {{Mat(1, 1, {1e300}), Vec({0})}}, Loss::kMse);
  auto net = MakeNetwork(spec);
  const RowMatrix<double> x = Mat(1, 1, {1e300});
  const RowMatrix<double> y = Mat(1, 1, {0});
  const StepResult r = *net->TrainStep(View(x), View(y));
  EXPECT_TRUE(r.diverged);
  EXPECT_FALSE(std::isfinite(r.loss));
  EXPECT_EQ(Get<double>(net->weights(0))(0, 0), 1e300);
  EXPECT_EQ(net->step(), 1);
  // Later finite batches train normally.
  const RowMatrix<double> small = Mat(1, 1, {0});
  EXPECT_FALSE(net->TrainStep(View(small), View(y))->diverged);
}

TEST(Divergence, HugeLearningRate_ReportsWithoutCrashingStaysFinite) {
  NetworkSpec spec = Classifier(DType::kFloat32, OptimizerKind::kSgd);
  spec.layers.back().activation = Activation::kIdentity;
  spec.loss = Loss::kMse;
  spec.optimizer.learning_rate = 1e18;
  spec.optimizer.momentum = 0;
  auto net = MakeNetwork(spec);
  Rng rng(3);
  bool diverged = false;
  for (int s = 0; s < 20 && !diverged; ++s) {
    const RowMatrix<float> x = Uniform(rng, 8, 20, -1, 1).cast<float>();
    const RowMatrix<float> y = Uniform(rng, 8, 5, -10, 10).cast<float>();
    diverged = net->TrainStep(View(x), View(y))->diverged;
  }
  EXPECT_TRUE(diverged);
  for (const LayerParams& p : Params(*net)) {
    EXPECT_TRUE(p.weights.allFinite());
    EXPECT_TRUE(p.biases.allFinite());
  }
}

TEST(SaturationStats, SaturatedSigmoidLayer_FractionOne) {
  // z = +-100 on every unit and sample: f' = a (1 - a) ~ 4e-44.
  NetworkSpec spec = testing::ExplicitSpec(
      {{2, Activation::kSigmoid}}, 1, {{Mat(1, 2, {100, -100}), Vec({0, 0})}},
      Loss::kMse);
  auto net = MakeNetwork(spec);
  const RowMatrix<double> x = Mat(3, 1, {1, 2, 3});
  const RowMatrix<double> y = Mat(3, 2, {0, 1, 0, 1, 0, 1});
  const GradientResult g = *net->ComputeGradients(View(x), View(y), Loss::kMse);
  EXPECT_EQ(g.stats.layers[0].saturated_fraction, 1.0);
  EXPECT_LT(g.stats.layers[0].mean_derivative, 1e-40);
  EXPECT_NEAR(g.stats.layers[0].mean_activation, 0.5, 1e-12);
  EXPECT_EQ(g.stats.layers[0].dead_units, 0);
  // The same layer under bce: the output delta is not attenuated.
  spec.loss = Loss::kBce;
  auto bce = MakeNetwork(spec);
  EXPECT_DOUBLE_EQ(bce->ComputeGradients(View(x), View(y), Loss::kBce)
                       ->stats.output_attenuation,
                   1.0);
  EXPECT_LT(g.stats.output_attenuation, 1e-40);
}

TEST(SaturationStats, DeadReluUnits_Counted) {
  // Inputs are positive; unit 1 has negative weight and bias (dead), unit 0
  // is alive, unit 2 is zero only for some rows.
  for (Activation act : {Activation::kRelu, Activation::kLeakyRelu}) {
    NetworkSpec spec =
        testing::ExplicitSpec({{3, act}, {1, Activation::kSigmoid}}, 1,
                              {{Mat(1, 3, {1, -1, 1}), Vec({0, -0.5, -1.5})},
                               {Mat(3, 1, {1, 1, 1}), Vec({0})}},
                              Loss::kBce);
    auto net = MakeNetwork(spec);
    const RowMatrix<double> x = Mat(3, 1, {1, 2, 3});
    const RowMatrix<double> y = Mat(3, 1, {1, 0, 1});
    const GradientResult g =
        *net->ComputeGradients(View(x), View(y), Loss::kBce);
    EXPECT_EQ(g.stats.layers[0].dead_units, 1) << ActivationName(act);
    EXPECT_EQ(g.stats.layers[1].dead_units, 0);
    // relu: f' = 0 on 4 of 9 (unit, sample) pairs -> 4/9 saturated.
    if (act == Activation::kRelu) {
      EXPECT_NEAR(g.stats.layers[0].saturated_fraction, 4.0 / 9, 1e-15);
      EXPECT_NEAR(g.stats.layers[0].mean_derivative, 5.0 / 9, 1e-15);
    }
    EXPECT_EQ(g.stats.output_attenuation, 1.0);
  }
}

TEST(SaturationStats, FusedPairsRandomNetworks_AttenuationOne) {
  Rng rng(17);
  for (Loss loss : {Loss::kBce, Loss::kCce}) {
    NetworkSpec spec;
    spec.input_size = 4;
    spec.layers = {
        {6, Activation::kTanh},
        {3, loss == Loss::kBce ? Activation::kSigmoid : Activation::kSoftmax}};
    spec.loss = loss;
    auto net = MakeNetwork(spec);
    const RowMatrix<double> x = Uniform(rng, 10, 4, -1, 1);
    const RowMatrix<double> y = OneHot(rng, 10, 3);
    const GradientResult g = *net->ComputeGradients(View(x), View(y), loss);
    EXPECT_NEAR(g.stats.output_attenuation, 1.0, 1e-15) << LossName(loss);
  }
}

TEST(SaturationStats, GradientNorms_MatchComputedGradients) {
  auto net = MakeNetwork(Classifier(DType::kFloat64, OptimizerKind::kSgd));
  Rng rng(4);
  const RowMatrix<double> x = Uniform(rng, 12, 20, -1, 1);
  const RowMatrix<double> y = OneHot(rng, 12, 5);
  const GradientResult g = *net->ComputeGradients(View(x), View(y), Loss::kCce);
  const StepResult s = *net->TrainStep(View(x), View(y));
  for (int l = 0; l < 3; ++l) {
    const double wn = Get<double>(g.weight_grads[l]).norm();
    const double bn = Get<double>(g.bias_grads[l]).norm();
    EXPECT_DOUBLE_EQ(g.stats.layers[l].weight_gradient_norm, wn);
    EXPECT_DOUBLE_EQ(g.stats.layers[l].bias_gradient_norm, bn);
    EXPECT_DOUBLE_EQ(s.stats.layers[l].weight_gradient_norm, wn);
    EXPECT_EQ(g.stats.layers[l].dead_units, s.stats.layers[l].dead_units);
  }
  EXPECT_DOUBLE_EQ(s.loss, g.loss_value);
  EXPECT_DOUBLE_EQ(s.accuracy, g.accuracy);
}

TEST(Accuracy, ArgmaxAndThreshold_CountRows) {
  // Several outputs: argmax. Identity layer passes inputs through.
  NetworkSpec spec = testing::ExplicitSpec(
      {{2, Activation::kIdentity}}, 2, {{Mat(2, 2, {1, 0, 0, 1}), Vec({0, 0})}},
      Loss::kMse);
  auto net = MakeNetwork(spec);
  const RowMatrix<double> x = Mat(3, 2, {0.9, 0.1, 0.2, 0.8, 0.6, 0.4});
  const RowMatrix<double> y = Mat(3, 2, {1, 0, 1, 0, 1, 0});
  EXPECT_NEAR(net->Evaluate(View(x), View(y))->accuracy, 2.0 / 3, 1e-15);
  // One output: (a >= 0.5) == (y >= 0.5).
  NetworkSpec one =
      testing::ExplicitSpec({{1, Activation::kIdentity}}, 1,
                            {{Mat(1, 1, {1}), Vec({0})}}, Loss::kMse);
  auto net1 = MakeNetwork(one);
  const RowMatrix<double> x1 = Mat(4, 1, {0.5, 0.49, 0.9, 0.1});
  const RowMatrix<double> y1 = Mat(4, 1, {1, 0, 0, 1});
  EXPECT_NEAR(net1->Evaluate(View(x1), View(y1))->accuracy, 0.5, 1e-15);
}

TEST(Forward, IncludeLayers_ReturnsZAndA) {
  NetworkSpec spec = testing::ExplicitSpec(
      {{2, Activation::kRelu}, {1, Activation::kSigmoid}}, 1,
      {{Mat(1, 2, {1, -1}), Vec({0.5, 0})}, {Mat(2, 1, {2, 3}), Vec({-1})}},
      Loss::kMse);
  auto net = MakeNetwork(spec);
  const RowMatrix<double> x = Mat(2, 1, {1, -2});
  const ForwardResult f = *net->Forward(View(x), true);
  ASSERT_EQ(f.z.size(), 2u);
  ASSERT_EQ(f.a.size(), 2u);
  EXPECT_TRUE(Get<double>(f.z[0]) == Mat(2, 2, {1.5, -1, -1.5, 2}));
  EXPECT_TRUE(Get<double>(f.a[0]) == Mat(2, 2, {1.5, 0, 0, 2}));
  // z1 = [3 - 1, 6 - 1].
  EXPECT_TRUE(Get<double>(f.z[1]) == Mat(2, 1, {2, 5}));
  EXPECT_NEAR(Get<double>(f.outputs)(1, 0), 1 / (1 + std::exp(-5.0)), 1e-16);
  EXPECT_TRUE(Get<double>(f.outputs) == Get<double>(f.a[1]));
  EXPECT_TRUE(net->Forward(View(x), false)->z.empty());
}

TEST(Forward, OtherPrecisionInputs_ConvertedOnce) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto net = MakeNetwork(Classifier(dtype, OptimizerKind::kSgd));
    Rng rng(8);
    const RowMatrix<double> x64 = Uniform(rng, 6, 20, -1, 1);
    const RowMatrix<float> x32 = x64.cast<float>();
    // The network's own precision, converted by the caller or the engine.
    const AnyMatrix from32 = net->Forward(View(x32), false)->outputs;
    const AnyMatrix from64 = net->Forward(View(x64), false)->outputs;
    if (dtype == DType::kFloat32) {
      EXPECT_TRUE(Get<float>(from32) == Get<float>(from64));
    } else {
      const RowMatrix<double> x32as64 = x32.cast<double>();
      EXPECT_TRUE(Get<double>(from32) ==
                  Get<double>(net->Forward(View(x32as64), false)->outputs));
    }
  }
}

// Evaluate and ComputeGradients process large batches in chunks; the
// results match one TrainStep over the same rows (a single chunk).
TEST(Evaluate, LargeBatchInChunks_MatchesSinglePass) {
  NetworkSpec spec;
  spec.input_size = 64;
  spec.layers = {{512, Activation::kRelu}, {4, Activation::kSoftmax}};
  spec.loss = Loss::kCce;
  auto net = MakeNetwork(spec);
  Rng rng(12);
  const RowMatrix<double> x = Uniform(rng, 1000, 64, -1, 1);
  const RowMatrix<double> y = OneHot(rng, 1000, 4);
  const EvalResult eval = *net->Evaluate(View(x), View(y));
  const GradientResult grads =
      *net->ComputeGradients(View(x), View(y), Loss::kCce);
  auto clone = *net->Clone();
  const StepResult step = *clone->TrainStep(View(x), View(y));
  EXPECT_EQ(eval.samples, 1000);
  EXPECT_NEAR(eval.loss, step.loss, 1e-12);
  EXPECT_NEAR(grads.loss_value, step.loss, 1e-12);
  EXPECT_EQ(eval.accuracy, step.accuracy);
  for (int l = 0; l < 2; ++l) {
    const LayerStats& a = eval.stats.layers[l];
    const LayerStats& b = step.stats.layers[l];
    EXPECT_NEAR(a.weight_gradient_norm, b.weight_gradient_norm, 1e-12);
    EXPECT_NEAR(a.bias_gradient_norm, b.bias_gradient_norm, 1e-12);
    EXPECT_NEAR(a.mean_derivative, b.mean_derivative, 1e-12);
    EXPECT_EQ(a.saturated_fraction, b.saturated_fraction);
    EXPECT_EQ(a.dead_units, b.dead_units);
    EXPECT_NEAR(a.mean_activation, b.mean_activation, 1e-12);
  }
  EXPECT_NEAR(eval.stats.output_attenuation, step.stats.output_attenuation,
              1e-12);
  // Per-sample deltas of the last rows equal those of a small batch.
  const RowMatrix<double> tail_x = x.bottomRows(10);
  const RowMatrix<double> tail_y = y.bottomRows(10);
  const GradientResult tail =
      *net->ComputeGradients(View(tail_x), View(tail_y), Loss::kCce);
  EXPECT_TRUE(Get<double>(grads.output_delta)
                  .bottomRows(10)
                  .isApprox(Get<double>(tail.output_delta), 1e-14));
}

TEST(ComputeGradients, AnyCall_LeavesParametersAndStepUntouched) {
  auto net = MakeNetwork(Classifier(DType::kFloat32, OptimizerKind::kAdam));
  const std::vector<LayerParams> before = Params(*net);
  Rng rng(2);
  const RowMatrix<float> x = Uniform(rng, 4, 20, -1, 1).cast<float>();
  const RowMatrix<float> y = OneHot(rng, 4, 5).cast<float>();
  EXPECT_TRUE(net->ComputeGradients(View(x), View(y), Loss::kCce).ok());
  EXPECT_TRUE(net->ComputeGradients(View(x), View(y), Loss::kMse).ok());
  EXPECT_TRUE(net->Evaluate(View(x), View(y)).ok());
  EXPECT_TRUE(net->Forward(View(x), true).ok());
  EXPECT_EQ(net->step(), 0);
  EXPECT_TRUE(Params(*net)[0].weights == before[0].weights);
}

// Const entry points use their own scratch space: concurrent readers agree.
TEST(ComputeGradients, ConcurrentReaders_SameResults) {
  auto net = MakeNetwork(Classifier(DType::kFloat64, OptimizerKind::kSgd));
  Rng rng(9);
  const RowMatrix<double> x = Uniform(rng, 64, 20, -1, 1);
  const RowMatrix<double> y = OneHot(rng, 64, 5);
  const GradientResult expected =
      *net->ComputeGradients(View(x), View(y), Loss::kCce);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bool all = true;
      for (int i = 0; i < 20; ++i) {
        const GradientResult g =
            *net->ComputeGradients(View(x), View(y), Loss::kCce);
        all = all && Get<double>(g.weight_grads[0]) ==
                         Get<double>(expected.weight_grads[0]);
      }
      ok[t] = all;
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_TRUE(ok[t]) << "thread " << t;
}

}  // namespace
}  // namespace satlab::engine
