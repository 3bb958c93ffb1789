#include "server/engine/optimizer.h"

#include <cmath>

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

}  // namespace

template <typename T>
Optimizer<T>::Optimizer(const OptimizerSpec& spec, const ParamSet<T>& shapes)
    : spec_(spec) {
  const bool has_first = spec.kind == OptimizerKind::kAdam || spec.momentum > 0;
  if (has_first) m_ = ZerosLike(shapes);
  if (spec.kind == OptimizerKind::kAdam) v_ = ZerosLike(shapes);
}

template <typename T>
void Optimizer<T>::Reset() {
  SetZero(&m_);
  SetZero(&v_);
  t_ = 0;
}

template <typename T>
template <bool kApply, typename View>
bool Optimizer<T>::Tensor(View p, ConstFlat g, View m, View v) const {
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
    const auto m_new = b1 * m + (T(1) - b1) * g2;
    const auto v_new = b2 * v + (T(1) - b2) * g2.square();
    if constexpr (!kApply) {
      return m_new.allFinite() && v_new.allFinite() &&
             (p - lr * (m_new / bc1) / ((v_new / bc2).sqrt() + eps))
                 .allFinite();
    } else {
      m = m_new;  // coefficient-wise: reads m(i), p(i) before writing m(i)
      v = v_new;  // g2 reads p, which is still the old p here
      p -= lr * (m / bc1) / ((v / bc2).sqrt() + eps);
      return true;
    }
  }
  const T mu = static_cast<T>(spec_.momentum);
  if (spec_.momentum == 0) {
    // p -= lr g'.
    if constexpr (!kApply) {
      return (p - lr * g2).allFinite();
    } else {
      p -= lr * g2;
      return true;
    }
  }
  // v = mu v + g';  p -= lr (nesterov ? g' + mu v : v).
  const auto v_new = mu * m + g2;
  if constexpr (!kApply) {
    if (!v_new.allFinite()) return false;
    return spec_.nesterov ? (p - lr * (g2 + mu * v_new)).allFinite()
                          : (p - lr * v_new).allFinite();
  } else {
    m = v_new;
    if (spec_.nesterov) {
      p -= lr * (g2 + mu * m);
    } else {
      p -= lr * m;
    }
    return true;
  }
}

namespace {
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
// State tensor i, or an empty view when the optimizer keeps none (plain SGD).
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
}  // namespace

template <typename T>
bool Optimizer<T>::UpdateIsFinite(const ParamSet<T>& params,
                                  const ParamSet<T>& grads) const {
  for (size_t i = 0; i < params.weights.size(); ++i) {
    if (!Tensor<false>(
            ConstFlatOf(params.weights[i]), ConstFlatOf(grads.weights[i]),
            ConstStateOf(m_.weights, i), ConstStateOf(v_.weights, i)) ||
        !Tensor<false>(ConstFlatOf(params.biases[i]),
                       ConstFlatOf(grads.biases[i]), ConstStateOf(m_.biases, i),
                       ConstStateOf(v_.biases, i))) {
      return false;
    }
  }
  return true;
}

template <typename T>
void Optimizer<T>::Apply(const ParamSet<T>& grads, ParamSet<T>* params) {
  for (size_t i = 0; i < params->weights.size(); ++i) {
    Tensor<true>(FlatOf(params->weights[i]), ConstFlatOf(grads.weights[i]),
                 StateOf(m_.weights, i), StateOf(v_.weights, i));
    Tensor<true>(FlatOf(params->biases[i]), ConstFlatOf(grads.biases[i]),
                 StateOf(m_.biases, i), StateOf(v_.biases, i));
  }
  if (spec_.kind == OptimizerKind::kAdam) ++t_;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace satlab::engine
