// The baseline variant: the engine's code as it was before dispatch
// (Eigen's SSE2 packets in a build without -march=native). Its results
// define the bits every other variant must reproduce.
#include <algorithm>

#include "Eigen/Core"
#include "server/engine/kernels_internal.h"
#include "server/engine/kernels_sums.h"

namespace satlab::engine::kernels {
namespace {

template <typename T>
using RowMap = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
template <typename T>
using ConstRowMap = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

// e = exp(-|z|) never overflows; a = 1/(1+e) for z >= 0, e/(1+e) below.
// Selecting the numerator first keeps one division per element.
template <typename T>
void Sigmoid(const T* z_data, int64_t count, T* out_data) {
  const ConstRowMap<T> z(z_data, count);
  RowMap<T> out(out_data, count);
  out = (-z.abs()).exp();
  out = (z >= T(0)).select(T(1), out) / (T(1) + out);
}

// Eigen's pexp on every element, the last packet zero-padded: no scalar
// head or tail (std::exp rounds differently), so an element's bits do not
// depend on where its row starts (kernels.h).
template <typename T>
void ExpOfNonPositive(const T* x, int64_t count, T* out) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr int kLanes = ei::unpacket_traits<Packet>::size;
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    ei::pstoreu(out + i, ei::pexp(ei::ploadu<Packet>(x + i)));
  }
  if (i < count) {
    T padded[kLanes] = {};
    std::copy(x + i, x + count, padded);
    ei::pstoreu(padded, ei::pexp(ei::ploadu<Packet>(padded)));
    std::copy(padded, padded + (count - i), out + i);
  }
}

template <typename T>
void SigmoidDerivative(const T* a_data, int64_t count, T* d_data) {
  const ConstRowMap<T> a(a_data, count);
  RowMap<T>(d_data, count) = a * (T(1) - a);
}

template <typename T>
void MultiplyInPlace(const T* y, int64_t count, T* x) {
  RowMap<T>(x, count) *= ConstRowMap<T>(y, count);
}

template <typename T>
int64_t CountBelow(const T* x, int64_t count, T threshold) {
  return (ConstRowMap<T>(x, count) < threshold).count();
}

// C[m, n] (+)= A B for small shapes, in register tiles: R rows by V SIMD
// packets of C are summed over all of k in packet accumulators, then
// stored into (or added to) C once. Eigen's small-product path, axpy loops
// that load and store a row of C per multiply-add, and plain fixed-size
// arrays (which GCC vectorized across k, with shuffles and spills) all ran
// 2-4x slower here.
template <typename T, int R, int V>
void Tile(int64_t i, int64_t j, int64_t n, int64_t k, const T* a, int64_t a_row,
          int64_t a_col, const T* b, T* c, bool accumulate) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr int kLanes = ei::unpacket_traits<Packet>::size;
  // Every loop over R and V unrolled where it stands (kernels_simd.h's Tile
  // says why).
  Packet acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = ei::pset1<Packet>(T(0));
  }
  for (int64_t p = 0; p < k; ++p) {
    Packet b_row[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      b_row[v] = ei::ploadu<Packet>(b + p * n + j + v * kLanes);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Packet a_ip = ei::pset1<Packet>(a[(i + r) * a_row + p * a_col]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) {
        acc[r][v] = ei::pmadd(a_ip, b_row[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
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

// Plain SGD (optimizer.cc's code before dispatch): whether every
// p - lr (g + wd p) is finite (x * 0 is 0 for a finite x, NaN otherwise:
// the sum is 0 or NaN in any order), and the update itself.
template <typename T>
bool SgdUpdate(const T* p_data, const T* g_data, int64_t count, T lr, T wd,
               T* out_data) {
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> p(p_data, count);
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> g(g_data, count);
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> out(out_data, count);
  out = p - lr * (g + wd * p);
  // q * 0 is 0 for a finite q and NaN otherwise (the values are still in
  // cache: callers pass a block at a time).
  return (out * T(0)).sum() == T(0);
}

template <typename T>
constexpr TypedKernels<T> kTyped = {
    Sigmoid<T>,           ExpOfNonPositive<T>,
    SigmoidDerivative<T>, MultiplyInPlace<T>,
    CountBelow<T>,        SmallProduct<T>,
    SgdUpdate<T>,         Sum<T, 16>,
    SumOfSquares<T, 16>,  LogisticDerivativeStats<T, 16>};

}  // namespace

const KernelTable& BaselineKernels() {
  static constexpr KernelTable kTable = {kTyped<float>, kTyped<double>};
  return kTable;
}

}  // namespace satlab::engine::kernels
