// The native engine (native_engine.h) for this CPU's ISA level: this
// executable loads it before any test runs, so every test linked in with it
// (gradient_test.cc's finite-difference checks of every loss/activation
// pair, network_test.cc, network_state_test.cc) runs on it, plus the tests
// below of what only a native engine has to show.
#include "server/engine/native_engine.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/gemm.h"
#include "server/engine/network.h"
#include "server/engine/network_impl.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::Uniform;
using ::satlab::engine::testing::View;

NetworkSpec TinySpec(DType dtype, uint64_t seed) {
  NetworkSpec spec;
  spec.input_size = 2;
  spec.layers = {{16, Activation::kSigmoid, 0},
                 {16, Activation::kSigmoid, 0},
                 {1, Activation::kSigmoid, 0}};
  spec.loss = Loss::kBce;
  spec.dtype = dtype;
  spec.init.seed = seed;
  return spec;
}

// Every parameter's bits, layer by layer.
template <typename T>
std::string Bits(const Network& net) {
  std::string out;
  for (int l = 0; l < net.num_layers(); ++l) {
    for (const AnyMatrix& m : {net.weights(l), net.biases(l)}) {
      const RowMatrix<T>& values = std::get<RowMatrix<T>>(m);
      out.append(reinterpret_cast<const char*>(values.data()),
                 values.size() * sizeof(T));
    }
  }
  return out;
}

TEST(NativeEngine, InUseForThisCpuLevel) {
  EXPECT_EQ(EngineName(), CpuIsaLevel());
  EXPECT_NE(EngineName(), "portable");
}

TEST(NativeEngine, SameSeedSameBits) {
  Rng rng(3);
  const RowMatrix<double> x = Uniform(rng, 32, 2, -2, 2);
  const RowMatrix<double> y = Uniform(rng, 32, 1, 0, 1);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    auto a = MakeNetwork(TinySpec(dtype, 9));
    auto b = MakeNetwork(TinySpec(dtype, 9));
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    RowMatrix<float> x32 = x.cast<float>(), y32 = y.cast<float>();
    for (int step = 0; step < 50; ++step) {
      if (dtype == DType::kFloat32) {
        ASSERT_TRUE(a->TrainStep(View(x32), View(y32)).ok());
        ASSERT_TRUE(b->TrainStep(View(x32), View(y32)).ok());
      } else {
        ASSERT_TRUE(a->TrainStep(View(x), View(y)).ok());
        ASSERT_TRUE(b->TrainStep(View(x), View(y)).ok());
      }
    }
    if (dtype == DType::kFloat32) {
      EXPECT_EQ(Bits<float>(*a), Bits<float>(*b));
    } else {
      EXPECT_EQ(Bits<double>(*a), Bits<double>(*b));
    }
  }
}

// The portable engine (called directly: every Network here is native) and
// the native one train the same network to the same values up to rounding,
// and not to the same bits (else the native engine would not be one).
TEST(NativeEngine, AgreesWithPortableToRounding) {
  Rng rng(5);
  const RowMatrix<double> x = Uniform(rng, 32, 2, -2, 2);
  const RowMatrix<double> y = Uniform(rng, 32, 1, 0, 1);
  const NetworkSpec spec = TinySpec(DType::kFloat64, 4);
  std::unique_ptr<NetworkImpl> portable = MakeNetworkImpl(spec);
  std::unique_ptr<NetworkImpl> native = NewNetworkImpl(spec);
  for (int step = 0; step < 200; ++step) {
    ASSERT_TRUE(portable->TrainStep(View(x), View(y), nullptr).ok());
    ASSERT_TRUE(native->TrainStep(View(x), View(y), nullptr).ok());
  }
  bool any_bit_differs = false;
  for (int l = 0; l < 3; ++l) {
    const RowMatrix<double>& p = Get<double>(portable->weights(l));
    const RowMatrix<double>& n = Get<double>(native->weights(l));
    EXPECT_LE((p - n).cwiseAbs().maxCoeff(),
              1e-10 * (1 + p.cwiseAbs().maxCoeff()))
        << "layer " << l;
    any_bit_differs |=
        std::memcmp(p.data(), n.data(), p.size() * sizeof(double)) != 0;
  }
  EXPECT_TRUE(any_bit_differs)
      << "the native engine computed the portable "
         "engine's bits: is it compiled for its level?";
}

int ThreadsOfThisProcess() {
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++count;
  }
  return count;
}

// The server's --blas_threads reaches the native engine's own step team:
// its step starts a helper thread, and trains as one thread would, to
// rounding.
TEST(NativeEngine, BlasThreadsReachItsStepTeam) {
  NetworkSpec spec;
  spec.input_size = 300;
  spec.layers = {{200, Activation::kTanh, 0}, {10, Activation::kSigmoid, 0}};
  spec.loss = Loss::kBce;
  spec.init.seed = 9;
  Rng rng(6);
  const RowMatrix<double> x = Uniform(rng, 40, 300, -1, 1);
  const RowMatrix<double> y = Uniform(rng, 40, 10, 0, 1);
  SetBlasThreads(1);
  std::unique_ptr<Network> one = MakeNetwork(spec);
  ASSERT_NE(one, nullptr);
  ASSERT_TRUE(one->TrainStep(View(x), View(y)).ok());
  const int threads_before = ThreadsOfThisProcess();
  SetBlasThreads(2);
  std::unique_ptr<Network> team = MakeNetwork(spec);
  ASSERT_NE(team, nullptr);
  ASSERT_TRUE(team->TrainStep(View(x), View(y)).ok());
  EXPECT_EQ(ThreadsOfThisProcess(), threads_before + 1);
  SetBlasThreads(1);
  for (int l = 0; l < 2; ++l) {
    const RowMatrix<double>& a = Get<double>(one->weights(l));
    const RowMatrix<double>& b = Get<double>(team->weights(l));
    EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-12) << "layer " << l;
  }
}

// A network saved and restored (Network::FromState, as a restart does)
// continues on the native engine bit for bit as if never stopped.
TEST(NativeEngine, RestoredNetworkContinuesBitwise) {
  Rng rng(8);
  const RowMatrix<float> x = Uniform(rng, 32, 2, -2, 2).cast<float>();
  const RowMatrix<float> y = Uniform(rng, 32, 1, 0, 1).cast<float>();
  NetworkSpec spec = TinySpec(DType::kFloat32, 6);
  spec.optimizer.kind = OptimizerKind::kAdam;
  spec.optimizer.learning_rate = 0.01;
  auto straight = MakeNetwork(spec);
  auto first = MakeNetwork(spec);
  ASSERT_NE(straight, nullptr);
  ASSERT_NE(first, nullptr);
  for (int step = 0; step < 30; ++step) {
    ASSERT_TRUE(straight->TrainStep(View(x), View(y)).ok());
    if (step < 10) {
      ASSERT_TRUE(first->TrainStep(View(x), View(y)).ok());
    }
  }
  auto state = first->ExportState();
  ASSERT_TRUE(state.ok()) << state.status();
  auto restored = Network::FromState(*std::move(state), Limits{}, "state");
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (int step = 10; step < 30; ++step) {
    ASSERT_TRUE((*restored)->TrainStep(View(x), View(y)).ok());
  }
  EXPECT_EQ(Bits<float>(**restored), Bits<float>(*straight));
}

TEST(NativeEngine, MissingObjectIsNotFoundAndChangesNothing) {
  const absl::Status s = UseNativeEngine("/nonexistent/dir");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("/nonexistent/dir/libsatlab_engine_"),
            std::string::npos)
      << s;
  EXPECT_EQ(EngineName(), CpuIsaLevel());
}

}  // namespace
}  // namespace satlab::engine

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Fails loudly: every CPU of the fleet is x86-64-v3 or better, and the
  // build puts the objects in SATLAB_ENGINE_DIR.
  const absl::Status s = satlab::engine::UseNativeEngine(SATLAB_ENGINE_DIR);
  if (!s.ok()) {
    std::fprintf(stderr, "cannot load the native engine: %s\n",
                 s.ToString().c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
