// The server's shared state driven from many threads with no gRPC in
// between: the executor and the metrics hub (the core's writer slot and
// locks are driven in tests/core/core_concurrency_test.cc). Besides their own
// assertions these are the tests ThreadSanitizer checks with a clean signal
// (label `tsan`; docs/testing.md says why the gRPC tests are not among them).
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/service/executor.h"
#include "server/service/metrics_hub.h"

namespace satlab::testing {
namespace {

TEST(ExecutorConcurrencyTest, ManySubmitters_EveryAcceptedTaskRunsOnce) {
  constexpr int kSubmitters = 4;
  constexpr int kTasksEach = 500;
  absl::Mutex mu;
  std::map<int, int> runs ABSL_GUARDED_BY(mu);
  // One slot per task, written by the task without a lock: read below only
  // after Shutdown joined the workers.
  std::vector<int> slot(kSubmitters * kTasksEach, 0);
  std::vector<std::vector<int>> accepted(kSubmitters);
  {
    service::Executor executor(/*threads=*/2, /*max_queued=*/64);
    std::vector<std::thread> submitters;
    for (int s = 0; s < kSubmitters; ++s) {
      submitters.emplace_back([&, s] {
        for (int i = 0; i < kTasksEach; ++i) {
          const int id = s * kTasksEach + i;
          if (executor.TrySubmit([&, id] {
                slot[id] = id + 1;
                absl::MutexLock lock(&mu);
                ++runs[id];
              })) {
            accepted[s].push_back(id);
          } else {
            std::this_thread::yield();
          }
        }
      });
    }
    for (auto& t : submitters) t.join();
    executor.Shutdown();
  }
  int total = 0;
  absl::MutexLock lock(&mu);
  for (const auto& ids : accepted) {
    for (int id : ids) {
      EXPECT_EQ(runs[id], 1) << "task " << id;
      EXPECT_EQ(slot[id], id + 1) << "task " << id;
      ++total;
    }
  }
  EXPECT_EQ(static_cast<int>(runs.size()), total);
  EXPECT_GT(total, 0);
}

TEST(ExecutorConcurrencyTest, SubmitDuringShutdown_AcceptedTasksAllRun) {
  std::atomic<int> ran{0};
  int accepted = 0;
  service::Executor executor(/*threads=*/2, /*max_queued=*/16);
  std::thread submitter([&] {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (absl::Now() < give_up) {
      if (executor.TrySubmit([&] { ran.fetch_add(1); })) {
        ++accepted;
      } else if (accepted > 100) {
        return;  // refused: the executor is stopping (or full)
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(20));
  executor.Shutdown();
  submitter.join();
  EXPECT_FALSE(executor.TrySubmit([] {}));
  EXPECT_EQ(ran.load(), accepted);
}

// Three publishers, two subscribers reading as events come: each
// subscriber sees every event exactly once, in sequence order, or is told
// how many it missed.
TEST(MetricsHubConcurrencyTest,
     PublishersAndSubscribers_NothingLostOrRepeated) {
  constexpr int kPublishers = 3;
  constexpr int kStepsEach = 300;
  auto hub = service::MetricsHub::Create(service::MetricsHubOptions{});
  ASSERT_TRUE(hub.ok()) << hub.status();
  std::vector<std::shared_ptr<service::MetricsSubscription>> subs;
  for (int s = 0; s < 2; ++s) {
    service::WatchFilter filter;
    filter.start_step = -1;  // live events only
    subs.push_back((*hub)->Subscribe(filter));
  }
  std::vector<std::thread> threads;
  std::vector<int64_t> received(subs.size(), 0);
  for (size_t s = 0; s < subs.size(); ++s) {
    threads.emplace_back([&, s] {
      int64_t last_sequence = 0;
      const absl::Time give_up = absl::Now() + absl::Seconds(30);
      while (received[s] < kPublishers * kStepsEach && absl::Now() < give_up) {
        if (!subs[s]->WaitForEvent(absl::Milliseconds(50))) continue;
        while (auto item = subs[s]->Pop()) {
          EXPECT_GT(item->event->sequence(), last_sequence);
          last_sequence = item->event->sequence();
          received[s] += 1 + item->dropped_before;
        }
      }
    });
  }
  for (int p = 0; p < kPublishers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 1; i <= kStepsEach; ++i) {
        engine::StepResult result;
        result.step = i;
        result.loss = 1.0 / i;
        result.batch_size = 1;
        (*hub)->OnStep(absl::StrCat("net-", p), result);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (size_t s = 0; s < subs.size(); ++s) {
    EXPECT_EQ(received[s], kPublishers * kStepsEach) << "subscriber " << s;
  }
  const auto counters = (*hub)->Counters();
  EXPECT_EQ(counters.events_total, kPublishers * kStepsEach);
  for (const auto& gauges : (*hub)->Networks()) {
    EXPECT_EQ(gauges.step, kStepsEach) << gauges.id;
  }
  (*hub)->Shutdown();
}

}  // namespace
}  // namespace satlab::testing
