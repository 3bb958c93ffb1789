// The kernels written once over GCC vector types of a given width, for the
// variants wider than the baseline. Included by kernels_avx2.cc and
// kernels_avx512.cc after their `#pragma GCC target`, so that everything
// here is compiled for that instruction set; the anonymous namespace keeps
// each file's copy to itself (no symbol shared between variants, which the
// linker could otherwise pick from the wrong one).
//
// Each kernel reproduces the baseline's bits (kernels_baseline.cc, Eigen's
// SSE2 packets): the includer supplies `Floor` and `Scale` (y 2^m, see
// ExpOfNonPositive) for its vectors, and its
// file is compiled with -ffp-contract=off so that a * b + c stays two
// roundings as in SSE2 (Eigen's pmadd without FMA). Where Eigen switches
// between packets and scalar code, so do these, at the same element.
#ifndef SATLAB_SERVER_ENGINE_KERNELS_SIMD_H_
#define SATLAB_SERVER_ENGINE_KERNELS_SIMD_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "server/engine/kernels_internal.h"
#include "server/engine/kernels_sums.h"

namespace satlab::engine::kernels {
namespace {

// The baseline's packet: 128 bits.
template <typename T>
constexpr int kBaseLanes = 16 / sizeof(T);

// A vector of `Bytes` bytes of T, and the integers of T's width.
template <typename T, int Bytes>
struct Simd {
  typedef T V __attribute__((vector_size(Bytes)));
  using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  using UInt = std::make_unsigned_t<Int>;
  typedef Int I __attribute__((vector_size(Bytes)));
  // Shifted left unsigned: exponent bits of a NaN input's lanes are
  // negative (as in Eigen, whose intrinsics shift them all the same).
  typedef UInt U __attribute__((vector_size(Bytes)));
  static constexpr int kLanes = Bytes / sizeof(T);

  static V Load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void Store(T* p, V v) { std::memcpy(p, &v, sizeof(v)); }
  // x in every lane: GCC widens a scalar operand to the vector (a lane
  // loop compiles to one masked insert per lane). x - 0 == x for every x,
  // -0 and NaN included, so GCC folds the subtraction away.
  static V Splat(T x) { return x - V{}; }
  static V Zero() { return Splat(T(0)); }
  static I SplatInt(Int x) { return x + I{}; }
  // Eigen's SSE pmin(a, b) is _mm_min_ps(b, a): b when b < a, else a
  // (a when either is NaN); pmax likewise.
  static V Min(V a, V b) { return b < a ? b : a; }
  static V Max(V a, V b) { return b > a ? b : a; }
};

// Eigen's first_aligned<16>: how many elements from `p` until a 16-byte
// boundary (the scalar head of Eigen's vectorized loops), at most `size`.
template <typename T>
int64_t FirstAligned(const T* p, int64_t size) {
  constexpr int64_t kMask = kBaseLanes<T> - 1;
  const auto address = reinterpret_cast<uintptr_t>(p);
  if (address % sizeof(T) != 0) return size;
  const int64_t first =
      (kBaseLanes<T> - static_cast<int64_t>(address / sizeof(T) & kMask)) &
      kMask;
  return first < size ? first : size;
}

// y 2^m for vectors of integral m no larger than 1 and with 2^m no
// smaller than 2^-128 (float) or 2^-1024 (double), or NaN (y is NaN
// then): two normal factors, 2^(m>>1) and 2^(m - (m>>1)), the first
// product exact, so the value is rounded once, as Eigen's pldexp (four
// factors, only the last product inexact) rounds it. For variants without
// AVX-512's vscalef, which does it in one instruction.
template <typename S>
typename S::V ScaleByPowerOfTwo(typename S::V y, typename S::V m) {
  using V = typename S::V;
  using T = std::remove_reference_t<decltype(y[0])>;
  constexpr int kMantissa = sizeof(T) == 4 ? 23 : 52;
  constexpr typename S::Int kBias = sizeof(T) == 4 ? 127 : 1023;
  const typename S::I e = __builtin_convertvector(m, typename S::I);
  const typename S::I half = e >> 1;
  typename S::U bits = (typename S::U)(half + S::SplatInt(kBias)) << kMantissa;
  V c;
  std::memcpy(&c, &bits, sizeof(c));
  y = y * c;
  bits = (typename S::U)(e - half + S::SplatInt(kBias)) << kMantissa;
  std::memcpy(&c, &bits, sizeof(c));
  return y * c;
}

// exp(x) for x <= 0 (or NaN): what the sigmoid asks, e = exp(-|z|). The
// bits of Eigen's pexp_float / pexp_double (GenericPacketMathFunctions.h,
// Eigen 3.4) computed without FMA, with fewer operations where x <= 0
// makes them idle: no upper clamp, no clamp of the exponent m (at most 1
// and at least -128 / -1024 here), and Eigen's four-factor pldexp as one
// rounded scaling (Ops::Scale). A one-off harness compared every one of
// the 2^32 float inputs of the sigmoid and 2e8 double ones, NaNs included,
// against the general version: identical bits (kernels_test keeps a dense
// sweep of both against Eigen); 40% less time per value.
template <typename S, typename Ops>
typename S::V ExpOfNonPositive(typename S::V x_in, float) {
  using V = typename S::V;
  const V x = S::Max(x_in, S::Splat(-88.723f));
  const V m = Ops::Floor(x * S::Splat(1.44269504088896341f) + S::Splat(0.5f));
  V r = m * S::Splat(-0.693359375f) + x;
  r = m * S::Splat(2.12194440e-4f) + r;
  const V r2 = r * r;
  const V r3 = r2 * r;
  V y = S::Splat(1.9875691500E-4f) * r + S::Splat(1.3981999507E-3f);
  V y1 = S::Splat(4.1665795894E-2f) * r + S::Splat(1.6666665459E-1f);
  const V y2 = r + S::Splat(1.0f);
  y = y * r + S::Splat(8.3334519073E-3f);
  y1 = y1 * r + S::Splat(5.0000001201E-1f);
  y = y * r3 + y1;
  y = y * r2 + y2;
  return S::Max(Ops::Scale(y, m), x_in);
}

template <typename S, typename Ops>
typename S::V ExpOfNonPositive(typename S::V x_in, double) {
  using V = typename S::V;
  const V x = S::Max(x_in, S::Splat(-709.784));
  const V fx =
      Ops::Floor(S::Splat(1.4426950408889634073599) * x + S::Splat(0.5));
  const V tmp = fx * S::Splat(0.693145751953125);
  const V z = fx * S::Splat(1.42860682030941723212e-6);
  V g = x - tmp;
  g = g - z;
  const V g2 = g * g;
  V px = S::Splat(1.26177193074810590878e-4);
  px = px * g2 + S::Splat(3.02994407707441961300e-2);
  px = px * g2 + S::Splat(9.99999999999999999910e-1);
  px = px * g;
  V qx = S::Splat(3.00198505138664455042e-6);
  qx = qx * g2 + S::Splat(2.52448340349684104192e-3);
  qx = qx * g2 + S::Splat(2.27265548208155028766e-1);
  qx = qx * g2 + S::Splat(2.00000000000000000009e0);
  g = px / (qx - px);
  g = S::Splat(2.0) * g + S::Splat(1.0);
  return S::Max(Ops::Scale(g, fx), x_in);
}

// sigmoid on whole vectors: e = exp(-|z|), (z >= 0 ? 1 : e) / (1 + e).
template <typename S, typename Ops, typename T>
typename S::V SigmoidVector(typename S::V z) {
  using V = typename S::V;
  using I = typename S::I;
  // -|z|: the sign bit set, as Eigen's pnegate(pabs(z)).
  I bits;
  std::memcpy(&bits, &z, sizeof(bits));
  bits |= S::SplatInt(typename S::Int{1} << (sizeof(T) * 8 - 1));
  V minus_abs;
  std::memcpy(&minus_abs, &bits, sizeof(minus_abs));
  const V e = ExpOfNonPositive<S, Ops>(minus_abs, T());
  const V one = S::Splat(T(1));
  return (z >= S::Zero() ? one : e) / (one + e);
}

template <typename T>
T SigmoidScalar(T z) {
  const T e = std::exp(-std::abs(z));
  return (z >= T(0) ? T(1) : e) / (T(1) + e);
}

// Eigen's loop over a row: scalar up to the first 16-byte boundary of
// `out`, 128-bit packets while whole ones fit, scalar for the rest. The
// packets' stretch goes through S-wide vectors; its last part, narrower
// than S, through a zero-padded S-wide vector (lanes are independent).
template <typename T, typename Ops, int Bytes>
void Sigmoid(const T* z, int64_t count, T* out) {
  using S = Simd<T, Bytes>;
  const int64_t start = FirstAligned(out, count);
  const int64_t end = start + (count - start) / kBaseLanes<T> * kBaseLanes<T>;
  for (int64_t i = 0; i < start; ++i) out[i] = SigmoidScalar(z[i]);
  int64_t i = start;
  for (; i + S::kLanes <= end; i += S::kLanes) {
    S::Store(out + i, SigmoidVector<S, Ops, T>(S::Load(z + i)));
  }
  if (i < end) {
    T padded[S::kLanes] = {};
    std::memcpy(padded, z + i, (end - i) * sizeof(T));
    const typename S::V result = SigmoidVector<S, Ops, T>(S::Load(padded));
    S::Store(padded, result);
    std::memcpy(out + i, padded, (end - i) * sizeof(T));
  }
  for (i = end; i < count; ++i) out[i] = SigmoidScalar(z[i]);
}

// exp(x) for x <= 0 over a row, every element through the vector
// polynomial (as the baseline, which has no scalar head or tail either),
// the last vector zero-padded.
template <typename T, typename Ops, int Bytes>
void ExpOfNonPositive(const T* x, int64_t count, T* out) {
  using S = Simd<T, Bytes>;
  int64_t i = 0;
  for (; i + S::kLanes <= count; i += S::kLanes) {
    S::Store(out + i, ExpOfNonPositive<S, Ops>(S::Load(x + i), T()));
  }
  if (i < count) {
    T padded[S::kLanes] = {};
    std::memcpy(padded, x + i, (count - i) * sizeof(T));
    S::Store(padded, ExpOfNonPositive<S, Ops>(S::Load(padded), T()));
    std::memcpy(out + i, padded, (count - i) * sizeof(T));
  }
}

// d = a (1 - a) and x *= y round once per operation, in vectors or not:
// any split gives the baseline's bits.
template <typename T, int Bytes>
void SigmoidDerivative(const T* a, int64_t count, T* d) {
  using S = Simd<T, Bytes>;
  const typename S::V one = S::Splat(T(1));
  int64_t i = 0;
  for (; i + S::kLanes <= count; i += S::kLanes) {
    const typename S::V v = S::Load(a + i);
    S::Store(d + i, v * (one - v));
  }
  for (; i < count; ++i) d[i] = a[i] * (T(1) - a[i]);
}

template <typename T, int Bytes>
void MultiplyInPlace(const T* y, int64_t count, T* x) {
  using S = Simd<T, Bytes>;
  int64_t i = 0;
  for (; i + S::kLanes <= count; i += S::kLanes) {
    S::Store(x + i, S::Load(x + i) * S::Load(y + i));
  }
  for (; i < count; ++i) x[i] *= y[i];
}

// Plain SGD's step p - lr (g + wd p), elementwise: each element's value
// takes the same four roundings in any width (no FMA: -ffp-contract=off).
template <typename T, int Bytes>
bool SgdUpdate(const T* p, const T* g, int64_t count, T lr, T wd, T* out) {
  using S = Simd<T, Bytes>;
  const typename S::V lr_v = S::Splat(lr), wd_v = S::Splat(wd);
  // q * 0 is 0 for a finite q and NaN otherwise; NaN sticks in `bad`.
  typename S::V bad = S::Zero();
  int64_t i = 0;
  for (; i + S::kLanes <= count; i += S::kLanes) {
    const typename S::V v = S::Load(p + i);
    const typename S::V q = v - lr_v * (S::Load(g + i) + wd_v * v);
    S::Store(out + i, q);
    bad += q * S::Zero();
  }
  T tail = 0;
  for (; i < count; ++i) {
    out[i] = p[i] - lr * (g[i] + wd * p[i]);
    tail += out[i] * T(0);
  }
  for (int l = 0; l < S::kLanes; ++l) tail += bad[l];
  return tail == T(0);
}

template <typename T, int Bytes>
int64_t CountBelow(const T* x, int64_t count, T threshold) {
  using S = Simd<T, Bytes>;
  const typename S::V limit = S::Splat(threshold);
  // Each lane of `below` counts down by one per hit (a true comparison is
  // all ones, -1), over chunks short enough for 32-bit lanes.
  constexpr int64_t kChunk = int64_t{1} << 30;
  int64_t total = 0;
  int64_t i = 0;
  while (i + S::kLanes <= count) {
    const int64_t chunk_end = std::min(count, i + kChunk);
    typename S::I below = S::SplatInt(0);
    for (; i + S::kLanes <= chunk_end; i += S::kLanes) {
      below += S::Load(x + i) < limit;
    }
    for (int l = 0; l < S::kLanes; ++l) total -= below[l];
  }
  for (; i < count; ++i) total += x[i] < threshold;
  return total;
}

// C[i..i+R, j..j+V*lanes) (+)= A B: every C(i, j) summed over p in order,
// acc = a(i, p) b(p, j) + acc from acc = 0, as the baseline's tiles do at
// any width.
//
// The accumulators must live in registers across the whole tile: left as an
// array that GCC lowers to memory, each tile began with a `rep stos`
// zeroing them and ended storing and reloading them, a sixth of the tile's
// time at the tiny network's k = 2 to 32 (perf). Every loop over R and V is
// unrolled where it stands, and the kernel files raise GCC's limit on the
// size of an array it splits into registers (CMakeLists.txt); neither
// changes an operation or its order.
template <typename S, typename T, int R, int V>
void Tile(int64_t i, int64_t j, int64_t n, int64_t k, const T* a, int64_t a_row,
          int64_t a_col, const T* b, T* c, bool accumulate) {
  using Vec = typename S::V;
  Vec acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = S::Zero();
  }
  for (int64_t p = 0; p < k; ++p) {
    Vec b_row[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v)
      b_row[v] = S::Load(b + p * n + j + v * S::kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec a_ip = S::Splat(a[(i + r) * a_row + p * a_col]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = a_ip * b_row[v] + acc[r][v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      T* out = c + (i + r) * n + j + v * S::kLanes;
      S::Store(out, accumulate ? S::Load(out) + acc[r][v] : acc[r][v]);
    }
  }
}

// Columns [*j, end) in tiles of 4 rows (then 1) by 2 vectors, then 8 (4,
// 1) rows by 1 vector, of S's width, advancing *j past what whole vectors
// cover. Any tiling gives the same bits: each C(i, j) is its own sum.
template <typename S, typename T>
void Tiles(int64_t* j, int64_t end, int64_t m, int64_t n, int64_t k, const T* a,
           int64_t a_row, int64_t a_col, const T* b, T* c, bool accumulate) {
  for (; *j + 2 * S::kLanes <= end; *j += 2 * S::kLanes) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      Tile<S, T, 4, 2>(i, *j, n, k, a, a_row, a_col, b, c, accumulate);
    for (; i < m; ++i)
      Tile<S, T, 1, 2>(i, *j, n, k, a, a_row, a_col, b, c, accumulate);
  }
  // One vector wide (16 float columns at 512 bits: a 16-unit layer), 8
  // rows at a time: 8 independent accumulators hide the add latency that
  // 4 would expose.
  for (; *j + S::kLanes <= end; *j += S::kLanes) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
      Tile<S, T, 8, 1>(i, *j, n, k, a, a_row, a_col, b, c, accumulate);
    for (; i + 4 <= m; i += 4)
      Tile<S, T, 4, 1>(i, *j, n, k, a, a_row, a_col, b, c, accumulate);
    for (; i < m; ++i)
      Tile<S, T, 1, 1>(i, *j, n, k, a, a_row, a_col, b, c, accumulate);
  }
}

// The baseline's column path for the columns past its last whole packet:
// sequential sums when A is transposed (a_row == 1); otherwise dot products
// along p in 128-bit packets (lane l sums p = l, l + lanes, ...), reduced as
// Eigen's SSE predux ((l0 + l2) + (l1 + l3) for float, l0 + l1 for
// double), then the remaining p in order.
// Rows [*i, m) of column j with A transposed (a_row == 1: A^T's column is
// a contiguous row of A), S::kLanes rows per vector, each lane summed over
// p in order from 0 as the scalar loop does; advances *i past them.
template <typename S, typename T>
void TransposedColumnRows(int64_t* i, int64_t j, int64_t m, int64_t n,
                          int64_t k, const T* a, int64_t a_col, const T* b,
                          T* c, bool accumulate) {
  for (; *i + S::kLanes <= m; *i += S::kLanes) {
    typename S::V acc = S::Zero();
    for (int64_t p = 0; p < k; ++p) {
      acc = S::Load(a + p * a_col + *i) * S::Splat(b[p * n + j]) + acc;
    }
    for (int l = 0; l < S::kLanes; ++l) {
      T& out = c[(*i + l) * n + j];
      out = accumulate ? out + acc[l] : acc[l];
    }
  }
}

template <typename T, int Bytes>
void Column(int64_t j, int64_t m, int64_t n, int64_t k, const T* a,
            int64_t a_row, int64_t a_col, const T* b, T* c, bool accumulate) {
  using S = Simd<T, 16>;
  auto store = [&](int64_t i, T value) {
    T& out = c[i * n + j];
    out = accumulate ? out + value : value;
  };
  if (a_row == 1) {
    // Each C(i, j) is a sequential sum over p: any number of rows per
    // vector gives the same bits (the gradient of a one-unit layer).
    int64_t i = 0;
    TransposedColumnRows<Simd<T, Bytes>>(&i, j, m, n, k, a, a_col, b, c,
                                         accumulate);
    TransposedColumnRows<S>(&i, j, m, n, k, a, a_col, b, c, accumulate);
    for (; i < m; ++i) {
      T acc = 0;
      for (int64_t p = 0; p < k; ++p)
        acc = a[p * a_col + i] * b[p * n + j] + acc;
      store(i, acc);
    }
    return;
  }
  // B's column j, gathered once for every row when it is short (a layer's
  // fan-in): the same values, so the same bits.
  constexpr int64_t kGathered = 64;
  T column[kGathered];
  const bool gathered = k <= kGathered;
  if (gathered) {
    for (int64_t p = 0; p < k; ++p) column[p] = b[p * n + j];
  }
  for (int64_t i = 0; i < m; ++i) {
    const T* a_i = a + i * a_row;
    typename S::V acc = S::Zero();
    int64_t p = 0;
    for (; p + S::kLanes <= k; p += S::kLanes) {
      typename S::V b_col;
      if (gathered) {
        b_col = S::Load(column + p);
      } else {
        for (int l = 0; l < S::kLanes; ++l) b_col[l] = b[(p + l) * n + j];
      }
      acc = S::Load(a_i + p) * b_col + acc;
    }
    T sum;
    if constexpr (S::kLanes == 4) {
      sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    } else {
      sum = acc[0] + acc[1];
    }
    for (; p < k; ++p) sum += a_i[p] * b[p * n + j];
    store(i, sum);
  }
}

template <typename T, int Bytes>
void SmallProduct(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_row,
                  int64_t a_col, const T* b, T* c, bool accumulate) {
  // The columns the baseline covers with whole packets, in the widest
  // vectors that fit, then narrower ones down to 128 bits.
  const int64_t packed = n / kBaseLanes<T> * kBaseLanes<T>;
  int64_t j = 0;
  Tiles<Simd<T, Bytes>>(&j, packed, m, n, k, a, a_row, a_col, b, c, accumulate);
  if constexpr (Bytes >= 64) {
    Tiles<Simd<T, 32>>(&j, packed, m, n, k, a, a_row, a_col, b, c, accumulate);
  }
  Tiles<Simd<T, 16>>(&j, packed, m, n, k, a, a_row, a_col, b, c, accumulate);
  for (; j < n; ++j) {
    Column<T, Bytes>(j, m, n, k, a, a_row, a_col, b, c, accumulate);
  }
}

template <typename Ops, int Bytes>
constexpr KernelTable kSimdTable = {
    {Sigmoid<float, Ops, Bytes>, ExpOfNonPositive<float, Ops, Bytes>,
     SigmoidDerivative<float, Bytes>, MultiplyInPlace<float, Bytes>,
     CountBelow<float, Bytes>, SmallProduct<float, Bytes>,
     SgdUpdate<float, Bytes>, Sum<float, Bytes>, SumOfSquares<float, Bytes>,
     LogisticDerivativeStats<float, Bytes>},
    {Sigmoid<double, Ops, Bytes>, ExpOfNonPositive<double, Ops, Bytes>,
     SigmoidDerivative<double, Bytes>, MultiplyInPlace<double, Bytes>,
     CountBelow<double, Bytes>, SmallProduct<double, Bytes>,
     SgdUpdate<double, Bytes>, Sum<double, Bytes>, SumOfSquares<double, Bytes>,
     LogisticDerivativeStats<double, Bytes>}};

}  // namespace
}  // namespace satlab::engine::kernels

#endif  // SATLAB_SERVER_ENGINE_KERNELS_SIMD_H_
