// Seeded random numbers that are bitwise identical on every platform.
// std::mt19937_64 is specified exactly by the standard, but the standard
// distributions are not, so the transforms to uniform/normal/shuffle are ours.
#ifndef SATLAB_SERVER_ENGINE_RANDOM_H_
#define SATLAB_SERVER_ENGINE_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>

#include "absl/types/span.h"

namespace satlab::engine {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t NextBits() { return engine_(); }

  // Uniform in [0, 1) with 53 random bits.
  double Uniform01() {
    return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
  }

  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform01(); }

  // Standard normal by Box-Muller; both variates of a pair are used.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // 1 - U is in (0, 1], so the log is finite.
    const double radius = std::sqrt(-2.0 * std::log(1.0 - Uniform01()));
    const double angle = 2.0 * M_PI * Uniform01();
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  double Normal(double mean, double std) { return mean + std * Normal(); }

  // Uniform integer in [0, n), n >= 1, without modulo bias (rejection).
  uint64_t Below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
      x = engine_();
    } while (x >= limit);
    return x % n;
  }

  // Fisher-Yates shuffle.
  template <typename T>
  void Shuffle(absl::Span<T> items) {
    for (size_t i = items.size(); i > 1; --i) {
      std::swap(items[i - 1], items[Below(i)]);
    }
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_RANDOM_H_
