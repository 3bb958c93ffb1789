#include "server/engine/optimizer.h"

#include <cmath>
#include <limits>

namespace satlab::engine {
namespace {

template <typename T>
ParamSet<T> ZerosLike(const ParamSet<T>& shapes) {
  ParamSet<T> out;
  for (const auto& w : shapes.weights) {
    out.weights.push_back(RowMatrix<T>::Zero(w.rows(), w.cols()));
  }
  for (const auto& b : shapes.biases) {
    out.biases.push_back(RowVector<T>::Zero(b.cols()));
  }
  return out;
}

template <typename T>
void SetZero(ParamSet<T>* s) {
  for (auto& w : s->weights) w.setZero();
  for (auto& b : s->biases) b.setZero();
}

template <typename T>
void Swap(ParamSet<T>* a, ParamSet<T>* b) {
  // O(1) per tensor: Eigen swaps the heap pointers of dynamic matrices.
  for (size_t i = 0; i < a->weights.size(); ++i) {
    a->weights[i].swap(b->weights[i]);
    a->biases[i].swap(b->biases[i]);
  }
}

// A tensor as a flat array (its storage order does not matter for
// elementwise updates).
template <typename M>
auto FlatOf(M& x) {
  using T = typename M::Scalar;
  return Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(x.data(), x.size());
}
template <typename M>
auto ConstFlatOf(const M& x) {
  using T = typename M::Scalar;
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x.data(),
                                                              x.size());
}
// Tensor i of a state set, or an empty view when the optimizer keeps none.
template <typename V>
auto StateOf(std::vector<V>& s, size_t i) {
  using T = typename V::Scalar;
  return s.empty() ? Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(nullptr, 0)
                   : FlatOf(s[i]);
}
template <typename V>
auto ConstStateOf(const std::vector<V>& s, size_t i) {
  using T = typename V::Scalar;
  return s.empty()
             ? Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(nullptr, 0)
             : ConstFlatOf(s[i]);
}

// All finite, in one vectorized pass (NaN fails the comparison).
template <typename A>
bool Finite(const A& x) {
  using T = typename A::Scalar;
  return (x.abs() <= std::numeric_limits<T>::max()).all();
}

}  // namespace

template <typename T>
Optimizer<T>::Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes)
    : spec_(spec), p_next_(ZerosLike(shapes)) {
  const bool adam = spec.kind == OptimizerKind::kAdam;
  if (adam || spec.momentum > 0) {
    m_ = ZerosLike(shapes);
    m_next_ = ZerosLike(shapes);
  }
  if (adam) {
    v_ = ZerosLike(shapes);
    v_next_ = ZerosLike(shapes);
  }
}

template <typename T>
void Optimizer<T>::Reset() {
  SetZero(&m_);
  SetZero(&v_);
  t_ = 0;
}

template <typename T>
bool Optimizer<T>::Tensor(ConstFlat p, ConstFlat g, ConstFlat m, ConstFlat v,
                          Flat p_next, Flat m_next, Flat v_next) const {
  const T lr = static_cast<T>(spec_.learning_rate);
  const T wd = static_cast<T>(spec_.weight_decay);
  // g' = g + wd p (L2 penalty; wd = 0 gives g exactly).
  const auto g2 = g + wd * p;
  if (spec_.kind == OptimizerKind::kAdam) {
    // m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    // p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    const double t = static_cast<double>(t_ + 1);
    const T b1 = static_cast<T>(spec_.beta1);
    const T b2 = static_cast<T>(spec_.beta2);
    const T eps = static_cast<T>(spec_.epsilon);
    const T bc1 = static_cast<T>(1.0 - std::pow(spec_.beta1, t));
    const T bc2 = static_cast<T>(1.0 - std::pow(spec_.beta2, t));
    m_next = b1 * m + (T(1) - b1) * g2;
    v_next = b2 * v + (T(1) - b2) * g2.square();
    p_next = p - lr * (m_next / bc1) / ((v_next / bc2).sqrt() + eps);
    return Finite(p_next) && Finite(m_next) && Finite(v_next);
  }
  if (spec_.momentum == 0) {
    // p -= lr g'.
    p_next = p - lr * g2;
    return Finite(p_next);
  }
  // v = mu v + g';  p -= lr (nesterov ? g' + mu v : v).
  const T mu = static_cast<T>(spec_.momentum);
  m_next = mu * m + g2;
  if (spec_.nesterov) {
    p_next = p - lr * (g2 + mu * m_next);
  } else {
    p_next = p - lr * m_next;
  }
  return Finite(p_next) && Finite(m_next);
}

template <typename T>
bool Optimizer<T>::Step(const ParamSet<T>& grads, ParamSet<T>* params) {
  for (size_t i = 0; i < params->weights.size(); ++i) {
    if (!Tensor(ConstFlatOf(params->weights[i]), ConstFlatOf(grads.weights[i]),
                ConstStateOf(m_.weights, i), ConstStateOf(v_.weights, i),
                FlatOf(p_next_.weights[i]), StateOf(m_next_.weights, i),
                StateOf(v_next_.weights, i)) ||
        !Tensor(ConstFlatOf(params->biases[i]), ConstFlatOf(grads.biases[i]),
                ConstStateOf(m_.biases, i), ConstStateOf(v_.biases, i),
                FlatOf(p_next_.biases[i]), StateOf(m_next_.biases, i),
                StateOf(v_next_.biases, i))) {
      return false;  // the spare buffers are scratch: nothing changed
    }
  }
  Swap(params, &p_next_);
  if (!m_.weights.empty()) Swap(&m_, &m_next_);
  if (!v_.weights.empty()) Swap(&v_, &v_next_);
  if (spec_.kind == OptimizerKind::kAdam) ++t_;
  return true;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace satlab::engine
