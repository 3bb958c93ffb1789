// The GEMM floor: the matrix products of one SGD step alone, through
// OpenBLAS, at the exact layer shapes of each bench case. Nothing else
// (activations, loss, bias, the update itself) is timed, so a training step
// cannot be faster than this with the same BLAS.
//
// For layers l = 1..L, sizes n_0..n_L, batch B, row-major:
//   forward          Z_l  [B, n_l]     = A_{l-1} [B, n_{l-1}] · W_l [n_{l-1},
//   n_l] weight gradient  dW_l [n_{l-1}, n_l] = A_{l-1}ᵀ [n_{l-1}, B] · δ_l [B,
//   n_l] input gradient   G_{l-1} [B, n_{l-1}] = δ_l [B, n_l] · W_lᵀ [n_l,
//   n_{l-1}]   (l ≥ 2 only:
//                    nothing needs the gradient with respect to the inputs)
//
// The inputs A_0 cycle through kMinibatchRing minibatches, as they do in the
// engine's benchmark and in the PyTorch and LibTorch anchors: a step reads
// the batch it is given, which one batch reused forever would keep in L2
// (OpenBLAS's packing of it then costs about half as much). The
// gemm_floor_one_batch/ variants keep that one batch, for comparison with
// figures taken before the ring.
//
// Usage: gemm_floor_bench --threads=N [google benchmark flags]
// N is OpenBLAS's pool size (openblas_set_num_threads), fixed per process.
#include <cblas.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_cases.h"
#include "benchmark/benchmark.h"

namespace satlab::bench {
namespace {

void Gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
          const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c,
              ldc);
}
void Gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
          const double* a, int lda, const double* b, int ldb, double* c,
          int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

template <typename T>
std::vector<T> Random(size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(u(rng));
  return v;
}

template <typename T>
void BM_GemmFloor(benchmark::State& state, const BenchCase& c, int ring) {
  const std::vector<int>& n = c.sizes;
  const int layers = static_cast<int>(n.size()) - 1;
  const int b = c.batch;
  std::mt19937_64 rng(42);
  std::vector<std::vector<T>> w(layers + 1), dw(layers + 1), a(layers + 1),
      delta(layers + 1), inputs(ring);
  for (std::vector<T>& x : inputs) {
    x = Random<T>(static_cast<size_t>(b) * n[0], rng);
  }
  for (int l = 1; l <= layers; ++l) {
    w[l] = Random<T>(static_cast<size_t>(n[l - 1]) * n[l], rng);
    dw[l] = std::vector<T>(w[l].size());
    a[l] = std::vector<T>(static_cast<size_t>(b) * n[l]);
    delta[l] = Random<T>(static_cast<size_t>(b) * n[l], rng);
  }
  double flops = 0;
  for (int l = 1; l <= layers; ++l) {
    flops += 2.0 * b * n[l - 1] * n[l] * (l >= 2 ? 3 : 2);
  }
  int64_t step = 0;
  for (auto _ : state) {
    a[0] = std::move(inputs[step % ring]);
    for (int l = 1; l <= layers; ++l) {
      Gemm(CblasNoTrans, CblasNoTrans, b, n[l], n[l - 1], a[l - 1].data(),
           n[l - 1], w[l].data(), n[l], a[l].data(), n[l]);
    }
    for (int l = layers; l >= 1; --l) {
      Gemm(CblasTrans, CblasNoTrans, n[l - 1], n[l], b, a[l - 1].data(),
           n[l - 1], delta[l].data(), n[l], dw[l].data(), n[l]);
      if (l >= 2) {
        // Written into a[l-1]'s sibling buffer delta[l-1] (values are
        // irrelevant to the timing; shapes are what matter).
        Gemm(CblasNoTrans, CblasTrans, b, n[l - 1], n[l], delta[l].data(), n[l],
             w[l].data(), n[l], delta[l - 1].data(), n[l - 1]);
      }
    }
    inputs[step++ % ring] = std::move(a[0]);
    benchmark::DoNotOptimize(dw[1].data());
    benchmark::ClobberMemory();
  }
  state.counters["flops_per_step"] = flops;
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

}  // namespace
}  // namespace satlab::bench

int main(int argc, char** argv) {
  using namespace satlab::bench;
  const int threads = TakeThreadsFlag(&argc, argv);
  openblas_set_num_threads(threads);
  for (const auto& [prefix, ring] :
       {std::pair<std::string, int>{"gemm_floor/", kMinibatchRing},
        std::pair<std::string, int>{"gemm_floor_one_batch/", 1}}) {
    for (const BenchCase& c : BenchCases()) {
      benchmark::RegisterBenchmark((prefix + c.name + "/f32").c_str(),
                                   [&c, ring = ring](benchmark::State& s) {
                                     BM_GemmFloor<float>(s, c, ring);
                                   })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark((prefix + c.name + "/f64").c_str(),
                                   [&c, ring = ring](benchmark::State& s) {
                                     BM_GemmFloor<double>(s, c, ring);
                                   })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
