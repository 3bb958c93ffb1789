// Training data and parameter snapshots shared by the e2e tests that
// compare a resumed run with an uninterrupted one (crash_resume, postgres).
#ifndef SATLAB_TESTS_E2E_TRAINING_DATA_H_
#define SATLAB_TESTS_E2E_TRAINING_DATA_H_

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"

namespace satlab::testing {

// `count` minibatches of `rows` x `inputs` (uniform in [-2, 2)) with two
// targets: the sign of the row's sum and of its last two inputs' product.
// The same seed gives the same bytes.
inline std::vector<v1::Minibatch> SeededBatches(uint64_t seed, int count,
                                                int rows, int inputs) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> x(-2, 2);
  std::vector<v1::Minibatch> batches(count);
  for (v1::Minibatch& batch : batches) {
    std::vector<double> in, out;
    for (int r = 0; r < rows; ++r) {
      double sum = 0;
      for (int c = 0; c < inputs; ++c) {
        in.push_back(x(rng));
        sum += in.back();
      }
      out.push_back(sum > 0 ? 1 : 0);
      out.push_back(in[in.size() - 1] * in[in.size() - 2] > 0 ? 1 : 0);
    }
    *batch.mutable_inputs() = MakeTensor(rows, inputs, in);
    *batch.mutable_targets() = MakeTensor(rows, 2, out);
  }
  return batches;
}

// An inputs-hidden...-2 network: tanh hidden layers, sigmoid outputs under
// BCE, Glorot-uniform with `seed`, Adam at 0.01, float64: what the resume
// tests train with SeededBatches (two targets per row).
inline v1::NetworkSpec TwoOutputSpec(int inputs,
                                     std::initializer_list<int> hidden,
                                     uint64_t seed) {
  v1::NetworkSpec spec;
  spec.set_input_size(inputs);
  for (int units : hidden) {
    v1::LayerSpec* layer = spec.add_layers();
    layer->set_units(units);
    layer->set_activation(v1::ACTIVATION_TANH);
  }
  v1::LayerSpec* out = spec.add_layers();
  out->set_units(2);
  out->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(v1::LOSS_BCE);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_GLOROT_UNIFORM);
  spec.mutable_init()->set_seed(seed);
  spec.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
  spec.set_dtype(v1::DTYPE_FLOAT64);
  return spec;
}

// Every layer's weights and biases as bytes (compared bitwise), or the
// error reading them.
inline std::string ParameterBytes(Client& client, const std::string& name) {
  auto params = client.GetParameters(name);
  if (!params.ok()) return absl::StrCat("error: ", params.status().ToString());
  std::string bytes;
  for (const v1::LayerParameters& layer : params->layers()) {
    bytes += layer.weights().SerializeAsString();
    bytes += layer.biases().SerializeAsString();
  }
  return bytes;
}

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_E2E_TRAINING_DATA_H_
