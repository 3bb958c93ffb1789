// The loss table: one row per Loss with its name, value C_x, output delta
// dC_x/dz, the output activation it needs (and fuses with, from the logits
// z, never log(a)) and the targets it needs. Adding a loss means adding a
// row here (and the enum value in spec.h).
#ifndef SATLAB_SERVER_ENGINE_LOSS_H_
#define SATLAB_SERVER_ENGINE_LOSS_H_

#include <optional>

#include "Eigen/Core"
#include "absl/strings/string_view.h"
#include "server/engine/spec.h"

namespace satlab::engine {

template <typename T>
struct LossOps {
  Loss id;
  absl::string_view name;  // as in messages: "mse", "bce", "cce"
  // The only output activation that may feed this loss, with which the
  // value and delta are fused (computed from z); nullopt: any activation
  // feeds it and the delta goes through f'(z).
  std::optional<Activation> fused_output;
  // Whether every target must lie in [0, 1] (cross-entropies: y is a
  // probability); otherwise any finite target.
  bool unit_targets;
  // Whether a row's delta depends on the whole row (not elementwise), so
  // the engine may not view contiguous rows as one [1, rows * out] row.
  bool rowwise;
  // Sum over the rows of C_x, from z and a = f(z) (both [n, out]) and
  // targets y [n, out].
  using ValueFn = T(const ConstRowRef<T>& z, const ConstRowRef<T>& a,
                    const ConstRowRef<T>& y);
  ValueFn* value;
  // Per-sample output delta dC_x/dz [n, out], given the output activation,
  // a = f(z), d = f'(z) and y.
  void (*delta)(Activation output, const ConstRowRef<T>& a,
                const ConstRowRef<T>& d, const ConstRowRef<T>& y,
                RowRef<T> delta);
};

// Whether `l` is one of the enum's values.
bool IsValidLoss(Loss l);

// "mse, bce or cce": every loss name, for messages.
absl::string_view LossNameList();

// The table row of a valid loss (IsValidLoss(l) must hold).
template <typename T>
const LossOps<T>& GetLossOps(Loss l);

extern template const LossOps<float>& GetLossOps<float>(Loss l);
extern template const LossOps<double>& GetLossOps<double>(Loss l);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_LOSS_H_
