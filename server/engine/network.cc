#include "server/engine/network.h"

#include <algorithm>
#include <limits>
#include <new>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/engine/check.h"
#include "server/engine/loss.h"
#include "server/engine/native_engine.h"
#include "server/engine/network_impl.h"
#include "server/engine/optimizer.h"

namespace satlab::engine {
namespace {

// Shape, finiteness and (for `range_loss` bce/cce) [0, 1] range of one
// batch tensor. `rows` < 0 means "any number of rows >= 1".
absl::Status CheckBatchMatrix(const MatrixView& m, int64_t rows, int64_t cols,
                              DType dtype, absl::string_view field,
                              int64_t max_rows, absl::string_view rows_from) {
  if (m.rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected at least 1 row, got ", m.rows));
  }
  if (rows < 0 && m.rows > max_rows) {
    return absl::ResourceExhaustedError(absl::StrCat(
        field, ": expected at most ", max_rows, " rows, got ", m.rows));
  }
  if (rows >= 0 && m.rows != rows) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", rows,
                                                   " rows (as ", rows_from,
                                                   "), got ", m.rows));
  }
  if (m.cols != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected ", cols, " columns, got ", m.cols));
  }
  if ((m.f32 == nullptr) == (m.f64 == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected exactly one of float32 or float64 data, got ",
        m.f32 == nullptr ? "none" : "both"));
  }
  if (m.f32 != nullptr) return CheckFinite(m.f32, m.rows, m.cols, field);
  if (absl::Status s = CheckFinite(m.f64, m.rows, m.cols, field); !s.ok()) {
    return s;
  }
  // float64 data for a float32 network is rounded once; it must fit.
  if (dtype == DType::kFloat32) {
    return CheckFitsFloat32(m.f64, m.rows, m.cols, field);
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CheckUnitRange(const T* data, int64_t rows, int64_t cols,
                            Loss loss, absl::string_view field) {
  const T* end = data + rows * cols;
  const T* bad =
      std::find_if(data, end, [](T v) { return !(v >= 0 && v <= 1); });
  if (bad == end) return absl::OkStatus();
  const int64_t index = bad - data;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", LossName(loss),
                   " needs targets in [0, 1], got ", static_cast<double>(*bad),
                   " at (", index / cols, ", ", index % cols, ")"));
}

int64_t DTypeBytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 8; }

// a * b, saturating at INT64_MAX (both >= 0).
int64_t SaturatingMul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    return std::numeric_limits<int64_t>::max();
  }
  return a * b;
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b
             ? std::numeric_limits<int64_t>::max()
             : a + b;
}

// Runs one engine call: a std::bad_alloc (from Eigen or the standard
// library) becomes RESOURCE_EXHAUSTED naming `what`.
template <typename F>
auto Guarded(absl::string_view what, F&& call) -> decltype(call()) {
  try {
    return call();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what,
                     ": the server ran out of memory; retry with a "
                     "smaller batch or network, or later"));
  }
}

absl::Status ScratchError(absl::string_view what, int64_t rows, int64_t needed,
                          int64_t limit) {
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " needs ", needed, " bytes of scratch for ", rows,
      " rows of this network, over the server's per-call scratch limit of ",
      limit, " bytes; send fewer rows"));
}

}  // namespace

int64_t CallScratchBytes(const NetworkSpec& spec, CallKind kind, int64_t rows) {
  // Per-sample values (Z, A; and for training f'(Z), deltas, the output
  // delta) plus a converted copy of the batch; then, for training, the
  // gradients and two [1, units] vectors per layer, and for a step the
  // staged update; 64 bytes of alignment padding per buffer.
  const bool training = kind != CallKind::kForward;
  int64_t units = 0, gradients = 0, buffers = 0;
  int64_t fan_in = spec.input_size;
  for (const LayerSpec& layer : spec.layers) {
    units += layer.units;
    gradients += int64_t{fan_in} * layer.units + 2 * layer.units;
    buffers += training ? 7 : 2;
    fan_in = layer.units;
  }
  const int64_t outputs = spec.layers.empty() ? 0 : spec.layers.back().units;
  const int64_t per_row = training
                              ? 4 * units + outputs + spec.input_size + outputs
                              : 2 * units + spec.input_size;
  if (kind == CallKind::kComputeGradients || kind == CallKind::kEvaluate) {
    rows = std::min(rows, BlockRows(spec));
  }
  int64_t values = SaturatingMul(rows, per_row);
  if (training) values = SaturatingAdd(values, gradients);
  if (kind == CallKind::kTrainStep) {
    // The update's staged optimizer state (Optimizer::PrepareStaging; the
    // new parameters go over the gradients): two tensors per layer and set.
    const int64_t sets = OptimizerSlotCount(spec.optimizer);
    values = SaturatingAdd(values, SaturatingMul(ParameterCount(spec), sets));
    buffers += 2 * static_cast<int64_t>(spec.layers.size()) * sets;
  }
  return SaturatingAdd(SaturatingMul(values, DTypeBytes(spec.dtype)),
                       64 * (buffers + 3));
}

int64_t StateBytes(const NetworkSpec& spec) {
  const OptimizerSpec& o = spec.optimizer;
  const int64_t copies = 1 + (o.kind == OptimizerKind::kAdam ? 2
                              : o.momentum > 0               ? 1
                                                             : 0);
  return SaturatingMul(SaturatingMul(ParameterCount(spec), copies),
                       DTypeBytes(spec.dtype));
}

Network::Network(NetworkSpec spec, std::unique_ptr<NetworkImpl> impl)
    : spec_(std::move(spec)), impl_(std::move(impl)) {}

Network::~Network() = default;

absl::StatusOr<std::unique_ptr<Network>> Network::Create(
    const NetworkSpec& spec, const Limits& limits, const SpecFields& fields) {
  if (absl::Status s = ValidateSpec(spec, limits, fields); !s.ok()) return s;
  return Guarded("network", [&]() -> absl::StatusOr<std::unique_ptr<Network>> {
    return std::unique_ptr<Network>(new Network(spec, NewNetworkImpl(spec)));
  });
}

absl::StatusOr<std::unique_ptr<Network>> Network::Clone() const {
  return Guarded("network", [&]() -> absl::StatusOr<std::unique_ptr<Network>> {
    return std::unique_ptr<Network>(new Network(spec_, impl_->Clone()));
  });
}

namespace {

absl::string_view DTypeName(DType dtype) {
  return dtype == DType::kFloat32 ? "float32" : "float64";
}

// One state tensor: dtype, shape [rows, cols] and finite values.
absl::Status CheckStateTensor(const AnyMatrix& m, int64_t rows, int64_t cols,
                              DType dtype, absl::string_view field) {
  const auto* f32 = std::get_if<RowMatrix<float>>(&m);
  const auto* f64 = std::get_if<RowMatrix<double>>(&m);
  const DType got = f32 != nullptr ? DType::kFloat32 : DType::kFloat64;
  if (got != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected ", DTypeName(dtype), ", got ", DTypeName(got)));
  }
  const int64_t got_rows = f32 != nullptr ? f32->rows() : f64->rows();
  const int64_t got_cols = f32 != nullptr ? f32->cols() : f64->cols();
  if (got_rows != rows || got_cols != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected shape ", ShapeString(rows, cols),
                     ", got ", ShapeString(got_rows, got_cols)));
  }
  return f32 != nullptr ? CheckFinite(f32->data(), rows, cols, field)
                        : CheckFinite(f64->data(), rows, cols, field);
}

// Per-layer weights and biases of `spec`'s shapes, under `field`.
absl::Status CheckStateParams(const NetworkSpec& spec,
                              const std::vector<AnyMatrix>& weights,
                              const std::vector<AnyMatrix>& biases,
                              absl::string_view field) {
  const size_t layers = spec.layers.size();
  if (weights.size() != layers || biases.size() != layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected ", layers,
        " weights and biases (one per layer), got ", weights.size(),
        " weights and ", biases.size(), " biases"));
  }
  int64_t fan_in = spec.input_size;
  for (size_t l = 0; l < layers; ++l) {
    const int64_t units = spec.layers[l].units;
    if (absl::Status s =
            CheckStateTensor(weights[l], fan_in, units, spec.dtype,
                             absl::StrCat(field, ".weights[", l, "]"));
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            CheckStateTensor(biases[l], 1, units, spec.dtype,
                             absl::StrCat(field, ".biases[", l, "]"));
        !s.ok()) {
      return s;
    }
    fan_in = units;
  }
  return absl::OkStatus();
}

absl::Status CheckCounter(int64_t value, absl::string_view field) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected >= 0, got ", value));
}

// Everything FromState needs before it builds anything.
absl::Status CheckState(const NetworkState& state, const Limits& limits,
                        absl::string_view field) {
  const NetworkSpec& spec = state.spec;
  if (!spec.init.explicit_params.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".spec.init.explicit_params: expected none (the parameters are ",
        field, ".weights and ", field, ".biases), got ",
        spec.init.explicit_params.size(), " entries"));
  }
  // How the parameters were first drawn no longer matters; an explicit
  // init's parameters are not kept in the spec, so it is checked as zeros.
  if (spec.init.scheme == InitScheme::kExplicit) {
    NetworkSpec checked = spec;
    checked.init.scheme = InitScheme::kZeros;
    if (absl::Status s = ValidateSpec(checked, limits,
                                      SpecFields(absl::StrCat(field, ".spec")));
        !s.ok()) {
      return s;
    }
  } else if (absl::Status s = ValidateSpec(
                 spec, limits, SpecFields(absl::StrCat(field, ".spec")));
             !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCounter(state.step, absl::StrCat(field, ".step"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCounter(state.samples_seen,
                                    absl::StrCat(field, ".samples_seen"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCounter(state.optimizer_updates,
                                    absl::StrCat(field, ".optimizer_updates"));
      !s.ok()) {
    return s;
  }
  if (spec.optimizer.kind != OptimizerKind::kAdam &&
      state.optimizer_updates != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        ".optimizer_updates: expected 0 (only adam counts updates), got ",
        state.optimizer_updates));
  }
  if (absl::Status s =
          CheckStateParams(spec, state.weights, state.biases, field);
      !s.ok()) {
    return s;
  }
  const size_t slots = static_cast<size_t>(OptimizerSlotCount(spec.optimizer));
  if (state.optimizer_slots.size() != slots) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".optimizer_slots: expected ", slots,
                     " (sgd: 0, sgd with momentum: 1, adam: 2), got ",
                     state.optimizer_slots.size()));
  }
  for (size_t k = 0; k < slots; ++k) {
    const NetworkState::Slot& slot = state.optimizer_slots[k];
    if (absl::Status s =
            CheckStateParams(spec, slot.weights, slot.biases,
                             absl::StrCat(field, ".optimizer_slots[", k, "]"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Network>> Network::FromState(
    NetworkState state, const Limits& limits, absl::string_view field) {
  if (absl::Status s = CheckState(state, limits, field); !s.ok()) return s;
  return Guarded("network", [&]() -> absl::StatusOr<std::unique_ptr<Network>> {
    std::unique_ptr<NetworkImpl> impl = NewNetworkImpl(state.spec, &state);
    return std::unique_ptr<Network>(
        new Network(std::move(state.spec), std::move(impl)));
  });
}

absl::StatusOr<NetworkState> Network::ExportState() const {
  return Guarded("network state", [&]() -> absl::StatusOr<NetworkState> {
    NetworkState state;
    state.spec = spec_;
    state.spec.init.explicit_params.clear();
    impl_->ExportState(&state);
    return state;
  });
}

int64_t Network::step() const { return impl_->step(); }
int64_t Network::samples_seen() const { return impl_->samples_seen(); }
AnyMatrix Network::weights(int layer) const { return impl_->weights(layer); }
AnyMatrix Network::biases(int layer) const { return impl_->biases(layer); }

absl::Status Network::SetParameters(absl::Span<const LayerParams> params,
                                    bool reset_optimizer_state) {
  if (static_cast<int>(params.size()) != num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layers: expected ", num_layers(), " layers, got ", params.size()));
  }
  int64_t fan_in = spec_.input_size;
  for (int l = 0; l < num_layers(); ++l) {
    const int64_t units = spec_.layers[l].units;
    if (absl::Status s = CheckLayerParams(params[l], fan_in, units, spec_.dtype,
                                          absl::StrCat("layers[", l, "]"));
        !s.ok()) {
      return s;
    }
    fan_in = units;
  }
  impl_->SetParameters(params, reset_optimizer_state);
  return absl::OkStatus();
}

absl::Status Network::ValidateBatch(const MatrixView& inputs,
                                    const MatrixView* targets, Loss loss,
                                    const FieldPath& field,
                                    int64_t max_rows) const {
  absl::Status s =
      CheckBatch(inputs, targets, loss, "inputs", "targets", max_rows);
  if (s.ok() || field.empty()) return s;
  // Checked again under the path's names, built only now, for the message.
  return CheckBatch(inputs, targets, loss, field.Join("inputs"),
                    field.Join("targets"), max_rows);
}

absl::Status Network::CheckBatch(const MatrixView& inputs,
                                 const MatrixView* targets, Loss loss,
                                 absl::string_view inputs_field,
                                 absl::string_view targets_field,
                                 int64_t max_rows) const {
  if (absl::Status s = CheckBatchMatrix(inputs, -1, input_size(), dtype(),
                                        inputs_field, max_rows, "");
      !s.ok()) {
    return s;
  }
  if (targets == nullptr) return absl::OkStatus();
  if (absl::Status s =
          CheckBatchMatrix(*targets, inputs.rows, output_size(), dtype(),
                           targets_field, max_rows, inputs_field);
      !s.ok()) {
    return s;
  }
  if (!IsValidLoss(loss)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss: expected ", LossNameList(), ", got ", static_cast<int>(loss)));
  }
  if (!GetLossOps<double>(loss).unit_targets) return absl::OkStatus();
  return targets->f32 != nullptr
             ? CheckUnitRange(targets->f32, targets->rows, targets->cols, loss,
                              targets_field)
             : CheckUnitRange(targets->f64, targets->rows, targets->cols, loss,
                              targets_field);
}

absl::StatusOr<ForwardResult> Network::Forward(
    const MatrixView& inputs, bool include_layers,
    const CallOptions& options) const {
  // As many rows per chunk as the scratch bound allows, in whole blocks;
  // all of them when they fit.
  const int64_t n = inputs.rows;
  const int64_t limit = options.max_scratch_bytes;
  int64_t chunk = n;
  if (CallScratchBytes(spec_, CallKind::kForward, n) > limit) {
    const int64_t block = BlockRows(spec_);
    const int64_t per_block =
        CallScratchBytes(spec_, CallKind::kForward, block);
    if (per_block > limit) {
      return ScratchError("Forward", block, per_block, limit);
    }
    chunk = block;
    while (chunk + block < n && CallScratchBytes(spec_, CallKind::kForward,
                                                 chunk + block) <= limit) {
      chunk += block;
    }
  }
  return Guarded("Forward", [&] {
    return impl_->Forward(inputs, include_layers, chunk, options.stop);
  });
}

absl::StatusOr<GradientResult> Network::ComputeGradients(
    const MatrixView& inputs, const MatrixView& targets, Loss loss,
    const CallOptions& options) const {
  const int64_t needed =
      CallScratchBytes(spec_, CallKind::kComputeGradients, inputs.rows);
  if (needed > options.max_scratch_bytes) {
    return ScratchError("ComputeGradients",
                        std::min(inputs.rows, BlockRows(spec_)), needed,
                        options.max_scratch_bytes);
  }
  return Guarded("ComputeGradients", [&] {
    return impl_->ComputeGradients(inputs, targets, loss, options.stop);
  });
}

absl::StatusOr<StepResult> Network::TrainStep(const MatrixView& inputs,
                                              const MatrixView& targets,
                                              const CallOptions& options) {
  const int64_t needed =
      CallScratchBytes(spec_, CallKind::kTrainStep, inputs.rows);
  if (needed > options.max_scratch_bytes) {
    return ScratchError("TrainStep", inputs.rows, needed,
                        options.max_scratch_bytes);
  }
  return Guarded("TrainStep", [&] {
    return impl_->TrainStep(inputs, targets, options.stop);
  });
}

absl::StatusOr<EvalResult> Network::Evaluate(const MatrixView& inputs,
                                             const MatrixView& targets,
                                             const CallOptions& options) const {
  const int64_t needed =
      CallScratchBytes(spec_, CallKind::kEvaluate, inputs.rows);
  if (needed > options.max_scratch_bytes) {
    return ScratchError("Evaluate", std::min(inputs.rows, BlockRows(spec_)),
                        needed, options.max_scratch_bytes);
  }
  return Guarded("Evaluate", [&] {
    return impl_->Evaluate(inputs, targets, options.stop);
  });
}

}  // namespace satlab::engine
