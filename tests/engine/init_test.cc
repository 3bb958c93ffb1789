// Initialization schemes: distributions, draw order, seeding, dtypes.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "server/engine/random.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::Mat;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::Vec;

constexpr int kInputs = 400;
constexpr int kHidden = 500;
constexpr int kOutputs = 300;

NetworkSpec LargeSpec(InitScheme scheme, uint64_t seed) {
  NetworkSpec spec;
  spec.input_size = kInputs;
  spec.layers = {{kHidden, Activation::kTanh},
                 {kOutputs, Activation::kSigmoid}};
  spec.init.scheme = scheme;
  spec.init.seed = seed;
  spec.init.mean = 0.5;
  spec.init.std = 2.0;
  return spec;
}

enum class Bias { kZero, kSameAsWeights };

struct InitCase {
  std::string name;
  InitScheme scheme;
  // Expected mean and std of W for a layer with (fan_in, fan_out).
  double (*mean)(int fan_in, int fan_out);
  double (*std)(int fan_in, int fan_out);
  // Uniform schemes: |w| < bound; else infinity.
  double (*bound)(int fan_in, int fan_out);
  Bias bias;
};

double Zero(int, int) { return 0; }
double Inf(int, int) { return std::numeric_limits<double>::infinity(); }

class InitDistribution : public ::testing::TestWithParam<InitCase> {};

// Mean within 5 standard errors, std within 2%, bounds respected.
void ExpectDistribution(const RowMatrix<double>& m, double mean, double std,
                        double bound, const std::string& what) {
  const double n = static_cast<double>(m.size());
  const double sample_mean = m.mean();
  const double sample_std =
      std::sqrt((m.array() - sample_mean).square().sum() / (n - 1));
  EXPECT_NEAR(sample_mean, mean, 5 * std / std::sqrt(n)) << what;
  EXPECT_NEAR(sample_std, std, 0.02 * std) << what;
  EXPECT_LT(m.cwiseAbs().maxCoeff(), bound) << what;
}

TEST_P(InitDistribution, LargeLayers_MatchScheme) {
  const InitCase& c = GetParam();
  auto net = MakeNetwork(LargeSpec(c.scheme, 7));
  ASSERT_NE(net, nullptr);
  const std::vector<LayerParams> params = Params(*net);
  int fan_in = kInputs;
  for (int l = 0; l < 2; ++l) {
    const int fan_out = net->spec().layers[l].units;
    ExpectDistribution(params[l].weights, c.mean(fan_in, fan_out),
                       c.std(fan_in, fan_out), c.bound(fan_in, fan_out),
                       "weights " + std::to_string(l));
    if (c.bias == Bias::kZero) {
      EXPECT_TRUE(params[l].biases.isZero(0)) << "biases " << l;
    } else {
      // Few biases: only a loose check that they follow the same law.
      const RowMatrix<double> b = params[l].biases;
      EXPECT_LT(b.cwiseAbs().maxCoeff(), c.bound(fan_in, fan_out));
      EXPECT_NEAR(b.mean(), c.mean(fan_in, fan_out),
                  6 * c.std(fan_in, fan_out) / std::sqrt(b.size()));
    }
    fan_in = fan_out;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Schemes, InitDistribution,
    ::testing::Values(
        InitCase{"UniformFanIn", InitScheme::kUniformFanIn, Zero,
                 [](int fi, int) { return 1 / std::sqrt(3.0 * fi); },
                 [](int fi, int) { return 1 / std::sqrt(1.0 * fi); },
                 Bias::kSameAsWeights},
        InitCase{"GlorotUniform", InitScheme::kGlorotUniform, Zero,
                 [](int fi, int fo) { return std::sqrt(2.0 / (fi + fo)); },
                 [](int fi, int fo) { return std::sqrt(6.0 / (fi + fo)); },
                 Bias::kZero},
        InitCase{"GlorotNormal", InitScheme::kGlorotNormal, Zero,
                 [](int fi, int fo) { return std::sqrt(2.0 / (fi + fo)); }, Inf,
                 Bias::kZero},
        InitCase{"HeNormal", InitScheme::kHeNormal, Zero,
                 [](int fi, int) { return std::sqrt(2.0 / fi); }, Inf,
                 Bias::kZero},
        InitCase{"Normal", InitScheme::kNormal, [](int, int) { return 0.5; },
                 [](int, int) { return 2.0; }, Inf, Bias::kSameAsWeights}),
    [](const ::testing::TestParamInfo<InitCase>& param) {
      return param.param.name;
    });

TEST(Init, Zeros_AllParametersZero) {
  auto net = MakeNetwork(LargeSpec(InitScheme::kZeros, 3));
  for (const LayerParams& p : Params(*net)) {
    EXPECT_TRUE(p.weights.isZero(0));
    EXPECT_TRUE(p.biases.isZero(0));
  }
}

TEST(Init, SameSeed_BitwiseIdenticalDifferentSeedDiffers) {
  for (InitScheme scheme :
       {InitScheme::kUniformFanIn, InitScheme::kGlorotUniform,
        InitScheme::kGlorotNormal, InitScheme::kHeNormal,
        InitScheme::kNormal}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      NetworkSpec spec = LargeSpec(scheme, 11);
      spec.dtype = dtype;
      auto a = MakeNetwork(spec);
      auto b = MakeNetwork(spec);
      spec.init.seed = 12;
      auto c = MakeNetwork(spec);
      for (int l = 0; l < 2; ++l) {
        const auto wa = testing::ToDouble(a->weights(l));
        const auto wb = testing::ToDouble(b->weights(l));
        EXPECT_EQ(std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(double)),
                  0)
            << InitSchemeName(scheme);
        EXPECT_FALSE(wa == testing::ToDouble(c->weights(l)))
            << InitSchemeName(scheme);
      }
    }
  }
}

// Layer by layer, weights row-major then biases, from one Rng(seed).
TEST(Init, UniformFanIn_DrawsLayerByLayerWeightsThenBiases) {
  NetworkSpec spec;
  spec.input_size = 3;
  spec.layers = {{2, Activation::kTanh}, {4, Activation::kSigmoid}};
  spec.init.scheme = InitScheme::kUniformFanIn;
  spec.init.seed = 42;
  auto net = MakeNetwork(spec);
  Rng rng(42);
  int fan_in = 3;
  for (int l = 0; l < 2; ++l) {
    const double r = 1 / std::sqrt(static_cast<double>(fan_in));
    const RowMatrix<double>& w = Get<double>(net->weights(l));
    const RowMatrix<double>& b = Get<double>(net->biases(l));
    for (int i = 0; i < w.rows(); ++i) {
      for (int j = 0; j < w.cols(); ++j) {
        EXPECT_EQ(w(i, j), rng.Uniform(-r, r)) << l << " " << i << " " << j;
      }
    }
    for (int j = 0; j < b.cols(); ++j) {
      EXPECT_EQ(b(0, j), rng.Uniform(-r, r)) << l << " bias " << j;
    }
    fan_in = static_cast<int>(w.cols());
  }
}

// float32 parameters are the float64 draws rounded once.
TEST(Init, Float32_IsRoundedFloat64Draw) {
  NetworkSpec spec = LargeSpec(InitScheme::kHeNormal, 5);
  auto f64 = MakeNetwork(spec);
  spec.dtype = DType::kFloat32;
  auto f32 = MakeNetwork(spec);
  for (int l = 0; l < 2; ++l) {
    EXPECT_TRUE(Get<float>(f32->weights(l)) ==
                Get<double>(f64->weights(l)).cast<float>());
  }
}

TEST(Init, Explicit_UsesGivenValuesExactly) {
  NetworkSpec spec = testing::ExplicitSpec(
      {{2, Activation::kRelu}, {1, Activation::kIdentity}}, 2,
      {{Mat(2, 2, {0.1, -0.2, 0.3, 1e-300}), Vec({0.5, -0.5})},
       {Mat(2, 1, {7, 8}), Vec({9})}},
      Loss::kMse);
  auto f64 = MakeNetwork(spec);
  EXPECT_TRUE(Params(*f64)[0].weights == spec.init.explicit_params[0].weights);
  EXPECT_TRUE(Params(*f64)[1].biases == spec.init.explicit_params[1].biases);
  spec.dtype = DType::kFloat32;
  auto f32 = MakeNetwork(spec);
  EXPECT_TRUE(Get<float>(f32->weights(0)) ==
              spec.init.explicit_params[0].weights.cast<float>());
}

}  // namespace
}  // namespace satlab::engine
