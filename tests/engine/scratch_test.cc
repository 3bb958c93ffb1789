// The engine's scratch space belongs to the compute thread, not to the
// network: a step in steady state allocates nothing, a network costs its
// parameters only, and an unusually large pass does not leave its scratch
// allocated.
#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
// From libasan (GCC on Debian ships the library, not
// <sanitizer/allocator_interface.h>).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::View;

// Bytes the program has allocated and not freed. Under AddressSanitizer
// (the CI's engine_test build) malloc is ASan's, which glibc's mallinfo2
// does not see.
int64_t HeapBytesInUse() {
#if defined(__SANITIZE_ADDRESS__)
  return static_cast<int64_t>(__sanitizer_get_current_allocated_bytes());
#else
  const struct mallinfo2 m = mallinfo2();
  return static_cast<int64_t>(m.uordblks + m.hblkhd);
#endif
}

NetworkSpec Spec(int input, int hidden) {
  NetworkSpec spec;
  spec.input_size = input;
  spec.layers = {{hidden, Activation::kSigmoid}, {1, Activation::kSigmoid}};
  spec.loss = Loss::kMse;
  spec.dtype = DType::kFloat64;
  return spec;
}

TEST(Scratch, SteadyStateStep_AllocatesNothingAndKeepsNothingPerNetwork) {
  const RowMatrix<double> x = RowMatrix<double>::Constant(32, 8, 0.25);
  const RowMatrix<double> y = RowMatrix<double>::Constant(32, 1, 1.0);
  auto first = MakeNetwork(Spec(8, 64));
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(
      first->TrainStep(View(x), View(y)).ok());  // sizes this thread's scratch
  auto second = MakeNetwork(Spec(8, 64));
  ASSERT_NE(second, nullptr);
  const int64_t before = HeapBytesInUse();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(first->TrainStep(View(x), View(y)).ok());
    EXPECT_TRUE(second->TrainStep(View(x), View(y)).ok());
  }
  // StepResult's per-layer statistics are freed with it; nothing stays.
  EXPECT_EQ(HeapBytesInUse(), before);
}

TEST(Scratch, LargePass_ScratchReleasedAfterwards) {
  // 2,000 rows of a 1000-unit layer: Z, A, f'(Z) and deltas alone are
  // 2000 x 1001 x 4 doubles = 64 MB, over the 32 MiB the thread keeps.
  const RowMatrix<double> x = RowMatrix<double>::Constant(2000, 4, 0.5);
  const RowMatrix<double> y = RowMatrix<double>::Constant(2000, 1, 1.0);
  auto net = MakeNetwork(Spec(4, 1000));
  ASSERT_NE(net, nullptr);
  const int64_t before = HeapBytesInUse();
  const StepResult result = *net->TrainStep(View(x), View(y));
  EXPECT_FALSE(result.diverged);
  EXPECT_LT(HeapBytesInUse() - before, int64_t{1} << 20);
}

}  // namespace
}  // namespace satlab::engine
