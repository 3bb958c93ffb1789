// Shared by the libFuzzer harnesses: small fixed networks and the limits
// the fuzzed calls run under, so that inputs explore validation and
// numerics instead of allocation (a fuzzer that may ask for 10^9 units only
// measures malloc).
#ifndef SATLAB_TESTS_FUZZ_FUZZ_COMMON_H_
#define SATLAB_TESTS_FUZZ_FUZZ_COMMON_H_

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"

namespace satlab::fuzz {

// A failed property: print it and abort, which libFuzzer records as a crash
// with the input that caused it.
#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

// The value of an engine call that must succeed here: the fuzzed networks
// and batches are far below every scratch bound and nothing stops them, so
// an error is a broken property (printed, then abort).
template <typename T>
T MustOk(absl::StatusOr<T> result, const char* call) {
  if (!result.ok()) {
    std::fprintf(stderr, "%s failed: %s\n", call,
                 result.status().ToString().c_str());
    std::abort();
  }
  return *std::move(result);
}
inline void MustOk(const absl::Status& status, const char* call) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s failed: %s\n", call, status.ToString().c_str());
    std::abort();
  }
}

inline engine::Limits SmallLimits() {
  engine::Limits limits;
  limits.max_layers = 6;
  limits.max_units = 32;
  limits.max_parameters = 4096;
  limits.max_batch_rows = 64;
  return limits;
}

// Three networks covering both precisions and the three losses:
//   0: 2 -> 3 tanh -> 1 sigmoid, bce, float64, SGD with momentum
//   1: 3 -> 4 relu -> 3 softmax, cce, float32, Adam
//   2: 1 -> 1 identity, mse, float64, plain SGD
inline std::vector<std::unique_ptr<engine::Network>> FixedNetworks() {
  using engine::Activation;
  std::vector<std::unique_ptr<engine::Network>> nets;
  auto add = [&](int inputs, std::vector<engine::LayerSpec> layers,
                 engine::Loss loss, engine::DType dtype, bool adam) {
    engine::NetworkSpec spec;
    spec.input_size = inputs;
    spec.layers = std::move(layers);
    spec.loss = loss;
    spec.dtype = dtype;
    spec.init.scheme = engine::InitScheme::kGlorotUniform;
    spec.init.seed = 7;
    if (adam) {
      spec.optimizer.kind = engine::OptimizerKind::kAdam;
      spec.optimizer.learning_rate = 0.01;
    } else {
      spec.optimizer.momentum = 0.5;
    }
    auto net = engine::Network::Create(spec, SmallLimits(), "network.spec");
    if (!net.ok()) {
      std::fprintf(stderr, "fixed network: %s\n",
                   net.status().ToString().c_str());
      std::abort();
    }
    nets.push_back(*std::move(net));
  };
  add(2, {{3, Activation::kTanh}, {1, Activation::kSigmoid}},
      engine::Loss::kBce, engine::DType::kFloat64, false);
  add(3, {{4, Activation::kRelu}, {3, Activation::kSoftmax}},
      engine::Loss::kCce, engine::DType::kFloat32, true);
  add(1, {{1, Activation::kIdentity}}, engine::Loss::kMse,
      engine::DType::kFloat64, false);
  return nets;
}

// Row-major copy of a parameter matrix, to compare "unchanged" bitwise.
inline std::vector<double> Flatten(const engine::AnyMatrix& m) {
  std::vector<double> out;
  std::visit(
      [&](const auto& mat) {
        for (int64_t i = 0; i < mat.size(); ++i) {
          out.push_back(static_cast<double>(mat.data()[i]));
        }
      },
      m);
  return out;
}

inline std::vector<std::vector<double>> Parameters(const engine::Network& n) {
  std::vector<std::vector<double>> out;
  for (int l = 0; l < n.num_layers(); ++l) {
    out.push_back(Flatten(n.weights(l)));
    out.push_back(Flatten(n.biases(l)));
  }
  return out;
}

// Bitwise equality (NaN == NaN when the bits match).
inline bool SameBits(const std::vector<std::vector<double>>& a,
                     const std::vector<std::vector<double>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return false;
    if (!a[i].empty() && std::memcmp(a[i].data(), b[i].data(),
                                     a[i].size() * sizeof(double)) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace satlab::fuzz

#endif  // SATLAB_TESTS_FUZZ_FUZZ_COMMON_H_
