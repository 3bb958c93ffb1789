#include "server/engine/optimizer.h"

#include <cmath>
#include <utility>

#include "server/engine/kernels.h"

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

// Whether every coefficient of x is finite, as one vectorized sum: x * 0
// is 0 for a finite x and NaN for an infinite or NaN one.
template <typename A>
bool Finite(const A& x) {
  using T = typename A::Scalar;
  return (x * T(0)).sum() == T(0);
}

}  // namespace

int OptimizerSlotCount(const OptimizerSpec& spec) {
  if (spec.kind == OptimizerKind::kAdam) return 2;
  return spec.momentum > 0 ? 1 : 0;
}

template <typename T>
Optimizer<T>::Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes)
    : spec_(spec) {
  const int slots = OptimizerSlotCount(spec);
  if (slots >= 1) m_ = ZerosLike(shapes);
  if (slots >= 2) v_ = ZerosLike(shapes);
}

template <typename T>
Optimizer<T>::Optimizer(const OptimizerSpec& spec,
                        std::vector<ParamSet<T>> slots, int64_t t)
    : spec_(spec), t_(t) {
  if (slots.size() >= 1) m_ = std::move(slots[0]);
  if (slots.size() >= 2) v_ = std::move(slots[1]);
}

template <typename T>
std::vector<const ParamSet<T>*> Optimizer<T>::slots() const {
  std::vector<const ParamSet<T>*> out;
  const int count = OptimizerSlotCount(spec_);
  if (count >= 1) out.push_back(&m_);
  if (count >= 2) out.push_back(&v_);
  return out;
}

template <typename T>
void Optimizer<T>::Reset() {
  SetZero(&m_);
  SetZero(&v_);
  t_ = 0;
}

template <typename T>
void Optimizer<T>::PrepareStaging(const ParamSet<T>& params,
                                  std::vector<ParamSet<T>>* staged) const {
  staged->resize(static_cast<size_t>(OptimizerSlotCount(spec_)));
  for (ParamSet<T>& set : *staged) ShapeLike(params, &set);
}

template <typename T>
bool Optimizer<T>::Stage(const ParamSet<T>& params, size_t t, int64_t begin,
                         int64_t end, T* g_data,
                         std::vector<ParamSet<T>>* staged) const {
  const int64_t n = end - begin;
  if (n <= 0) return true;
  using In = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  using Out = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  auto current = [&](const ParamSet<T>& set) {
    return In(TensorAt(set, t).first + begin, n);
  };
  auto next = [&](size_t slot) {
    return Out(TensorAt((*staged)[slot], t).first + begin, n);
  };
  const In p = current(params);
  const In g(g_data + begin, n);
  // Written last in each case below, from values that no longer need g
  // (or, elementwise, each g read before its own element is written).
  Out p_next(g_data + begin, n);
  const T lr = static_cast<T>(spec_.learning_rate);
  const T wd = static_cast<T>(spec_.weight_decay);
  if (spec_.kind == OptimizerKind::kSgd && spec_.momentum == 0) {
    // p - lr g': the dispatched kernel (the same bits in every variant).
    return kernels::SgdUpdate(p.data(), g.data(), n, lr, wd, p_next.data());
  }
  // g' = g + wd p (L2 penalty; wd = 0 gives g exactly).
  const auto g2 = g + wd * p;
  if (spec_.kind == OptimizerKind::kAdam) {
    // m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    // p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), from the
    // new m and v.
    const double step = static_cast<double>(t_ + 1);
    const T b1 = static_cast<T>(spec_.beta1);
    const T b2 = static_cast<T>(spec_.beta2);
    const T eps = static_cast<T>(spec_.epsilon);
    const T bc1 = static_cast<T>(1.0 - std::pow(spec_.beta1, step));
    const T bc2 = static_cast<T>(1.0 - std::pow(spec_.beta2, step));
    Out m_next = next(0), v_next = next(1);
    m_next = b1 * current(m_) + (T(1) - b1) * g2;
    v_next = b2 * current(v_) + (T(1) - b2) * g2.square();
    p_next = p - lr * (m_next / bc1) / ((v_next / bc2).sqrt() + eps);
    return Finite(m_next + v_next + p_next);
  }
  // v = mu v + g';  p -= lr (nesterov ? g' + mu v : v), from the new v.
  const T mu = static_cast<T>(spec_.momentum);
  Out m_next = next(0);
  m_next = mu * current(m_) + g2;
  if (spec_.nesterov) {
    p_next = p - lr * (g2 + mu * m_next);
  } else {
    p_next = p - lr * m_next;
  }
  return Finite(m_next + p_next);
}

template <typename T>
void Optimizer<T>::Commit(ParamSet<T>* params, ParamSet<T>* new_params,
                          std::vector<ParamSet<T>>* staged) {
  auto swap_in = [](ParamSet<T>* into, ParamSet<T>* from) {
    for (size_t l = 0; l < into->weights.size(); ++l) {
      into->weights[l].swap(from->weights[l]);
      into->biases[l].swap(from->biases[l]);
    }
  };
  swap_in(params, new_params);
  if (staged->size() > 0) swap_in(&m_, &(*staged)[0]);
  if (staged->size() > 1) swap_in(&v_, &(*staged)[1]);
  if (spec_.kind == OptimizerKind::kAdam) ++t_;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace satlab::engine
