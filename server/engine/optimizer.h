// Optimizer state and updates (SGD with momentum/Nesterov/weight decay in
// PyTorch's convention; Adam with bias correction).
#ifndef SATLAB_SERVER_ENGINE_OPTIMIZER_H_
#define SATLAB_SERVER_ENGINE_OPTIMIZER_H_

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "server/engine/spec.h"

namespace satlab::engine {

// Parameters (or gradients, or optimizer state) of all layers: weights
// [fan_in, units] and biases [1, units].
template <typename T>
struct ParamSet {
  std::vector<RowMatrix<T>> weights;
  std::vector<RowVector<T>> biases;
};

template <typename T>
class Optimizer {
 public:
  // `shapes` gives the parameter shapes; state starts at zero. Every buffer
  // is allocated here, none in Step.
  Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes);

  // One update of *params from `grads`. The new parameters and state are
  // computed into spare buffers and swapped in only if all are finite;
  // otherwise returns false and changes nothing (Adam's t included).
  bool Step(const ParamSet<T>& grads, ParamSet<T>* params);

  // Zeroes momentum / moments and Adam's t.
  void Reset();

 private:
  using Flat = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  using ConstFlat = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

  // Writes the updated p, m, v of one tensor into p_next, m_next, v_next
  // (state the optimizer does not keep is empty and never touched) and
  // returns whether they are all finite.
  bool Tensor(ConstFlat p, ConstFlat g, ConstFlat m, ConstFlat v, Flat p_next,
              Flat m_next, Flat v_next) const;

  OptimizerSpec spec_;
  // SGD: m = velocity (only when momentum > 0). Adam: m, v = moments.
  ParamSet<T> m_, v_;
  // Spare buffers the next values are computed into, then swapped in.
  ParamSet<T> p_next_, m_next_, v_next_;
  int64_t t_ = 0;  // Adam steps applied since creation / last Reset
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_OPTIMIZER_H_
