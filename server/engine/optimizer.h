// Optimizer state and updates (SGD with momentum/Nesterov/weight decay in
// PyTorch's convention; Adam with bias correction).
#ifndef SATLAB_SERVER_ENGINE_OPTIMIZER_H_
#define SATLAB_SERVER_ENGINE_OPTIMIZER_H_

#include <cstdint>
#include <utility>
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

// Sets *m to [rows, cols], keeping its buffer when the size is unchanged.
// Eigen frees the old buffer before allocating the new one and keeps the
// freed pointer if that throws; emptying first leaves *m valid (empty)
// when the allocation fails, so that a thread's scratch survives a
// std::bad_alloc. Emptied by assigning an empty M: a bias (one fixed row)
// cannot be resized to 0 x 0.
template <typename M>
void Reallocate(M* m, Eigen::Index rows, Eigen::Index cols) {
  if (m->size() != rows * cols) *m = M();
  m->resize(rows, cols);
}

// Reshapes *set like `shapes`, keeping the buffers that already fit
// (Reallocate). Values are not set.
template <typename T>
void ShapeLike(const ParamSet<T>& shapes, ParamSet<T>* set) {
  set->weights.resize(shapes.weights.size());
  set->biases.resize(shapes.biases.size());
  for (size_t l = 0; l < shapes.weights.size(); ++l) {
    Reallocate(&set->weights[l], shapes.weights[l].rows(),
               shapes.weights[l].cols());
    Reallocate(&set->biases[l], 1, shapes.biases[l].cols());
  }
}

// Tensor t of a set as (data, values): the weights of layer t / 2 when t
// is even, its biases when odd. Optimizer::Stage and the network's staged
// update number a set's tensors so (storage order does not matter for
// elementwise updates).
template <typename Set>
auto TensorAt(Set& set, size_t t) {
  const size_t l = t / 2;
  return t % 2 == 0 ? std::make_pair(set.weights[l].data(),
                                     int64_t{set.weights[l].size()})
                    : std::make_pair(set.biases[l].data(),
                                     int64_t{set.biases[l].size()});
}

// State tensor sets the optimizer `spec` keeps, each shaped like the
// parameters: 0 (SGD), 1 (SGD with momentum: velocity), 2 (Adam: first and
// second moments).
int OptimizerSlotCount(const OptimizerSpec& spec);

template <typename T>
class Optimizer {
 public:
  // `shapes` gives the parameter shapes; state starts at zero. Every buffer
  // the optimizer keeps is allocated here, none in an update.
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

  // An update goes in three parts, so that it can follow the gradients as
  // they are computed and still be applied whole or not at all, reading
  // each parameter and gradient once and writing nothing beside them for
  // plain SGD:
  // - PrepareStaging shapes *staged like the parameters, one set per state
  //   slot (slots() order; none for plain SGD), reusing its buffers;
  // - Stage computes the new values of elements [begin, end) of tensor `t`
  //   (the weights of layer t / 2 when t is even, its biases when odd)
  //   from its gradient `g` (the tensor's values, shaped like it) and the
  //   current values: the new parameters over g (each g read first), the
  //   new state into *staged, and changes nothing else; it says whether
  //   they are all finite (a non-finite gradient always makes some new
  //   value non-finite). Disjoint ranges may be staged from different
  //   threads at once; ranges that start at multiples of 64 elements give
  //   every value the same bits however the tensor was cut (Eigen's vector
  //   and scalar parts of a range start where its 64-byte-aligned tensor
  //   does);
  // - Commit, once every element is staged and all were finite, swaps the
  //   new parameters (the set that held the gradients) and the staged
  //   state in (no copy) and counts Adam's step; those sets then hold the
  //   old values, buffers for the next step.
  // Without a Commit nothing changes. The staged state belongs to the
  // caller (a compute thread's scratch), not to the network: a network
  // costs its parameters and state (StateBytes).
  void PrepareStaging(const ParamSet<T>& params,
                      std::vector<ParamSet<T>>* staged) const;
  bool Stage(const ParamSet<T>& params, size_t t, int64_t begin, int64_t end,
             T* g, std::vector<ParamSet<T>>* staged) const;
  void Commit(ParamSet<T>* params, ParamSet<T>* new_params,
              std::vector<ParamSet<T>>* staged);

  // Zeroes momentum / moments and Adam's t.
  void Reset();

 private:
  OptimizerSpec spec_;
  // SGD: m = velocity (only when momentum > 0). Adam: m, v = moments.
  ParamSet<T> m_, v_;
  int64_t t_ = 0;  // Adam steps applied since creation / last Reset
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_OPTIMIZER_H_
