// DenseNetwork<T>: the MLP in one precision. Shapes: n = rows of the batch,
// units_l = spec.layers[l].units, fan_in_l = units_{l-1} (input_size for
// l = 0). Every matrix is row-major, one row per sample.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "server/engine/activation.h"
#include "server/engine/init.h"
#include "server/engine/loss.h"
#include "server/engine/network_impl.h"
#include "server/engine/optimizer.h"

namespace satlab::engine {
namespace {

// Evaluate/ComputeGradients process a large batch in chunks of about this
// many elements of the widest layer, to bound memory.
constexpr int64_t kChunkElements = int64_t{1} << 16;

// The view as a [rows, cols] matrix of T: mapped without a copy when it is
// already in T, otherwise rounded once into *storage.
template <typename T>
Eigen::Map<const RowMatrix<T>> AsMatrix(const MatrixView& view,
                                        RowMatrix<T>* storage) {
  using Other = std::conditional_t<std::is_same_v<T, float>, double, float>;
  const T* same;
  const Other* other;
  if constexpr (std::is_same_v<T, float>) {
    same = view.f32;
    other = view.f64;
  } else {
    same = view.f64;
    other = view.f32;
  }
  if (same != nullptr) return {same, view.rows, view.cols};
  *storage = Eigen::Map<const RowMatrix<Other>>(other, view.rows, view.cols)
                 .template cast<T>();
  return {storage->data(), view.rows, view.cols};
}

// Rows classified correctly: argmax(a) == argmax(y) for several outputs,
// (a >= 0.5) == (y >= 0.5) for one.
template <typename T>
int64_t CountCorrect(const RowMatrix<T>& a, const ConstRowRef<T>& y) {
  if (a.cols() == 1) {
    return ((a.array() >= T(0.5)) == (y.array() >= T(0.5))).count();
  }
  int64_t correct = 0;
  for (Eigen::Index r = 0; r < a.rows(); ++r) {
    Eigen::Index predicted, expected;
    a.row(r).maxCoeff(&predicted);
    y.row(r).maxCoeff(&expected);
    correct += predicted == expected;
  }
  return correct;
}

template <typename T>
bool AllFinite(const ParamSet<T>& s) {
  for (const auto& w : s.weights) {
    if (!w.allFinite()) return false;
  }
  for (const auto& b : s.biases) {
    if (!b.allFinite()) return false;
  }
  return true;
}

template <typename T>
class DenseNetwork final : public NetworkImpl {
 public:
  explicit DenseNetwork(const NetworkSpec& spec)
      : loss_(spec.loss),
        theta_(spec.saturation_threshold),
        params_(InitialParameters<T>(spec)),
        optimizer_(spec.optimizer, params_),
        workspace_(MakeWorkspace()) {
    widest_ = spec.input_size;
    for (const LayerSpec& layer : spec.layers) {
      layers_.push_back({&GetActivationOps<T>(layer.activation),
                         static_cast<T>(layer.leaky_relu_slope)});
      widest_ = std::max<int64_t>(widest_, layer.units);
    }
  }

  std::unique_ptr<NetworkImpl> Clone() const override {
    return std::make_unique<DenseNetwork>(*this);
  }

  int64_t step() const override { return step_; }
  int64_t samples_seen() const override { return samples_seen_; }

  AnyMatrix weights(int layer) const override {
    return RowMatrix<T>(params_.weights[layer]);
  }
  AnyMatrix biases(int layer) const override {
    return RowMatrix<T>(params_.biases[layer]);
  }

  void SetParameters(absl::Span<const LayerParams> params,
                     bool reset_optimizer_state) override {
    for (size_t l = 0; l < params.size(); ++l) {
      params_.weights[l] = params[l].weights.template cast<T>();
      params_.biases[l] = params[l].biases.template cast<T>();
    }
    if (reset_optimizer_state) optimizer_.Reset();
  }

  ForwardResult Forward(const MatrixView& inputs,
                        bool include_layers) const override {
    Workspace ws = MakeWorkspace();
    const auto x = AsMatrix<T>(inputs, &ws.x_storage);
    ForwardPass(x, &ws);
    ForwardResult result;
    if (!include_layers) {
      result.outputs = std::move(ws.a.back());
      return result;
    }
    result.outputs = ws.a.back();
    for (size_t l = 0; l < layers_.size(); ++l) {
      result.z.emplace_back(std::move(ws.z[l]));
      result.a.emplace_back(std::move(ws.a[l]));
    }
    return result;
  }

  GradientResult ComputeGradients(const MatrixView& inputs,
                                  const MatrixView& targets,
                                  Loss loss) const override {
    Workspace ws = MakeWorkspace();
    RowMatrix<T> output_delta(inputs.rows, params_.biases.back().cols());
    RunBatch(inputs, targets, loss, &ws, &output_delta);
    const int64_t n = inputs.rows;
    GradientResult result;
    result.loss = loss;
    result.loss_value = ws.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(ws.correct) / static_cast<double>(n);
    result.stats = FinishStats(ws, n);
    for (size_t l = 0; l < layers_.size(); ++l) {
      result.weight_grads.emplace_back(std::move(ws.grads.weights[l]));
      result.bias_grads.emplace_back(RowMatrix<T>(ws.grads.biases[l]));
    }
    result.output_delta = std::move(output_delta);
    return result;
  }

  EvalResult Evaluate(const MatrixView& inputs,
                      const MatrixView& targets) const override {
    Workspace ws = MakeWorkspace();
    RunBatch(inputs, targets, loss_, &ws, nullptr);
    const int64_t n = inputs.rows;
    EvalResult result;
    result.loss = ws.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(ws.correct) / static_cast<double>(n);
    result.samples = n;
    result.stats = FinishStats(ws, n);
    return result;
  }

  StepResult TrainStep(const MatrixView& inputs,
                       const MatrixView& targets) override {
    // One chunk over the whole batch in the persistent workspace: after the
    // first step of a given batch size nothing is reallocated.
    Workspace& ws = workspace_;
    const int64_t n = inputs.rows;
    const auto x = AsMatrix<T>(inputs, &ws.x_storage);
    const auto y = AsMatrix<T>(targets, &ws.y_storage);
    BeginSums(&ws);
    ForwardPass(x, &ws);
    Backward(x, y, loss_, n, &ws);

    StepResult result;
    result.batch_size = n;
    result.loss = ws.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(ws.correct) / static_cast<double>(n);
    result.stats = FinishStats(ws, n);
    // Nothing is applied unless the loss, every gradient and every updated
    // value are finite.
    result.diverged = !std::isfinite(result.loss) || !AllFinite(ws.grads) ||
                      !optimizer_.Step(ws.grads, &params_);
    ++step_;
    samples_seen_ += n;
    result.step = step_;
    return result;
  }

 private:
  struct Layer {
    const ActivationOps<T>* ops;
    T slope;  // leaky_relu only
  };

  // Running sums of one layer's statistics over the rows seen so far.
  struct LayerSums {
    double derivative_sum = 0;  // sum of f'(z) over (unit, sample)
    int64_t saturated = 0;      // count of f'(z) < theta max f'
    double activation_sum = 0;  // sum of a over (unit, sample)
    Eigen::Array<T, 1, Eigen::Dynamic> max_z;  // [1, units]: max_x z
  };

  // Scratch space of one pass; TrainStep keeps one alive across steps.
  struct Workspace {
    std::vector<RowMatrix<T>> z;        // Z_l [n, units_l]
    std::vector<RowMatrix<T>> a;        // A_l = f(Z_l) [n, units_l]
    std::vector<RowMatrix<T>> d;        // f'(Z_l) [n, units_l]
    std::vector<RowMatrix<T>> delta;    // Delta_l = dC/dZ_l [n, units_l]
    RowMatrix<T> output_delta;          // per-sample delta [n, units_L]
    ParamSet<T> grads;                  // dW_l [fan_in, units], db_l [1, units]
    RowMatrix<T> x_storage, y_storage;  // inputs/targets in the other dtype
    std::vector<LayerSums> sums;
    double loss_sum = 0;     // sum of C_x
    double delta_sq = 0;     // ||delta||_F^2 (per-sample delta)
    double residual_sq = 0;  // ||a - y||_F^2
    int64_t correct = 0;
  };

  // Per-layer slots only; matrices get their sizes on first use (Forward
  // never allocates gradient buffers).
  Workspace MakeWorkspace() const {
    Workspace ws;
    const size_t count = params_.weights.size();
    ws.z.resize(count);
    ws.a.resize(count);
    ws.d.resize(count);
    ws.delta.resize(count);
    ws.sums.resize(count);
    ws.grads.weights.resize(count);
    ws.grads.biases.resize(count);
    return ws;
  }

  // Zeroes the running sums and the gradient accumulators (sized like the
  // parameters; no reallocation when they already are).
  void BeginSums(Workspace* ws) const {
    for (size_t l = 0; l < ws->sums.size(); ++l) {
      LayerSums& s = ws->sums[l];
      s.derivative_sum = 0;
      s.saturated = 0;
      s.activation_sum = 0;
      s.max_z.setConstant(params_.biases[l].cols(),
                          -std::numeric_limits<T>::infinity());
      ws->grads.weights[l].setZero(params_.weights[l].rows(),
                                   params_.weights[l].cols());
      ws->grads.biases[l].setZero(params_.biases[l].cols());
    }
    ws->loss_sum = ws->delta_sq = ws->residual_sq = 0;
    ws->correct = 0;
  }

  // Z_l = A_{l-1} W_l + b_l, A_l = f(Z_l) for every layer; A_0 = x [n, in].
  void ForwardPass(const ConstRowRef<T>& x, Workspace* ws) const {
    for (size_t l = 0; l < layers_.size(); ++l) {
      RowMatrix<T>& z = ws->z[l];
      // [n, units] = [n, fan_in] x [fan_in, units]
      if (l == 0) {
        z.noalias() = x * params_.weights[l];
      } else {
        z.noalias() = ws->a[l - 1] * params_.weights[l];
      }
      z.rowwise() += params_.biases[l];  // + [1, units] on every row
      layers_[l].ops->forward(z, layers_[l].slope, &ws->a[l]);
    }
  }

  // After ForwardPass over a chunk (x [m, in], y [m, out]) of a batch of
  // `total_rows`: adds the chunk's loss, statistics and its share of the
  // gradient of the mean loss to *ws.
  void Backward(const ConstRowRef<T>& x, const ConstRowRef<T>& y, Loss loss,
                int64_t total_rows, Workspace* ws) const {
    const size_t last = layers_.size() - 1;
    // f'(Z_l) [m, units_l] and the statistics that need it.
    for (size_t l = 0; l <= last; ++l) {
      const ActivationOps<T>& ops = *layers_[l].ops;
      ops.derivative(ws->z[l], ws->a[l], layers_[l].slope, &ws->d[l]);
      LayerSums& s = ws->sums[l];
      const T threshold = static_cast<T>(theta_ * ops.max_derivative);
      s.derivative_sum += static_cast<double>(ws->d[l].sum());
      s.saturated += (ws->d[l].array() < threshold).count();
      s.activation_sum += static_cast<double>(ws->a[l].sum());
      if (ops.can_die) {
        // Column maxima of Z_l, one contiguous row at a time (row-major).
        for (Eigen::Index r = 0; r < ws->z[l].rows(); ++r) {
          s.max_z = s.max_z.max(ws->z[l].row(r).array());
        }
      }
    }
    const RowMatrix<T>& a_out = ws->a[last];
    ws->loss_sum +=
        static_cast<double>(LossSum<T>(loss, ws->z[last], a_out, y));
    ws->correct += CountCorrect<T>(a_out, y);
    // Per-sample delta = dC_x/dZ_L [m, out].
    OutputDelta<T>(loss, layers_[last].ops->id, a_out, ws->d[last], y,
                   &ws->output_delta);
    ws->delta_sq += static_cast<double>(ws->output_delta.squaredNorm());
    ws->residual_sq += static_cast<double>((a_out - y).squaredNorm());

    // Delta_L = delta / n: gradient of the mean loss w.r.t. Z_L [m, out].
    ws->delta[last].noalias() = ws->output_delta / static_cast<T>(total_rows);
    for (size_t l = last + 1; l-- > 0;) {
      RowMatrix<T>& delta = ws->delta[l];
      // dW_l += A_{l-1}^T Delta_l: [fan_in, units] = [fan_in, m] x [m, units]
      if (l == 0) {
        ws->grads.weights[l].noalias() += x.transpose() * delta;
      } else {
        ws->grads.weights[l].noalias() += ws->a[l - 1].transpose() * delta;
      }
      // db_l += colsum(Delta_l): [1, units]
      ws->grads.biases[l] += delta.colwise().sum();
      if (l == 0) break;  // no gradient w.r.t. the input X
      // Delta_{l-1} = (Delta_l W_l^T) ⊙ f'(Z_{l-1}):
      // [m, fan_in] = [m, units] x [units, fan_in], then elementwise.
      ws->delta[l - 1].noalias() = delta * params_.weights[l].transpose();
      ws->delta[l - 1].array() *= ws->d[l - 1].array();
    }
  }

  // Forward + Backward over a whole batch in chunks; the per-sample output
  // delta goes to *output_delta [n, out] when given.
  void RunBatch(const MatrixView& inputs, const MatrixView& targets, Loss loss,
                Workspace* ws, RowMatrix<T>* output_delta) const {
    const auto x = AsMatrix<T>(inputs, &ws->x_storage);
    const auto y = AsMatrix<T>(targets, &ws->y_storage);
    const int64_t n = inputs.rows;
    const int64_t chunk = std::max<int64_t>(256, kChunkElements / widest_);
    BeginSums(ws);
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t rows = std::min(chunk, n - start);
      const auto x_chunk = x.middleRows(start, rows);
      const auto y_chunk = y.middleRows(start, rows);
      ForwardPass(x_chunk, ws);
      Backward(x_chunk, y_chunk, loss, n, ws);
      if (output_delta != nullptr) {
        output_delta->middleRows(start, rows) = ws->output_delta;
      }
    }
  }

  SaturationStats FinishStats(const Workspace& ws, int64_t n) const {
    SaturationStats stats;
    stats.layers.reserve(layers_.size());
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LayerSums& s = ws.sums[l];
      const double count =
          static_cast<double>(n) * static_cast<double>(s.max_z.size());
      LayerStats& out = stats.layers.emplace_back();
      out.mean_derivative = s.derivative_sum / count;
      out.saturated_fraction = static_cast<double>(s.saturated) / count;
      out.dead_units =
          layers_[l].ops->can_die ? (s.max_z <= T(0)).count() : int64_t{0};
      out.weight_gradient_norm =
          static_cast<double>(ws.grads.weights[l].norm());
      out.bias_gradient_norm = static_cast<double>(ws.grads.biases[l].norm());
      out.mean_activation = s.activation_sum / count;
    }
    // ||delta||_F / ||a - y||_F; 1 when a == y.
    stats.output_attenuation =
        ws.residual_sq == 0
            ? 1.0
            : std::sqrt(ws.delta_sq) / std::sqrt(ws.residual_sq);
    return stats;
  }

  Loss loss_;
  double theta_;
  std::vector<Layer> layers_;
  int64_t widest_ = 1;  // largest of input_size and units_l
  ParamSet<T> params_;  // W_l [fan_in, units], b_l [1, units]
  Optimizer<T> optimizer_;
  int64_t step_ = 0;
  int64_t samples_seen_ = 0;
  Workspace workspace_;  // TrainStep only
};

}  // namespace

std::unique_ptr<NetworkImpl> MakeNetworkImpl(const NetworkSpec& spec) {
  if (spec.dtype == DType::kFloat32) {
    return std::make_unique<DenseNetwork<float>>(spec);
  }
  return std::make_unique<DenseNetwork<double>>(spec);
}

}  // namespace satlab::engine
