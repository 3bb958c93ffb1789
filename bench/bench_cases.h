// The networks every satlab benchmark trains, shared by the engine
// benchmarks, the GEMM floor and the LibTorch anchor (bench/pytorch_anchor.py
// keeps the same table in Python — change both together).
//
// Every case is an MLP trained with plain SGD (lr 0.01, no momentum) on a
// fixed ring of random minibatches. Hidden layers are sigmoid; the output is
// sigmoid + MSE (per-sample ½Σ(a−y)², mean over the batch) or softmax + CCE
// (from logits).
#ifndef SATLAB_BENCH_BENCH_CASES_H_
#define SATLAB_BENCH_BENCH_CASES_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace satlab::bench {

enum class OutputLoss { kSigmoidMse, kSoftmaxCce };

struct BenchCase {
  const char* name;        // stable id used in benchmark names and the report
  std::vector<int> sizes;  // input, hidden..., output
  int batch;
  OutputLoss loss;
};

inline const std::vector<BenchCase>& BenchCases() {
  static const std::vector<BenchCase> cases = {
      {"1-1_b1_mse", {1, 1}, 1, OutputLoss::kSigmoidMse},
      {"2-16-16-1_b32_mse", {2, 16, 16, 1}, 32, OutputLoss::kSigmoidMse},
      {"784-256-256-10_b128_cce",
       {784, 256, 256, 10},
       128,
       OutputLoss::kSoftmaxCce},
      {"784-256-256-10_b128_mse",
       {784, 256, 256, 10},
       128,
       OutputLoss::kSigmoidMse},
  };
  return cases;
}

constexpr double kLearningRate = 0.01;
constexpr int kMinibatchRing = 4;  // distinct minibatches cycled through

// Strips `--threads=N` from argv (before benchmark::Initialize sees it) and
// returns N, default 1. The thread count is fixed per process so that each
// library's pool is configured once, before any work, as a user would.
inline int TakeThreadsFlag(int* argc, char** argv) {
  int threads = 1;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return threads < 1 ? 1 : threads;
}

// Thread pools read their size and wait policy from the environment when
// their library loads, before main(): OpenBLAS (OPENBLAS_NUM_THREADS),
// libgomp (OMP_NUM_THREADS, OMP_WAIT_POLICY). This sets them and
// re-executes the program once with the same argv (which must still hold the
// original arguments). With `passive`, idle OpenMP workers sleep instead of
// spinning, so they do not steal the core from OpenBLAS's workers.
inline void FixThreadEnvironment(int omp_threads, int openblas_threads,
                                 bool passive, char** argv) {
  if (std::getenv("SATLAB_BENCH_ENV_FIXED") != nullptr) return;
  setenv("SATLAB_BENCH_ENV_FIXED", "1", 1);
  setenv("OMP_NUM_THREADS", std::to_string(omp_threads).c_str(), 1);
  setenv("OPENBLAS_NUM_THREADS", std::to_string(openblas_threads).c_str(), 1);
  if (passive) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  } else {
    unsetenv("OMP_WAIT_POLICY");
  }
  execv("/proc/self/exe", argv);
  std::perror("execv /proc/self/exe");  // fall through: run as configured
}

}  // namespace satlab::bench

#endif  // SATLAB_BENCH_BENCH_CASES_H_
