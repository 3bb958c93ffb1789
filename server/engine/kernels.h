// The engine's own hot loops (the sigmoid and its derivative, elementwise
// products, the saturation count, the small matrix products of tiny networks,
// plain SGD's update, the sums behind a step's statistics and norms),
// compiled several times for different instruction sets and chosen once per
// process from what the CPU supports, so that one portable binary (built
// without -march=native) runs AVX2 or AVX-512 code where the CPU has it.
//
// Every variant returns the same bits as the baseline (SSE2, the x86-64
// minimum) for the same input: no FMA contraction (each variant's file is
// compiled with -ffp-contract=off and does a*b + c as two roundings, as the
// baseline does), the same order of every sum, the same polynomial for exp,
// and the same split between vector and scalar code where those round
// differently (Eigen's scalar tail calls std::exp). kernels_test checks it on
// every variant the CPU supports. The engine's determinism (same seed, same
// bits) therefore does not depend on the variant chosen. (A -march=native
// build, for benchmarks only, compiles the baseline with FMA: there the
// baseline alone rounds differently, as it always did in such builds.)
#ifndef SATLAB_SERVER_ENGINE_KERNELS_H_
#define SATLAB_SERVER_ENGINE_KERNELS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace satlab::engine::kernels {

// The variants, from the x86-64 baseline up.
enum class Isa {
  kBaseline,  // SSE2 (Eigen's packets; the code before dispatch existed)
  kAvx2,      // 256-bit vectors (AVX2)
  kAvx512,    // 512-bit vectors (AVX-512 F)
};

// "baseline", "avx2", "avx512".
absl::string_view IsaName(Isa isa);
// The variant named `name` (as IsaName), or INVALID_ARGUMENT naming the
// accepted names.
absl::StatusOr<Isa> ParseIsa(absl::string_view name);
// Whether this CPU (and OS) runs the variant.
bool IsaSupported(Isa isa);
// The widest variant this CPU supports.
Isa BestIsa();

// The variant in use: BestIsa() until SetActiveIsa picks another.
Isa ActiveIsa();
// Process-wide choice (the server's --kernels flag, benchmarks, tests).
// FAILED_PRECONDITION when this CPU does not support `isa`. Not meant to be
// called while other threads compute (each call reads the choice once, so
// a switch mid-step is safe but mixes variants within that step).
absl::Status SetActiveIsa(Isa isa);

// One line for logs and /metrics: the variant in use and the CPU features
// it was chosen from, e.g. "avx512 (cpu: avx2 fma avx512f ...)".
std::string Description();

// out[i] = sigmoid(z[i]) for i < count: with e = exp(-|z|), 1 / (1 + e) for
// z >= 0 and e / (1 + e) below (exp never overflows). `out` may be `z`.
template <typename T>
void Sigmoid(const T* z, int64_t count, T* out);

// out[i] = exp(x[i]) for x[i] <= 0 (or NaN), i < count: the softmax's
// e^{z - max z}. Every element goes through Eigen's vector polynomial
// (there is no scalar head or tail here, unlike Sigmoid), so its bits
// depend on its value only, not on where a row starts or how long it is.
// As Eigen's, it clamps x at about -88.7 (float) / -709.8 (double): results
// under T's smallest normal number are that close to zero, not exact.
// `out` may be `x`. (Larger x is not this kernel's: the variants drop the
// clamps only x > 0 needs.)
template <typename T>
void ExpOfNonPositive(const T* x, int64_t count, T* out);

// d[i] = a[i] (1 - a[i]), the sigmoid's (and softmax's diagonal) f'.
template <typename T>
void SigmoidDerivative(const T* a, int64_t count, T* d);

// x[i] *= y[i].
template <typename T>
void MultiplyInPlace(const T* y, int64_t count, T* x);

// How many x[i] < threshold (NaN is not), i < count: the saturated
// (unit, sample) pairs of a layer. An integer: any order gives the same.
template <typename T>
int64_t CountBelow(const T* x, int64_t count, T threshold);

// C [m, n] = A B, or C += A B when `accumulate`, for small shapes (the
// engine's Gemm sends products up to 32^3 multiply-adds here). A(i, p) is
// a[i * a_row + p * a_col] (so that A^T is read in place), B is [k, n] and
// C [m, n], both row-major and contiguous. Each C(i, j) is summed over p in
// order, except for the columns past the last whole 128-bit packet when
// a_col == 1, summed in 128-bit packets along p as the baseline does.
template <typename T>
void SmallProduct(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_row,
                  int64_t a_col, const T* b, T* c, bool accumulate);

// Plain SGD's step: out[i] = p[i] - lr (g[i] + wd p[i]) (wd = 0: the
// gradient alone, as the optimizer always computed it); returns whether
// every out[i] is finite. `out` may be `p` or `g` (each element is read
// before its own is written).
template <typename T>
bool SgdUpdate(const T* p, const T* g, int64_t count, T lr, T wd, T* out);

// The sum of x[i], and of x[i]^2, for i < count, in T, added in one fixed
// order (kernels_sums.h: 256 bytes of interleaved partial sums, folded in
// halves, then the tail) that keeps the additions independent of each
// other; the same bits in every variant. A layer's statistics and the
// gradients' norms, a block at a time.
template <typename T>
T Sum(const T* x, int64_t count);
template <typename T>
T SumOfSquares(const T* x, int64_t count);

// A block of a sigmoid (or softmax) layer in one pass: d[i] = a[i] (1 -
// a[i]) written, and what Sum(a), Sum(d) and CountBelow(d, threshold)
// return for it, bit for bit (four passes over the block otherwise).
template <typename T>
struct DerivativeStats {
  T activation_sum;
  T derivative_sum;
  int64_t below;
};
template <typename T>
DerivativeStats<T> LogisticDerivativeStats(const T* a, int64_t count,
                                           T threshold, T* d);

}  // namespace satlab::engine::kernels

#endif  // SATLAB_SERVER_ENGINE_KERNELS_H_
