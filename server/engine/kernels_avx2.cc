// The AVX2 variant (256-bit vectors). Everything the pragma below applies to
// runs only after kernels.cc has checked that the CPU supports AVX2; the
// standard headers come first so that none of their inline functions is
// compiled for AVX2 (the linker might keep that copy for everyone).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "server/engine/kernels_internal.h"

// GCC and clang spell "compile what follows for this instruction set"
// differently.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#include <immintrin.h>

#include "server/engine/kernels_simd.h"

namespace satlab::engine::kernels {
namespace {

struct Avx2Ops {
  using F = Simd<float, 32>::V;
  using D = Simd<double, 32>::V;
  static F Floor(F x) { return (F)_mm256_floor_ps((__m256)x); }
  static D Floor(D x) { return (D)_mm256_floor_pd((__m256d)x); }
  static F Scale(F y, F m) { return ScaleByPowerOfTwo<Simd<float, 32>>(y, m); }
  static D Scale(D y, D m) { return ScaleByPowerOfTwo<Simd<double, 32>>(y, m); }
};

}  // namespace

const KernelTable& Avx2Kernels() { return kSimdTable<Avx2Ops, 32>; }

}  // namespace satlab::engine::kernels
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
