#include "server/engine/gemm.h"

#include <cblas.h>

#include <type_traits>
#include <vector>

#include "Eigen/Core"

namespace satlab::engine {
namespace {

// Products of at most this many multiply-adds run in the tiles below. A BLAS
// call costs ~0.25 us even at 8^3. Measured here, float32 square
// products, one thread, tiles vs cblas_sgemm:
//   8^3: 0.06 vs 0.24 us;  16^3: 0.28 vs 0.48 us;
//   24^3 to 32^3: even (0.8-1.2x either way);  40^3 and up: BLAS 1.1-1.6x.
constexpr int64_t kSmallProduct = int64_t{32} * 32 * 32;

// C[m, n] (+)= A B for small shapes, in register tiles: R rows by V SIMD
// packets of C are summed over all of k in packet accumulators, then
// stored into (or added to) C once. A(i, p) is a[i * a_row + p * a_col], so
// that A^T B reads A in place; B is [k, n] row-major. Eigen's small-product
// path, axpy loops that load and store a row of C per multiply-add, and plain
// fixed-size arrays (which GCC vectorized across k, with shuffles and spills)
// all ran 2-4x slower here.
template <typename T, int R, int V>
void Tile(int64_t i, int64_t j, int64_t n, int64_t k, const T* a, int64_t a_row,
          int64_t a_col, const T* b, T* c, bool accumulate) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr int kLanes = ei::unpacket_traits<Packet>::size;
  Packet acc[R][V];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) acc[r][v] = ei::pset1<Packet>(T(0));
  }
  for (int64_t p = 0; p < k; ++p) {
    Packet b_row[V];
    for (int v = 0; v < V; ++v) {
      b_row[v] = ei::ploadu<Packet>(b + p * n + j + v * kLanes);
    }
    for (int r = 0; r < R; ++r) {
      const Packet a_ip = ei::pset1<Packet>(a[(i + r) * a_row + p * a_col]);
      for (int v = 0; v < V; ++v) {
        acc[r][v] = ei::pmadd(a_ip, b_row[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      T* out = c + (i + r) * n + j + v * kLanes;
      ei::pstoreu(out, accumulate ? ei::padd(ei::ploadu<Packet>(out), acc[r][v])
                                  : acc[r][v]);
    }
  }
}

// One column j of C (the columns past the last whole packet; all of C for a
// one-unit layer), still in SIMD packets: along the rows of C when A is
// transposed (A^T's column is a contiguous row of A), along k otherwise
// (each entry is a dot product of a contiguous row of A with B's column).
template <typename T>
void Column(int64_t j, int64_t m, int64_t n, int64_t k, const T* a,
            int64_t a_row, int64_t a_col, const T* b, T* c, bool accumulate) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr int kLanes = ei::unpacket_traits<Packet>::size;
  auto store = [&](int64_t i, T value) {
    T& out = c[i * n + j];
    out = accumulate ? out + value : value;
  };
  if (a_row == 1) {
    // C(i, j) = sum_p A[p, i] B(p, j), A stored [k, m]: kLanes rows of C
    // per packet.
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      Packet acc = ei::pset1<Packet>(T(0));
      for (int64_t p = 0; p < k; ++p) {
        acc = ei::pmadd(ei::ploadu<Packet>(a + p * a_col + i),
                        ei::pset1<Packet>(b[p * n + j]), acc);
      }
      T lanes[kLanes];
      ei::pstoreu(lanes, acc);
      for (int l = 0; l < kLanes; ++l) store(i + l, lanes[l]);
    }
    for (; i < m; ++i) {
      T acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += a[p * a_col + i] * b[p * n + j];
      store(i, acc);
    }
    return;
  }
  // C(i, j) = A.row(i) . B.col(j), A's row contiguous (a_col == 1).
  for (int64_t i = 0; i < m; ++i) {
    const T* a_i = a + i * a_row;
    Packet acc = ei::pset1<Packet>(T(0));
    int64_t p = 0;
    for (; p + kLanes <= k; p += kLanes) {
      Packet b_col;
      if (n == 1) {  // B is a vector: its column is contiguous
        b_col = ei::ploadu<Packet>(b + p);
      } else {
        T gathered[kLanes];
        for (int l = 0; l < kLanes; ++l) gathered[l] = b[(p + l) * n + j];
        b_col = ei::ploadu<Packet>(gathered);
      }
      acc = ei::pmadd(ei::ploadu<Packet>(a_i + p), b_col, acc);
    }
    T sum = ei::predux(acc);
    for (; p < k; ++p) sum += a_i[p] * b[p * n + j];
    store(i, sum);
  }
}

template <typename T>
void SmallProduct(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_row,
                  int64_t a_col, const T* b, T* c, bool accumulate) {
  namespace ei = Eigen::internal;
  constexpr int kLanes =
      ei::unpacket_traits<typename ei::packet_traits<T>::type>::size;
  // Tiles of 4 rows x 2 packets: 8 accumulators, 2 loads of B, 4 of A.
  int64_t j = 0;
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      Tile<T, 4, 2>(i, j, n, k, a, a_row, a_col, b, c, accumulate);
    for (; i < m; ++i)
      Tile<T, 1, 2>(i, j, n, k, a, a_row, a_col, b, c, accumulate);
  }
  for (; j + kLanes <= n; j += kLanes) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      Tile<T, 4, 1>(i, j, n, k, a, a_row, a_col, b, c, accumulate);
    for (; i < m; ++i)
      Tile<T, 1, 1>(i, j, n, k, a, a_row, a_col, b, c, accumulate);
  }
  for (; j < n; ++j) Column(j, m, n, k, a, a_row, a_col, b, c, accumulate);
}

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
    SmallProduct(m, n, k, a, /*a_row=*/1, /*a_col=*/m, b, c, accumulate);
  } else {
    SmallProduct(m, n, k, a, /*a_row=*/k, /*a_col=*/1, b, c, accumulate);
  }
}

}  // namespace

template <typename T>
void Gemm(Transpose trans_a, Transpose trans_b, int64_t m, int64_t n, int64_t k,
          const T* a, const T* b, T* c, bool accumulate) {
  if (m * n * k <= kSmallProduct) {
    SmallGemm(trans_a, trans_b, m, n, k, a, b, c, accumulate);
    return;
  }
  const CBLAS_TRANSPOSE ta =
      trans_a == Transpose::kYes ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb =
      trans_b == Transpose::kYes ? CblasTrans : CblasNoTrans;
  const auto lda = static_cast<blasint>(trans_a == Transpose::kYes ? m : k);
  const auto ldb = static_cast<blasint>(trans_b == Transpose::kYes ? k : n);
  const T beta = accumulate ? T(1) : T(0);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a, lda,
                b, ldb, beta, c, static_cast<blasint>(n));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), 1.0, a, lda,
                b, ldb, beta, c, static_cast<blasint>(n));
  }
}

void SetBlasThreads(int threads) { openblas_set_num_threads(threads); }

int BlasThreads() { return openblas_get_num_threads(); }

template void Gemm<float>(Transpose, Transpose, int64_t, int64_t, int64_t,
                          const float*, const float*, float*, bool);
template void Gemm<double>(Transpose, Transpose, int64_t, int64_t, int64_t,
                           const double*, const double*, double*, bool);

}  // namespace satlab::engine
