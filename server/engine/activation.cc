#include "server/engine/activation.h"

#include <array>

#include "server/engine/kernels.h"

namespace satlab::engine {
namespace {

template <typename T>
using Array = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Stable logistic: with e = exp(-|z|) in (0, 1], sigma(z) = 1 / (1 + e) for
// z >= 0 and e / (1 + e) for z < 0, so exp never overflows.
template <typename T>
void StableSigmoid(const ConstRowRef<T>& z, RowRef<T> out) {
  // One row (the engine's [1, rows * units] views): the dispatched kernel,
  // which rounds as the code below does for one row.
  if (z.rows() == 1) {
    kernels::Sigmoid(z.data(), z.cols(), out.data());
    return;
  }
  // e = exp(-|z|) never overflows; a = 1/(1+e) for z >= 0, e/(1+e) below.
  // Selecting the numerator first keeps one division per element.
  out.array() = (-z.array().abs()).exp();
  out.array() =
      (z.array() >= T(0)).select(T(1), out.array()) / (T(1) + out.array());
}

// a_k = e^{z_k - m} / sum_j e^{z_j - m} per row, m = max_j z_j (so every
// exponent is <= 0 and the largest is 0). The exponentials go through the
// dispatched kernel, over the whole block when the rows are contiguous
// (rows are often narrower than one vector: 10 classes); the max and the
// sum run in order, in scalar code, so every variant gives the same bits.
// A NaN anywhere in a row makes the whole row NaN. `a` may be `z`.
template <typename T>
void Softmax(const ConstRowRef<T>& z, RowRef<T> a) {
  const Eigen::Index rows = z.rows(), cols = z.cols();
  const bool contiguous = (rows == 1 || a.outerStride() == cols);
  for (Eigen::Index r = 0; r < rows; ++r) {
    const T* zr = z.data() + r * z.outerStride();
    T* ar = a.data() + r * a.outerStride();
    T m = zr[0];
    for (Eigen::Index k = 1; k < cols; ++k) m = zr[k] > m ? zr[k] : m;
    for (Eigen::Index k = 0; k < cols; ++k) ar[k] = zr[k] - m;
    if (!contiguous) kernels::ExpOfNonPositive(ar, cols, ar);
  }
  if (contiguous) kernels::ExpOfNonPositive(a.data(), rows * cols, a.data());
  for (Eigen::Index r = 0; r < rows; ++r) {
    T* ar = a.data() + r * a.outerStride();
    T sum = 0;
    for (Eigen::Index k = 0; k < cols; ++k) sum += ar[k];
    for (Eigen::Index k = 0; k < cols; ++k) ar[k] /= sum;
  }
}

// d = a (1 - a): sigmoid's f', softmax's Jacobian diagonal. Elementwise
// and exact per operation, so any contiguous view may take the kernel.
template <typename T>
void LogisticDerivative(const ConstRowRef<T>& a, RowRef<T> d) {
  if ((a.rows() == 1 || a.outerStride() == a.cols()) &&
      (d.rows() == 1 || d.outerStride() == d.cols())) {
    kernels::SigmoidDerivative(a.data(), a.size(), d.data());
    return;
  }
  d.array() = a.array() * (T(1) - a.array());
}

template <typename T>
constexpr std::array<ActivationOps<T>, 7> kTable = {{
    // f(z) = z; f' = 1.
    {Activation::kIdentity, "identity", 1.0, false, false, false, false,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) { a = z; },
     [](const ConstRowRef<T>&, const ConstRowRef<T>&, T, RowRef<T> d) {
       d.setOnes();
     }},
    // f(z) = 1 / (1 + e^-z); f' = a (1 - a) <= 0.25.
    {Activation::kSigmoid, "sigmoid", 0.25, false, false, false, true,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) { StableSigmoid<T>(z, a); },
     [](const ConstRowRef<T>&, const ConstRowRef<T>& a, T, RowRef<T> d) {
       LogisticDerivative<T>(a, d);
     }},
    // f(z) = tanh z; f' = 1 - a^2 <= 1.
    {Activation::kTanh, "tanh", 1.0, false, false, false, false,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) {
       a.array() = z.array().tanh();
     },
     [](const ConstRowRef<T>&, const ConstRowRef<T>& a, T, RowRef<T> d) {
       d.array() = T(1) - a.array().square();
     }},
    // f(z) = max(0, z); f' = [z > 0].
    {Activation::kRelu, "relu", 1.0, false, false, true, false,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) {
       a.array() = z.array().max(T(0));
     },
     [](const ConstRowRef<T>& z, const ConstRowRef<T>&, T, RowRef<T> d) {
       d.array() = (z.array() > T(0)).template cast<T>();
     }},
    // f(z) = z for z > 0, slope z otherwise; f' = 1 or slope.
    {Activation::kLeakyRelu, "leaky_relu", 1.0, false, false, true, false,
     [](const ConstRowRef<T>& z, T slope, RowRef<T> a) {
       a.array() = (z.array() > T(0)).select(z.array(), slope * z.array());
     },
     [](const ConstRowRef<T>& z, const ConstRowRef<T>&, T slope, RowRef<T> d) {
       d.array() = (z.array() > T(0))
                       .select(Array<T>::Constant(z.rows(), z.cols(), T(1)),
                               Array<T>::Constant(z.rows(), z.cols(), slope));
     }},
    // f(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|); f' = sigmoid(z) < 1.
    {Activation::kSoftplus, "softplus", 1.0, false, false, false, false,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) {
       a.array() = z.array().max(T(0)) + (-z.array().abs()).exp().log1p();
     },
     [](const ConstRowRef<T>& z, const ConstRowRef<T>&, T, RowRef<T> d) {
       StableSigmoid<T>(z, d);
     }},
    // a_k = e^{z_k - m} / sum_j e^{z_j - m} per row, m = max_j z_j (so the
    // largest exponent is 0); "f'" = Jacobian diagonal a_k (1 - a_k).
    {Activation::kSoftmax, "softmax", 0.25, true, true, false, true,
     [](const ConstRowRef<T>& z, T, RowRef<T> a) { Softmax<T>(z, a); },
     [](const ConstRowRef<T>&, const ConstRowRef<T>& a, T, RowRef<T> d) {
       LogisticDerivative<T>(a, d);
     }},
}};

}  // namespace

bool IsValidActivation(Activation a) {
  const int i = static_cast<int>(a);
  return i >= 0 && i < static_cast<int>(kTable<double>.size());
}

template <typename T>
const ActivationOps<T>& GetActivationOps(Activation a) {
  const ActivationOps<T>& ops = kTable<T>[static_cast<size_t>(a)];
  return ops;
}

template const ActivationOps<float>& GetActivationOps<float>(Activation a);
template const ActivationOps<double>& GetActivationOps<double>(Activation a);

// The table order must follow the enum (spec.h).
constexpr bool TableFollowsEnum() {
  for (size_t i = 0; i < kTable<double>.size(); ++i) {
    if (static_cast<size_t>(kTable<double>[i].id) != i) return false;
  }
  return true;
}
static_assert(TableFollowsEnum());

}  // namespace satlab::engine
