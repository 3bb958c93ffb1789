// Plain value types describing a network: layers, loss, initialization,
// optimizer, precision. No gRPC, no protobuf: the service converts its
// messages into these.
#ifndef SATLAB_SERVER_ENGINE_SPEC_H_
#define SATLAB_SERVER_ENGINE_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace satlab::engine {

// Row-major dense matrix: one row per sample, as on the wire.
template <typename T>
using RowMatrix =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
// Views of a RowMatrix, a Map over raw storage or a block of whole rows of
// either, without a copy.
template <typename T>
using RowRef = Eigen::Ref<RowMatrix<T>>;
template <typename T>
using ConstRowRef = Eigen::Ref<const RowMatrix<T>>;

enum class DType { kFloat32, kFloat64 };

// Must match the order of the activation table in activation.cc.
enum class Activation {
  kIdentity,
  kSigmoid,
  kTanh,
  kRelu,
  kLeakyRelu,
  kSoftplus,
  kSoftmax,
};

enum class Loss { kMse, kBce, kCce };

enum class InitScheme {
  kZeros,
  kUniformFanIn,
  kGlorotUniform,
  kGlorotNormal,
  kHeNormal,
  kNormal,
  kExplicit,
};

enum class OptimizerKind { kSgd, kAdam };

absl::string_view ActivationName(Activation a);
absl::string_view LossName(Loss l);
absl::string_view InitSchemeName(InitScheme s);

struct LayerSpec {
  int units = 1;
  Activation activation = Activation::kSigmoid;
  double leaky_relu_slope = 0.01;  // used by kLeakyRelu only
};

// Explicit parameters of one layer, always carried in float64 (exact for
// float32 too). weights: [fan_in, units]; biases: [1, units].
struct LayerParams {
  RowMatrix<double> weights;
  RowVector<double> biases;
};

struct InitSpec {
  InitScheme scheme = InitScheme::kUniformFanIn;
  uint64_t seed = 0;
  double mean = 0.0;                         // kNormal
  double std = 1.0;                          // kNormal
  std::vector<LayerParams> explicit_params;  // kExplicit: one per layer
};

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kSgd;
  double learning_rate = 0.1;
  double momentum = 0.0;  // SGD
  bool nesterov = false;  // SGD
  double weight_decay = 0.0;
  double beta1 = 0.9;     // Adam
  double beta2 = 0.999;   // Adam
  double epsilon = 1e-8;  // Adam
};

struct NetworkSpec {
  int input_size = 1;
  std::vector<LayerSpec> layers;  // first hidden ... output
  Loss loss = Loss::kMse;
  InitSpec init;
  OptimizerSpec optimizer;
  DType dtype = DType::kFloat64;
  double saturation_threshold = 0.1;  // theta
};

// Limits checked by ValidateSpec (the server sets them from flags).
struct Limits {
  int64_t max_layers = 64;
  int64_t max_units = 65536;
  int64_t max_parameters = 50'000'000;
  int64_t max_batch_rows = 1'000'000;
  // Scratch bytes one call may use (CallOptions::max_scratch_bytes):
  // experiments check their steps against it.
  int64_t max_call_scratch_bytes = int64_t{1} << 30;
};

// Whether `activation` can feed `loss`: bce needs sigmoid outputs, cce
// needs softmax outputs, mse takes any. Returns INVALID_ARGUMENT naming
// `field` and the reason otherwise.
absl::Status CheckLossActivation(Loss loss, Activation activation,
                                 absl::string_view field);

// Where a spec's fields live in the caller's request, so that messages name
// what the client wrote. Built from a prefix ("network.spec" names
// "network.spec.layers[1].units"); a caller whose request spreads the spec
// over several messages (an experiment) then overrides the paths that
// differ.
struct SpecFields {
  SpecFields(absl::string_view path);  // NOLINT: implicit from a prefix
  SpecFields(const char* path)         // NOLINT: so is a literal
      : SpecFields(absl::string_view(path)) {}
  // Fields not named below: input_size, dtype, init.*, ...
  std::string Field(absl::string_view name) const;
  // Layer l of `count`.
  std::string Layer(size_t l, size_t count) const;

  std::string prefix;
  std::string layers;        // prefix.layers
  std::string output_layer;  // the last layer; empty: layers[last]
  std::string loss;          // prefix.loss
  std::string optimizer;     // prefix.optimizer
};

// Validates a spec completely (sizes, ranges, softmax placement,
// loss/activation pairing, explicit parameter shapes and finiteness,
// optimizer ranges) before anything is allocated; every rule about a spec
// lives here. Messages name fields by `fields`
// (`network.spec.layers[1].units`). Over-limit sizes give
// RESOURCE_EXHAUSTED, everything else INVALID_ARGUMENT.
absl::Status ValidateSpec(const NetworkSpec& spec, const Limits& limits,
                          const SpecFields& fields);

// Trainable scalars of a spec: sum over layers of fan_in * units + units.
int64_t ParameterCount(const NetworkSpec& spec);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_SPEC_H_
