#include "server/engine/optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "server/engine/kernels.h"
#include "server/engine/step_team.h"

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

// A tensor as a flat array (its storage order does not matter for
// elementwise updates).
template <typename M>
auto FlatOf(M& x) {
  using T = typename M::Scalar;
  return Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(x.data(), x.size());
}
// Tensor i of a state set, or an empty view when the optimizer keeps none.
template <typename V>
auto StateOf(std::vector<V>& s, size_t i) {
  using T = typename V::Scalar;
  return s.empty() ? Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(nullptr, 0)
                   : FlatOf(s[i]);
}
// Whether every coefficient of x is finite, as one vectorized sum: x * 0
// is 0 for a finite x and NaN for an infinite or NaN one.
template <typename A>
bool Finite(const A& x) {
  using T = typename A::Scalar;
  return (x * T(0)).sum() == T(0);
}

// max |x| over every parameter; infinity when one is not finite (a bound
// then proves nothing).
template <typename T>
double LargestMagnitude(const ParamSet<T>& params) {
  double largest = 0;
  bool finite = true;
  auto take = [&](const auto& x) {
    if (x.size() == 0) return;
    finite = finite && Finite(x.array());
    if (finite) {
      largest = std::max(largest, static_cast<double>(x.cwiseAbs().maxCoeff()));
    }
  };
  for (const auto& w : params.weights) take(w);
  for (const auto& b : params.biases) take(b);
  return finite ? largest : std::numeric_limits<double>::infinity();
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
bool Optimizer<T>::Tensor(Flat p, const T* g_data, Flat m, Flat v,
                          bool write) const {
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> g(g_data,
                                                               p.size());
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
    const auto m_next = b1 * m + (T(1) - b1) * g2;
    const auto v_next = b2 * v + (T(1) - b2) * g2.square();
    if (!write) {
      return Finite(m_next + v_next +
                    (p - lr * (m_next / bc1) / ((v_next / bc2).sqrt() + eps)));
    }
    // Each assignment reads only the values of the element it writes, so
    // in place is safe; p last, from the new m and v.
    m = m_next;
    v = v_next;
    p -= lr * (m / bc1) / ((v / bc2).sqrt() + eps);
    return true;
  }
  if (spec_.momentum == 0) {
    // p -= lr g': the dispatched kernels (the same bits in every variant).
    if (!write) return kernels::SgdFinite(p.data(), g_data, p.size(), lr, wd);
    kernels::SgdUpdate(p.data(), g_data, p.size(), lr, wd);
    return true;
  }
  // v = mu v + g';  p -= lr (nesterov ? g' + mu v : v).
  const T mu = static_cast<T>(spec_.momentum);
  const auto m_next = mu * m + g2;
  if (!write) {
    return spec_.nesterov ? Finite(m_next + (p - lr * (g2 + mu * m_next)))
                          : Finite(m_next + (p - lr * m_next));
  }
  // m first: g' reads p, which must still hold its old value; then p from
  // the new m (p's own expression reads each old p before writing it).
  m = m_next;
  if (spec_.nesterov) {
    p -= lr * (g2 + mu * m);
  } else {
    p -= lr * m;
  }
  return true;
}

namespace {

// For plain SGD's p - lr (g + wd p) with |p| <= p_max and |g| <= g_max: a
// bound of the magnitude of every intermediate and new value, each of T's
// four roundings (and the gradient norm's, < 1e-3) covered by a factor
// 1.01.
double SgdBound(double p_max, double g_max, double lr, double wd) {
  constexpr double k = 1.01;
  const double decay = wd * p_max * k;         // wd p
  const double sum = (g_max * k + decay) * k;  // g + wd p
  const double scaled = lr * sum * k;          // lr (g + wd p)
  return std::max({p_max, decay, sum, scaled, (p_max + scaled) * k});
}

}  // namespace

template <typename T>
bool Optimizer<T>::Step(absl::Span<const T* const> weight_grads,
                        absl::Span<const T* const> bias_grads,
                        ParamSet<T>* params, double gradient_bound) {
  // Every tensor is split over the step team in ranges of whole cache
  // lines; an update reads and writes only its own element, with the same
  // operations whichever member computes it. Two hand-offs: all checks,
  // then (if all pass) all writes.
  constexpr int64_t kGrain = 64;
  auto pass = [&](bool write, int part, int parts) {
    bool ok = true;
    auto tensor = [&](Flat p, const T* g, Flat m, Flat v) {
      const Range r = PartOf(p.size(), kGrain, part, parts);
      const int64_t n = r.end - r.begin;
      if (n == 0) return;
      auto slice = [&](Flat x) {
        return x.size() == 0 ? x : Flat(x.data() + r.begin, n);
      };
      ok = ok && Tensor(Flat(p.data() + r.begin, n), g + r.begin, slice(m),
                        slice(v), write);
    };
    for (size_t i = 0; i < params->weights.size(); ++i) {
      tensor(FlatOf(params->weights[i]), weight_grads[i],
             StateOf(m_.weights, i), StateOf(v_.weights, i));
      tensor(FlatOf(params->biases[i]), bias_grads[i], StateOf(m_.biases, i),
             StateOf(v_.biases, i));
    }
    return ok;
  };
  int64_t values = 0;
  for (size_t i = 0; i < params->weights.size(); ++i) {
    values += params->weights[i].size() + params->biases[i].size();
  }
  // Plain SGD whose every new value is provably finite from two bounds
  // needs no checking pass: the gradients' (a finite norm bounds each
  // entry) and the parameters', carried from update to update (found by a
  // pass over them when unknown, and after an update that was not proven).
  std::optional<double> proven;
  if (spec_.kind == OptimizerKind::kSgd && spec_.momentum == 0 &&
      std::isfinite(gradient_bound)) {
    if (!param_bound_.has_value()) param_bound_ = LargestMagnitude(*params);
    const double bound =
        SgdBound(*param_bound_, gradient_bound,
                 static_cast<double>(static_cast<T>(spec_.learning_rate)),
                 static_cast<double>(static_cast<T>(spec_.weight_decay)));
    if (bound < static_cast<double>(std::numeric_limits<T>::max()) / 4) {
      proven = bound;
    }
  }
  if (!proven.has_value()) {
    std::array<bool, kMaxStepThreads> finite;
    finite.fill(true);
    RunOnTeam(values, [&](int part, int parts) {
      finite[static_cast<size_t>(part)] = pass(/*write=*/false, part, parts);
    });
    for (const bool ok : finite) {
      if (!ok) return false;  // only the checking pass fails: nothing written
    }
  }
  RunOnTeam(values,
            [&](int part, int parts) { pass(/*write=*/true, part, parts); });
  param_bound_ = proven;
  if (spec_.kind == OptimizerKind::kAdam) ++t_;
  return true;
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace satlab::engine
