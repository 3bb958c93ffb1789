// WatchMetrics over a real in-process server (127.0.0.1:0) with a
// MetricsHub as its event sink: replay from a step, live events, overflow
// reported as dropped_events, cancellation cleaning up, errors.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/service/metrics_hub.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

class WatchMetricsTest : public ServiceTest {
 protected:
  void SetUp() override {
    service::MetricsHubOptions hub_options;
    hub_options.history_size = 1000;
    hub_options.subscriber_buffer = 8;
    auto hub = service::MetricsHub::Create(hub_options);
    ASSERT_TRUE(hub.ok()) << hub.status();
    hub_ = *std::move(hub);
    options_.hub = hub_.get();
    Start();
  }
  void TearDown() override {
    hub_->Shutdown();
    ServiceTest::TearDown();
  }

  // A network trained `steps` steps through TrainStep.
  std::string Trained(const std::string& id, int steps) {
    auto network =
        client_->CreateNetwork(SmallSpec(3, 4, 2, v1::LOSS_MSE, 7), id);
    EXPECT_TRUE(network.ok()) << network.status();
    for (int i = 0; i < steps; ++i) {
      EXPECT_TRUE(
          client_->TrainStep(network->name(), MakeBatch(4, 3, 2, i)).ok());
    }
    return network->name();
  }

  // Waits until the hub has exactly `n` subscribers (or 10 s pass).
  bool WaitForSubscribers(int64_t n) {
    for (int i = 0; i < 1000; ++i) {
      if (hub_->Counters().subscribers == n) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<service::MetricsHub> hub_;
};

v1::WatchMetricsRequest Request(const std::string& name, int64_t start_step) {
  v1::WatchMetricsRequest request;
  request.set_name(name);
  request.set_start_step(start_step);
  return request;
}

TEST_F(WatchMetricsTest, ReplayFromStep_ThenLive) {
  const std::string name = Trained("replayed", 5);
  std::vector<int64_t> steps;
  std::thread trainer;
  absl::Status status = client_->WatchMetrics(
      Request(name, 3),
      [&](const v1::WatchMetricsResponse& r) {
        EXPECT_EQ(r.event().network(), name);
        EXPECT_EQ(r.dropped_events(), 0);
        steps.push_back(r.event().step().step());
        if (steps.size() == 3) {  // replay done: train two more, live
          trainer = std::thread([&] {
            for (int i = 0; i < 2; ++i) {
              EXPECT_TRUE(client_->TrainStep(name, MakeBatch(4, 3, 2, i)).ok());
            }
          });
        }
        return steps.size() < 5;
      },
      absl::Seconds(20));
  if (trainer.joinable()) trainer.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 4, 5, 6, 7}));
}

TEST_F(WatchMetricsTest, LiveOnly_SkipsHistory) {
  const std::string name = Trained("live", 3);
  std::vector<int64_t> steps;
  std::thread watcher([&] {
    EXPECT_TRUE(client_
                    ->WatchMetrics(
                        Request("", -1),
                        [&](const v1::WatchMetricsResponse& r) {
                          steps.push_back(r.event().step().step());
                          return false;
                        },
                        absl::Seconds(20))
                    .ok());
  });
  ASSERT_TRUE(WaitForSubscribers(1));
  ASSERT_TRUE(client_->TrainStep(name, MakeBatch(4, 3, 2, 0)).ok());
  watcher.join();
  EXPECT_EQ(steps, (std::vector<int64_t>{4}));
}

TEST_F(WatchMetricsTest, SlowReader_ToldHowManyEventsItMissed) {
  // Live events far beyond what gRPC's flow-control windows hold, produced
  // while the client sleeps on its first event.
  constexpr int kEvents = 40000;
  engine::StepResult result;
  result.stats.layers.resize(16);
  absl::Notification first_seen;
  int64_t received = 0, dropped = 0, last_sequence = 0, gaps = 0;
  std::thread watcher([&] {
    absl::Status status = client_->WatchMetrics(
        Request("", -1),
        [&](const v1::WatchMetricsResponse& r) {
          if (!first_seen.HasBeenNotified()) {
            first_seen.Notify();
            absl::SleepFor(absl::Seconds(1));  // the producer races ahead
          }
          ++received;
          dropped += r.dropped_events();
          if (last_sequence != 0) {
            gaps += r.event().sequence() - last_sequence - 1;
          }
          last_sequence = r.event().sequence();
          return r.event().step().step() < kEvents;
        },
        absl::Seconds(60));
    EXPECT_TRUE(status.ok()) << status;
  });
  ASSERT_TRUE(WaitForSubscribers(1));
  result.step = 1;
  hub_->OnStep("networks/synthetic", result);
  first_seen.WaitForNotification();
  for (int i = 2; i <= kEvents; ++i) {
    result.step = i;
    hub_->OnStep("networks/synthetic", result);
  }
  watcher.join();
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(received + dropped, kEvents);
  EXPECT_EQ(gaps, dropped);  // every gap in the numbering was announced
  EXPECT_EQ(hub_->Counters().dropped_events_total, dropped);
}

TEST_F(WatchMetricsTest, Cancel_UnsubscribesAtOnce) {
  const std::string name = Trained("cancelled", 1);
  grpc::ClientContext ctx;
  auto reader = client_->stub()->WatchMetrics(&ctx, Request(name, 0));
  v1::WatchMetricsResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(hub_->Counters().subscribers, 1);
  ctx.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForSubscribers(0));
}

TEST_F(WatchMetricsTest, NetworkDeleted_LastEventEndsStream) {
  const std::string name = Trained("doomed", 2);
  std::vector<bool> deleted;
  std::thread watcher([&] {
    absl::Status status = client_->WatchMetrics(
        Request(name, 0),
        [&](const v1::WatchMetricsResponse& r) {
          deleted.push_back(r.event().network_deleted());
          return true;
        },
        absl::Seconds(20));
    EXPECT_TRUE(status.ok()) << status;
  });
  ASSERT_TRUE(WaitForSubscribers(1));
  ASSERT_TRUE(client_->DeleteNetwork(name).ok());
  watcher.join();
  EXPECT_EQ(deleted, (std::vector<bool>{false, false, true}));
}

TEST_F(WatchMetricsTest, HubShutdown_StreamsEndUnavailable) {
  std::thread shutdown([&] {
    ASSERT_TRUE(WaitForSubscribers(1));
    hub_->Shutdown();
  });
  absl::Status status = client_->WatchMetrics(
      Request("", -1), [](const v1::WatchMetricsResponse&) { return true; },
      absl::Seconds(20));
  shutdown.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

TEST_F(WatchMetricsTest, BadRequests_NamedErrors) {
  auto watch = [&](const v1::WatchMetricsRequest& request) {
    return client_->WatchMetrics(
        request, [](const v1::WatchMetricsResponse&) { return false; },
        absl::Seconds(10));
  };
  EXPECT_EQ(watch(Request("networks/missing", 0)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(watch(Request("nonsense", 0)).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status bad_step = watch(Request("", -2));
  EXPECT_EQ(bad_step.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_step.message().find("start_step"), absl::string_view::npos);
}

}  // namespace
}  // namespace satlab::testing
