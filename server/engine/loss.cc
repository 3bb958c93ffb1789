#include "server/engine/loss.h"

#include <array>
#include <cmath>
#include <string>

namespace satlab::engine {
namespace {

template <typename T>
constexpr std::array<LossOps<T>, 3> kTable = {{
    // mse: C_x = 1/2 sum_k (a_k - y_k)^2; any output, any finite target.
    {Loss::kMse, "mse", std::nullopt, false, false,
     [](const ConstRowRef<T>&, const ConstRowRef<T>& a,
        const ConstRowRef<T>& y) {
       // 1/2 ||a - y||_F^2 over [n, out].
       return T(0.5) * (a - y).squaredNorm();
     },
     [](Activation output, const ConstRowRef<T>& a, const ConstRowRef<T>& d,
        const ConstRowRef<T>& y, RowRef<T> delta) {
       // dC/da = a - y, [n, out].
       delta.noalias() = a - y;
       if (output == Activation::kSoftmax) {
         // delta = J^T (a - y) per row, J_jk = a_j ([j == k] - a_k):
         //   delta_k = a_k ((a - y)_k - sum_j a_j (a - y)_j).
         for (Eigen::Index r = 0; r < a.rows(); ++r) {
           const T s = a.row(r).dot(delta.row(r));
           delta.row(r).array() = a.row(r).array() * (delta.row(r).array() - s);
         }
       } else {
         // Elementwise f: delta = (a - y) ⊙ f'(z).
         delta.array() *= d.array();
       }
     }},
    // bce: C_x = sum_k softplus(z_k) - y_k z_k
    //          (= -[y ln a + (1-y) ln(1-a)]), fused with sigmoid.
    {Loss::kBce, "bce", Activation::kSigmoid, true, false,
     [](const ConstRowRef<T>& z, const ConstRowRef<T>&,
        const ConstRowRef<T>& y) {
       // softplus(z) - y z, softplus(z) = max(z, 0) + log1p(e^-|z|): finite
       // for any finite z (a saturated unit costs |z|, not log 0).
       return (z.array().max(T(0)) + (-z.array().abs()).exp().log1p() -
               y.array() * z.array())
           .sum();
     },
     [](Activation, const ConstRowRef<T>& a, const ConstRowRef<T>&,
        const ConstRowRef<T>& y, RowRef<T> delta) {
       // Sigmoid's a (1 - a) cancels against dC/da: delta = a - y exactly.
       delta.noalias() = a - y;
     }},
    // cce: C_x = -sum_k y_k (z_k - logsumexp(z)) (= -sum_k y_k ln a_k),
    // fused with softmax.
    {Loss::kCce, "cce", Activation::kSoftmax, true, true,
     [](const ConstRowRef<T>& z, const ConstRowRef<T>&,
        const ConstRowRef<T>& y) {
       // Per row: logsumexp(z) = m + log sum_j e^{z_j - m}, m = max_j z_j.
       T total = 0;
       for (Eigen::Index r = 0; r < z.rows(); ++r) {
         const T m = z.row(r).maxCoeff();
         const T lse = m + std::log((z.row(r).array() - m).exp().sum());
         total -= (y.row(r).array() * (z.row(r).array() - lse)).sum();
       }
       return total;
     },
     [](Activation, const ConstRowRef<T>& a, const ConstRowRef<T>&,
        const ConstRowRef<T>& y, RowRef<T> delta) {
       // delta_k = a_k sum_j y_j - y_k (a - y for rows summing to 1; a * 1
       // is exact, so a one-hot row gives a - y bit for bit).
       for (Eigen::Index r = 0; r < a.rows(); ++r) {
         delta.row(r) = a.row(r) * y.row(r).sum() - y.row(r);
       }
     }},
}};

// The table order must follow the enum (spec.h).
constexpr bool TableFollowsEnum() {
  for (size_t i = 0; i < kTable<double>.size(); ++i) {
    if (static_cast<size_t>(kTable<double>[i].id) != i) return false;
  }
  return true;
}
static_assert(TableFollowsEnum());

}  // namespace

bool IsValidLoss(Loss l) {
  const int i = static_cast<int>(l);
  return i >= 0 && i < static_cast<int>(kTable<double>.size());
}

absl::string_view LossNameList() {
  static const std::string* const list = [] {
    auto* s = new std::string;
    for (size_t i = 0; i < kTable<double>.size(); ++i) {
      if (i > 0) s->append(i + 1 == kTable<double>.size() ? " or " : ", ");
      s->append(kTable<double>[i].name.data(), kTable<double>[i].name.size());
    }
    return s;
  }();
  return *list;
}

template <typename T>
const LossOps<T>& GetLossOps(Loss l) {
  return kTable<T>[static_cast<size_t>(l)];
}

template const LossOps<float>& GetLossOps<float>(Loss l);
template const LossOps<double>& GetLossOps<double>(Loss l);

}  // namespace satlab::engine
