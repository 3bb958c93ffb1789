// A dense multilayer perceptron with its optimizer state: forward pass,
// backpropagation, saturation statistics and optimizer steps, in float32 or
// float64. Not thread-safe: the caller serializes writers and readers (the
// service holds one writer at a time and a reader lock for the rest).
#ifndef SATLAB_SERVER_ENGINE_NETWORK_H_
#define SATLAB_SERVER_ENGINE_NETWORK_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/engine/check.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// A matrix in the network's precision; results are returned this way so the
// service can copy them to the wire with one memcpy.
using AnyMatrix = std::variant<RowMatrix<float>, RowMatrix<double>>;

// A borrowed, read-only row-major matrix in either precision (e.g. straight
// over a request's packed floats). Exactly one of f32/f64 is non-null.
struct MatrixView {
  const float* f32 = nullptr;
  const double* f64 = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Saturation statistics of one layer (see proto LayerStats).
struct LayerStats {
  double mean_derivative = 0;
  double saturated_fraction = 0;
  int64_t dead_units = 0;
  double weight_gradient_norm = 0;
  double bias_gradient_norm = 0;
  double mean_activation = 0;
};

struct SaturationStats {
  std::vector<LayerStats> layers;
  // ||delta|| / ||a - y|| over the batch at the output; 1 when a == y.
  double output_attenuation = 1;
};

struct ForwardResult {
  AnyMatrix outputs;         // [batch, output_units]
  std::vector<AnyMatrix> z;  // per layer [batch, units]; empty unless asked
  std::vector<AnyMatrix> a;  // per layer [batch, units]; empty unless asked
};

struct GradientResult {
  Loss loss = Loss::kMse;
  double loss_value = 0;                // mean over the batch
  std::vector<AnyMatrix> weight_grads;  // per layer [fan_in, units]
  std::vector<AnyMatrix> bias_grads;    // per layer [1, units]
  AnyMatrix output_delta;               // dC_x/dz per sample, [batch, out]
  SaturationStats stats;
  double accuracy = 0;
};

struct StepResult {
  int64_t step = 0;  // after the step
  double loss = 0;
  int64_t batch_size = 0;
  SaturationStats stats;
  bool diverged = false;
  double accuracy = 0;
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  int64_t samples = 0;
  SaturationStats stats;
};

// Everything a network's future depends on, as values: what a store keeps
// and a restart restores. A network rebuilt from it (Network::FromState)
// continues bit for bit as the original would have. Tensors are in the
// network's dtype, shaped as weights()/biases() return them.
struct NetworkState {
  // spec.init.explicit_params is empty: the parameters are below.
  NetworkSpec spec;
  int64_t step = 0;
  int64_t samples_seen = 0;
  std::vector<AnyMatrix> weights;  // per layer [fan_in, units]
  std::vector<AnyMatrix> biases;   // per layer [1, units]
  // The optimizer's state tensors, each shaped like the parameters: none
  // for plain SGD, one (velocity) for SGD with momentum, two (first and
  // second moments) for Adam.
  struct Slot {
    std::vector<AnyMatrix> weights;
    std::vector<AnyMatrix> biases;
  };
  std::vector<Slot> optimizer_slots;
  // Adam's update count since creation or the last optimizer reset (its
  // bias correction); 0 for SGD.
  int64_t optimizer_updates = 0;
};

// What a caller allows one call (Forward, ComputeGradients, TrainStep,
// Evaluate): how long it may run and how much scratch memory it may use.
// See CallOptions::stop.
using StopCheck = std::function<absl::Status()>;

struct CallOptions {
  // Asked before every chunk of rows and every layer, and by TrainStep right
  // before it commits its update. A non-OK status (CANCELLED,
  // DEADLINE_EXCEEDED, UNAVAILABLE, ...) stops the call, which returns that
  // status and changes nothing. Empty: the call runs to its end. Must not
  // throw.
  StopCheck stop;
  // Bytes of scratch space the call may use, as CallScratchBytes counts
  // them. Forward processes long batches in chunks of whole blocks
  // (BlockRows) that fit, with results bitwise identical to one pass;
  // ComputeGradients and Evaluate run a block at a time, and TrainStep in
  // one pass, because another split would change the order of the
  // gradient sums: those are RESOURCE_EXHAUSTED when their scratch is over.
  int64_t max_scratch_bytes = std::numeric_limits<int64_t>::max();
};

enum class CallKind { kForward, kComputeGradients, kTrainStep, kEvaluate };

// Rows that ComputeGradients and Evaluate process at a time (and sum in
// that order), and Forward's unit of chunking: a function of the network's
// widest layer only, so that results do not depend on server settings.
int64_t BlockRows(const NetworkSpec& spec);

// Scratch bytes a `kind` call over `rows` rows allocates at its peak,
// beyond its inputs and its result: activations, derivatives, deltas,
// gradients, a TrainStep's staged optimizer state (a copy of momentum or
// Adam's moments), and a converted copy of the batch when its dtype
// differs from the network's. For Forward, `rows` is one chunk's.
// Saturates at INT64_MAX.
int64_t CallScratchBytes(const NetworkSpec& spec, CallKind kind, int64_t rows);

// Bytes the network keeps for its life: parameters plus optimizer state
// (momentum, Adam moments), in its dtype.
int64_t StateBytes(const NetworkSpec& spec);

// Implementation interface; one per precision (network.cc).
class NetworkImpl;

class Network {
 public:
  // Validates `spec` against `limits` (ValidateSpec, naming fields by
  // `fields`) and builds the network with parameters drawn as spec.init
  // says. Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (over a limit, or out
  // of memory).
  static absl::StatusOr<std::unique_ptr<Network>> Create(
      const NetworkSpec& spec, const Limits& limits, const SpecFields& fields);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // A deep copy: parameters, optimizer state and step. RESOURCE_EXHAUSTED
  // when out of memory.
  absl::StatusOr<std::unique_ptr<Network>> Clone() const;

  // A network that continues exactly from `state`. Checks everything
  // against the spec and `limits` first (ValidateSpec; the number, dtype,
  // shape and finiteness of every tensor; the optimizer slots the spec's
  // optimizer keeps; non-negative counters) and returns INVALID_ARGUMENT
  // naming the part (`field` prefixes messages, e.g. "state"), or
  // RESOURCE_EXHAUSTED over a limit or out of memory.
  static absl::StatusOr<std::unique_ptr<Network>> FromState(
      NetworkState state, const Limits& limits, absl::string_view field);

  // A copy of the whole state (FromState(ExportState()) is an identical
  // network). RESOURCE_EXHAUSTED when out of memory.
  absl::StatusOr<NetworkState> ExportState() const;

  const NetworkSpec& spec() const { return spec_; }
  DType dtype() const { return spec_.dtype; }
  int input_size() const { return spec_.input_size; }
  int output_size() const { return spec_.layers.back().units; }
  int num_layers() const { return static_cast<int>(spec_.layers.size()); }
  int64_t step() const;
  int64_t samples_seen() const;
  int64_t parameter_count() const { return ParameterCount(spec_); }

  // Parameters in the network's precision: weights [fan_in, units], biases
  // [1, units] for layer `layer`. Copies: std::bad_alloc when out of memory
  // (the service's handlers catch it).
  AnyMatrix weights(int layer) const;
  AnyMatrix biases(int layer) const;

  // Replaces every layer's parameters. `params` must hold num_layers()
  // entries with exact shapes and finite values; otherwise INVALID_ARGUMENT
  // naming `layers[i].weights` / `layers[i].biases` and nothing changes.
  // With `reset_optimizer_state`, momentum/Adam moments go back to zero.
  absl::Status SetParameters(absl::Span<const LayerParams> params,
                             bool reset_optimizer_state);

  // Checks a batch before any arithmetic: shape [rows >= 1, input_size] for
  // inputs, [rows, output_size] for targets, finite values, targets in range
  // for the loss (bce/cce: [0, 1]). `field` prefixes messages
  // ("batch" gives "batch.inputs"; "" gives "inputs"); its names are built
  // only when a check fails. Pass targets == nullptr for input-only checks.
  absl::Status ValidateBatch(const MatrixView& inputs,
                             const MatrixView* targets, Loss loss,
                             const FieldPath& field, int64_t max_rows) const;

  // The calls below assume ValidateBatch passed (they assert shapes). Each
  // returns RESOURCE_EXHAUSTED when its scratch is over
  // options.max_scratch_bytes (saying what it needs and the limit) or an
  // allocation fails, and options.stop's status when that stops it; no
  // exception leaves them, and a failed call changes nothing.

  absl::StatusOr<ForwardResult> Forward(const MatrixView& inputs,
                                        bool include_layers,
                                        const CallOptions& options = {}) const;

  // Gradients under `loss` (which must suit the output activation —
  // CheckLossActivation), parameters untouched.
  absl::StatusOr<GradientResult> ComputeGradients(
      const MatrixView& inputs, const MatrixView& targets, Loss loss,
      const CallOptions& options = {}) const;

  // One optimizer step under spec().loss. A non-finite loss or gradient sets
  // `diverged` and leaves parameters and optimizer state unchanged; the step
  // counter advances either way. options.stop is asked last right before
  // the update is applied: after that the step cannot fail.
  absl::StatusOr<StepResult> TrainStep(const MatrixView& inputs,
                                       const MatrixView& targets,
                                       const CallOptions& options = {});

  // Loss, accuracy and statistics over a dataset; no update.
  absl::StatusOr<EvalResult> Evaluate(const MatrixView& inputs,
                                      const MatrixView& targets,
                                      const CallOptions& options = {}) const;

 private:
  Network(NetworkSpec spec, std::unique_ptr<NetworkImpl> impl);

  // ValidateBatch's checks, under the given field names.
  absl::Status CheckBatch(const MatrixView& inputs, const MatrixView* targets,
                          Loss loss, absl::string_view inputs_field,
                          absl::string_view targets_field,
                          int64_t max_rows) const;

  NetworkSpec spec_;
  std::unique_ptr<NetworkImpl> impl_;
};

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_NETWORK_H_
