// The core from many threads, no gRPC in between: unary writers and a
// Train-stream-like session compete for one network's writer slot while
// readers run Forward and a third party creates, lists and deletes other
// networks. Besides its own assertions this is what ThreadSanitizer checks
// (label `tsan`).
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/core/network_core.h"
#include "tests/core/core_test_util.h"

namespace satlab::core {
namespace {

using ::satlab::core::testing::FlakyStore;
using ::satlab::core::testing::SmallSpec;
using ::satlab::core::testing::StepOne;
using ::satlab::core::testing::TestBatch;
using ::satlab::core::testing::TrainOne;
using ::satlab::core::testing::TryOneInline;

TEST(CoreConcurrencyTest, WritersReadersAndChurn_OneWriterNoStepLost) {
  FlakyStore store;
  CoreOptions options;
  options.commit_every_steps = 3;
  NetworkCore core(options, &store);
  ASSERT_TRUE(core.Create("shared", SmallSpec()).ok());

  std::atomic<int> steps_taken{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  // Unary writers (one inline-capable, one not).
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      const TestBatch batch(w);
      while (!stop.load()) {
        if (w == 0) {
          auto done = TryOneInline(core, "shared", batch.view(), {});
          if (done.has_value()) {
            if (done->ok()) steps_taken.fetch_add(1);
            continue;
          }
        }
        Replay replay;
        auto step = TrainOne(
            core, "shared", batch.view(), {},
            [](const StepsOutcome&) { return std::string(); }, &replay);
        if (step.ok()) {
          steps_taken.fetch_add(1);
        } else {
          EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted)
              << step.status();
        }
      }
    });
  }
  // A session writer: holds the slot for a few steps at a time.
  threads.emplace_back([&] {
    const TestBatch batch(7);
    while (!stop.load()) {
      auto session = core.OpenWriter("shared", {});
      if (!session.ok()) {
        EXPECT_EQ(session.status().code(), absl::StatusCode::kAborted);
        continue;
      }
      for (int i = 0; i < 4; ++i) {
        auto step = StepOne(**session, batch.view());
        ASSERT_TRUE(step.ok()) << step.status();
        steps_taken.fetch_add(1);
      }
      EXPECT_TRUE((*session)->Close().ok());
    }
  });
  // Readers.
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      const TestBatch batch(3);
      while (!stop.load()) {
        auto out =
            core.Forward("shared", batch.view().inputs, false, {},
                         [](const engine::NetworkSpec&,
                            int64_t) -> absl::StatusOr<int64_t> { return 64; });
        ASSERT_TRUE(out.ok()) << out.status();
        auto info = core.Get("shared");
        ASSERT_TRUE(info.ok());
        EXPECT_LE(info->durable_step, info->step);
      }
    });
  }
  // Churn on other networks.
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = absl::StrCat("churn-", i % 4);
      if (core.Create(id, SmallSpec()).ok()) {
        auto listed = core.List("", 100);
        ASSERT_TRUE(listed.ok());
        EXPECT_FALSE(listed->empty());
        EXPECT_TRUE(core.Delete(id).ok());
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  stop.store(true);
  for (auto& t : threads) t.join();

  EXPECT_GT(steps_taken.load(), 0);
  auto info = core.Get("shared");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->step, steps_taken.load());
  // The ephemeral store gets the live state when the core flushes.
  ASSERT_TRUE(core.Flush().ok());
  EXPECT_EQ(store.Load("shared")->state.step, steps_taken.load());
}

}  // namespace
}  // namespace satlab::core
