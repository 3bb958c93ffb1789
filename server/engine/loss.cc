#include "server/engine/loss.h"

namespace satlab::engine {

bool IsValidLoss(Loss l) {
  return l == Loss::kMse || l == Loss::kBce || l == Loss::kCce;
}

template <typename T>
T LossSum(Loss loss, const ConstRowRef<T>& z, const ConstRowRef<T>& a,
          const ConstRowRef<T>& y) {
  switch (loss) {
    case Loss::kMse:
      // 1/2 ||a - y||_F^2 over [n, out].
      return T(0.5) * (a - y).squaredNorm();
    case Loss::kBce:
      // softplus(z) - y z, softplus(z) = max(z, 0) + log1p(e^-|z|): finite for
      // any finite z (a saturated unit costs |z|, not log 0).
      return (z.array().max(T(0)) + (-z.array().abs()).exp().log1p() -
              y.array() * z.array())
          .sum();
    case Loss::kCce: {
      // Per row: logsumexp(z) = m + log sum_j e^{z_j - m}, m = max_j z_j;
      // C_x = -sum_k y_k (z_k - logsumexp(z)).
      T total = 0;
      for (Eigen::Index r = 0; r < z.rows(); ++r) {
        const T m = z.row(r).maxCoeff();
        const T lse = m + std::log((z.row(r).array() - m).exp().sum());
        total -= (y.row(r).array() * (z.row(r).array() - lse)).sum();
      }
      return total;
    }
  }
  return T(0);
}

template <typename T>
void OutputDelta(Loss loss, Activation output, const ConstRowRef<T>& a,
                 const ConstRowRef<T>& d, const ConstRowRef<T>& y,
                 RowRef<T> delta) {
  switch (loss) {
    case Loss::kMse:
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
      return;
    case Loss::kBce:
      // Sigmoid's a (1 - a) cancels against dC/da: delta = a - y exactly.
      delta.noalias() = a - y;
      return;
    case Loss::kCce:
      // delta_k = a_k sum_j y_j - y_k (a - y for rows summing to 1; a * 1 is
      // exact, so a one-hot row gives a - y bit for bit).
      for (Eigen::Index r = 0; r < a.rows(); ++r) {
        delta.row(r) = a.row(r) * y.row(r).sum() - y.row(r);
      }
      return;
  }
}

template float LossSum<float>(Loss, const ConstRowRef<float>&,
                              const ConstRowRef<float>&,
                              const ConstRowRef<float>&);
template double LossSum<double>(Loss, const ConstRowRef<double>&,
                                const ConstRowRef<double>&,
                                const ConstRowRef<double>&);
template void OutputDelta<float>(Loss, Activation, const ConstRowRef<float>&,
                                 const ConstRowRef<float>&,
                                 const ConstRowRef<float>&, RowRef<float>);
template void OutputDelta<double>(Loss, Activation, const ConstRowRef<double>&,
                                  const ConstRowRef<double>&,
                                  const ConstRowRef<double>&, RowRef<double>);

}  // namespace satlab::engine
