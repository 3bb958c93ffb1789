// The activation table: one row per Activation with its name, f, f' and
// max f'. Adding an activation means adding a row here (and the enum value).
#ifndef SATLAB_SERVER_ENGINE_ACTIVATION_H_
#define SATLAB_SERVER_ENGINE_ACTIVATION_H_

#include "absl/strings/string_view.h"
#include "server/engine/spec.h"

namespace satlab::engine {

template <typename T>
struct ActivationOps {
  Activation id;
  absl::string_view name;  // as in messages: "sigmoid", "leaky_relu", ...
  // Largest value of f' (the saturation threshold is theta * max_derivative).
  double max_derivative;
  // Softmax: allowed on the output layer only.
  bool output_only;
  // Softmax: each a_k depends on its whole row. Every other f is
  // elementwise, and the engine may apply it to a [1, rows * units] view
  // of contiguous rows (which Eigen vectorizes end to end).
  bool rowwise;
  // ReLU-like: a unit is "dead" when z <= 0 for every sample.
  bool can_die;
  // `derivative` is d = a (1 - a) (sigmoid; softmax's diagonal): the step
  // takes it with the block's statistics in one pass
  // (kernels::LogisticDerivativeStats).
  bool logistic;
  // a = f(z), both [n, units] (a already has z's shape); `slope` is the
  // leaky_relu negative slope. Views, so that the engine can apply them to
  // a few rows at a time while those rows are in L1.
  void (*forward)(const ConstRowRef<T>& z, T slope, RowRef<T> a);
  // d = f'(z), [n, units], given z and a = f(z). For softmax this is the
  // Jacobian diagonal a (1 - a) (statistics only; backprop through softmax
  // uses the full Jacobian, see loss.cc).
  void (*derivative)(const ConstRowRef<T>& z, const ConstRowRef<T>& a, T slope,
                     RowRef<T> d);
};

// Whether `a` is one of the enum's values.
bool IsValidActivation(Activation a);

// The table row of a valid activation (IsValidActivation(a) must hold).
template <typename T>
const ActivationOps<T>& GetActivationOps(Activation a);

extern template const ActivationOps<float>& GetActivationOps<float>(
    Activation a);
extern template const ActivationOps<double>& GetActivationOps<double>(
    Activation a);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_ACTIVATION_H_
