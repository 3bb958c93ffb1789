// Matrix products of the training step, written straight into their
// destination, and the size of the BLAS thread pool behind them (which the
// server sets from --blas_threads).
#ifndef SATLAB_SERVER_ENGINE_GEMM_H_
#define SATLAB_SERVER_ENGINE_GEMM_H_

#include <cstdint>

#include "server/engine/step_team.h"

namespace satlab::engine {

enum class Transpose { kNo, kYes };

// C [m, n] = op(A) op(B), or C += op(A) op(B) when `accumulate`; op(A) is
// [m, k] and op(B) is [k, n]. Every matrix is row-major and contiguous (a
// transposed operand is stored as [k, m] / [n, k]). At most one operand is
// transposed: the step needs A B, A^T B and A B^T only.
//
// Large products go to OpenBLAS with beta = 0 or 1: Eigen's own `C = A * B`
// zeroes C and then calls gemm with beta = 1, one wasted pass over C (the
// whole weight gradient, per step). Small ones (m n k up to 32^3
// multiply-adds: the tiny networks) run in register tiles of SIMD packets,
// because a BLAS call costs ~0.25 us of dispatch and packing even at 8^3,
// more than such a product takes (gemm.cc has the measured crossover).
template <typename T>
void Gemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n, int64_t k,
          const T* a, const T* b, T* c, bool accumulate);

// What member `part` of a step team of `parts` computes of Gemm(...), for
// a product that shares one task of the team with other work (one hand-off
// instead of several): the rows of C Gemm's own split gives that member,
// or all of a product Gemm would not split on part 0. Called for every
// part, it writes exactly what Gemm writes with a team of `parts`.
template <typename T>
void GemmPart(int part, int parts, Transpose trans_a, Transpose trans_b,
              int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
              bool accumulate);
extern template void GemmPart<float>(int, int, Transpose, Transpose, int64_t,
                                     int64_t, int64_t, const float*,
                                     const float*, float*, bool);
extern template void GemmPart<double>(int, int, Transpose, Transpose, int64_t,
                                      int64_t, int64_t, const double*,
                                      const double*, double*, bool);

// The rows of C [m, n] that GemmPart(part, parts, ...) writes for a
// product of m n k multiply-adds (empty for a part it leaves idle).
Range GemmPartRows(int part, int parts, int64_t m, int64_t n, int64_t k);

// The same product always through OpenBLAS (cblas_?gemm), whatever its
// size: what Gemm uses above the small-product bound, and what the BLAS
// core guard checks.
template <typename T>
void BlasGemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n,
              int64_t k, const T* a, const T* b, T* c, bool accumulate);
extern template void BlasGemm<float>(Transpose, Transpose, int64_t, int64_t,
                                     int64_t, const float*, const float*,
                                     float*, bool);
extern template void BlasGemm<double>(Transpose, Transpose, int64_t, int64_t,
                                      int64_t, const double*, const double*,
                                      double*, bool);
extern template void Gemm<float>(Transpose, Transpose, int64_t, int64_t,
                                 int64_t, const float*, const float*, float*,
                                 bool);
extern template void Gemm<double>(Transpose, Transpose, int64_t, int64_t,
                                  int64_t, const double*, const double*,
                                  double*, bool);

// Threads per training step (the server's --blas_threads): the size of
// the step team (step_team.h) that splits every large product and the
// elementwise passes of a step, for every thread that computes from now on.
// OpenBLAS itself is set to one thread: the team is the only pool. A server
// that runs several steps at once (compute threads) wants fewer per step,
// and a Train stream on a 2-core machine runs faster with one and the other
// core left to the transport (docs/benchmarks.md).
void SetBlasThreads(int threads);  // threads >= 1
int BlasThreads();

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_GEMM_H_
