// Backpropagation against central finite differences, fused losses at
// saturation, and the single-neuron reference numbers.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/activation.h"
#include "server/engine/loss.h"
#include "server/engine/network.h"
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

enum class Targets { kAny, kUnit, kOneHot, kPositive };

struct PairCase {
  std::string name;
  Loss loss;
  Activation output;
  Targets targets;
};

constexpr Activation kHidden[] = {Activation::kSigmoid,  Activation::kTanh,
                                  Activation::kRelu,     Activation::kLeakyRelu,
                                  Activation::kSoftplus, Activation::kIdentity};

class GradientCheck : public ::testing::TestWithParam<PairCase> {};

// Whether some relu/leaky z lies within `margin` of the kink at 0.
bool NearKink(const Network& net, const RowMatrix<double>& x, double margin) {
  const ForwardResult forward = *net.Forward(View(x), true);
  for (int l = 0; l < net.num_layers(); ++l) {
    const Activation act = net.spec().layers[l].activation;
    if (act != Activation::kRelu && act != Activation::kLeakyRelu) continue;
    if ((Get<double>(forward.z[l]).array().abs() < margin).any()) return true;
  }
  return false;
}

TEST_P(GradientCheck, RandomNetworkFloat64_MatchesCentralDifferences) {
  const PairCase& c = GetParam();
  const int index = static_cast<int>(
      std::find_if(std::begin(kHidden), std::end(kHidden),
                   [&](Activation a) { return a == c.output; }) -
      std::begin(kHidden));
  for (uint64_t seed = 1; seed < 100; ++seed) {
    Rng rng(seed * 7919 + static_cast<uint64_t>(c.loss) * 31 +
            static_cast<uint64_t>(c.output));
    NetworkSpec spec;
    spec.input_size = 2 + static_cast<int>(rng.Below(3));
    spec.layers = {
        {2 + static_cast<int>(rng.Below(3)),
         kHidden[(index + seed) % std::size(kHidden)], 0.1},
        {2 + static_cast<int>(rng.Below(3)),
         kHidden[(index + seed + 3) % std::size(kHidden)], 0.2},
        {c.output == Activation::kSoftmax || c.loss != Loss::kMse ? 3 : 2,
         c.output, 0.05}};
    spec.loss = c.loss;
    spec.init.scheme = InitScheme::kNormal;
    spec.init.std = 0.8;
    spec.init.seed = seed;
    const int rows = 5;
    const RowMatrix<double> x = Uniform(rng, rows, spec.input_size, -1.5, 1.5);
    const int out = spec.layers.back().units;
    RowMatrix<double> y;
    switch (c.targets) {
      case Targets::kAny:
        y = Uniform(rng, rows, out, -1, 1);
        break;
      case Targets::kUnit:
        y = Uniform(rng, rows, out, 0, 1);
        break;
      case Targets::kOneHot:
        y = OneHot(rng, rows, out);
        break;
      case Targets::kPositive:  // rows not summing to 1
        y = Uniform(rng, rows, out, 0, 1);
        break;
    }
    auto net = MakeNetwork(spec);
    ASSERT_NE(net, nullptr);
    if (NearKink(*net, x, 1e-3)) continue;  // another seed

    const GradientResult grads =
        *net->ComputeGradients(View(x), View(y), c.loss);
    const std::vector<LayerParams> base = Params(*net);
    const double h = 1e-6;
    auto loss_at = [&](const std::vector<LayerParams>& p) {
      EXPECT_TRUE(net->SetParameters(p, false).ok());
      return net->Evaluate(View(x), View(y))->loss;
    };
    // |analytic - numeric| <= 1e-6 max(|analytic|, |numeric|, 1e-3): a
    // relative error, with an absolute floor of 1e-9 for tiny gradients
    // (the rounding noise of a central difference at h = 1e-6 is ~1e-10).
    auto check = [&](double analytic, std::vector<LayerParams>& p, double* v,
                     const std::string& where) {
      const double saved = *v;
      *v = saved + h;
      const double plus = loss_at(p);
      *v = saved - h;
      const double minus = loss_at(p);
      const double numeric = (plus - minus) / (2 * h);
      const double scale =
          std::max({std::abs(analytic), std::abs(numeric), 1e-3});
      EXPECT_LE(std::abs(analytic - numeric), 1e-6 * scale)
          << c.name << " " << where << " analytic " << analytic << " numeric "
          << numeric << " seed " << seed;
    };
    for (int l = 0; l < net->num_layers(); ++l) {
      const RowMatrix<double>& dw = Get<double>(grads.weight_grads[l]);
      const RowMatrix<double>& db = Get<double>(grads.bias_grads[l]);
      for (Eigen::Index i = 0; i < dw.rows(); ++i) {
        for (Eigen::Index j = 0; j < dw.cols(); ++j) {
          std::vector<LayerParams> p = base;
          check(dw(i, j), p, &p[l].weights(i, j),
                absl::StrCat("W", l, "(", i, ",", j, ")"));
        }
      }
      for (Eigen::Index j = 0; j < db.cols(); ++j) {
        std::vector<LayerParams> p = base;
        check(db(0, j), p, &p[l].biases(j), absl::StrCat("b", l, "(", j, ")"));
      }
    }
    return;
  }
  FAIL() << "no seed without relu kinks";
}

// Every (loss, output activation) pair the tables allow, each with targets
// the loss accepts.
const PairCase kPairs[] = {
    PairCase{"MseIdentity", Loss::kMse, Activation::kIdentity, Targets::kAny},
    PairCase{"MseSigmoid", Loss::kMse, Activation::kSigmoid, Targets::kUnit},
    PairCase{"MseTanh", Loss::kMse, Activation::kTanh, Targets::kAny},
    PairCase{"MseRelu", Loss::kMse, Activation::kRelu, Targets::kAny},
    PairCase{"MseLeakyRelu", Loss::kMse, Activation::kLeakyRelu, Targets::kAny},
    PairCase{"MseSoftplus", Loss::kMse, Activation::kSoftplus, Targets::kUnit},
    PairCase{"MseSoftmax", Loss::kMse, Activation::kSoftmax, Targets::kOneHot},
    PairCase{"BceSigmoid", Loss::kBce, Activation::kSigmoid, Targets::kUnit},
    PairCase{"CceSoftmaxOneHot", Loss::kCce, Activation::kSoftmax,
             Targets::kOneHot},
    PairCase{"CceSoftmaxUnnormalized", Loss::kCce, Activation::kSoftmax,
             Targets::kPositive},
};

INSTANTIATE_TEST_SUITE_P(AllPairs, GradientCheck, ::testing::ValuesIn(kPairs),
                         [](const ::testing::TestParamInfo<PairCase>& param) {
                           return param.param.name;
                         });

// A row added to the activation or loss table fails here until its
// finite-difference cases exist: every allowed pair is in kPairs, every
// activation allowed in hidden layers is in kHidden.
TEST(GradientCheckCoverage, EveryTableRow_HasAFiniteDifferenceCase) {
  for (int a = 0; IsValidActivation(static_cast<Activation>(a)); ++a) {
    const auto act = static_cast<Activation>(a);
    if (!GetActivationOps<double>(act).output_only) {
      EXPECT_NE(std::find(std::begin(kHidden), std::end(kHidden), act),
                std::end(kHidden))
          << ActivationName(act) << " is missing from kHidden";
    }
    for (int l = 0; IsValidLoss(static_cast<Loss>(l)); ++l) {
      const auto loss = static_cast<Loss>(l);
      if (!CheckLossActivation(loss, act, "loss").ok()) continue;
      EXPECT_NE(std::find_if(std::begin(kPairs), std::end(kPairs),
                             [&](const PairCase& c) {
                               return c.loss == loss && c.output == act;
                             }),
                std::end(kPairs))
          << LossName(loss) << " on " << ActivationName(act)
          << " has no case in kPairs";
    }
  }
}

// Sigmoid+bce and softmax+cce with |z| = 1000, right and wrong: finite loss,
// delta == a - y bit for bit, attenuation exactly 1.
template <typename T>
void CheckFusedAtSaturation(Loss loss, double sign) {
  SCOPED_TRACE(absl::StrCat(LossName(loss), " sign ", sign, " ",
                            sizeof(T) == 4 ? "float32" : "float64"));
  const bool bce = loss == Loss::kBce;
  const double z = 1000 * sign;
  NetworkSpec spec = testing::ExplicitSpec(
      {{bce ? 1 : 2, bce ? Activation::kSigmoid : Activation::kSoftmax}}, 1,
      {{bce ? Mat(1, 1, {z}) : Mat(1, 2, {z, -z}),
        bce ? Vec({0}) : Vec({0, 0})}},
      loss, sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64);
  auto net = MakeNetwork(spec);
  ASSERT_NE(net, nullptr);
  const RowMatrix<T> x = Mat(2, 1, {1, 1}).cast<T>();
  const RowMatrix<T> y =
      (bce ? Mat(2, 1, {0, 1}) : Mat(2, 2, {1, 0, 0, 1})).cast<T>();
  const GradientResult g = *net->ComputeGradients(View(x), View(y), loss);
  const ForwardResult forward = *net->Forward(View(x), false);
  const RowMatrix<T>& a = Get<T>(forward.outputs);
  EXPECT_TRUE(std::isfinite(g.loss_value));
  // One row is right (C_x = 0), the other wrong by |z| (bce: softplus(1000)
  // = 1000; cce: logsumexp - z_y = 2000): mean |z|/2 or |z|.
  EXPECT_NEAR(g.loss_value, bce ? 500 : 1000, 1e-3);
  const RowMatrix<T> expected = a - y;
  const RowMatrix<T>& delta = Get<T>(g.output_delta);
  ASSERT_EQ(delta.rows(), expected.rows());
  ASSERT_EQ(delta.cols(), expected.cols());
  for (Eigen::Index i = 0; i < delta.size(); ++i) {
    EXPECT_EQ(delta.data()[i], expected.data()[i]) << "element " << i;
  }
  EXPECT_EQ(g.stats.output_attenuation, 1.0);
  for (const AnyMatrix& dw : g.weight_grads) {
    EXPECT_TRUE(Get<T>(dw).allFinite());
  }
}

TEST(FusedLoss, SaturatedLogits_FiniteLossAndDeltaIsAMinusY) {
  for (Loss loss : {Loss::kBce, Loss::kCce}) {
    for (double sign : {1.0, -1.0}) {
      CheckFusedAtSaturation<float>(loss, sign);
      CheckFusedAtSaturation<double>(loss, sign);
    }
  }
}

// One sigmoid neuron, x = 1, y = 0, w = b = 2: z = 4, a = 0.98201379.
template <typename T>
void CheckSingleNeuron(double tolerance) {
  SCOPED_TRACE(sizeof(T) == 4 ? "float32" : "float64");
  const DType dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  const RowMatrix<T> x = Mat(1, 1, {1}).cast<T>();
  const RowMatrix<T> y = Mat(1, 1, {0}).cast<T>();
  NetworkSpec spec =
      testing::ExplicitSpec({{1, Activation::kSigmoid}}, 1,
                            {{Mat(1, 1, {2}), Vec({2})}}, Loss::kMse, dtype);
  auto mse = MakeNetwork(spec);
  spec.loss = Loss::kBce;
  auto bce = MakeNetwork(spec);
  ASSERT_NE(mse, nullptr);
  ASSERT_NE(bce, nullptr);
  const GradientResult gm =
      *mse->ComputeGradients(View(x), View(y), Loss::kMse);
  const GradientResult gb =
      *bce->ComputeGradients(View(x), View(y), Loss::kBce);
  // mse: dC/dw = x (a - y) a (1 - a) = 0.0173450.
  EXPECT_NEAR(ToDouble(gm.weight_grads[0])(0, 0), 0.0173450, tolerance);
  EXPECT_NEAR(ToDouble(gm.bias_grads[0])(0, 0), 0.0173450, tolerance);
  // bce: dC/dw = x (a - y) = 0.982014.
  EXPECT_NEAR(ToDouble(gb.weight_grads[0])(0, 0), 0.982014, 5e-7);
  // Attenuation: ||delta|| / ||a - y|| = a (1 - a) = 0.017663 under mse, 1
  // under bce.
  EXPECT_NEAR(gm.stats.output_attenuation, 0.017663, 5e-7);
  EXPECT_DOUBLE_EQ(gb.stats.output_attenuation, 1.0);
  // The same numbers through the other entry points.
  EXPECT_NEAR(
      mse->Evaluate(View(x), View(y))->stats.layers[0].weight_gradient_norm,
      0.0173450, tolerance);
  EXPECT_NEAR(gm.stats.layers[0].mean_derivative, 0.017663, 5e-7);
}

TEST(SingleNeuron, SigmoidSaturatingWrong_MatchesReferenceNumbers) {
  CheckSingleNeuron<double>(5e-8);
  CheckSingleNeuron<float>(5e-7);
}

TEST(SingleNeuron, LossValues_MatchClosedForms) {
  NetworkSpec spec = testing::ExplicitSpec(
      {{1, Activation::kSigmoid}}, 1, {{Mat(1, 1, {2}), Vec({2})}}, Loss::kMse);
  auto net = MakeNetwork(spec);
  const RowMatrix<double> x = Mat(1, 1, {1});
  const RowMatrix<double> y = Mat(1, 1, {0});
  const double a = 1 / (1 + std::exp(-4.0));
  EXPECT_NEAR(net->ComputeGradients(View(x), View(y), Loss::kMse)->loss_value,
              0.5 * a * a, 1e-15);
  EXPECT_NEAR(net->ComputeGradients(View(x), View(y), Loss::kBce)->loss_value,
              -std::log(1 - a), 1e-13);
}

}  // namespace
}  // namespace satlab::engine
