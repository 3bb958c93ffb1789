// Optimizer state and updates (SGD with momentum/Nesterov/weight decay in
// PyTorch's convention; Adam with bias correction).
#ifndef SATLAB_SERVER_ENGINE_OPTIMIZER_H_
#define SATLAB_SERVER_ENGINE_OPTIMIZER_H_

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "server/engine/spec.h"

namespace satlab::engine {

// Parameters (or gradients) of all layers: weights [fan_in, units] and
// biases [1, units].
template <typename T>
struct ParamSet {
  std::vector<RowMatrix<T>> weights;
  std::vector<RowVector<T>> biases;
};

template <typename T>
class Optimizer {
 public:
  // `shapes` gives the parameter shapes; state starts at zero.
  Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes);

  // Whether Apply(params, grads) would leave every parameter and state value
  // finite. Reads only; no allocation.
  bool UpdateIsFinite(const ParamSet<T>& params,
                      const ParamSet<T>& grads) const;

  // One step: params -= update(grads), state advanced (Adam's t += 1).
  void Apply(const ParamSet<T>& grads, ParamSet<T>* params);

  // Zeroes momentum / moments and Adam's t.
  void Reset();

  int64_t adam_step() const { return t_; }

 private:
  using Flat = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  using ConstFlat = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

  // Updates (kApply, Flat views) or checks (!kApply, ConstFlat views) one
  // tensor p with gradient g and state m, v (flat views of equal size;
  // state the optimizer does not use is empty and never read).
  template <bool kApply, typename View>
  bool Tensor(View p, ConstFlat g, View m, View v) const;

  OptimizerSpec spec_;
  // SGD: m = velocity (only when momentum > 0). Adam: m, v = moments.
  ParamSet<T> m_;
  ParamSet<T> v_;
  int64_t t_ = 0;  // Adam steps applied since creation / last Reset
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_OPTIMIZER_H_
