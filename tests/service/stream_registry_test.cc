// StreamRegistry alone: the open-stream cap, the byte budget's reservations
// and wake-ups, the idle monitor, and that an unregistered stream is never
// called again.
#include "server/service/stream_registry.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace satlab::service {
namespace {

using ::testing::HasSubstr;

class FakeStream final : public StreamRegistry::Stream {
 public:
  void CheckIdle(absl::Time, absl::Duration) override { ++idle_checks; }
  void OnBufferRoom() override { ++wakes; }

  std::atomic<int> idle_checks{0};
  std::atomic<int> wakes{0};
};

StreamLimits Limits() {
  StreamLimits limits;
  limits.max_open_streams = 2;
  limits.max_buffered_bytes = 100;
  limits.idle_timeout = absl::ZeroDuration();
  return limits;
}

TEST(StreamRegistryTest, Register_OverCap_ResourceExhaustedNamingFlag) {
  StreamRegistry registry(Limits());
  FakeStream a, b, c;
  EXPECT_TRUE(registry.Register(&a).ok());
  EXPECT_TRUE(registry.Register(&b).ok());
  const absl::Status refused = registry.Register(&c);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("--max_open_streams=2"));
  EXPECT_EQ(registry.open_streams(), 2);
  registry.Unregister(&a);
  EXPECT_TRUE(registry.Register(&c).ok());
  registry.Unregister(&b);
  registry.Unregister(&c);
  EXPECT_EQ(registry.open_streams(), 0);
}

TEST(StreamRegistryTest, TryReserve_FullBudget_WaiterWokenOnRelease) {
  StreamRegistry registry(Limits());
  FakeStream holder, waiter;
  ASSERT_TRUE(registry.Register(&holder).ok());
  ASSERT_TRUE(registry.Register(&waiter).ok());
  EXPECT_TRUE(registry.TryReserve(60, &holder));
  EXPECT_FALSE(registry.TryReserve(60, &waiter));
  EXPECT_FALSE(registry.TryReserve(60, &waiter));  // remembered once
  EXPECT_EQ(registry.buffered_bytes(), 60);
  registry.Release(60);
  EXPECT_EQ(waiter.wakes.load(), 1);
  EXPECT_EQ(holder.wakes.load(), 0);
  EXPECT_TRUE(registry.TryReserve(60, &waiter));
  registry.Release(60);
  EXPECT_EQ(waiter.wakes.load(), 1);  // it was not waiting any more
  registry.Unregister(&holder);
  registry.Unregister(&waiter);
}

TEST(StreamRegistryTest, TryReserve_LargerThanBudget_AdmittedWhenEmpty) {
  StreamRegistry registry(Limits());
  FakeStream stream;
  ASSERT_TRUE(registry.Register(&stream).ok());
  EXPECT_TRUE(registry.TryReserve(500, &stream));  // alone: never starves
  EXPECT_FALSE(registry.TryReserve(1, &stream));
  registry.Charge(20);
  EXPECT_EQ(registry.buffered_bytes(), 520);
  registry.Release(520);
  EXPECT_EQ(registry.buffered_bytes(), 0);
  registry.Unregister(&stream);
}

TEST(StreamRegistryTest, Unregistered_NeverWokenOrChecked) {
  StreamLimits limits = Limits();
  limits.idle_timeout = absl::Milliseconds(40);
  StreamRegistry registry(limits);
  FakeStream gone, stays;
  ASSERT_TRUE(registry.Register(&gone).ok());
  ASSERT_TRUE(registry.Register(&stays).ok());
  EXPECT_TRUE(registry.TryReserve(100, &stays));
  EXPECT_FALSE(registry.TryReserve(10, &gone));
  registry.Unregister(&gone);
  const int checks_when_gone = gone.idle_checks.load();
  registry.Release(100);
  EXPECT_EQ(gone.wakes.load(), 0);
  // The monitor ticks every 10 ms here: the registered stream is checked.
  for (int i = 0; i < 200 && stays.idle_checks.load() < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(stays.idle_checks.load(), 3);
  EXPECT_EQ(gone.idle_checks.load(), checks_when_gone);
  registry.Unregister(&stays);
}

}  // namespace
}  // namespace satlab::service
