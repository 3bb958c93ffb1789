// CallOptions: the per-call scratch bound (Forward in row chunks, bitwise as
// in one pass; the other calls admitted or refused), the stop check between
// chunks and layers and before a step commits, and allocation failure as a
// status instead of an exception.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/experiment.h"
#include "server/engine/network.h"
#include "server/engine/network_impl.h"
#include "tests/engine/test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::OneHot;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::Uniform;
using ::satlab::engine::testing::View;
using ::testing::HasSubstr;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

NetworkSpec Spec(int input, std::vector<LayerSpec> layers, Loss loss,
                 DType dtype) {
  NetworkSpec spec;
  spec.input_size = input;
  spec.layers = std::move(layers);
  spec.loss = loss;
  spec.dtype = dtype;
  spec.init.scheme = InitScheme::kGlorotUniform;
  spec.init.seed = 7;
  return spec;
}

template <typename T>
bool BitwiseEqual(const AnyMatrix& a, const AnyMatrix& b) {
  const RowMatrix<T>& x = Get<T>(a);
  const RowMatrix<T>& y = Get<T>(b);
  return x.rows() == y.rows() && x.cols() == y.cols() &&
         std::memcmp(x.data(), y.data(), sizeof(T) * x.size()) == 0;
}

struct ForwardCase {
  const char* name;
  int input;
  std::vector<LayerSpec> layers;
  Loss loss;
};

// Odd widths (elementwise activations see blocks that are not whole SIMD
// packets), every activation, softmax's per-row path, and a layer wide
// enough for OpenBLAS next to one small enough for the register tiles.
std::vector<ForwardCase> ForwardCases() {
  return {
      {"sigmoid_3_5_1", 3, {{5, Activation::kSigmoid}, {1}}, Loss::kMse},
      {"tanh_softplus",
       7,
       {{33, Activation::kTanh}, {3, Activation::kSoftplus}},
       Loss::kMse},
      {"relu_leaky",
       2,
       {{17, Activation::kRelu}, {9, Activation::kLeakyRelu}, {1}},
       Loss::kMse},
      {"softmax",
       5,
       {{300, Activation::kSigmoid}, {3, Activation::kSoftmax}},
       Loss::kCce},
      {"identity_wide", 1, {{1000, Activation::kIdentity}, {1}}, Loss::kMse},
  };
}

template <typename T>
void CheckChunkedForward(const ForwardCase& c, bool float64_inputs) {
  const DType dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  SCOPED_TRACE(::testing::Message()
               << c.name << (sizeof(T) == 4 ? " float32" : " float64")
               << (float64_inputs ? " (float64 inputs)" : ""));
  auto net = MakeNetwork(Spec(c.input, c.layers, c.loss, dtype));
  ASSERT_NE(net, nullptr);
  Rng rng(11);
  const int64_t block = BlockRows(net->spec());
  // Not a multiple of any chunk.
  const int rows = static_cast<int>(3 * block + block / 2 + 3);
  const RowMatrix<double> x64 = Uniform(rng, rows, c.input, -3, 3);
  const RowMatrix<float> x32 = x64.cast<float>();
  const MatrixView x = float64_inputs ? View(x64) : View(x32);
  auto whole = net->Forward(x, /*include_layers=*/true);
  ASSERT_TRUE(whole.ok()) << whole.status();
  for (int64_t chunk : {block, 2 * block, 3 * block}) {
    CallOptions options;
    options.max_scratch_bytes =
        CallScratchBytes(net->spec(), CallKind::kForward, chunk);
    auto chunked = net->Forward(x, /*include_layers=*/true, options);
    ASSERT_TRUE(chunked.ok()) << chunked.status();
    EXPECT_TRUE(BitwiseEqual<T>(chunked->outputs, whole->outputs))
        << "chunk " << chunk;
    for (int l = 0; l < net->num_layers(); ++l) {
      EXPECT_TRUE(BitwiseEqual<T>(chunked->z[l], whole->z[l]))
          << "z, layer " << l << ", chunk " << chunk;
      EXPECT_TRUE(BitwiseEqual<T>(chunked->a[l], whole->a[l]))
          << "a, layer " << l << ", chunk " << chunk;
    }
  }
}

TEST(ScratchBound, ForwardInChunks_BitwiseIdenticalToOnePass) {
  for (const ForwardCase& c : ForwardCases()) {
    for (bool float64_inputs : {false, true}) {
      CheckChunkedForward<float>(c, float64_inputs);
      CheckChunkedForward<double>(c, float64_inputs);
    }
  }
}

// Found item 2: 1 -> 65536 (sigmoid) -> 1 in float32 asked for ~1 TB of
// scratch for 10^6 rows in one pass. Chunked, the same call stays within
// the bound (here 256 MiB: one 256-row block a chunk); checked on 1024 rows
// so the test stays fast.
TEST(ScratchBound, WideLayerForward_RunsInChunksWithinBound) {
  auto net = MakeNetwork(Spec(1, {{65536, Activation::kSigmoid}, {1}},
                              Loss::kMse, DType::kFloat32));
  ASSERT_NE(net, nullptr);
  EXPECT_GT(CallScratchBytes(net->spec(), CallKind::kForward, 1'000'000),
            int64_t{400} << 30);
  Rng rng(3);
  const RowMatrix<float> x = Uniform(rng, 1024, 1, -1, 1).cast<float>();
  CallOptions options;
  options.max_scratch_bytes = int64_t{256} << 20;
  auto chunked = net->Forward(View(x), false, options);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  auto whole = net->Forward(View(x), false);
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(BitwiseEqual<float>(chunked->outputs, whole->outputs));
}

TEST(ScratchBound, BoundBelowOneChunk_ResourceExhaustedWithNumbers) {
  auto net = MakeNetwork(Spec(1, {{65536, Activation::kSigmoid}, {1}},
                              Loss::kMse, DType::kFloat32));
  ASSERT_NE(net, nullptr);
  const RowMatrix<float> x = RowMatrix<float>::Zero(100, 1);
  const RowMatrix<float> y = RowMatrix<float>::Zero(100, 1);
  CallOptions options;
  options.max_scratch_bytes = 1 << 20;
  auto forward = net->Forward(View(x), false, options);
  EXPECT_EQ(forward.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(forward.status().message(), HasSubstr("1048576 bytes"));
  const int64_t step_bytes =
      CallScratchBytes(net->spec(), CallKind::kTrainStep, 100);
  const std::vector<LayerParams> before = Params(*net);
  auto step = net->TrainStep(View(x), View(y), options);
  EXPECT_EQ(step.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(step.status().message(),
              HasSubstr(absl::StrCat("needs ", step_bytes, " bytes")));
  EXPECT_THAT(step.status().message(), HasSubstr("limit of 1048576 bytes"));
  EXPECT_EQ(net->step(), 0);
  EXPECT_EQ(Params(*net)[0].weights, before[0].weights);
  for (auto status :
       {net->Evaluate(View(x), View(y), options).status(),
        net->ComputeGradients(View(x), View(y), Loss::kMse, options)
            .status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  }
}

// Evaluate and ComputeGradients sum in blocks fixed by the network, so a
// batch of many blocks needs one block's scratch, whatever its length.
TEST(ScratchBound, EvaluateScratch_DoesNotGrowWithRows) {
  const NetworkSpec spec =
      Spec(4, {{8, Activation::kTanh}, {2}}, Loss::kMse, DType::kFloat64);
  const int64_t block = BlockRows(spec);
  EXPECT_EQ(CallScratchBytes(spec, CallKind::kEvaluate, block),
            CallScratchBytes(spec, CallKind::kEvaluate, 1'000'000));
  EXPECT_LT(CallScratchBytes(spec, CallKind::kTrainStep, block),
            CallScratchBytes(spec, CallKind::kTrainStep, 1'000'000));
}

// A stop check that fails on its `fire_at`-th call (1-based) with
// DEADLINE_EXCEEDED, and counts the calls.
struct CountingStop {
  int fire_at;
  int calls = 0;
  StopCheck Fn() {
    return [this] {
      return ++calls == fire_at ? absl::DeadlineExceededError("deadline passed")
                                : absl::OkStatus();
    };
  }
};

// Found item 8: a stopped step must change nothing, wherever it stops,
// including right before the update is committed (the last check).
TEST(StopCheck, TrainStepStoppedAnywhere_NothingChanges) {
  auto net = MakeNetwork(
      Spec(3, {{4, Activation::kSigmoid}, {2}}, Loss::kMse, DType::kFloat64));
  ASSERT_NE(net, nullptr);
  Rng rng(5);
  const RowMatrix<double> x = Uniform(rng, 8, 3, -1, 1);
  const RowMatrix<double> y = Uniform(rng, 8, 2, 0, 1);
  CountingStop count{0};
  CallOptions counting;
  counting.stop = count.Fn();
  auto reference = net->Clone();
  ASSERT_TRUE(reference.ok());
  ASSERT_TRUE((*reference)->TrainStep(View(x), View(y), counting).ok());
  const int checks = count.calls;
  EXPECT_GE(checks, 5);  // 2 forward layers, 2 backward layers, the commit
  const std::vector<LayerParams> before = Params(*net);
  for (int fire_at = 1; fire_at <= checks; ++fire_at) {
    CountingStop stop{fire_at};
    CallOptions options;
    options.stop = stop.Fn();
    auto result = net->TrainStep(View(x), View(y), options);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded)
        << "stopped at check " << fire_at;
    EXPECT_EQ(net->step(), 0);
    EXPECT_EQ(net->samples_seen(), 0);
    const std::vector<LayerParams> after = Params(*net);
    for (size_t l = 0; l < before.size(); ++l) {
      EXPECT_EQ(after[l].weights, before[l].weights) << "check " << fire_at;
      EXPECT_EQ(after[l].biases, before[l].biases) << "check " << fire_at;
    }
  }
  // And the network still trains afterwards, as the reference did.
  auto result = net->TrainStep(View(x), View(y));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(Params(*net)[0].weights, Params(**reference)[0].weights);
}

// Found item 6: a long Evaluate or Forward stops between blocks; the check
// is asked at least once per block and per layer.
TEST(StopCheck, LongCalls_StopBetweenBlocksAndLayers) {
  auto net = MakeNetwork(
      Spec(2, {{3, Activation::kTanh}, {1}}, Loss::kMse, DType::kFloat32));
  ASSERT_NE(net, nullptr);
  const int64_t block = BlockRows(net->spec());
  Rng rng(9);
  const int rows = static_cast<int>(10 * block);
  const RowMatrix<float> x = Uniform(rng, rows, 2, -1, 1).cast<float>();
  const RowMatrix<float> y = Uniform(rng, rows, 1, -1, 1).cast<float>();

  CountingStop eval_count{0};
  CallOptions options;
  options.stop = eval_count.Fn();
  ASSERT_TRUE(net->Evaluate(View(x), View(y), options).ok());
  EXPECT_GE(eval_count.calls, 10 * 2);

  CountingStop forward_count{0};
  options.stop = forward_count.Fn();
  options.max_scratch_bytes =
      CallScratchBytes(net->spec(), CallKind::kForward, block);
  ASSERT_TRUE(net->Forward(View(x), false, options).ok());
  EXPECT_GE(forward_count.calls, 10 * 2);

  CountingStop stop{7};
  options.stop = stop.Fn();
  options.max_scratch_bytes = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(net->Evaluate(View(x), View(y), options).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(stop.calls, 7);  // nothing ran past the stop
  CountingStop stop_forward{3};
  options.stop = stop_forward.Fn();
  options.max_scratch_bytes =
      CallScratchBytes(net->spec(), CallKind::kForward, block);
  EXPECT_EQ(net->Forward(View(x), false, options).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  // The thread's scratch is still usable after a stopped call.
  EXPECT_TRUE(net->Evaluate(View(x), View(y)).ok());
}

TEST(ScratchBound, ExperimentOverBound_ResourceExhaustedBeforeRunning) {
  Dataset data;
  Rng rng(2);
  data.inputs = Uniform(rng, 2000, 4, -1, 1);
  data.targets = OneHot(rng, 2000, 3);
  ExperimentSpec spec;
  spec.hidden_layers = {{512, Activation::kSigmoid}};
  spec.variants = {{"", Activation::kSoftmax, Loss::kCce, {}, {}}};
  spec.batch_size = 0;  // full batch: one 2000-row step
  Limits limits;
  limits.max_call_scratch_bytes = 4 << 20;
  const absl::Status status =
      ValidateExperiment(spec, data, "dataset", limits, ExperimentLimits{});
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("spec.batch_size"));
  EXPECT_THAT(status.message(), HasSubstr("4194304 bytes"));
  spec.batch_size = 32;
  limits.max_call_scratch_bytes = 64 << 20;
  EXPECT_TRUE(
      ValidateExperiment(spec, data, "dataset", limits, ExperimentLimits{})
          .ok());
}

// Allocation failure is a status, not an exception: in a child process
// whose address space is capped, a Forward whose result cannot be
// allocated returns RESOURCE_EXHAUSTED and the process carries on.
// (Sanitizers reserve terabytes of address space: skipped under them.)
TEST(OutOfMemory, AllocationFailure_ResourceExhaustedNotAbort) {
  if (kSanitized) GTEST_SKIP() << "address-space cap conflicts with sanitizer";
  auto net = MakeNetwork(Spec(1, {{65536, Activation::kSigmoid}, {1}},
                              Loss::kMse, DType::kFloat32));
  ASSERT_NE(net, nullptr);
  const RowMatrix<float> x = RowMatrix<float>::Zero(20000, 1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // 1 GiB more than now; the layers asked for are 2 x 5 GiB.
    struct rlimit cap;
    cap.rlim_cur = cap.rlim_max = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f == nullptr || std::fscanf(f, "%lu", &pages) != 1) _exit(3);
    std::fclose(f);
    cap.rlim_cur = cap.rlim_max =
        pages * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + (rlim_t{1} << 30);
    if (setrlimit(RLIMIT_AS, &cap) != 0) _exit(4);
    auto result = net->Forward(View(x), /*include_layers=*/true);
    if (result.ok()) _exit(5);
    if (result.status().code() != absl::StatusCode::kResourceExhausted) {
      _exit(6);
    }
    // Still serving: a small call works after the failure.
    const RowMatrix<float> one = RowMatrix<float>::Zero(1, 1);
    _exit(net->Forward(View(one), false).ok() ? 0 : 7);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status))
      << "child died by signal "
      << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace satlab::engine
