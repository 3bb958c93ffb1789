// The server's shared state driven from many threads with no gRPC in
// between: the executor, the store's writer slot and entry lock (used the
// way the handlers use them), and the metrics hub. Besides their own
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
#include "server/engine/network.h"
#include "server/service/executor.h"
#include "server/service/metrics_hub.h"
#include "server/store/network_store.h"

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

std::unique_ptr<engine::Network> TinyNetwork() {
  engine::NetworkSpec spec;
  spec.input_size = 2;
  spec.layers = {{4, engine::Activation::kTanh},
                 {1, engine::Activation::kSigmoid}};
  spec.loss = engine::Loss::kBce;
  spec.init.scheme = engine::InitScheme::kGlorotUniform;
  auto net = engine::Network::Create(spec, engine::Limits{}, "network.spec");
  EXPECT_TRUE(net.ok()) << net.status();
  return *std::move(net);
}

// Writers claim the slot, then the entry lock exclusively, and step;
// readers take the lock shared and run Forward; a third party inserts,
// lists and erases other entries. Exactly one writer at a time, and every
// step a writer took is in the network's step counter.
TEST(StoreConcurrencyTest, WritersReadersAndChurn_OneWriterAndNoStepLost) {
  auto store = store::NewInMemoryStore(/*max_networks=*/100);
  auto entry = std::make_shared<store::NetworkEntry>("shared", TinyNetwork(),
                                                     absl::Now());
  ASSERT_TRUE(store->Insert(entry).ok());

  const double x[] = {0.5, -0.25, 1.0, 0.0};
  const double y[] = {1.0, 0.0};
  engine::MatrixView inputs{nullptr, x, 2, 2};
  engine::MatrixView targets{nullptr, y, 2, 1};

  std::atomic<int> writers_inside{0};
  std::atomic<int> max_writers_inside{0};
  std::atomic<int> steps_taken{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        auto found = store->Find("shared");
        ASSERT_TRUE(found.ok());
        if (!(*found)->TryAcquireWriter()) continue;
        const int inside = writers_inside.fetch_add(1) + 1;
        int seen = max_writers_inside.load();
        while (inside > seen &&
               !max_writers_inside.compare_exchange_weak(seen, inside)) {
        }
        {
          absl::MutexLock lock(&(*found)->mu);
          EXPECT_TRUE((*found)->network->TrainStep(inputs, targets).ok());
          (*found)->update_time = absl::Now();
        }
        steps_taken.fetch_add(1);
        writers_inside.fetch_sub(1);
        (*found)->ReleaseWriter();
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        auto found = store->Find("shared");
        ASSERT_TRUE(found.ok());
        absl::ReaderMutexLock lock(&(*found)->mu);
        const auto out = (*found)->network->Forward(inputs, false);
        ASSERT_TRUE(out.ok()) << out.status();
        EXPECT_EQ(std::get<engine::RowMatrix<double>>(out->outputs).rows(), 2);
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = absl::StrCat("churn-", i % 8);
      auto e =
          std::make_shared<store::NetworkEntry>(id, TinyNetwork(), absl::Now());
      if (store->Insert(e).ok()) {
        EXPECT_FALSE(store->List("", 100).empty());
        EXPECT_TRUE(store->Erase(id).ok());
        EXPECT_TRUE(e->deleted.load());
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  stop.store(true);
  for (auto& t : threads) t.join();

  EXPECT_EQ(max_writers_inside.load(), 1);
  EXPECT_GT(steps_taken.load(), 0);
  absl::ReaderMutexLock lock(&entry->mu);
  EXPECT_EQ(entry->network->step(), steps_taken.load());
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
