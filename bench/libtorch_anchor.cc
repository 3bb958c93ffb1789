// LibTorch anchor: the bench cases (bench/bench_cases.h) trained with
// torch::nn + torch::optim::SGD through LibTorch's C++ API (Debian's
// libtorch-dev), reported by Google Benchmark like the engine's own runs.
//
// Usage: libtorch_anchor --threads=N [--openblas-threads=M]
// [--passive|--active]
//                        [google benchmark flags]
// N is torch's intra-op pool (at::set_num_threads). OpenBLAS (which LibTorch
// calls for its GEMMs) and libgomp read their pool size and wait policy from
// the environment when they load, before main(); so the program sets
// OPENBLAS_NUM_THREADS (default N), OMP_NUM_THREADS=N and, with more than
// one thread, OMP_WAIT_POLICY=PASSIVE (else torch's and OpenBLAS's pools
// spin against each other: 5-7x slower) and re-executes itself once.
//
// A step is what a training loop does: zero_grad, forward, loss, backward,
// optimizer.step(), loss.item().
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_cases.h"
#include "benchmark/benchmark.h"

namespace satlab::bench {
namespace {

torch::nn::Sequential Build(const BenchCase& c, torch::Dtype dtype) {
  torch::nn::Sequential net;
  const int layers = static_cast<int>(c.sizes.size()) - 1;
  for (int l = 1; l <= layers; ++l) {
    net->push_back(torch::nn::Linear(c.sizes[l - 1], c.sizes[l]));
    if (l < layers || c.loss == OutputLoss::kSigmoidMse) {
      net->push_back(torch::nn::Sigmoid());
    }
  }
  net->to(dtype);
  return net;
}

void BM_LibTorchTrainStep(benchmark::State& state, const BenchCase& c,
                          torch::Dtype dtype) {
  torch::manual_seed(42);
  torch::nn::Sequential net = Build(c, dtype);
  torch::optim::SGD opt(net->parameters(),
                        torch::optim::SGDOptions(kLearningRate));
  const int out = c.sizes.back();
  std::vector<torch::Tensor> xs, ys;
  for (int i = 0; i < kMinibatchRing; ++i) {
    xs.push_back(torch::rand({c.batch, c.sizes[0]}, torch::dtype(dtype)) - 0.5);
    if (c.loss == OutputLoss::kSoftmaxCce) {
      ys.push_back(
          torch::randint(0, out, {c.batch}, torch::dtype(torch::kLong)));
    } else {
      ys.push_back(torch::rand({c.batch, out}, torch::dtype(dtype)));
    }
  }
  const double half_over_batch = 0.5 / c.batch;
  int i = 0;
  double sink = 0;
  // Untimed warm-up steps (allocator caches, autograd graph), as in
  // bench/pytorch_anchor.py.
  for (int warm = 0; warm < 5; ++warm) {
    opt.zero_grad();
    torch::Tensor a = net->forward(xs[warm % kMinibatchRing]);
    torch::Tensor loss =
        c.loss == OutputLoss::kSoftmaxCce
            ? torch::nn::functional::cross_entropy(a, ys[warm % kMinibatchRing])
            : torch::mse_loss(a, ys[warm % kMinibatchRing],
                              at::Reduction::Sum) *
                  half_over_batch;
    loss.backward();
    opt.step();
    sink += loss.item<double>();
  }
  for (auto _ : state) {
    const torch::Tensor& x = xs[i % kMinibatchRing];
    const torch::Tensor& y = ys[i % kMinibatchRing];
    ++i;
    opt.zero_grad();
    torch::Tensor a = net->forward(x);
    torch::Tensor loss;
    if (c.loss == OutputLoss::kSoftmaxCce) {
      loss = torch::nn::functional::cross_entropy(a, y);
    } else {  // per sample ½Σ(a−y)², mean over the batch
      loss = torch::mse_loss(a, y, at::Reduction::Sum) * half_over_batch;
    }
    loss.backward();
    opt.step();
    sink += loss.item<double>();
  }
  benchmark::DoNotOptimize(sink);
}

}  // namespace
}  // namespace satlab::bench

int main(int argc, char** argv) {
  using namespace satlab::bench;
  // Keep the original argv for the re-exec; parse our flags from a copy.
  std::vector<char*> orig(argv, argv + argc);
  orig.push_back(nullptr);
  const int threads = TakeThreadsFlag(&argc, argv);
  int openblas_threads = threads;
  int passive = -1;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--openblas-threads=", 19) == 0) {
      openblas_threads = std::atoi(argv[i] + 19);
    } else if (std::strcmp(argv[i], "--passive") == 0) {
      passive = 1;
    } else if (std::strcmp(argv[i], "--active") == 0) {
      passive = 0;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  if (passive < 0) passive = threads > 1 ? 1 : 0;
  FixThreadEnvironment(threads, openblas_threads, passive == 1, orig.data());

  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  for (const BenchCase& c : BenchCases()) {
    for (auto [dtype, tag] : {std::pair{torch::kFloat32, "f32"},
                              std::pair{torch::kFloat64, "f64"}}) {
      benchmark::RegisterBenchmark(
          ("libtorch/" + std::string(c.name) + "/" + tag).c_str(),
          [&c, dtype = dtype](benchmark::State& s) {
            BM_LibTorchTrainStep(s, c, dtype);
          })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::AddCustomContext("openblas_threads",
                              std::to_string(openblas_threads));
  benchmark::AddCustomContext("omp_wait_policy",
                              passive == 1 ? "PASSIVE" : "default");
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
