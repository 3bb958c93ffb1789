// Gemm against a naive float64 triple loop, on shapes that take every path:
// the small register tiles (4-row and 1-row tiles, whole and half packets,
// the single-column tail) and OpenBLAS, with and without accumulation.
#include "server/engine/gemm.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace satlab::engine {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Reference: C (+)= op(A) op(B) with every sum in float64.
template <typename T>
std::vector<double> Naive(Transpose ta, Transpose tb, const Shape& s,
                          const std::vector<T>& a, const std::vector<T>& b,
                          const std::vector<T>& c0, bool accumulate) {
  std::vector<double> c(static_cast<size_t>(s.m * s.n));
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = accumulate ? static_cast<double>(c0[i * s.n + j]) : 0.0;
      for (int64_t p = 0; p < s.k; ++p) {
        const T a_ip = ta == Transpose::kYes ? a[p * s.m + i] : a[i * s.k + p];
        const T b_pj = tb == Transpose::kYes ? b[j * s.k + p] : b[p * s.n + j];
        sum += static_cast<double>(a_ip) * static_cast<double>(b_pj);
      }
      c[i * s.n + j] = sum;
    }
  }
  return c;
}

template <typename T>
void CheckAgainstNaive(Transpose ta, Transpose tb, const Shape& s,
                       bool accumulate, double tolerance) {
  std::mt19937_64 rng(static_cast<uint64_t>(s.m * 1000003 + s.n * 1009 + s.k));
  std::uniform_real_distribution<double> u(-1, 1);
  auto random = [&](int64_t size) {
    std::vector<T> v(static_cast<size_t>(size));
    for (T& x : v) x = static_cast<T>(u(rng));
    return v;
  };
  const std::vector<T> a = random(s.m * s.k);
  const std::vector<T> b = random(s.k * s.n);
  std::vector<T> c = random(s.m * s.n);
  const std::vector<double> expected = Naive(ta, tb, s, a, b, c, accumulate);
  Gemm<T>(ta, tb, s.m, s.n, s.k, a.data(), b.data(), c.data(), accumulate);
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_NEAR(static_cast<double>(c[i]), expected[i],
                tolerance * (1 + std::abs(expected[i])))
        << "element " << i << " of " << s.m << "x" << s.n << "x" << s.k;
  }
}

const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = {
      {1, 1, 1},      {32, 16, 2},  {32, 16, 16},    {32, 1, 16},
      {16, 1, 32},    {2, 16, 32},  {7, 13, 5},      {5, 33, 9},
      {3, 24, 11},    {31, 8, 4},   {128, 256, 784}, {128, 10, 256},
      {256, 10, 128}, {64, 65, 66},
  };
  return shapes;
}

TEST(Gemm, EveryShapeAndLayout_MatchesNaiveProduct) {
  const std::pair<Transpose, Transpose> layouts[] = {
      {Transpose::kNo, Transpose::kNo},
      {Transpose::kYes, Transpose::kNo},
      {Transpose::kNo, Transpose::kYes}};
  for (const Shape& s : Shapes()) {
    for (const auto& [ta, tb] : layouts) {
      for (const bool accumulate : {false, true}) {
        SCOPED_TRACE(std::to_string(static_cast<int>(ta)) +
                     std::to_string(static_cast<int>(tb)) +
                     (accumulate ? " accumulate" : ""));
        CheckAgainstNaive<double>(ta, tb, s, accumulate, 1e-12);
        CheckAgainstNaive<float>(ta, tb, s, accumulate, 1e-4);
      }
    }
  }
}

// A small product is deterministic: the same inputs give the same bits.
TEST(Gemm, SmallProduct_BitwiseRepeatable) {
  std::vector<float> a(32 * 16), b(16 * 16), c1(32 * 16), c2(32 * 16);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(static_cast<float>(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = std::cos(static_cast<float>(i));
  Gemm<float>(Transpose::kNo, Transpose::kNo, 32, 16, 16, a.data(), b.data(),
              c1.data(), false);
  Gemm<float>(Transpose::kNo, Transpose::kNo, 32, 16, 16, a.data(), b.data(),
              c2.data(), false);
  EXPECT_EQ(c1, c2);
}

TEST(Gemm, BlasThreads_SetAndReadBack) {
  const int initial = BlasThreads();
  ASSERT_GE(initial, 1);
  SetBlasThreads(1);
  EXPECT_EQ(BlasThreads(), 1);
  SetBlasThreads(2);
  EXPECT_EQ(BlasThreads(), 2);
  SetBlasThreads(initial);
}

}  // namespace
}  // namespace satlab::engine
