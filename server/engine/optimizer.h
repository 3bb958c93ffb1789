// Optimizer state and updates (SGD with momentum/Nesterov/weight decay in
// PyTorch's convention; Adam with bias correction).
#ifndef SATLAB_SERVER_ENGINE_OPTIMIZER_H_
#define SATLAB_SERVER_ENGINE_OPTIMIZER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "Eigen/Core"
#include "absl/types/span.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// Parameters (or gradients, or optimizer state) of all layers: weights
// [fan_in, units] and biases [1, units].
template <typename T>
struct ParamSet {
  std::vector<RowMatrix<T>> weights;
  std::vector<RowVector<T>> biases;
};

// State tensor sets the optimizer `spec` keeps, each shaped like the
// parameters: 0 (SGD), 1 (SGD with momentum: velocity), 2 (Adam: first and
// second moments).
int OptimizerSlotCount(const OptimizerSpec& spec);

template <typename T>
class Optimizer {
 public:
  // `shapes` gives the parameter shapes; state starts at zero. Every buffer
  // is allocated here, none in Step.
  Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes);

  // Restores saved state: `slots` holds OptimizerSlotCount(spec) sets shaped
  // like the parameters (as slots() returned them), `t` Adam's update count.
  // The caller has checked both.
  Optimizer(const OptimizerSpec& spec, std::vector<ParamSet<T>> slots,
            int64_t t);

  // The state tensor sets, OptimizerSlotCount(spec) of them, in order
  // (velocity; or first moment, second moment).
  std::vector<const ParamSet<T>*> slots() const;
  // Adam's updates since creation or the last Reset; 0 for SGD.
  int64_t t() const { return t_; }

  // One update of *params from the gradients, in place. weight_grads[l] and
  // bias_grads[l] hold as many values as params->weights[l] / biases[l], in
  // the same order. Two passes: the first evaluates every new parameter and
  // state value without storing it and checks that all are finite (a
  // non-finite gradient always makes some new value non-finite); only then
  // does the second write them. Returns false and changes nothing
  // (Adam's t included) when a value would not be finite. No spare copy of
  // the parameters is kept: a network costs its parameters and state.
  //
  // `gradient_bound` bounds every |gradient| (the largest gradient norm),
  // or is infinite or NaN when unknown. For plain SGD, when it and a bound
  // of every |parameter| prove each new value finite, the first pass is
  // skipped: the same values are written, one read of the parameters and
  // gradients sooner (docs/benchmarks.md, "One step on two cores").
  bool Step(absl::Span<const T* const> weight_grads,
            absl::Span<const T* const> bias_grads, ParamSet<T>* params,
            double gradient_bound);

  // The parameters were set from outside (SetParameters): their bound is
  // found again at the next Step.
  void ParametersChanged() { param_bound_.reset(); }

  // Zeroes momentum / moments and Adam's t.
  void Reset();

 private:
  using Flat = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

  // Updates p, m, v of one tensor from g (state the optimizer does not keep
  // is empty and never touched). With `write` false, stores nothing and
  // returns whether every new value is finite; with `write` true, stores
  // them and returns true.
  bool Tensor(Flat p, const T* g, Flat m, Flat v, bool write) const;

  OptimizerSpec spec_;
  // SGD: m = velocity (only when momentum > 0). Adam: m, v = moments.
  ParamSet<T> m_, v_;
  int64_t t_ = 0;  // Adam steps applied since creation / last Reset
  // Plain SGD: a bound of every |parameter| after the last update, when
  // known (not kept in saved state: found again after a restore).
  std::optional<double> param_bound_;
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_OPTIMIZER_H_
