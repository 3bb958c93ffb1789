// Nielsen's single saturated sigmoid neuron (x = 1, y = 0, learning rate
// 0.15) trained in plain scalars: the reference the engine's and the
// service's experiment curves are checked against.
#ifndef SATLAB_TESTS_ENGINE_SCALAR_NIELSEN_H_
#define SATLAB_TESTS_ENGINE_SCALAR_NIELSEN_H_

#include <cmath>
#include <vector>

namespace satlab::testing {

// a = sigma(w + b); mse C = a^2 / 2,
// dC/dz = a * a(1 - a); bce C = -ln(1 - a), dC/dz = a; w -= eta dC/dz * x,
// b -= eta dC/dz. Returns the loss before training and after each epoch.
inline std::vector<double> ScalarNielsen(double w, double b, bool cross_entropy,
                                         int epochs) {
  auto loss = [&] {
    const double a = 1 / (1 + std::exp(-(w + b)));
    return cross_entropy ? -std::log(1 - a) : 0.5 * a * a;
  };
  std::vector<double> curve = {loss()};
  for (int e = 0; e < epochs; ++e) {
    const double a = 1 / (1 + std::exp(-(w + b)));
    const double delta = cross_entropy ? a : a * a * (1 - a);
    w -= 0.15 * delta;  // x = 1
    b -= 0.15 * delta;
    curve.push_back(loss());
  }
  return curve;
}

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_ENGINE_SCALAR_NIELSEN_H_
