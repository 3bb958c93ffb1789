// Sums over a block of values (a layer's activations and derivatives, a
// gradient block's squares: the step's statistics and norms), and a
// sigmoid layer's f' with its statistics in one pass, written once over
// GCC vector types and included by every variant's file, the baseline too,
// so that each compiles them at its own width.
//
// The order is the same at every width: 256 bytes of partial sums (64
// float, 32 double), value i going to partial i mod 64 (32) in order, then
// the partials folded in halves (p[j] += p[j + h] for h = 32, 16, ..., 1),
// then the values past the last whole 256 bytes added one by one. Eigen's
// sum() keeps two 128-bit partials instead, whose additions wait on each
// other: that was a fifth of the non-product time of a float step (perf,
// docs/benchmarks.md). Every variant's file is compiled with
// -ffp-contract=off, so x * x + acc rounds twice everywhere.
#ifndef SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_
#define SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "server/engine/kernels.h"

namespace satlab::engine::kernels {
namespace {

constexpr int kSumBytes = 256;

// The partial sums in `acc` (kSumBytes of them) folded in halves, p[j] +=
// p[j + h] for h = half the count down to 1: their sum. While h spans
// whole vectors that is one vector addition per pair of vectors; the last
// vector's lanes are folded one by one.
template <typename T, typename V, int kVectors>
T Fold(const V (&acc)[kVectors]) {
  constexpr int kLanes = sizeof(V) / sizeof(T);
  static_assert(sizeof(acc) == kSumBytes);
  V folded[kVectors];
#pragma GCC unroll 16
  for (int v = 0; v < kVectors; ++v) folded[v] = acc[v];
#pragma GCC unroll 16
  for (int n = kVectors / 2; n > 0; n /= 2) {
#pragma GCC unroll 16
    for (int v = 0; v < n; ++v) folded[v] += folded[v + n];
  }
  T lane[kLanes];
  std::memcpy(lane, &folded[0], sizeof(lane));
  for (int h = kLanes / 2; h > 0; h /= 2) {
    for (int j = 0; j < h; ++j) lane[j] += lane[j + h];
  }
  return lane[0];
}

template <typename T, int Bytes, bool kSquares>
T BlockSum(const T* x, int64_t count) {
  typedef T V __attribute__((vector_size(Bytes)));
  constexpr int kLanes = Bytes / sizeof(T);
  constexpr int kPartials = kSumBytes / sizeof(T);
  constexpr int kVectors = kPartials / kLanes;
  T sum = 0;
  int64_t i = 0;
  // Fewer values than partials: the folded partials would all be +0, and
  // a one-unit layer's blocks are this short, so start from +0 directly.
  if (count >= kPartials) {
    V acc[kVectors];
#pragma GCC unroll 16
    for (int v = 0; v < kVectors; ++v) acc[v] = V{};
    for (; i + kPartials <= count; i += kPartials) {
#pragma GCC unroll 16
      for (int v = 0; v < kVectors; ++v) {
        V value;
        std::memcpy(&value, x + i + v * kLanes, sizeof(value));
        acc[v] += kSquares ? value * value : value;
      }
    }
    sum = Fold<T>(acc);
  }
  for (; i < count; ++i) sum += kSquares ? x[i] * x[i] : x[i];
  return sum;
}

template <typename T, int Bytes>
T Sum(const T* x, int64_t count) {
  return BlockSum<T, Bytes, false>(x, count);
}

template <typename T, int Bytes>
T SumOfSquares(const T* x, int64_t count) {
  return BlockSum<T, Bytes, true>(x, count);
}

// d = a (1 - a) and the three statistics of the block in one pass, in the
// orders of Sum and CountBelow: each element's d rounds the same in any
// width, each sum keeps its 256 bytes of partials, and the count is exact.
// A lane of `hits` counts at most count / kPartials values (int32 lanes for
// float: no overflow below 2^37 values).
template <typename T, int Bytes>
DerivativeStats<T> LogisticDerivativeStats(const T* a, int64_t count,
                                           T threshold, T* d) {
  typedef T V __attribute__((vector_size(Bytes)));
  using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Int I __attribute__((vector_size(Bytes)));
  constexpr int kLanes = Bytes / sizeof(T);
  constexpr int kPartials = kSumBytes / sizeof(T);
  constexpr int kVectors = kPartials / kLanes;
  DerivativeStats<T> out = {0, 0, 0};
  int64_t i = 0;
  if (count >= kPartials) {
    const V one = T(1) - V{}, limit = threshold - V{};
    V acc_a[kVectors], acc_d[kVectors];
    I hits[kVectors];
#pragma GCC unroll 16
    for (int v = 0; v < kVectors; ++v) {
      acc_a[v] = V{};
      acc_d[v] = V{};
      hits[v] = I{};
    }
    for (; i + kPartials <= count; i += kPartials) {
#pragma GCC unroll 16
      for (int v = 0; v < kVectors; ++v) {
        V value;
        std::memcpy(&value, a + i + v * kLanes, sizeof(value));
        const V derivative = value * (one - value);
        std::memcpy(d + i + v * kLanes, &derivative, sizeof(derivative));
        acc_a[v] += value;
        acc_d[v] += derivative;
        hits[v] += derivative < limit;  // -1 per hit
      }
    }
    out.activation_sum = Fold<T>(acc_a);
    out.derivative_sum = Fold<T>(acc_d);
    for (int v = 0; v < kVectors; ++v) {
      for (int l = 0; l < kLanes; ++l) out.below -= hits[v][l];
    }
  }
  for (; i < count; ++i) {
    const T derivative = a[i] * (T(1) - a[i]);
    d[i] = derivative;
    out.activation_sum += a[i];
    out.derivative_sum += derivative;
    out.below += derivative < threshold;
  }
  return out;
}

}  // namespace
}  // namespace satlab::engine::kernels

#endif  // SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_
