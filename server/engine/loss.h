// Losses: per-sample value C_x and output delta dC_x/dz, with sigmoid+bce and
// softmax+cce fused from the logits z (never log(a)).
#ifndef SATLAB_SERVER_ENGINE_LOSS_H_
#define SATLAB_SERVER_ENGINE_LOSS_H_

#include "Eigen/Core"
#include "absl/strings/string_view.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// Whether `l` is one of the enum's values.
bool IsValidLoss(Loss l);

// Sum over the rows of C_x, computed from z and a = f(z) (both [n, out]) and
// targets y [n, out]:
//   mse: C_x = 1/2 sum_k (a_k - y_k)^2
//   bce: C_x = sum_k softplus(z_k) - y_k z_k     (= -[y ln a + (1-y) ln(1-a)])
//   cce: C_x = -sum_k y_k (z_k - logsumexp(z))   (= -sum_k y_k ln a_k)
// The pair must be allowed (CheckLossActivation).
template <typename T>
T LossSum(Loss loss, const ConstRowRef<T>& z, const ConstRowRef<T>& a,
          const ConstRowRef<T>& y);

// Per-sample output delta dC_x/dz [n, out]:
//   mse, elementwise f: (a - y) * f'(z)           (`d` = f'(z))
//   mse, softmax:       a_k ((a - y)_k - sum_j a_j (a - y)_j)  (Jacobian)
//   bce (sigmoid):      a - y
//   cce (softmax):      a sum(y) - y
template <typename T>
void OutputDelta(Loss loss, Activation output, const ConstRowRef<T>& a,
                 const ConstRowRef<T>& d, const ConstRowRef<T>& y,
                 RowRef<T> delta);

extern template float LossSum<float>(Loss, const ConstRowRef<float>&,
                                     const ConstRowRef<float>&,
                                     const ConstRowRef<float>&);
extern template double LossSum<double>(Loss, const ConstRowRef<double>&,
                                       const ConstRowRef<double>&,
                                       const ConstRowRef<double>&);
extern template void OutputDelta<float>(Loss, Activation,
                                        const ConstRowRef<float>&,
                                        const ConstRowRef<float>&,
                                        const ConstRowRef<float>&,
                                        RowRef<float>);
extern template void OutputDelta<double>(Loss, Activation,
                                         const ConstRowRef<double>&,
                                         const ConstRowRef<double>&,
                                         const ConstRowRef<double>&,
                                         RowRef<double>);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_LOSS_H_
