// The AVX-512 variant (512-bit vectors; AVX-512 F and DQ). Everything the
// pragma below applies to runs only after kernels.cc has checked that the
// CPU supports AVX-512 F and DQ; the standard headers come first so that none
// of their inline functions is compiled for AVX-512 (the linker might keep that
// copy for everyone).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "server/engine/kernels_internal.h"

// GCC and clang spell "compile what follows for this instruction set"
// differently.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq")
#endif
#include <immintrin.h>

#include "server/engine/kernels_simd.h"

namespace satlab::engine::kernels {
namespace {

// The masked roundscale and scalef with every lane selected: the unmasked
// intrinsics start from _mm512_undefined_ps, which GCC 12 reports as
// uninitialized. vscalef computes y 2^floor(m) rounded once.
struct Avx512Ops {
  using F = Simd<float, 64>::V;
  using D = Simd<double, 64>::V;
  static F Floor(F x) {
    return (F)_mm512_mask_roundscale_ps(
        (__m512)x, 0xFFFF, (__m512)x,
        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static D Floor(D x) {
    return (D)_mm512_mask_roundscale_pd(
        (__m512d)x, 0xFF, (__m512d)x,
        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static F Scale(F y, F m) {
    return (F)_mm512_mask_scalef_ps((__m512)y, 0xFFFF, (__m512)y, (__m512)m);
  }
  static D Scale(D y, D m) {
    return (D)_mm512_mask_scalef_pd((__m512d)y, 0xFF, (__m512d)y, (__m512d)m);
  }
};

}  // namespace

const KernelTable& Avx512Kernels() { return kSimdTable<Avx512Ops, 64>; }

}  // namespace satlab::engine::kernels
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
