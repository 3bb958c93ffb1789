// Helpers shared by the engine tests.
#ifndef SATLAB_TESTS_ENGINE_TEST_UTIL_H_
#define SATLAB_TESTS_ENGINE_TEST_UTIL_H_

#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "server/engine/random.h"
#include "server/engine/spec.h"

namespace satlab::engine::testing {

inline MatrixView View(const RowMatrix<double>& m) {
  return {nullptr, m.data(), m.rows(), m.cols()};
}
inline MatrixView View(const RowMatrix<float>& m) {
  return {m.data(), nullptr, m.rows(), m.cols()};
}

template <typename T>
const RowMatrix<T>& Get(const AnyMatrix& m) {
  return std::get<RowMatrix<T>>(m);
}
// From a temporary (net.weights(l)): by value, so `const auto& w = ...` keeps
// it alive.
template <typename T>
RowMatrix<T> Get(AnyMatrix&& m) {
  return std::get<RowMatrix<T>>(std::move(m));
}

// Any-precision matrix as double.
inline RowMatrix<double> ToDouble(const AnyMatrix& m) {
  if (const auto* f = std::get_if<RowMatrix<float>>(&m)) {
    return f->cast<double>();
  }
  return std::get<RowMatrix<double>>(m);
}

// Every layer's parameters, in double.
inline std::vector<LayerParams> Params(const Network& net) {
  std::vector<LayerParams> out;
  for (int l = 0; l < net.num_layers(); ++l) {
    out.push_back({ToDouble(net.weights(l)), ToDouble(net.biases(l))});
  }
  return out;
}

// [rows, cols] of U(lo, hi) from `rng`.
inline RowMatrix<double> Uniform(Rng& rng, int rows, int cols, double lo,
                                 double hi) {
  RowMatrix<double> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = rng.Uniform(lo, hi);
  return m;
}

// [rows, cols] one-hot rows with a random class each.
inline RowMatrix<double> OneHot(Rng& rng, int rows, int cols) {
  RowMatrix<double> m = RowMatrix<double>::Zero(rows, cols);
  for (int r = 0; r < rows; ++r) m(r, static_cast<int>(rng.Below(cols))) = 1;
  return m;
}

inline std::unique_ptr<Network> MakeNetwork(const NetworkSpec& spec) {
  auto net = Network::Create(spec, Limits{}, "network.spec");
  EXPECT_TRUE(net.ok()) << net.status();
  return net.ok() ? *std::move(net) : nullptr;
}

// A network whose single layer maps `fan_in` inputs to `units` outputs with
// explicit parameters.
inline NetworkSpec ExplicitSpec(const std::vector<LayerSpec>& layers,
                                int input_size, std::vector<LayerParams> params,
                                Loss loss, DType dtype = DType::kFloat64) {
  NetworkSpec spec;
  spec.input_size = input_size;
  spec.layers = layers;
  spec.loss = loss;
  spec.dtype = dtype;
  spec.init.scheme = InitScheme::kExplicit;
  spec.init.explicit_params = std::move(params);
  return spec;
}

inline RowMatrix<double> Mat(int rows, int cols,
                             std::initializer_list<double> values) {
  RowMatrix<double> m(rows, cols);
  std::copy(values.begin(), values.end(), m.data());
  return m;
}

inline RowVector<double> Vec(std::initializer_list<double> values) {
  RowVector<double> v(static_cast<Eigen::Index>(values.size()));
  std::copy(values.begin(), values.end(), v.data());
  return v;
}

}  // namespace satlab::engine::testing

#endif  // SATLAB_TESTS_ENGINE_TEST_UTIL_H_
