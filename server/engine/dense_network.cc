// DenseNetwork<T>: the MLP in one precision. Shapes: n = rows of the batch,
// units_l = spec.layers[l].units, fan_in_l = units_{l-1} (input_size for
// l = 0). Every matrix is row-major, one row per sample.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "server/engine/activation.h"
#include "server/engine/gemm.h"
#include "server/engine/init.h"
#include "server/engine/kernels.h"
#include "server/engine/loss.h"
#include "server/engine/network_impl.h"
#include "server/engine/optimizer.h"
#include "server/engine/step_team.h"

namespace satlab::engine {

int64_t BlockRows(const NetworkSpec& spec) {
  // Forward, Evaluate and ComputeGradients process a large batch in blocks
  // of about this many elements of the widest layer, to bound memory.
  constexpr int64_t kBatchBlockElements = int64_t{1} << 16;
  int64_t widest = spec.input_size;
  for (const LayerSpec& layer : spec.layers) {
    widest = std::max<int64_t>(widest, layer.units);
  }
  // A multiple of 16 rows, so that every block of a float or double
  // buffer starts 64-byte aligned (see Forward).
  const int64_t rows =
      kBatchBlockElements / std::max<int64_t>(1, widest) / 16 * 16;
  return std::max<int64_t>(256, rows);
}

namespace {

// Rows [start, start + rows) of a view.
MatrixView RowsOf(const MatrixView& view, int64_t start, int64_t rows) {
  MatrixView out = view;
  if (out.f32 != nullptr) out.f32 += start * view.cols;
  if (out.f64 != nullptr) out.f64 += start * view.cols;
  out.rows = rows;
  return out;
}

// The stop check's verdict; OK when there is none.
absl::Status CheckStop(const StopCheck& stop) {
  return stop ? stop() : absl::OkStatus();
}

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
  Reallocate(storage, view.rows, view.cols);
  *storage = Eigen::Map<const RowMatrix<Other>>(other, view.rows, view.cols)
                 .template cast<T>();
  return {storage->data(), view.rows, view.cols};
}

// Rows classified correctly: argmax(a) == argmax(y) for several outputs,
// (a >= 0.5) == (y >= 0.5) for one.
template <typename T>
int64_t CountCorrect(const ConstRowRef<T>& a, const ConstRowRef<T>& y) {
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

// Running sums of one layer's statistics over the rows seen so far.
struct LayerSums {
  double derivative_sum = 0;  // sum of f'(z) over (unit, sample)
  int64_t saturated = 0;      // count of f'(z) < theta max f'
  double activation_sum = 0;  // sum of a over (unit, sample)
};

// Scratch space of one pass, carved out of one buffer (but the gradients
// and a step's staged state). Training passes use one per thread and
// precision (thread_local), not one per network: a network owns only its
// parameters and optimizer state, and once a thread has run the largest
// shape it sees nothing is allocated in a step (but the gradients' and
// staged state's tensors, reshaped when a thread alternates networks of
// different shapes).
// Pointers are per layer; the per-sample buffers hold as many rows as the
// last Prepare was given.
template <typename T>
struct Scratch {
  Eigen::Matrix<T, Eigen::Dynamic, 1> buffer;  // aligned for SIMD
  // [rows, units_l]: Z_l, A_l, f'(Z_l), dC/dZ_l.
  std::vector<T*> z, a, d, delta;
  // The gradients [fan_in_l, units_l], [1, units_l], as tensors of their
  // own: a step's update writes the new parameters over them, and then
  // swaps them with the network's (Optimizer::Stage, Commit).
  ParamSet<T> grads;
  std::vector<T*> grad_w, grad_b;     // their data
  std::vector<T*> max_z;              // [1, units_l]: column maxima of Z_l
  T* output_delta = nullptr;          // [rows, units_L], per-sample delta
  RowMatrix<T> x_storage, y_storage;  // inputs/targets in the other dtype
  std::vector<LayerSums> sums;
  // Per block of Activate's rows (see there), then added in block order:
  // the same sums whichever member of the step team computed a block.
  std::vector<double> block_derivative, block_activation;
  std::vector<int64_t> block_saturated;
  // Column maxima of Z over each team member's rows [parts, widest layer].
  std::vector<T> part_max_z;
  // Squared norms of the gradients' blocks of kNormBlock values (and
  // whether each is done: a step finishes most while still in cache), and
  // the gradients' norms (weights then biases of each layer).
  std::vector<double> norm_blocks, grad_norms;
  std::vector<char> block_done;
  // A step's staged optimizer state (Optimizer::PrepareStaging), and
  // whether a staged value was not finite (set by any team member, read
  // after the team's tasks have returned).
  std::vector<ParamSet<T>> staged;
  std::atomic<bool> nonfinite{false};
  double loss_sum = 0;     // sum of C_x
  double delta_sq = 0;     // ||delta||_F^2 (per-sample delta)
  double residual_sq = 0;  // ||a - y||_F^2
  int64_t correct = 0;
};

template <typename T>
class DenseNetwork final : public NetworkImpl {
 public:
  explicit DenseNetwork(const NetworkSpec& spec)
      : DenseNetwork(spec, InitialParameters<T>(spec)) {}

  // From saved state (checked by Network::FromState).
  DenseNetwork(const NetworkSpec& spec, NetworkState* state)
      : DenseNetwork(spec, TakeParams(&state->weights, &state->biases),
                     TakeSlots(state), state->step, state->samples_seen) {}

  void ExportState(NetworkState* state) const override {
    CopyParams(params_, &state->weights, &state->biases);
    for (const ParamSet<T>* slot : optimizer_.slots()) {
      NetworkState::Slot& out = state->optimizer_slots.emplace_back();
      CopyParams(*slot, &out.weights, &out.biases);
    }
    state->optimizer_updates = optimizer_.t();
    state->step = step_;
    state->samples_seen = samples_seen_;
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

  absl::StatusOr<ForwardResult> Forward(const MatrixView& inputs,
                                        bool include_layers, int64_t chunk_rows,
                                        const StopCheck& stop) const override {
    // The results are allocated whole first; the rows go through in chunks
    // of whole blocks (ForwardPass explains why they come out bitwise as
    // in one pass), with their own scratch, freed on return: a large batch
    // here should not stay allocated.
    const int64_t n = inputs.rows;
    const int64_t chunk = std::min(n, chunk_rows);
    const size_t last = layers_.size() - 1;
    RowMatrix<T> outputs(n, Units(last));
    std::vector<RowMatrix<T>> z, a;
    if (include_layers) {
      for (size_t l = 0; l <= last; ++l) {
        z.emplace_back(n, Units(l));
        a.emplace_back(n, Units(l));
      }
    }
    Scratch<T> s;
    Prepare(chunk, /*training=*/false, &s);
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t rows = std::min(chunk, n - start);
      const auto x = AsMatrix<T>(RowsOf(inputs, start, rows), &s.x_storage);
      if (absl::Status st =
              ForwardPass(x, /*training=*/false, block_rows_, stop, &s);
          !st.ok()) {
        return st;
      }
      outputs.middleRows(start, rows) = A(s, last, rows);
      for (size_t l = 0; l < z.size(); ++l) {
        z[l].middleRows(start, rows) = Z(s, l, rows);
        a[l].middleRows(start, rows) = A(s, l, rows);
      }
    }
    ForwardResult result;
    result.outputs = std::move(outputs);
    for (size_t l = 0; l < z.size(); ++l) {
      result.z.emplace_back(std::move(z[l]));
      result.a.emplace_back(std::move(a[l]));
    }
    return result;
  }

  absl::StatusOr<GradientResult> ComputeGradients(
      const MatrixView& inputs, const MatrixView& targets, Loss loss,
      const StopCheck& stop) const override {
    RowMatrix<T> output_delta(inputs.rows, params_.biases.back().cols());
    Scratch<T>& s = ThreadScratch();
    if (absl::Status st =
            RunBatch(inputs, targets, loss, stop, &output_delta, &s);
        !st.ok()) {
      Trim(&s);
      return st;
    }
    const int64_t n = inputs.rows;
    GradientResult result;
    result.loss = loss;
    result.loss_value = s.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(s.correct) / static_cast<double>(n);
    result.stats = FinishStats(&s, n, /*stage=*/false);
    for (size_t l = 0; l < layers_.size(); ++l) {
      result.weight_grads.emplace_back(RowMatrix<T>(GradW(s, l)));
      result.bias_grads.emplace_back(RowMatrix<T>(GradB(s, l)));
    }
    result.output_delta = std::move(output_delta);
    Trim(&s);
    return result;
  }

  absl::StatusOr<EvalResult> Evaluate(const MatrixView& inputs,
                                      const MatrixView& targets,
                                      const StopCheck& stop) const override {
    Scratch<T>& s = ThreadScratch();
    if (absl::Status st = RunBatch(inputs, targets, loss_, stop, nullptr, &s);
        !st.ok()) {
      Trim(&s);
      return st;
    }
    const int64_t n = inputs.rows;
    EvalResult result;
    result.loss = s.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(s.correct) / static_cast<double>(n);
    result.samples = n;
    result.stats = FinishStats(&s, n, /*stage=*/false);
    Trim(&s);
    return result;
  }

  absl::StatusOr<StepResult> TrainStep(const MatrixView& inputs,
                                       const MatrixView& targets,
                                       const StopCheck& stop) override {
    // The whole batch in one chunk, so gradients are written, not summed.
    // The update is staged block by block as the gradients are computed
    // (Backward, then FinishStats for the rest) and committed whole, only
    // when every new value is finite.
    const int64_t n = inputs.rows;
    Scratch<T>& s = ThreadScratch();
    Prepare(n, /*training=*/true, &s);
    optimizer_.PrepareStaging(params_, &s.staged);
    const auto x = AsMatrix<T>(inputs, &s.x_storage);
    const auto y = AsMatrix<T>(targets, &s.y_storage);
    BeginSums(&s);
    absl::Status status = ForwardPass(x, /*training=*/true, n, stop, &s);
    if (status.ok()) {
      status = Backward(x, y, loss_, n, /*accumulate=*/false, /*stage=*/true,
                        stop, &s);
    }
    // The last chance to stop: past this point the update is applied and
    // the step must be reported as done.
    if (status.ok()) status = CheckStop(stop);
    if (!status.ok()) {
      Trim(&s);
      return status;
    }

    StepResult result;
    result.batch_size = n;
    result.loss = s.loss_sum / static_cast<double>(n);
    result.accuracy = static_cast<double>(s.correct) / static_cast<double>(n);
    result.stats = FinishStats(&s, n, /*stage=*/true);
    // Nothing is applied unless the loss and every updated value are finite
    // (a non-finite gradient makes some updated value non-finite).
    result.diverged = !std::isfinite(result.loss) ||
                      s.nonfinite.load(std::memory_order_relaxed);
    if (!result.diverged) optimizer_.Commit(&params_, &s.grads, &s.staged);
    ++step_;
    samples_seen_ += n;
    result.step = step_;
    Trim(&s);
    return result;
  }

 private:
  struct Layer {
    const ActivationOps<T>* ops;
    T slope;  // leaky_relu only
  };
  using Map = Eigen::Map<RowMatrix<T>>;
  using VectorMap = Eigen::Map<RowVector<T>>;

  DenseNetwork(const NetworkSpec& spec, ParamSet<T> params)
      : DenseNetwork(spec, std::move(params), std::nullopt, 0, 0) {}

  // `optimizer` empty: a fresh one (zero state) for `params`.
  DenseNetwork(const NetworkSpec& spec, ParamSet<T> params,
               std::optional<Optimizer<T>> optimizer, int64_t step,
               int64_t samples_seen)
      : loss_(spec.loss),
        theta_(spec.saturation_threshold),
        block_rows_(BlockRows(spec)),
        params_(std::move(params)),
        optimizer_(optimizer.has_value()
                       ? *std::move(optimizer)
                       : Optimizer<T>(spec.optimizer, params_)),
        step_(step),
        samples_seen_(samples_seen) {
    for (const LayerSpec& layer : spec.layers) {
      layers_.push_back({&GetActivationOps<T>(layer.activation),
                         static_cast<T>(layer.leaky_relu_slope)});
    }
    first_block_.push_back(0);
    for (size_t t = 0; t < 2 * layers_.size(); ++t) {
      const int64_t size = GradTensorSize(t);
      first_block_.push_back(first_block_.back() + NormBlocks(size));
      param_count_ += size;
    }
  }

  // Moves checked state tensors (each a RowMatrix<T>) into a ParamSet.
  static ParamSet<T> TakeParams(std::vector<AnyMatrix>* weights,
                                std::vector<AnyMatrix>* biases) {
    ParamSet<T> out;
    for (AnyMatrix& w : *weights) {
      out.weights.push_back(std::get<RowMatrix<T>>(std::move(w)));
    }
    for (const AnyMatrix& b : *biases) {
      out.biases.push_back(std::get<RowMatrix<T>>(b));  // [1, units]
    }
    return out;
  }

  static std::optional<Optimizer<T>> TakeSlots(NetworkState* state) {
    std::vector<ParamSet<T>> slots;
    for (NetworkState::Slot& slot : state->optimizer_slots) {
      slots.push_back(TakeParams(&slot.weights, &slot.biases));
    }
    return Optimizer<T>(state->spec.optimizer, std::move(slots),
                        state->optimizer_updates);
  }

  static void CopyParams(const ParamSet<T>& params,
                         std::vector<AnyMatrix>* weights,
                         std::vector<AnyMatrix>* biases) {
    for (const auto& w : params.weights) weights->push_back(RowMatrix<T>(w));
    for (const auto& b : params.biases) biases->push_back(RowMatrix<T>(b));
  }

  int64_t Units(size_t l) const { return params_.weights[l].cols(); }
  int64_t FanIn(size_t l) const { return params_.weights[l].rows(); }

  // The scratch buffers of layer l over the first `rows` rows.
  Map Z(const Scratch<T>& s, size_t l, int64_t rows) const {
    return {s.z[l], rows, Units(l)};
  }
  Map A(const Scratch<T>& s, size_t l, int64_t rows) const {
    return {s.a[l], rows, Units(l)};
  }
  Map D(const Scratch<T>& s, size_t l, int64_t rows) const {
    return {s.d[l], rows, Units(l)};
  }
  Map Delta(const Scratch<T>& s, size_t l, int64_t rows) const {
    return {s.delta[l], rows, Units(l)};
  }
  Map GradW(const Scratch<T>& s, size_t l) const {
    return {s.grad_w[l], FanIn(l), Units(l)};
  }
  VectorMap GradB(const Scratch<T>& s, size_t l) const {
    return {s.grad_b[l], Units(l)};
  }

  static Scratch<T>& ThreadScratch() {
    thread_local Scratch<T> scratch;
    return scratch;
  }

  // Frees a thread's scratch after an unusually large pass (a full-batch
  // step over a big dataset), so that it does not stay allocated for the
  // life of the thread; the usual sizes are kept and reused.
  void Trim(Scratch<T>* s) const {
    constexpr int64_t kKeepBytes = int64_t{32} << 20;
    auto too_big = [](int64_t values) {
      return values * static_cast<int64_t>(sizeof(T)) > kKeepBytes;
    };
    if (too_big(s->buffer.size())) s->buffer.resize(0);
    if (too_big(s->x_storage.size())) s->x_storage.resize(0, 0);
    if (too_big(s->y_storage.size())) s->y_storage.resize(0, 0);
    // The gradients and every staged set are shaped like the parameters.
    if (too_big(param_count_ * (1 + static_cast<int64_t>(s->staged.size())))) {
      s->grads = ParamSet<T>();
      s->staged.clear();
    }
  }

  // Lays *s out for passes of up to `rows` rows of this network
  // (`training`: with f'(Z), deltas and gradients too), growing its buffer
  // if needed.
  void Prepare(int64_t rows, bool training, Scratch<T>* scratch) const {
    Scratch<T>& s = *scratch;
    const size_t count = layers_.size();
    // Every buffer starts on a 64-byte boundary (a multiple of 16 floats or
    // 8 doubles past the aligned base).
    constexpr int64_t kAlign = 64 / sizeof(T);
    auto padded = [](int64_t size) {
      return (size + kAlign - 1) / kAlign * kAlign;
    };
    int64_t total = 0;
    for (size_t l = 0; l < count; ++l) {
      const int64_t per_sample = padded(rows * Units(l));
      total += per_sample * (training ? 4 : 2);
      if (training) total += padded(Units(l));
    }
    if (training) total += padded(rows * Units(count - 1));
    if (s.buffer.size() < total) {
      s.buffer.resize(0);  // see Reallocate
      s.buffer.resize(total);
    }
    T* next = s.buffer.data();
    auto take = [&](int64_t size) {
      T* p = next;
      next += padded(size);
      return p;
    };
    s.z.resize(count);
    s.a.resize(count);
    s.d.resize(training ? count : 0);
    s.delta.resize(training ? count : 0);
    s.grad_w.resize(training ? count : 0);
    s.grad_b.resize(training ? count : 0);
    s.max_z.resize(training ? count : 0);
    s.sums.resize(count);
    for (size_t l = 0; l < count; ++l) {
      s.z[l] = take(rows * Units(l));
      s.a[l] = take(rows * Units(l));
      if (!training) continue;
      s.d[l] = take(rows * Units(l));
      s.delta[l] = take(rows * Units(l));
      s.max_z[l] = take(Units(l));
    }
    if (training) {
      ShapeLike(params_, &s.grads);
      for (size_t l = 0; l < count; ++l) {
        s.grad_w[l] = s.grads.weights[l].data();
        s.grad_b[l] = s.grads.biases[l].data();
      }
    }
    s.output_delta = training ? take(rows * Units(count - 1)) : nullptr;
    if (!training) return;
    int64_t blocks = 0, widest = 0, norm_blocks = 0;
    for (size_t l = 0; l < count; ++l) {
      blocks = std::max(blocks, (rows + BlockRowsOf(l) - 1) / BlockRowsOf(l));
      widest = std::max(widest, Units(l));
      norm_blocks += NormBlocks(FanIn(l) * Units(l)) + NormBlocks(Units(l));
    }
    auto grow = [](auto* v, int64_t size) {
      if (static_cast<int64_t>(v->size()) < size) {
        v->resize(static_cast<size_t>(size));
      }
    };
    grow(&s.block_derivative, blocks);
    grow(&s.block_activation, blocks);
    grow(&s.block_saturated, blocks);
    grow(&s.part_max_z, widest * TeamSize());
    grow(&s.norm_blocks, norm_blocks);
    grow(&s.block_done, norm_blocks);
    grow(&s.grad_norms, 2 * static_cast<int64_t>(count));
  }

  // Zeroes the running sums.
  void BeginSums(Scratch<T>* s) const {
    for (size_t l = 0; l < layers_.size(); ++l) {
      s->sums[l] = LayerSums();
      VectorMap(s->max_z[l], Units(l))
          .setConstant(-std::numeric_limits<T>::infinity());
    }
    s->loss_sum = s->delta_sq = s->residual_sq = 0;
    s->correct = 0;
    std::fill(s->block_done.begin(), s->block_done.end(), 0);
    s->nonfinite.store(false, std::memory_order_relaxed);
  }

  // Z_l = A_{l-1} W_l + b_l, A_l = f(Z_l) for every layer; A_0 = x [m, in].
  // When `training`, also f'(Z_l) and the statistics that need it. Asks
  // `stop` before each layer.
  //
  // The products go to Gemm `gemm_rows` rows at a time. OpenBLAS splits a
  // product into blocks whose layout depends on the row count, and rounds
  // a row differently depending on its block: Forward passes block_rows_,
  // so that a chunk made of whole blocks issues exactly the calls the
  // whole batch would for those rows, and comes out bitwise the same.
  // Training passes the whole chunk (gemm_rows == m).
  absl::Status ForwardPass(const ConstRowRef<T>& x, bool training,
                           int64_t gemm_rows, const StopCheck& stop,
                           Scratch<T>* s) const {
    const int64_t m = x.rows();
    for (size_t l = 0; l < layers_.size(); ++l) {
      if (absl::Status st = CheckStop(stop); !st.ok()) return st;
      const int64_t units = Units(l);
      const int64_t fan_in = FanIn(l);
      const T* input = l == 0 ? x.data() : s->a[l - 1];
      if (!training) {
        // Z starts as the bias on every row and the product is added to
        // it: no separate pass over Z for the bias, and OpenBLAS skips the
        // pass that zeroes its output when beta is 0.
        Map(s->z[l], m, units).rowwise() = params_.biases[l];
        // [m, units] += [m, fan_in] x [fan_in, units]
        for (int64_t r = 0; r < m; r += gemm_rows) {
          Gemm<T>(Transpose::kNo, Transpose::kNo, std::min(gemm_rows, m - r),
                  units, fan_in, input + r * fan_in, params_.weights[l].data(),
                  s->z[l] + r * units, /*accumulate=*/true);
        }
        ActivateForward(l, m, s);
        continue;
      }
      // Each member of the step team takes whole blocks of Activate's rows
      // through the bias, the product and Activate, so that its rows of Z,
      // A and f'(Z) stay in its own cache (one hand-off per layer).
      int used_parts = 1;
      RunOnTeam(m * units * fan_in, [&](int part, int parts) {
        if (part == 0) used_parts = parts;
        const Range rows = PartOf(m, BlockRowsOf(l), part, parts);
        const int64_t count = rows.end - rows.begin;
        T* const z = s->z[l] + rows.begin * units;
        Map(z, count, units).rowwise() = params_.biases[l];
        if (count > 0) {
          Gemm<T>(Transpose::kNo, Transpose::kNo, count, units, fan_in,
                  input + rows.begin * fan_in, params_.weights[l].data(), z,
                  /*accumulate=*/true);
        }
        Activate(l, rows, part, s);
      });
      AddBlockSums(l, m, used_parts, s);
    }
    return absl::OkStatus();
  }

  // Activate's and ActivateForward's blocks: values of a layer that stay
  // in L1 across the passes over them.
  static constexpr int64_t kBlockElements = 1024;

  // Rows per block of Activate: about kBlockElements values of layer l.
  int64_t BlockRowsOf(size_t l) const {
    return std::max<int64_t>(1, kBlockElements / Units(l));
  }

  // Applies f to Z_l for a forward pass without training, in blocks of
  // elements (rows, for a rowwise f).
  void ActivateForward(size_t l, int64_t m, Scratch<T>* s) const {
    const int64_t units = Units(l);
    const ActivationOps<T>& ops = *layers_[l].ops;
    const T slope = layers_[l].slope;
    if (ops.rowwise) {
      const int64_t block = BlockRowsOf(l);
      for (int64_t r = 0; r < m; r += block) {
        const int64_t rows = std::min(block, m - r);
        const Map z(s->z[l] + r * units, rows, units);
        Map a(s->a[l] + r * units, rows, units);
        ops.forward(z, slope, a);
      }
      return;
    }
    // Blocks of elements, not rows. Each block starts 64-byte aligned and
    // all but the chunk's last hold whole SIMD packets, so with chunks of
    // whole blocks (a multiple of 16 rows) only the batch's last few
    // elements take Eigen's scalar path (which rounds differently), as in
    // one pass.
    const int64_t total = m * units;
    for (int64_t e = 0; e < total; e += kBlockElements) {
      const int64_t count = std::min(kBlockElements, total - e);
      const Map z(s->z[l] + e, 1, count);
      Map a(s->a[l] + e, 1, count);
      ops.forward(z, slope, a);
    }
  }

  // Applies f and f' to the rows `rows` of Z_l (whole blocks of
  // BlockRowsOf(l) rows but the batch's last), a block at a time, so that
  // each block of Z, A and f' stays in L1 across what would otherwise be
  // four passes over memory. Each block's statistics go to its slot in
  // s->block_*, the column maxima of Z (for units that can die) to part
  // `part` of s->part_max_z.
  void Activate(size_t l, Range rows, int part, Scratch<T>* s) const {
    const int64_t units = Units(l);
    const int64_t block = BlockRowsOf(l);
    const ActivationOps<T>& ops = *layers_[l].ops;
    const T slope = layers_[l].slope;
    const T threshold = static_cast<T>(theta_ * ops.max_derivative);
    VectorMap max_z(s->part_max_z.data() + part * units, units);
    if (ops.can_die) max_z.setConstant(-std::numeric_limits<T>::infinity());
    for (int64_t r = rows.begin; r < rows.end; r += block) {
      const int64_t count = std::min(block, rows.end - r);
      T* const z_data = s->z[l] + r * units;
      T* const a_data = s->a[l] + r * units;
      // An elementwise f sees the block as one row: vectorized end to end,
      // even for a one-unit layer (whose column would be scalar code).
      const int64_t view_rows = ops.rowwise ? count : 1;
      const int64_t view_cols = count * units / view_rows;
      const Map z(z_data, view_rows, view_cols);
      Map a(a_data, view_rows, view_cols);
      ops.forward(z, slope, a);
      T* const d_data = s->d[l] + r * units;
      const int64_t values = count * units;
      const size_t b = static_cast<size_t>(r / block);
      if (ops.logistic) {
        const kernels::DerivativeStats<T> stats =
            kernels::LogisticDerivativeStats(a_data, values, threshold, d_data);
        s->block_derivative[b] = static_cast<double>(stats.derivative_sum);
        s->block_saturated[b] = stats.below;
        s->block_activation[b] = static_cast<double>(stats.activation_sum);
      } else {
        Map d(d_data, view_rows, view_cols);
        ops.derivative(z, a, slope, d);
        s->block_derivative[b] =
            static_cast<double>(kernels::Sum(d_data, values));
        s->block_saturated[b] = kernels::CountBelow(d_data, values, threshold);
        s->block_activation[b] =
            static_cast<double>(kernels::Sum(a_data, values));
      }
      if (ops.can_die) {
        for (int64_t i = 0; i < count; ++i) {
          max_z = max_z.cwiseMax(VectorMap(z_data + i * units, units));
        }
      }
    }
  }

  // Adds layer l's block statistics over m rows to its running sums, in
  // block order (the order one thread would add them in), and the team's
  // column maxima of Z.
  void AddBlockSums(size_t l, int64_t m, int parts, Scratch<T>* s) const {
    LayerSums& sums = s->sums[l];
    const int64_t blocks = (m + BlockRowsOf(l) - 1) / BlockRowsOf(l);
    for (size_t b = 0; b < static_cast<size_t>(blocks); ++b) {
      sums.derivative_sum += s->block_derivative[b];
      sums.saturated += s->block_saturated[b];
      sums.activation_sum += s->block_activation[b];
    }
    if (!layers_[l].ops->can_die) return;
    const int64_t units = Units(l);
    VectorMap max_z(s->max_z[l], units);
    for (int part = 0; part < parts; ++part) {
      max_z =
          max_z.cwiseMax(VectorMap(s->part_max_z.data() + part * units, units));
    }
  }

  // After ForwardPass over a chunk (x [m, in], y [m, out]) of a batch of
  // `total_rows`: adds the chunk's loss and statistics, and writes (or with
  // `accumulate`, adds) its share of the gradient of the mean loss. With
  // `stage` (a whole batch), also finishes the gradients' blocks each
  // member wrote whole (FinishBlocksWithin). Asks `stop` before each layer.
  absl::Status Backward(const ConstRowRef<T>& x, const ConstRowRef<T>& y,
                        Loss loss, int64_t total_rows, bool accumulate,
                        bool stage, const StopCheck& stop,
                        Scratch<T>* s) const {
    const size_t last = layers_.size() - 1;
    const int64_t m = x.rows();
    const Map z_out = Z(*s, last, m);
    const Map a_out = A(*s, last, m);
    const LossOps<T>& loss_ops = GetLossOps<T>(loss);
    s->loss_sum += static_cast<double>(loss_ops.value(z_out, a_out, y));
    s->correct += CountCorrect<T>(a_out, y);
    // Per-sample delta = dC_x/dZ_L [m, out]. Unless a row's entries depend
    // on each other (cce, softmax), computed over [1, m * out] views:
    // vectorized end to end even for one output unit.
    const ActivationOps<T>& out_ops = *layers_[last].ops;
    const int64_t units = Units(last);
    const bool per_row = loss_ops.rowwise || out_ops.rowwise;
    const int64_t view_rows = per_row ? m : 1;
    const int64_t view_cols = m * units / view_rows;
    Map output_delta(s->output_delta, m, units);
    loss_ops.delta(
        out_ops.id, Map(s->a[last], view_rows, view_cols),
        Map(s->d[last], view_rows, view_cols),
        Eigen::Map<const RowMatrix<T>>(y.data(), view_rows, view_cols),
        Map(s->output_delta, view_rows, view_cols));
    s->delta_sq += static_cast<double>(output_delta.squaredNorm());
    s->residual_sq += static_cast<double>((a_out - y).squaredNorm());

    // Delta_L = delta / n: gradient of the mean loss w.r.t. Z_L [m, out].
    Delta(*s, last, m).noalias() = output_delta / static_cast<T>(total_rows);
    for (size_t l = last + 1; l-- > 0;) {
      if (absl::Status st = CheckStop(stop); !st.ok()) return st;
      const Map delta = Delta(*s, l, m);
      // One task of the step team per layer (one hand-off), each member
      // on its share of three independent pieces, each split as it would
      // be alone (the same bits as three tasks):
      // - dW_l = A_{l-1}^T Delta_l: [fan_in, units] = [fan_in, m] x
      //   [m, units], by rows (GemmPart);
      // - db_l = colsum(Delta_l) [1, units], by columns: rows added in
      //   order, vectorized across units (Eigen's column sums of a
      //   row-major matrix run down each column with a stride); a later
      //   chunk adds its rows to the earlier chunks' sums, as one pass
      //   over the whole batch would;
      // - Delta_{l-1} = (Delta_l W_l^T) ⊙ f'(Z_{l-1}): [m, fan_in] =
      //   [m, units] x [units, fan_in], then elementwise, each member on
      //   the rows it activated in ForwardPass (none for l = 0: no
      //   gradient w.r.t. the input X).
      // With `stage`, between the second and the third, the member
      // finishes the blocks of dW_l and db_l it wrote, while they are in
      // its cache (the new parameters go over dW_l, not over W_l, which
      // the third piece still reads).
      const T* input = l == 0 ? x.data() : s->a[l - 1];
      const int64_t fan_in = FanIn(l);
      const int64_t width = Units(l);
      const int64_t delta_work = l == 0 ? 0 : m * fan_in * width;
      RunOnTeam(m * fan_in * width + delta_work, [&](int part, int parts) {
        GemmPart<T>(part, parts, Transpose::kYes, Transpose::kNo, fan_in, width,
                    m, input, delta.data(), s->grad_w[l], accumulate);
        const Range cols = PartOf(width, kBiasColumns, part, parts);
        if (cols.begin < cols.end) {
          auto db = GradB(*s, l).segment(cols.begin, cols.end - cols.begin);
          const auto column = [&](int64_t r) {
            return delta.row(r).segment(cols.begin, cols.end - cols.begin);
          };
          if (!accumulate) db = column(0);
          for (int64_t r = accumulate ? 0 : 1; r < m; ++r) db += column(r);
        }
        if (stage) {
          const Range rows = GemmPartRows(part, parts, fan_in, width, m);
          FinishBlocksWithin(2 * l, rows.begin * width, rows.end * width, s);
          FinishBlocksWithin(2 * l + 1, cols.begin, cols.end, s);
        }
        const int delta_parts = PartsFor(delta_work, parts);
        if (l == 0 || part >= delta_parts) return;
        const Range rows = PartOf(m, BlockRowsOf(l - 1), part, delta_parts);
        const int64_t count = rows.end - rows.begin;
        if (count == 0) return;
        T* const out = s->delta[l - 1] + rows.begin * fan_in;
        Gemm<T>(Transpose::kNo, Transpose::kYes, count, fan_in, width,
                delta.data() + rows.begin * width, params_.weights[l].data(),
                out, /*accumulate=*/false);
        kernels::MultiplyInPlace(s->d[l - 1] + rows.begin * fan_in,
                                 count * fan_in, out);
      });
      if (l == 0) break;
    }
    return absl::OkStatus();
  }

  // The bias gradients' columns go to the step team in groups of this many
  // (whole SIMD packets of float and double).
  static constexpr int64_t kBiasColumns = 16;

  // Forward + Backward over a whole batch in blocks of block_rows_ rows
  // (converted to T a block at a time) into *s; the per-sample output delta
  // goes to *output_delta [n, out] when given.
  absl::Status RunBatch(const MatrixView& inputs, const MatrixView& targets,
                        Loss loss, const StopCheck& stop,
                        RowMatrix<T>* output_delta, Scratch<T>* scratch) const {
    Scratch<T>& s = *scratch;
    const int64_t n = inputs.rows;
    const int64_t chunk = std::min(n, block_rows_);
    Prepare(chunk, /*training=*/true, &s);
    BeginSums(&s);
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t rows = std::min(chunk, n - start);
      const auto x = AsMatrix<T>(RowsOf(inputs, start, rows), &s.x_storage);
      const auto y = AsMatrix<T>(RowsOf(targets, start, rows), &s.y_storage);
      if (absl::Status st = ForwardPass(x, /*training=*/true, rows, stop, &s);
          !st.ok()) {
        return st;
      }
      if (absl::Status st = Backward(x, y, loss, n, /*accumulate=*/start > 0,
                                     /*stage=*/false, stop, &s);
          !st.ok()) {
        return st;
      }
      if (output_delta != nullptr) {
        output_delta->middleRows(start, rows) =
            Map(s.output_delta, rows, output_delta->cols());
      }
    }
    return absl::OkStatus();
  }

  // The gradients' norms are sums of squared norms of blocks of
  // kNormBlock values, added in block order, and so the same bits for any
  // team; with a step's update, each block's values are staged with its
  // norm (the update's ranges then start at multiples of kNormBlock, as
  // Optimizer::Stage asks).
  static constexpr int64_t kNormBlock = 4096;
  static int64_t NormBlocks(int64_t values) {
    return (values + kNormBlock - 1) / kNormBlock;
  }

  // Values in gradient tensor t (TensorAt's numbering).
  int64_t GradTensorSize(size_t t) const { return TensorAt(params_, t).second; }

  // Block b of tensor t: its squared norm and, with `stage`, its staged
  // update (a non-finite value sets s->nonfinite).
  void FinishBlock(size_t t, int64_t b, bool stage, Scratch<T>* s) const {
    const auto [data, size] = TensorAt(s->grads, t);
    const int64_t begin = b * kNormBlock;
    const int64_t end = std::min(size, begin + kNormBlock);
    const size_t index = static_cast<size_t>(first_block_[t] + b);
    s->norm_blocks[index] =
        static_cast<double>(kernels::SumOfSquares(data + begin, end - begin));
    if (stage && !optimizer_.Stage(params_, t, begin, end, data, &s->staged)) {
      s->nonfinite.store(true, std::memory_order_relaxed);
    }
    s->block_done[index] = 1;
  }

  // Finishes (with the update) the blocks of tensor t that lie wholly in
  // its values [begin, end), which the calling member has just written.
  void FinishBlocksWithin(size_t t, int64_t begin, int64_t end,
                          Scratch<T>* s) const {
    const int64_t size = GradTensorSize(t);
    for (int64_t b = (begin + kNormBlock - 1) / kNormBlock;
         b * kNormBlock < end && std::min(size, (b + 1) * kNormBlock) <= end;
         ++b) {
      FinishBlock(t, b, /*stage=*/true, s);
    }
  }

  // Finishes every block not yet done (all of them, but for a step's;
  // `stage`: with the update), split over the step team, and takes the
  // norms into s->grad_norms (weights then biases, per layer).
  void GradientNorms(Scratch<T>* s, bool stage) const {
    const size_t tensors = 2 * layers_.size();
    const int64_t blocks = first_block_.back();
    int64_t remaining = 0;  // values in blocks not done
    for (size_t t = 0; t < tensors; ++t) {
      const int64_t size = GradTensorSize(t);
      for (int64_t b = first_block_[t]; b < first_block_[t + 1]; ++b) {
        if (s->block_done[static_cast<size_t>(b)] == 0) {
          remaining +=
              std::min(kNormBlock, size - (b - first_block_[t]) * kNormBlock);
        }
      }
    }
    if (remaining > 0) {
      RunOnTeam(remaining, [&](int part, int parts) {
        const Range mine = PartOf(blocks, 1, part, parts);
        for (size_t t = 0; t < tensors; ++t) {
          for (int64_t b = std::max(first_block_[t], mine.begin);
               b < std::min(first_block_[t + 1], mine.end); ++b) {
            if (s->block_done[static_cast<size_t>(b)] == 0) {
              FinishBlock(t, b - first_block_[t], stage, s);
            }
          }
        }
      });
    }
    for (size_t t = 0; t < tensors; ++t) {
      double sum = 0;
      for (int64_t b = first_block_[t]; b < first_block_[t + 1]; ++b) {
        sum += s->norm_blocks[static_cast<size_t>(b)];
      }
      s->grad_norms[t] = std::sqrt(sum);
    }
  }

  // `stage`: a step's, whose update's remaining blocks are staged too.
  SaturationStats FinishStats(Scratch<T>* scratch, int64_t n,
                              bool stage) const {
    Scratch<T>& s = *scratch;
    GradientNorms(&s, stage);
    SaturationStats stats;
    stats.layers.reserve(layers_.size());
    for (size_t l = 0; l < layers_.size(); ++l) {
      const LayerSums& sums = s.sums[l];
      const double count =
          static_cast<double>(n) * static_cast<double>(Units(l));
      LayerStats& out = stats.layers.emplace_back();
      out.mean_derivative = sums.derivative_sum / count;
      out.saturated_fraction = static_cast<double>(sums.saturated) / count;
      out.dead_units =
          layers_[l].ops->can_die
              ? (VectorMap(s.max_z[l], Units(l)).array() <= T(0)).count()
              : int64_t{0};
      out.weight_gradient_norm = s.grad_norms[2 * l];
      out.bias_gradient_norm = s.grad_norms[2 * l + 1];
      out.mean_activation = sums.activation_sum / count;
    }
    // ||delta||_F / ||a - y||_F; 1 when a == y.
    stats.output_attenuation =
        s.residual_sq == 0 ? 1.0
                           : std::sqrt(s.delta_sq) / std::sqrt(s.residual_sq);
    return stats;
  }

  Loss loss_;
  double theta_;
  std::vector<Layer> layers_;
  int64_t block_rows_;  // BlockRows(spec)
  ParamSet<T> params_;  // W_l [fan_in, units], b_l [1, units]
  // Gradient tensor t's first block of kNormBlock values, and (last) the
  // number of blocks.
  std::vector<int64_t> first_block_;
  int64_t param_count_ = 0;  // values in params_
  Optimizer<T> optimizer_;
  int64_t step_ = 0;
  int64_t samples_seen_ = 0;
};

}  // namespace

std::unique_ptr<NetworkImpl> MakeNetworkImpl(const NetworkSpec& spec) {
  if (spec.dtype == DType::kFloat32) {
    return std::make_unique<DenseNetwork<float>>(spec);
  }
  return std::make_unique<DenseNetwork<double>>(spec);
}

std::unique_ptr<NetworkImpl> MakeNetworkImpl(const NetworkSpec& spec,
                                             NetworkState* state) {
  if (spec.dtype == DType::kFloat32) {
    return std::make_unique<DenseNetwork<float>>(spec, state);
  }
  return std::make_unique<DenseNetwork<double>>(spec, state);
}

}  // namespace satlab::engine
