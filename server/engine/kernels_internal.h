// The kernels of one instruction-set variant, as a table of function
// pointers (kernels.cc picks one table per process). Each variant's file
// defines its table; only kernels*.cc include this header.
#ifndef SATLAB_SERVER_ENGINE_KERNELS_INTERNAL_H_
#define SATLAB_SERVER_ENGINE_KERNELS_INTERNAL_H_

#include <cstdint>

#include "server/engine/kernels.h"

namespace satlab::engine::kernels {

template <typename T>
struct TypedKernels {
  void (*sigmoid)(const T* z, int64_t count, T* out);
  void (*exp_of_non_positive)(const T* x, int64_t count, T* out);
  void (*sigmoid_derivative)(const T* a, int64_t count, T* d);
  void (*multiply_in_place)(const T* y, int64_t count, T* x);
  int64_t (*count_below)(const T* x, int64_t count, T threshold);
  void (*small_product)(int64_t m, int64_t n, int64_t k, const T* a,
                        int64_t a_row, int64_t a_col, const T* b, T* c,
                        bool accumulate);
  bool (*sgd_update)(const T* p, const T* g, int64_t count, T lr, T wd, T* out);
  T (*sum)(const T* x, int64_t count);
  T (*sum_of_squares)(const T* x, int64_t count);
  DerivativeStats<T> (*logistic_derivative_stats)(const T* a, int64_t count,
                                                  T threshold, T* d);
};

struct KernelTable {
  TypedKernels<float> f32;
  TypedKernels<double> f64;
};

// kernels_baseline.cc: Eigen's SSE2 code, the reference for every variant.
const KernelTable& BaselineKernels();
// kernels_avx2.cc, kernels_avx512.cc: only called when the CPU has them.
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();

}  // namespace satlab::engine::kernels

#endif  // SATLAB_SERVER_ENGINE_KERNELS_INTERNAL_H_
