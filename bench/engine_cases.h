// The bench cases (bench_cases.h) as satlab engine networks and data: the
// spec of a case, its ring of minibatches, and a network that must build.
// Shared by the engine and metrics-overhead benchmarks.
#ifndef SATLAB_BENCH_ENGINE_CASES_H_
#define SATLAB_BENCH_ENGINE_CASES_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "bench/bench_cases.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"

namespace satlab::bench {

inline engine::NetworkSpec SpecFor(const BenchCase& c, engine::DType dtype) {
  engine::NetworkSpec spec;
  spec.input_size = c.sizes[0];
  const int layers = static_cast<int>(c.sizes.size()) - 1;
  for (int l = 1; l <= layers; ++l) {
    engine::LayerSpec layer;
    layer.units = c.sizes[l];
    layer.activation = (l == layers && c.loss == OutputLoss::kSoftmaxCce)
                           ? engine::Activation::kSoftmax
                           : engine::Activation::kSigmoid;
    spec.layers.push_back(layer);
  }
  spec.loss = c.loss == OutputLoss::kSoftmaxCce ? engine::Loss::kCce
                                                : engine::Loss::kMse;
  spec.init.scheme = engine::InitScheme::kGlorotUniform;
  spec.init.seed = 42;
  spec.optimizer.kind = engine::OptimizerKind::kSgd;
  spec.optimizer.learning_rate = kLearningRate;
  spec.dtype = dtype;
  return spec;
}

// A ring of minibatches in precision T: inputs in [-0.5, 0.5), targets
// one-hot (cce) or uniform in [0, 1) (mse).
template <typename T>
struct Batches {
  std::vector<std::vector<T>> inputs, targets;
  int rows = 0, in_cols = 0, out_cols = 0;

  explicit Batches(const BenchCase& c)
      : rows(c.batch), in_cols(c.sizes.front()), out_cols(c.sizes.back()) {
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int i = 0; i < kMinibatchRing; ++i) {
      std::vector<T> x(static_cast<size_t>(rows) * in_cols);
      for (T& v : x) v = static_cast<T>(u(rng) - 0.5);
      std::vector<T> y(static_cast<size_t>(rows) * out_cols, T(0));
      if (c.loss == OutputLoss::kSoftmaxCce) {
        for (int r = 0; r < rows; ++r)
          y[r * out_cols + rng() % out_cols] = T(1);
      } else {
        for (T& v : y) v = static_cast<T>(u(rng));
      }
      inputs.push_back(std::move(x));
      targets.push_back(std::move(y));
    }
  }
  engine::MatrixView View(const std::vector<T>& data, int cols) const {
    engine::MatrixView v;
    if constexpr (std::is_same_v<T, float>) {
      v.f32 = data.data();
    } else {
      v.f64 = data.data();
    }
    v.rows = rows;
    v.cols = cols;
    return v;
  }
  engine::MatrixView X(int i) const {
    return View(inputs[i % kMinibatchRing], in_cols);
  }
  engine::MatrixView Y(int i) const {
    return View(targets[i % kMinibatchRing], out_cols);
  }
};

inline std::unique_ptr<engine::Network> MustCreate(
    const engine::NetworkSpec& spec) {
  auto net = engine::Network::Create(spec, engine::Limits(), "network.spec");
  if (!net.ok()) {
    std::fprintf(stderr, "Network::Create: %s\n",
                 net.status().ToString().c_str());
    std::abort();
  }
  return std::move(net).value();
}

}  // namespace satlab::bench

#endif  // SATLAB_BENCH_ENGINE_CASES_H_
