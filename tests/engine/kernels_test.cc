// The dispatched kernels: every variant this CPU supports returns the
// baseline's bits (server/engine/kernels.h), on lengths and shapes with odd
// sizes, tails and misaligned starts, and on the values where exp and the
// sigmoid are delicate (NaN, infinities, subnormal results, signed zeros).
#include "server/engine/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "gtest/gtest.h"
#include "server/engine/activation.h"
#include "server/engine/network.h"

namespace satlab::engine::kernels {
namespace {

// A -march=native build (benchmarks only) compiles the baseline, Eigen's
// code, with FMA where the CPU has it: its bits then differ from the
// dispatched variants, which never contract (kernels.h).
#ifdef __FMA__
constexpr bool kBaselineContracts = true;
#else
constexpr bool kBaselineContracts = false;
#endif
#define SKIP_IF_BASELINE_CONTRACTS()         \
  if (kBaselineContracts)                    \
  GTEST_SKIP() << "baseline built with FMA " \
                  "(-march=native)"

// Restores the process's variant when a test ends.
class KernelsTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_TRUE(SetActiveIsa(saved_).ok()); }
  const Isa saved_ = ActiveIsa();
};

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (IsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

template <typename T>
bool SameBits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Values in [-12, 12] and the edge cases, with a fixed seed.
template <typename T>
std::vector<T> Inputs(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-12.0, 12.0);
  const T specials[] = {T(0),
                        -T(0),
                        std::numeric_limits<T>::quiet_NaN(),
                        std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(),
                        T(88.7),
                        T(-88.7),
                        T(-95),
                        T(-104),
                        T(-709),
                        T(-745),
                        T(1e-30),
                        std::numeric_limits<T>::denorm_min(),
                        std::numeric_limits<T>::max(),
                        -std::numeric_limits<T>::max()};
  std::vector<T> v(count);
  for (size_t i = 0; i < count; ++i) {
    v[i] = i % 5 == 3 ? specials[(i / 5) % std::size(specials)]
                      : static_cast<T>(u(rng));
  }
  return v;
}

// The engine's sigmoid before dispatch existed, over a [1, count] view.
template <typename T>
void EigenSigmoid(const T* z_data, int64_t count, T* out_data) {
  const ConstRowRef<T> z = Eigen::Map<const RowMatrix<T>>(z_data, 1, count);
  RowRef<T> out = Eigen::Map<RowMatrix<T>>(out_data, 1, count);
  out.array() = (-z.array().abs()).exp();
  out.array() =
      (z.array() >= T(0)).select(T(1), out.array()) / (T(1) + out.array());
}

template <typename T>
void ExpectSigmoidMatchesEigen() {
  // Lengths around every vector width; starts 0..3 elements past a 64-byte
  // boundary (the scalar head depends on the output's alignment).
  const std::vector<T> input = Inputs<T>(400, 7);
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    for (int64_t offset = 0; offset < 4; ++offset) {
      for (int64_t count = 0; count <= 131; ++count) {
        alignas(64) T expected[140], got[140];
        EigenSigmoid(input.data() + count, count, expected + offset);
        Sigmoid(input.data() + count, count, got + offset);
        for (int64_t i = 0; i < count; ++i) {
          ASSERT_TRUE(SameBits(expected[offset + i], got[offset + i]))
              << IsaName(isa) << " offset " << offset << " count " << count
              << " z=" << input[count + i] << ": expected "
              << expected[offset + i] << ", got " << got[offset + i];
        }
      }
    }
  }
}

TEST_F(KernelsTest, Sigmoid_EveryVariant_SameBitsAsEigenF32) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSigmoidMatchesEigen<float>();
}
TEST_F(KernelsTest, Sigmoid_EveryVariant_SameBitsAsEigenF64) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSigmoidMatchesEigen<double>();
}

// Every variant's sigmoid of `z` against Eigen's, bit for bit (NaN
// payloads included), reporting how many differ and the first.
template <typename T>
void ExpectSigmoidSameBitsAsEigen(const std::vector<T>& z) {
  const auto count = static_cast<int64_t>(z.size());
  std::vector<T> expected(z.size()), got(z.size());
  EigenSigmoid(z.data(), count, expected.data());
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    Sigmoid(z.data(), count, got.data());
    int64_t differ = 0, first = -1;
    for (int64_t i = 0; i < count; ++i) {
      if (!SameBits(expected[i], got[i]) && differ++ == 0) first = i;
    }
    ASSERT_EQ(differ, 0) << IsaName(isa) << " " << sizeof(T) * 8
                         << "-bit, first z=" << z[first] << ": expected "
                         << expected[first] << ", got " << got[first];
  }
}

// Every finite float's exponent range at a stride: the whole domain of the
// float exp polynomial, not only [-12, 12].
TEST_F(KernelsTest, Sigmoid_WideRangeF32_SameBitsAsEigen) {
  SKIP_IF_BASELINE_CONTRACTS();
  std::vector<float> z;
  for (uint32_t bits = 0; bits < 0xFF800000u; bits += 0x000F4243u) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    z.push_back(f);
    z.push_back(-f);
  }
  ExpectSigmoidSameBitsAsEigen(z);
}

// Denser than the sweep above, for the variants' exp of -|z| (which drops
// the clamps Eigen's pexp needs only for x > 0 and scales once where Eigen
// multiplies four times): every 1031st float bit pattern, and every float
// in [86, 90], where exp(-|z|) turns subnormal and then hits the clamp.
// Doubles: random bit patterns, and random values across the subnormal
// band and the clamp (|z| in [700, 760]).
TEST_F(KernelsTest, Sigmoid_DenseSweep_SameBitsAsEigen) {
  SKIP_IF_BASELINE_CONTRACTS();
  std::vector<float> zf;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 1031) {
    const auto b = static_cast<uint32_t>(bits);
    float f;
    std::memcpy(&f, &b, sizeof(f));
    zf.push_back(f);
  }
  for (float f = 86.0f; f <= 90.0f; f = std::nextafter(f, 100.0f)) {
    zf.push_back(f);
    zf.push_back(-f);
  }
  ExpectSigmoidSameBitsAsEigen(zf);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> band(700.0, 760.0);
  std::vector<double> zd;
  for (int i = 0; i < 1 << 20; ++i) {
    const uint64_t b = rng();
    double d;
    std::memcpy(&d, &b, sizeof(d));
    zd.push_back(d);
    zd.push_back(i % 2 == 0 ? band(rng) : -band(rng));
  }
  ExpectSigmoidSameBitsAsEigen(zd);
}

// exp of non-positive values (the softmax's e^{z - max z}): every element
// through Eigen's packet exp, whatever its position, so the result for a
// value is the same at every offset, every length and in place, in every
// variant; and within 2 ulps of std::exp (in absolute terms below T's
// smallest normal number: Eigen clamps x at -88.7 / -709.8, so exp(-95f)
// is 2.9e-39, not 5.5e-42 — as the softmax always had it). Inputs: -|v| for the
// values above (so -0, -inf, the subnormal band and the clamp) and NaNs of both
// signs.
template <typename T>
void ExpectExpOfNonPositiveMatchesEigen() {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  std::vector<T> input = Inputs<T>(400, 9);
  for (size_t i = 0; i < input.size(); ++i) {
    input[i] =
        i % 37 == 5 ? std::numeric_limits<T>::quiet_NaN() : -std::abs(input[i]);
  }
  input[36] = -std::numeric_limits<T>::quiet_NaN();
  // Eigen's packet exp of each value alone: what every element must be.
  std::vector<T> expected(input.size());
  for (size_t i = 0; i < input.size(); ++i) {
    expected[i] = ei::pfirst(ei::pexp(ei::pset1<Packet>(input[i])));
    if (std::isfinite(input[i]) && expected[i] != 0) {
      const T exact = std::exp(input[i]);
      ASSERT_LE(std::abs(expected[i] - exact),
                2 * std::numeric_limits<T>::epsilon() * exact +
                    std::numeric_limits<T>::min())
          << input[i];
    }
  }
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    for (int64_t offset = 0; offset < 4; ++offset) {
      for (int64_t count = 0; count <= 131; ++count) {
        alignas(64) T got[140], in_place[140];
        const T* x = input.data() + count;
        ExpOfNonPositive(x, count, got + offset);
        std::copy(x, x + count, in_place + offset);
        ExpOfNonPositive(in_place + offset, count, in_place + offset);
        for (int64_t i = 0; i < count; ++i) {
          ASSERT_TRUE(SameBits(expected[count + i], got[offset + i]))
              << IsaName(isa) << " offset " << offset << " count " << count
              << " x=" << x[i] << ": expected " << expected[count + i]
              << ", got " << got[offset + i];
          ASSERT_TRUE(SameBits(got[offset + i], in_place[offset + i]))
              << IsaName(isa) << " in place, x=" << x[i];
        }
      }
    }
  }
}

TEST_F(KernelsTest, ExpOfNonPositive_EveryVariant_SameBitsAsEigenF32) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectExpOfNonPositiveMatchesEigen<float>();
}
TEST_F(KernelsTest, ExpOfNonPositive_EveryVariant_SameBitsAsEigenF64) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectExpOfNonPositiveMatchesEigen<double>();
}

// The softmax activation (which takes its exponentials from the kernel
// above): the same bits in every variant, for contiguous rows and for a
// view into a wider matrix; within a few ulps of a long double reference;
// no overflow for large logits; a NaN makes its row NaN and no other.
template <typename T>
void ExpectSoftmaxSameBitsEveryVariant() {
  const ActivationOps<T>& softmax = GetActivationOps<T>(Activation::kSoftmax);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-30.0, 30.0);
  for (int cols : {1, 2, 3, 8, 10, 17}) {
    const int rows = 23;
    RowMatrix<T> wide(rows, cols + 3);
    for (Eigen::Index i = 0; i < wide.size(); ++i) {
      wide.data()[i] = static_cast<T>(u(rng));
    }
    wide(4, 0) = T(1000);  // e^{1000} would overflow without the max
    wide(5, cols - 1) = std::numeric_limits<T>::quiet_NaN();
    const RowMatrix<T> z = wide.leftCols(cols);
    std::vector<RowMatrix<T>> contiguous, strided;
    for (Isa isa : SupportedIsas()) {
      ASSERT_TRUE(SetActiveIsa(isa).ok());
      RowMatrix<T> a(rows, cols);
      softmax.forward(z, T(0), a);
      contiguous.push_back(a);
      RowMatrix<T> out = RowMatrix<T>::Zero(rows, cols + 3);
      RowRef<T> view = out.leftCols(cols);
      ASSERT_NE(view.outerStride(), cols);
      softmax.forward(wide.leftCols(cols), T(0), view);
      strided.push_back(out.leftCols(cols));
    }
    for (size_t v = 0; v < contiguous.size(); ++v) {
      for (Eigen::Index i = 0; i < contiguous[0].size(); ++i) {
        ASSERT_TRUE(SameBits(contiguous[0].data()[i], contiguous[v].data()[i]))
            << IsaName(SupportedIsas()[v]) << " cols " << cols << " at " << i;
        ASSERT_TRUE(
            SameBits(contiguous[0].data()[i], strided[v](i / cols, i % cols)))
            << IsaName(SupportedIsas()[v]) << " strided, cols " << cols;
      }
    }
    const RowMatrix<T>& a = contiguous[0];
    const double tolerance = sizeof(T) == 4 ? 4e-6 : 8e-15;
    for (int r = 0; r < rows; ++r) {
      if (r == 5) {
        for (int k = 0; k < cols; ++k) EXPECT_TRUE(std::isnan(a(r, k)));
        continue;
      }
      long double m = z(r, 0), sum = 0;
      for (int k = 1; k < cols; ++k) m = std::max<long double>(m, z(r, k));
      for (int k = 0; k < cols; ++k) sum += std::exp(z(r, k) - m);
      for (int k = 0; k < cols; ++k) {
        const long double want = std::exp(z(r, k) - m) / sum;
        // Absolute below the smallest normal number (the exp above).
        EXPECT_LE(std::abs(static_cast<long double>(a(r, k)) - want),
                  tolerance * want + std::numeric_limits<T>::min())
            << "cols " << cols << " row " << r << " col " << k;
      }
    }
  }
}

TEST_F(KernelsTest, Softmax_EveryVariant_SameBitsCloseToReference) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSoftmaxSameBitsEveryVariant<float>();
  ExpectSoftmaxSameBitsEveryVariant<double>();
}

template <typename T>
void ExpectElementwiseMatches() {
  const std::vector<T> a = Inputs<T>(300, 11), b = Inputs<T>(300, 12);
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    for (int64_t count : {0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 63, 65, 257}) {
      std::vector<T> d(count), x(b.begin(), b.begin() + count);
      SigmoidDerivative(a.data(), count, d.data());
      MultiplyInPlace(a.data(), count, x.data());
      for (T threshold : {T(0), T(-3.5), T(11), T(-1e30)}) {
        int64_t below = 0;
        for (int64_t i = 0; i < count; ++i) below += a[i] < threshold;
        EXPECT_EQ(CountBelow(a.data(), count, threshold), below)
            << IsaName(isa) << " count " << count << " threshold " << threshold;
      }
      for (int64_t i = 0; i < count; ++i) {
        const T expected_d = a[i] * (T(1) - a[i]);
        const T expected_x = b[i] * a[i];
        ASSERT_TRUE(SameBits(expected_d, d[i]) ||
                    (std::isnan(expected_d) && std::isnan(d[i])))
            << IsaName(isa) << " count " << count << " a=" << a[i];
        ASSERT_TRUE(SameBits(expected_x, x[i]) ||
                    (std::isnan(expected_x) && std::isnan(x[i])))
            << IsaName(isa) << " count " << count << " a=" << a[i]
            << " b=" << b[i];
      }
    }
  }
}

TEST_F(KernelsTest, Elementwise_EveryVariant_SameBitsF32) {
  ExpectElementwiseMatches<float>();
}
TEST_F(KernelsTest, Elementwise_EveryVariant_SameBitsF64) {
  ExpectElementwiseMatches<double>();
}

// The order kernels_sums.h documents, written out plainly: 256 bytes of
// partial sums (value i to partial i mod P), folded in halves, then the
// values past the last whole 256 bytes one by one.
template <typename T>
T OrderedSum(const T* x, int64_t count, bool squares) {
  constexpr int kPartials = 256 / sizeof(T);
  T partial[kPartials] = {};
  int64_t i = 0;
  for (; i + kPartials <= count; i += kPartials) {
    for (int j = 0; j < kPartials; ++j) {
      partial[j] += squares ? x[i + j] * x[i + j] : x[i + j];
    }
  }
  for (int h = kPartials / 2; h > 0; h /= 2) {
    for (int j = 0; j < h; ++j) partial[j] += partial[j + h];
  }
  T sum = partial[0];
  for (; i < count; ++i) sum += squares ? x[i] * x[i] : x[i];
  return sum;
}

// Sum and SumOfSquares: every variant, on lengths 0-700 at 4 misalignments,
// returns the documented order's bits (the order is what keeps a statistic
// the same on every CPU), which is also within a few roundings of the exact
// sum; NaN and infinities come through.
template <typename T>
void ExpectSumsMatch() {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-3.0, 3.0);
  std::vector<T> x(704);
  for (T& v : x) v = static_cast<T>(u(rng));
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    for (int64_t count = 0; count <= 700; ++count) {
      for (int64_t offset = 0; offset < 4; ++offset) {
        const T* data = x.data() + offset;
        const T sum = Sum(data, count), squares = SumOfSquares(data, count);
        ASSERT_TRUE(SameBits(sum, OrderedSum(data, count, false)))
            << IsaName(isa) << " count " << count << " offset " << offset;
        ASSERT_TRUE(SameBits(squares, OrderedSum(data, count, true)))
            << IsaName(isa) << " count " << count << " offset " << offset;
        long double exact = 0, exact_squares = 0, magnitude = 0;
        for (int64_t i = 0; i < count; ++i) {
          exact += data[i];
          exact_squares += static_cast<long double>(data[i]) * data[i];
          magnitude += std::abs(data[i]);
        }
        const double eps = std::numeric_limits<T>::epsilon();
        EXPECT_LE(std::abs(static_cast<double>(sum - exact)),
                  16 * eps * static_cast<double>(magnitude) + 1e-300);
        EXPECT_LE(std::abs(static_cast<double>(squares - exact_squares)),
                  16 * eps * static_cast<double>(exact_squares) + 1e-300);
      }
    }
    std::vector<T> special(300, T(1));
    special[150] = std::numeric_limits<T>::quiet_NaN();
    EXPECT_TRUE(std::isnan(Sum(special.data(), 300))) << IsaName(isa);
    EXPECT_TRUE(std::isnan(SumOfSquares(special.data(), 300))) << IsaName(isa);
    special[150] = -std::numeric_limits<T>::infinity();
    EXPECT_EQ(Sum(special.data(), 300), -std::numeric_limits<T>::infinity());
    EXPECT_EQ(SumOfSquares(special.data(), 300),
              std::numeric_limits<T>::infinity());
  }
}

TEST_F(KernelsTest, Sums_EveryVariant_DocumentedOrderF32) {
  ExpectSumsMatch<float>();
}
TEST_F(KernelsTest, Sums_EveryVariant_DocumentedOrderF64) {
  ExpectSumsMatch<double>();
}

// The fused pass of a sigmoid block against the four calls it replaces
// (SigmoidDerivative, Sum of a and of d, CountBelow of d), bit for bit,
// on every variant: lengths 0-700 at 4 misalignments, values in [0, 1]
// with exact 0s, 1s and a NaN among them, thresholds that count none,
// some and all.
template <typename T>
void ExpectLogisticStatsMatch() {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<T> a(704);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = i % 97 == 5 ? T(0) : i % 89 == 7 ? T(1) : static_cast<T>(u(rng));
  }
  a[333] = std::numeric_limits<T>::quiet_NaN();
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    for (int64_t count = 0; count <= 700; ++count) {
      for (int64_t offset = 0; offset < 4; ++offset) {
        for (T threshold : {T(0), T(0.1), T(0.3)}) {
          const T* data = a.data() + offset;
          // One value past the block, which neither call may write (and
          // never an empty vector: memcmp takes no null pointer).
          std::vector<T> d(count + 1, T(-7)), expected_d(count + 1, T(-7));
          const DerivativeStats<T> got =
              LogisticDerivativeStats(data, count, threshold, d.data());
          SigmoidDerivative(data, count, expected_d.data());
          const std::string where = std::string(IsaName(isa)) + " count " +
                                    std::to_string(count) + " offset " +
                                    std::to_string(offset);
          ASSERT_EQ(
              std::memcmp(d.data(), expected_d.data(), d.size() * sizeof(T)), 0)
              << where;
          ASSERT_EQ(d[count], T(-7)) << where;
          ASSERT_TRUE(SameBits(got.activation_sum, Sum(data, count))) << where;
          ASSERT_TRUE(
              SameBits(got.derivative_sum, Sum(expected_d.data(), count)))
              << where;
          ASSERT_EQ(got.below, CountBelow(expected_d.data(), count, threshold))
              << where;
        }
      }
    }
  }
}

TEST_F(KernelsTest, LogisticDerivativeStats_EveryVariant_SameAsSeparateF32) {
  ExpectLogisticStatsMatch<float>();
}
TEST_F(KernelsTest, LogisticDerivativeStats_EveryVariant_SameAsSeparateF64) {
  ExpectLogisticStatsMatch<double>();
}

// Plain SGD's update and its finiteness answer against the baseline (and the
// baseline against the per-element formula), on lengths 0-131 at 4
// misalignments, with and without weight decay, on values with and without the
// specials (NaN, infinities, the largest floats: some steps overflow).
template <typename T>
void ExpectSgdMatches() {
  int finite_cases = 0, infinite_cases = 0;
  for (int64_t count = 0; count <= 131; ++count) {
    for (int offset = 0; offset < 4; ++offset) {
      for (const bool specials : {false, true}) {
        std::vector<T> p0 = Inputs<T>(count + offset, 7 + count);
        std::vector<T> g = Inputs<T>(count + offset, 1000 + count);
        if (!specials) {
          for (size_t i = 0; i < p0.size(); ++i) {
            if (i % 5 == 3) p0[i] = g[i] = T(0.5) - T(i % 7) / T(3);
          }
        }
        for (const T wd : {T(0), T(1e-3)}) {
          const T lr = T(0.25);
          ASSERT_TRUE(SetActiveIsa(Isa::kBaseline).ok());
          // Out of place into `expected`, then in place (out == p): the
          // same values and the same answer.
          std::vector<T> expected = p0;
          const bool finite =
              SgdUpdate<T>(p0.data() + offset, g.data() + offset, count, lr, wd,
                           expected.data() + offset);
          bool all_finite = true;
          for (int64_t i = offset; i < count + offset; ++i) {
            const T formula = p0[i] - lr * (g[i] + wd * p0[i]);
            ASSERT_TRUE(SameBits(expected[i], formula) ||
                        (std::isnan(expected[i]) && std::isnan(formula)))
                << "baseline at " << i << ": " << expected[i] << " vs "
                << formula;
            all_finite = all_finite && std::isfinite(formula);
          }
          ASSERT_EQ(finite, all_finite) << "count=" << count;
          (finite ? finite_cases : infinite_cases) += 1;
          for (Isa isa : SupportedIsas()) {
            ASSERT_TRUE(SetActiveIsa(isa).ok());
            // Into a buffer of its own, over p, over g.
            for (const int into : {0, 1, 2}) {
              std::vector<T> p = p0, g_copy = g;
              std::vector<T> out(p0.size(), T(-7));
              T* const dest = into == 0   ? out.data()
                              : into == 1 ? p.data()
                                          : g_copy.data();
              EXPECT_EQ(SgdUpdate<T>(p.data() + offset, g_copy.data() + offset,
                                     count, lr, wd, dest + offset),
                        finite)
                  << IsaName(isa) << " count=" << count << " into=" << into;
              // Nothing written outside [offset, offset + count).
              if (into == 0) {
                for (int i = 0; i < offset; ++i) ASSERT_EQ(out[i], T(-7));
              }
              for (int64_t i = offset; i < count + offset; ++i) {
                ASSERT_TRUE(SameBits(expected[i], dest[i]))
                    << IsaName(isa) << " count=" << count
                    << " offset=" << offset << " wd=" << wd << " into=" << into
                    << " at " << i << ": expected " << expected[i] << ", got "
                    << dest[i];
              }
            }
          }
        }
      }
    }
  }
  // Both answers of the check were exercised.
  EXPECT_GT(finite_cases, 100);
  EXPECT_GT(infinite_cases, 100);
}

TEST_F(KernelsTest, Sgd_EveryVariant_SameBitsAsBaselineF32) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSgdMatches<float>();
}
TEST_F(KernelsTest, Sgd_EveryVariant_SameBitsAsBaselineF64) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSgdMatches<double>();
}

// C (+)= A B against the baseline variant, A upright and transposed, for
// every (m, n, k) from a set with odd sizes, single rows and columns, and
// widths just past each vector width.
template <typename T>
void ExpectSmallProductMatchesBaseline() {
  const int sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 24, 31, 33};
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int m : sizes) {
    for (int n : sizes) {
      for (int k : sizes) {
        std::vector<T> a(m * k), b(k * n), c0(m * n);
        for (T& v : a) v = static_cast<T>(u(rng));
        for (T& v : b) v = static_cast<T>(u(rng));
        for (T& v : c0) v = static_cast<T>(u(rng));
        for (bool transposed : {false, true}) {
          const int64_t a_row = transposed ? 1 : k;
          const int64_t a_col = transposed ? m : 1;
          for (bool accumulate : {false, true}) {
            ASSERT_TRUE(SetActiveIsa(Isa::kBaseline).ok());
            std::vector<T> expected = c0;
            SmallProduct<T>(m, n, k, a.data(), a_row, a_col, b.data(),
                            expected.data(), accumulate);
            for (Isa isa : SupportedIsas()) {
              ASSERT_TRUE(SetActiveIsa(isa).ok());
              std::vector<T> got = c0;
              SmallProduct<T>(m, n, k, a.data(), a_row, a_col, b.data(),
                              got.data(), accumulate);
              for (int i = 0; i < m * n; ++i) {
                ASSERT_TRUE(SameBits(expected[i], got[i]))
                    << IsaName(isa) << " m=" << m << " n=" << n << " k=" << k
                    << " transposed=" << transposed
                    << " accumulate=" << accumulate << " at " << i
                    << ": expected " << expected[i] << ", got " << got[i];
              }
            }
          }
        }
      }
    }
  }
}

TEST_F(KernelsTest, SmallProduct_EveryVariant_SameBitsAsBaselineF32) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSmallProductMatchesBaseline<float>();
}
TEST_F(KernelsTest, SmallProduct_EveryVariant_SameBitsAsBaselineF64) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectSmallProductMatchesBaseline<double>();
}

// The products themselves are right (against a float64 loop), so that the
// comparisons above do not compare two wrong answers.
TEST_F(KernelsTest, SmallProduct_Baseline_MatchesNaiveProduct) {
  ASSERT_TRUE(SetActiveIsa(Isa::kBaseline).ok());
  const int m = 7, n = 13, k = 9;
  std::vector<double> a(m * k), b(k * n), c(m * n, 0.0);
  for (int i = 0; i < m * k; ++i) a[i] = 0.25 * (i % 11) - 1;
  for (int i = 0; i < k * n; ++i) b[i] = 0.5 * (i % 7) - 1.5;
  SmallProduct<double>(m, n, k, a.data(), k, 1, b.data(), c.data(), false);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double want = 0;
      for (int p = 0; p < k; ++p) want += a[i * k + p] * b[p * n + j];
      EXPECT_DOUBLE_EQ(want, c[i * n + j]) << i << "," << j;
    }
  }
}

// A whole network trains to the same bits under every variant.
template <typename T>
void ExpectTrainingSameBits() {
  NetworkSpec spec;
  spec.input_size = 3;
  for (int units : {17, 9, 1}) {
    LayerSpec layer;
    layer.units = units;
    layer.activation = Activation::kSigmoid;
    spec.layers.push_back(layer);
  }
  spec.loss = Loss::kMse;
  spec.dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  spec.init.seed = 5;
  std::vector<T> x(23 * 3), y(23);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<T>(std::sin(i));
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<T>(i % 2);
  MatrixView xv, yv;
  if constexpr (sizeof(T) == 4) {
    xv.f32 = x.data();
    yv.f32 = y.data();
  } else {
    xv.f64 = x.data();
    yv.f64 = y.data();
  }
  xv.rows = yv.rows = 23;
  xv.cols = 3;
  yv.cols = 1;
  std::vector<std::string> results;
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(SetActiveIsa(isa).ok());
    auto net = Network::Create(spec, Limits(), "spec");
    ASSERT_TRUE(net.ok()) << net.status();
    std::string bits;
    for (int step = 0; step < 5; ++step) {
      auto r = (*net)->TrainStep(xv, yv);
      ASSERT_TRUE(r.ok()) << r.status();
      bits.append(reinterpret_cast<const char*>(&r->loss), sizeof(double));
    }
    for (int l = 0; l < 3; ++l) {
      const AnyMatrix w = (*net)->weights(l);
      const auto& m = std::get<RowMatrix<T>>(w);
      bits.append(reinterpret_cast<const char*>(m.data()),
                  m.size() * sizeof(T));
    }
    results.push_back(bits);
  }
  for (size_t i = 1; i < results.size(); ++i) {
    EXPECT_EQ(results[0], results[i]) << IsaName(SupportedIsas()[i]);
  }
}

TEST_F(KernelsTest, TrainStep_EveryVariant_SameBitsF32) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectTrainingSameBits<float>();
}
TEST_F(KernelsTest, TrainStep_EveryVariant_SameBitsF64) {
  SKIP_IF_BASELINE_CONTRACTS();
  ExpectTrainingSameBits<double>();
}

TEST_F(KernelsTest, SetActiveIsa_Unsupported_FailedPrecondition) {
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (IsaSupported(isa)) continue;
    EXPECT_EQ(SetActiveIsa(isa).code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(SetActiveIsa(Isa::kBaseline).ok());
  EXPECT_EQ(ActiveIsa(), Isa::kBaseline);
  EXPECT_EQ(Description().rfind("baseline (cpu: sse2", 0), 0u) << Description();
}

TEST_F(KernelsTest, ParseIsa_NamesRoundTrip) {
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    auto parsed = ParseIsa(IsaName(isa));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, isa);
  }
  auto bad = ParseIsa("sse9");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("got \"sse9\""), std::string::npos);
}

}  // namespace
}  // namespace satlab::engine::kernels
