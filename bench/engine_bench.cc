// satlab's engine in process: TrainStep, Forward and ComputeGradients of the
// bench cases (bench/bench_cases.h), plus the batch validation the service
// runs before each of them, the heap bytes one network costs, the
// softmax activation against its former Eigen code (the reference, in the
// same run), and a digits-shaped experiment on one worker and on two (the
// engine's share of issue 15 item 3: run with --threads=1, so the second
// worker has the second core).
//
// Usage: engine_bench --threads=N [--passive] [--kernels=ISA]
//                     [--engine_dir=DIR] [google benchmark flags]
// [--passive] sets OMP_WAIT_POLICY=PASSIVE; --kernels=baseline|avx2|avx512
// picks the engine's kernel variant (default: the best the CPU supports);
// --engine_dir runs the native engine for this CPU from DIR (the build's
// server/ directory), as satlab-server --engine=native does.
// N is the step team's size (engine::SetBlasThreads, as satlab-server
// --blas_threads=N), with OpenBLAS single-threaded inside it and Eigen's
// OpenMP pool at N, both fixed before the libraries load by re-executing
// once (see FixThreadEnvironment).
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "bench/bench_cases.h"
#include "bench/engine_cases.h"
#include "benchmark/benchmark.h"
#include "server/engine/activation.h"
#include "server/engine/experiment.h"
#include "server/engine/gemm.h"
#include "server/engine/kernels.h"
#include "server/engine/native_engine.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"

namespace satlab::bench {
namespace {

using engine::Activation;
using engine::DType;
using engine::Loss;
using engine::MatrixView;
using engine::Network;
using engine::NetworkSpec;

enum class Op { kTrainStep, kForward, kGradients, kValidate };

template <typename T>
void BM_Engine(benchmark::State& state, const BenchCase& c, Op op) {
  const DType dtype =
      std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
  std::unique_ptr<Network> net = MustCreate(SpecFor(c, dtype));
  const Batches<T> data(c);
  const Loss loss = net->spec().loss;
  // One untimed step: the first TrainStep on this thread sizes its scratch.
  benchmark::DoNotOptimize(net->TrainStep(data.X(0), data.Y(0)));
  int i = 0;
  double sink = 0;
  for (auto _ : state) {
    const MatrixView x = data.X(i), y = data.Y(i);
    ++i;
    switch (op) {
      case Op::kTrainStep:
        sink += net->TrainStep(x, y)->loss;
        break;
      case Op::kForward: {
        engine::ForwardResult r = *net->Forward(x, /*include_layers=*/false);
        benchmark::DoNotOptimize(r);
        break;
      }
      case Op::kGradients:
        sink += net->ComputeGradients(x, y, loss)->loss_value;
        break;
      case Op::kValidate:
        sink += net->ValidateBatch(x, &y, loss, "batch", 1'000'000).ok();
        break;
    }
  }
  benchmark::DoNotOptimize(sink);
}

// The softmax activation over [rows, cols] logits in [-8, 8]: the engine's
// (engine_softmax: exponentials through the dispatched kernel) and, as the
// reference in the same process, the Eigen row loop it replaced
// (eigen_softmax: max, exp, sum and scale per row).
template <typename T>
void BM_Softmax(benchmark::State& state, bool engine_code) {
  const auto rows = static_cast<Eigen::Index>(state.range(0));
  const auto cols = static_cast<Eigen::Index>(state.range(1));
  engine::RowMatrix<T> z(rows, cols), a(rows, cols);
  for (Eigen::Index i = 0; i < z.size(); ++i) {
    z.data()[i] = static_cast<T>((i * 7919 % 1601) / 100.0 - 8.0);
  }
  const auto& ops = engine::GetActivationOps<T>(engine::Activation::kSoftmax);
  for (auto _ : state) {
    if (engine_code) {
      ops.forward(z, T(0), a);
    } else {
      for (Eigen::Index r = 0; r < rows; ++r) {
        const T m = z.row(r).maxCoeff();
        a.row(r).array() = (z.row(r).array() - m).exp();
        a.row(r) /= a.row(r).sum();
      }
    }
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}

// The `digits` preset's experiment (64-30-10, sigmoid hidden layer; softmax
// + CCE, sigmoid + MSE, softmax + MSE; 30 epochs of batch 10, SGD 0.5) on
// data of its shape (1,797 rows of 64 pixels in 0..16 / 16, one-hot labels
// of 10 classes; the values are not the digits', the work is), through
// engine::RunExperiment with state.range(0) workers: what the server's
// RunExperiment computes, without the request, the record or the stream.
void BM_Experiment(benchmark::State& state) {
  engine::Dataset data;
  data.inputs.resize(1797, 64);
  data.targets.setZero(1797, 10);
  for (Eigen::Index r = 0; r < 1797; ++r) {
    for (Eigen::Index c = 0; c < 64; ++c) {
      data.inputs(r, c) = static_cast<double>((r * 64 + c) * 7919 % 17) / 16;
    }
    data.targets(r, (r * 7) % 10) = 1;
  }
  engine::ExperimentSpec spec;
  spec.hidden_layers = {{30, Activation::kSigmoid}};
  spec.init.scheme = engine::InitScheme::kUniformFanIn;
  spec.init.seed = 1;
  for (const auto& [activation, loss] :
       {std::pair{Activation::kSoftmax, Loss::kCce},
        std::pair{Activation::kSigmoid, Loss::kMse},
        std::pair{Activation::kSoftmax, Loss::kMse}}) {
    engine::ExperimentVariantSpec& v = spec.variants.emplace_back();
    v.output_activation = activation;
    v.loss = loss;
  }
  spec.epochs = 30;
  spec.batch_size = 10;
  spec.shuffle_seed = 1;
  spec.optimizer.learning_rate = 0.5;
  const int workers = static_cast<int>(state.range(0));
  for (auto _ : state) {
    auto curves = engine::RunExperiment(spec, data, engine::Limits{},
                                        engine::ExperimentLimits{}, workers);
    if (!curves.ok()) {
      state.SkipWithError(std::string(curves.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(curves->data());
  }
}

// Heap bytes per network (HeapBytesInUse before and after creating
// `count` of them), at rest after Create and again after one TrainStep each
// (which adds whatever the step keeps: optimizer state allocated lazily,
// cached buffers), against the bytes its parameters and optimizer state
// need: parameters × sizeof(T) × (1 + 1 if momentum). The engine's scratch
// space belongs to the compute thread, not to a network (one per thread,
// reused by every network it trains), so one untimed step warms it up
// before the count starts.
// glibc's bytes in use: small chunks (uordblks) plus mmap'd ones (hblkhd).
double HeapBytesInUse() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks) + static_cast<double>(m.hblkhd);
}

template <typename T>
void BM_NetworkBytes(benchmark::State& state, const BenchCase& c,
                     double momentum) {
  const DType dtype =
      std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
  NetworkSpec spec = SpecFor(c, dtype);
  spec.optimizer.momentum = momentum;
  const int count = c.sizes[0] > 100 ? 20 : 1000;
  const Batches<T> data(c);
  benchmark::DoNotOptimize(MustCreate(spec)->TrainStep(data.X(0), data.Y(0)));
  double after_create = 0, after_step = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Network>> nets;
    nets.reserve(count);
    malloc_trim(0);
    const double before = HeapBytesInUse();
    for (int i = 0; i < count; ++i) nets.push_back(MustCreate(spec));
    after_create = (HeapBytesInUse() - before) / count;
    for (auto& n : nets) {
      benchmark::DoNotOptimize(n->TrainStep(data.X(0), data.Y(0)));
    }
    after_step = (HeapBytesInUse() - before) / count;
  }
  const double params = static_cast<double>(engine::ParameterCount(spec));
  const double state_bytes =
      params * sizeof(T) * (1.0 + (momentum != 0 ? 1.0 : 0.0));
  const double budget = 1.1 * state_bytes + 4096;
  state.counters["bytes_after_create"] = after_create;
  state.counters["bytes_after_step"] = after_step;
  state.counters["param_optimizer_bytes"] = state_bytes;
  state.counters["budget_bytes"] = budget;
}

}  // namespace
}  // namespace satlab::bench

int main(int argc, char** argv) {
  using namespace satlab::bench;
  std::vector<char*> original_argv(argv, argv + argc);
  original_argv.push_back(nullptr);
  const int threads = TakeThreadsFlag(&argc, argv);
  bool passive = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--passive") {
      passive = true;
    } else if (std::string(argv[i]).rfind("--engine_dir=", 0) == 0) {
      // --engine=native's objects (the build's server/ directory).
      const absl::Status used = satlab::engine::UseNativeEngine(argv[i] + 13);
      if (!used.ok()) {
        std::fprintf(stderr, "%s\n", used.ToString().c_str());
        return 2;
      }
    } else if (std::string(argv[i]).rfind("--kernels=", 0) == 0) {
      const auto isa = satlab::engine::kernels::ParseIsa(argv[i] + 10);
      const absl::Status set =
          isa.ok() ? satlab::engine::kernels::SetActiveIsa(*isa) : isa.status();
      if (!set.ok()) {
        std::fprintf(stderr, "%s\n", std::string(set.message()).c_str());
        return 2;
      }
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  // OpenBLAS single-threaded and the step team at `threads`, as
  // satlab-server --blas_threads=N sets them (gemm.h).
  FixThreadEnvironment(threads, 1, passive, original_argv.data());
  Eigen::setNbThreads(threads);
  satlab::engine::SetBlasThreads(threads);
  const std::pair<Op, const char*> ops[] = {
      {Op::kTrainStep, "engine_train"},
      {Op::kForward, "engine_forward"},
      {Op::kGradients, "engine_gradients"},
      {Op::kValidate, "engine_validate"}};
  for (const auto& [op, prefix] : ops) {
    for (const BenchCase& c : BenchCases()) {
      const std::string base = std::string(prefix) + "/" + c.name;
      benchmark::RegisterBenchmark(
          (base + "/f32").c_str(),
          [&c, op = op](benchmark::State& s) { BM_Engine<float>(s, c, op); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(
          (base + "/f64").c_str(),
          [&c, op = op](benchmark::State& s) { BM_Engine<double>(s, c, op); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("engine_experiment/digits_shape", BM_Experiment)
      ->Arg(1)
      ->Arg(2)
      ->ArgName("workers")
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  // Softmax shapes: a step's block of 128 rows and an evaluation of 1,797
  // (the digits data set), over 10 classes, and a wider 100.
  for (const auto& [rows, cols] :
       std::vector<std::pair<int, int>>{{128, 10}, {1797, 10}, {128, 100}}) {
    for (const bool engine_code : {true, false}) {
      const std::string prefix =
          engine_code ? "engine_softmax/" : "eigen_softmax/";
      const std::string shape =
          std::to_string(rows) + "x" + std::to_string(cols);
      benchmark::RegisterBenchmark((prefix + shape + "/f32").c_str(),
                                   BM_Softmax<float>, engine_code)
          ->Args({rows, cols})
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark((prefix + shape + "/f64").c_str(),
                                   BM_Softmax<double>, engine_code)
          ->Args({rows, cols})
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (const BenchCase& c : BenchCases()) {
    if (c.loss == OutputLoss::kSoftmaxCce) continue;  // same bytes as mse
    for (double momentum : {0.0, 0.9}) {
      const std::string suffix = momentum != 0 ? "/momentum" : "/sgd";
      benchmark::RegisterBenchmark(
          ("engine_bytes/" + std::string(c.name) + "/f32" + suffix).c_str(),
          [&c, momentum](benchmark::State& s) {
            BM_NetworkBytes<float>(s, c, momentum);
          })
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(
          ("engine_bytes/" + std::string(c.name) + "/f64" + suffix).c_str(),
          [&c, momentum](benchmark::State& s) {
            BM_NetworkBytes<double>(s, c, momentum);
          })
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::AddCustomContext("kernels",
                              satlab::engine::kernels::Description());
  benchmark::AddCustomContext("network_engine", satlab::engine::EngineName());
  benchmark::AddCustomContext("eigen_threads",
                              std::to_string(Eigen::nbThreads()));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
