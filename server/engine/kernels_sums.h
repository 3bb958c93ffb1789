// Sums over a block of values (a layer's activations and derivatives, a
// gradient block's squares: the step's statistics and norms), written once
// over GCC vector types and included by every variant's file, the baseline
// too, so that each compiles it at its own width.
//
// The order is the same at every width: 256 bytes of partial sums (64
// float, 32 double), value i going to partial i mod 64 (32) in order, then
// the partials folded in halves (p[j] += p[j + h] for h = 32, 16, ..., 1),
// then the values past the last whole 256 bytes added one by one. Eigen's
// sum() keeps two 128-bit partials instead, whose additions wait on each
// other: that was a quarter of the non-product time of a float step (perf,
// docs/benchmarks.md). Every variant's file is compiled with
// -ffp-contract=off, so x * x + acc rounds twice everywhere.
#ifndef SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_
#define SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_

#include <cstdint>
#include <cstring>

namespace satlab::engine::kernels {
namespace {

constexpr int kSumBytes = 256;

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
    T partial[kPartials];
    std::memcpy(partial, acc, sizeof(partial));
    for (int h = kPartials / 2; h > 0; h /= 2) {
      for (int j = 0; j < h; ++j) partial[j] += partial[j + h];
    }
    sum = partial[0];
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

}  // namespace
}  // namespace satlab::engine::kernels

#endif  // SATLAB_SERVER_ENGINE_KERNELS_SUMS_H_
