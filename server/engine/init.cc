#include "server/engine/init.h"

#include <cmath>

#include "server/engine/random.h"

namespace satlab::engine {
namespace {

// Fills x (row-major order of its storage) with draw(), rounded to T.
template <typename M, typename Draw>
void Fill(Draw&& draw, M* x) {
  using T = typename M::Scalar;
  T* data = x->data();
  for (Eigen::Index i = 0; i < x->size(); ++i) {
    data[i] = static_cast<T>(draw());
  }
}

}  // namespace

template <typename T>
ParamSet<T> InitialParameters(const NetworkSpec& spec) {
  ParamSet<T> params;
  Rng rng(spec.init.seed);
  const InitSpec& init = spec.init;
  int fan_in = spec.input_size;
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const int fan_out = spec.layers[l].units;
    RowMatrix<T> w = RowMatrix<T>::Zero(fan_in, fan_out);  // [fan_in, units]
    RowVector<T> b = RowVector<T>::Zero(fan_out);          // [1, units]
    const double sum = static_cast<double>(fan_in) + fan_out;
    switch (init.scheme) {
      case InitScheme::kZeros:
        break;
      case InitScheme::kUniformFanIn: {
        // W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        const double r = 1.0 / std::sqrt(static_cast<double>(fan_in));
        Fill([&] { return rng.Uniform(-r, r); }, &w);
        Fill([&] { return rng.Uniform(-r, r); }, &b);
        break;
      }
      case InitScheme::kGlorotUniform: {
        // W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)); b = 0.
        const double r = std::sqrt(6.0 / sum);
        Fill([&] { return rng.Uniform(-r, r); }, &w);
        break;
      }
      case InitScheme::kGlorotNormal: {
        // W ~ N(0, 2 / (fan_in + fan_out)); b = 0.
        const double sd = std::sqrt(2.0 / sum);
        Fill([&] { return rng.Normal(0.0, sd); }, &w);
        break;
      }
      case InitScheme::kHeNormal: {
        // W ~ N(0, 2 / fan_in); b = 0.
        const double sd = std::sqrt(2.0 / fan_in);
        Fill([&] { return rng.Normal(0.0, sd); }, &w);
        break;
      }
      case InitScheme::kNormal:
        // W, b ~ N(mean, std^2).
        Fill([&] { return rng.Normal(init.mean, init.std); }, &w);
        Fill([&] { return rng.Normal(init.mean, init.std); }, &b);
        break;
      case InitScheme::kExplicit:
        // Validated shapes; one rounding to T.
        w = init.explicit_params[l].weights.template cast<T>();
        b = init.explicit_params[l].biases.template cast<T>();
        break;
    }
    params.weights.push_back(std::move(w));
    params.biases.push_back(std::move(b));
    fan_in = fan_out;
  }
  return params;
}

template ParamSet<float> InitialParameters<float>(const NetworkSpec&);
template ParamSet<double> InitialParameters<double>(const NetworkSpec&);

}  // namespace satlab::engine
