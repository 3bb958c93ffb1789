#include "server/engine/network.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/engine/check.h"
#include "server/engine/loss.h"
#include "server/engine/network_impl.h"

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

}  // namespace

Network::Network(NetworkSpec spec, std::unique_ptr<NetworkImpl> impl)
    : spec_(std::move(spec)), impl_(std::move(impl)) {}

Network::~Network() = default;

absl::StatusOr<std::unique_ptr<Network>> Network::Create(
    const NetworkSpec& spec, const Limits& limits) {
  if (absl::Status s = ValidateSpec(spec, limits); !s.ok()) return s;
  return std::unique_ptr<Network>(new Network(spec, MakeNetworkImpl(spec)));
}

std::unique_ptr<Network> Network::Clone() const {
  return std::unique_ptr<Network>(new Network(spec_, impl_->Clone()));
}

int64_t Network::step() const { return impl_->step(); }
int64_t Network::samples_seen() const { return impl_->samples_seen(); }
AnyMatrix Network::weights(int layer) const { return impl_->weights(layer); }
AnyMatrix Network::biases(int layer) const { return impl_->biases(layer); }

absl::Status Network::SetParameters(absl::Span<const LayerParams> params,
                                    bool reset_optimizer_state) {
  if (static_cast<int>(params.size()) != num_layers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers: expected ", num_layers(),
                     " entries (one per layer), got ", params.size()));
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
                                    absl::string_view field,
                                    int64_t max_rows) const {
  // An empty `field` names top-level request fields (Forward's `inputs`).
  const std::string dot = field.empty() ? "" : ".";
  const std::string inputs_field = absl::StrCat(field, dot, "inputs");
  if (absl::Status s = CheckBatchMatrix(inputs, -1, input_size(), dtype(),
                                        inputs_field, max_rows, "");
      !s.ok()) {
    return s;
  }
  if (targets == nullptr) return absl::OkStatus();
  const std::string targets_field = absl::StrCat(field, dot, "targets");
  if (absl::Status s =
          CheckBatchMatrix(*targets, inputs.rows, output_size(), dtype(),
                           targets_field, max_rows, inputs_field);
      !s.ok()) {
    return s;
  }
  if (!IsValidLoss(loss)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss: expected mse, bce or cce, got ", static_cast<int>(loss)));
  }
  if (loss == Loss::kMse) return absl::OkStatus();
  return targets->f32 != nullptr
             ? CheckUnitRange(targets->f32, targets->rows, targets->cols, loss,
                              targets_field)
             : CheckUnitRange(targets->f64, targets->rows, targets->cols, loss,
                              targets_field);
}

ForwardResult Network::Forward(const MatrixView& inputs,
                               bool include_layers) const {
  return impl_->Forward(inputs, include_layers);
}

GradientResult Network::ComputeGradients(const MatrixView& inputs,
                                         const MatrixView& targets,
                                         Loss loss) const {
  return impl_->ComputeGradients(inputs, targets, loss);
}

StepResult Network::TrainStep(const MatrixView& inputs,
                              const MatrixView& targets) {
  return impl_->TrainStep(inputs, targets);
}

EvalResult Network::Evaluate(const MatrixView& inputs,
                             const MatrixView& targets) const {
  return impl_->Evaluate(inputs, targets);
}

}  // namespace satlab::engine
