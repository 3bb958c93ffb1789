// What live metrics cost per training step, for 784-256-256-10 at batch 128
// (sigmoid + MSE, the case whose saturation the dashboard shows):
//
//   BM_BareStep        Network::TrainStep alone
//   BM_StepWithMetrics TrainStep + what the server adds per step: the
//                      MetricsHub event (proto, history ring, gauges, fan-out
//                      to two subscribers: one draining like a WatchMetrics
//                      stream, one idle whose buffer overflows) and the two
//                      per-message counters of the gRPC interceptor
//   BM_MetricsOnly     that addition alone (the reliable figure: comparing
//                      two step timings on a shared machine is noisier than
//                      the 2% being measured)
//
// Each reports `overhead_pct` = metrics time / bare step time × 100, using
// the bare-step time measured once at startup in the same process.
//
// Usage: metrics_overhead_bench [--threads=N] [google benchmark flags]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "bench/bench_cases.h"
#include "bench/engine_cases.h"
#include "benchmark/benchmark.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"
#include "server/service/grpc_metrics.h"
#include "server/service/metrics_hub.h"

namespace satlab::bench {
namespace {

constexpr const char* kMethod = "/satlab.v1.TrainingService/Train";

// 784-256-256-10 batch 128, sigmoid + MSE: one network and its ring of
// minibatches in precision T.
template <typename T>
struct Fixture {
  const BenchCase& c = Case();
  std::unique_ptr<engine::Network> net = MustCreate(
      SpecFor(c, std::is_same_v<T, float> ? engine::DType::kFloat32
                                          : engine::DType::kFloat64));
  Batches<T> data{c};

  static const BenchCase& Case() {
    for (const BenchCase& bc : BenchCases()) {
      if (std::string(bc.name) == "784-256-256-10_b128_mse") return bc;
    }
    std::fprintf(stderr, "no 784-256-256-10_b128_mse bench case\n");
    std::abort();
  }
  engine::StepResult Step(int i) {
    return *net->TrainStep(data.X(i), data.Y(i));
  }
};

// The server's per-step metric work, with realistic subscribers.
struct Metrics {
  std::unique_ptr<service::MetricsHub> hub;
  service::GrpcServerMetrics grpc;
  std::shared_ptr<service::MetricsSubscription> draining, idle;

  Metrics() {
    hub = *service::MetricsHub::Create({});
    draining = hub->Subscribe({"", -1});
    idle = hub->Subscribe({"networks/bench", -1});
    grpc.RecordStarted(kMethod,
                       grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING);
  }
  void Record(const engine::StepResult& result) {
    grpc.RecordMessage(kMethod, /*received=*/true);
    hub->OnStep("networks/bench", result);
    grpc.RecordMessage(kMethod, /*received=*/false);
    while (draining->Pop()) {
    }
  }
};

// Median wall time of one bare step, seconds (for overhead_pct).
template <typename T>
double BareStepSeconds() {
  static const double seconds = [] {
    Fixture<T> f;
    std::vector<double> times;
    for (int i = 0; i < 31; ++i) {
      const auto start = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(f.Step(i));
      times.push_back(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - start)
                          .count());
    }
    std::nth_element(times.begin(), times.begin() + 15, times.end());
    return times[15];
  }();
  return seconds;
}

template <typename T>
void BM_BareStep(benchmark::State& state) {
  Fixture<T> f;
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(f.Step(i++));
}

template <typename T>
void BM_StepWithMetrics(benchmark::State& state) {
  Fixture<T> f;
  Metrics m;
  int i = 0;
  for (auto _ : state) m.Record(f.Step(i++));
}

template <typename T>
void BM_MetricsOnly(benchmark::State& state) {
  Fixture<T> f;
  Metrics m;
  const engine::StepResult result = f.Step(0);  // real per-layer stats
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) m.Record(result);
  const double per_step =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count() /
      static_cast<double>(state.iterations());
  state.counters["overhead_pct"] = 100.0 * per_step / BareStepSeconds<T>();
  state.counters["bare_step_ms"] = 1e3 * BareStepSeconds<T>();
}

BENCHMARK(BM_BareStep<float>)
    ->Name("BareStep/784-256-256-10_b128_mse/f32")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_StepWithMetrics<float>)
    ->Name("StepWithMetrics/784-256-256-10_b128_mse/f32")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_MetricsOnly<float>)
    ->Name("MetricsOnly/784-256-256-10_b128_mse/f32")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_BareStep<double>)
    ->Name("BareStep/784-256-256-10_b128_mse/f64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_StepWithMetrics<double>)
    ->Name("StepWithMetrics/784-256-256-10_b128_mse/f64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_MetricsOnly<double>)
    ->Name("MetricsOnly/784-256-256-10_b128_mse/f64")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace satlab::bench

int main(int argc, char** argv) {
  using namespace satlab::bench;
  std::vector<char*> original_argv(argv, argv + argc);
  original_argv.push_back(nullptr);
  const int threads = TakeThreadsFlag(&argc, argv);
  FixThreadEnvironment(threads, threads, /*passive=*/false,
                       original_argv.data());
  Eigen::setNbThreads(threads);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
