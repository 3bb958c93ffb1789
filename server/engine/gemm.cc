#include "server/engine/gemm.h"

#include <cblas.h>

#include <type_traits>
#include <vector>

#include "server/engine/kernels.h"
#include "server/engine/step_team.h"

namespace satlab::engine {
namespace {

// Products of at most this many multiply-adds run in the engine's own
// register tiles (kernels::SmallProduct). A BLAS
// call costs ~0.25 us even at 8^3. Measured here, float32 square
// products, one thread, tiles vs cblas_sgemm:
//   8^3: 0.06 vs 0.24 us;  16^3: 0.28 vs 0.48 us;
//   24^3 to 32^3: even (0.8-1.2x either way);  40^3 and up: BLAS 1.1-1.6x.
constexpr int64_t kSmallProduct = int64_t{32} * 32 * 32;

// The step team splits a product in blocks of whole rows of this many.
constexpr int64_t kSplitRows = 8;

// src [rows, cols] transposed into this thread's buffer [cols, rows]
// (grown, never shrunk: at most kSmallProduct values).
template <typename T>
const T* Transposed(const T* src, int64_t rows, int64_t cols) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < static_cast<size_t>(rows * cols)) {
    buffer.resize(static_cast<size_t>(rows * cols));
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) buffer[c * rows + r] = src[r * cols + c];
  }
  return buffer.data();
}

template <typename T>
void SmallGemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n,
               int64_t k, const T* a, const T* b, T* c, bool accumulate) {
  // A transposed B here is a weight matrix of at most k n values: copied
  // upright, every tile reads B rows contiguously.
  if (trans_b == Transpose::kYes) b = Transposed(b, n, k);
  if (trans_a == Transpose::kYes) {
    kernels::SmallProduct(m, n, k, a, /*a_row=*/1, /*a_col=*/m, b, c,
                          accumulate);
  } else {
    kernels::SmallProduct(m, n, k, a, /*a_row=*/k, /*a_col=*/1, b, c,
                          accumulate);
  }
}

// C = A B (+ C) through OpenBLAS, with explicit leading dimensions (a
// block of rows of a larger product).
template <typename T>
void Cblas(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n,
           int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
           bool accumulate) {
  const CBLAS_TRANSPOSE ta =
      trans_a == Transpose::kYes ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb =
      trans_b == Transpose::kYes ? CblasTrans : CblasNoTrans;
  const T beta = accumulate ? T(1) : T(0);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta,
                c, static_cast<blasint>(n));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), 1.0, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta,
                c, static_cast<blasint>(n));
  }
}

// Rows `rows` of C = op(A) op(B) (+ C) through OpenBLAS: one
// single-threaded call on the rows of A they need. OpenBLAS may pick
// another kernel (another order of the sum over k) for a block of rows than
// for the whole, so a team agrees with one call to rounding, not to the bit
// (step_team_test), and with itself bitwise: the parts are a fixed function
// of the team's size.
template <typename T>
void CblasRows(Range rows, Transpose trans_a, Transpose trans_b, int64_t m,
               int64_t n, int64_t k, const T* a, const T* b, T* c,
               bool accumulate) {
  const int64_t lda = trans_a == Transpose::kYes ? m : k;
  const int64_t ldb = trans_b == Transpose::kYes ? k : n;
  if (rows.begin == rows.end) return;
  const T* a_rows =
      trans_a == Transpose::kYes ? a + rows.begin : a + rows.begin * lda;
  Cblas(trans_a, trans_b, rows.end - rows.begin, n, k, a_rows, lda, b, ldb,
        c + rows.begin * n, accumulate);
}

}  // namespace

template <typename T>
void BlasGemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n,
              int64_t k, const T* a, const T* b, T* c, bool accumulate) {
  RunOnTeam(m * n * k, [&](int part, int parts) {
    CblasRows(PartOf(m, kSplitRows, part, parts), trans_a, trans_b, m, n, k, a,
              b, c, accumulate);
  });
}

Range GemmPartRows(int part, int parts, int64_t m, int64_t n, int64_t k) {
  // Gemm's own choices, made for one part: a product below kMinTeamWork
  // (small products included) on part 0, a larger one split as BlasGemm's
  // task.
  static_assert(kSmallProduct < kMinTeamWork);
  parts = PartsFor(m * n * k, parts);
  if (part >= parts) return {0, 0};
  return PartOf(m, kSplitRows, part, parts);
}

template <typename T>
void GemmPart(int part, int parts, Transpose trans_a, Transpose trans_b,
              int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
              bool accumulate) {
  const Range rows = GemmPartRows(part, parts, m, n, k);
  if (rows.begin == rows.end) return;
  if (m * n * k <= kSmallProduct) {
    SmallGemm(trans_a, trans_b, m, n, k, a, b, c, accumulate);
    return;
  }
  CblasRows(rows, trans_a, trans_b, m, n, k, a, b, c, accumulate);
}

template <typename T>
void Gemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n, int64_t k,
          const T* a, const T* b, T* c, bool accumulate) {
  if (m * n * k <= kSmallProduct) {
    SmallGemm(trans_a, trans_b, m, n, k, a, b, c, accumulate);
    return;
  }
  BlasGemm(trans_a, trans_b, m, n, k, a, b, c, accumulate);
}

// The step team splits products (above) and passes; OpenBLAS runs
// single-threaded inside each member, so that it starts no threads of its
// own beside the team's.
void SetBlasThreads(int threads) {
  openblas_set_num_threads(1);
  SetStepThreads(threads);
}

int BlasThreads() { return StepThreads(); }

template void GemmPart<float>(int, int, Transpose, Transpose, int64_t, int64_t,
                              int64_t, const float*, const float*, float*,
                              bool);
template void GemmPart<double>(int, int, Transpose, Transpose, int64_t, int64_t,
                               int64_t, const double*, const double*, double*,
                               bool);
template void BlasGemm<float>(Transpose, Transpose, int64_t, int64_t, int64_t,
                              const float*, const float*, float*, bool);
template void BlasGemm<double>(Transpose, Transpose, int64_t, int64_t, int64_t,
                               const double*, const double*, double*, bool);
template void Gemm<float>(Transpose, Transpose, int64_t, int64_t, int64_t,
                          const float*, const float*, float*, bool);
template void Gemm<double>(Transpose, Transpose, int64_t, int64_t, int64_t,
                           const double*, const double*, double*, bool);

}  // namespace satlab::engine
