// MetricsHub without gRPC: numbering, bounded history and replay, filters,
// bounded subscriber buffers that count what they drop, gauges, shutdown.
#include "server/service/metrics_hub.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace satlab::service {
namespace {

engine::StepResult Step(int64_t step, double loss = 0.5, int layers = 2) {
  engine::StepResult r;
  r.step = step;
  r.loss = loss;
  r.batch_size = 8;
  r.accuracy = 0.25;
  r.stats.output_attenuation = 0.2;
  for (int i = 0; i < layers; ++i) {
    engine::LayerStats s;
    s.saturated_fraction = 0.1 * (i + 1);
    s.weight_gradient_norm = 1.5 * (i + 1);
    r.stats.layers.push_back(s);
  }
  return r;
}

std::unique_ptr<MetricsHub> NewHub(int64_t history, int64_t buffer) {
  MetricsHubOptions options;
  options.history_size = history;
  options.subscriber_buffer = buffer;
  auto hub = MetricsHub::Create(options);
  EXPECT_TRUE(hub.ok()) << hub.status();
  return *std::move(hub);
}

// Pops everything waiting.
std::vector<MetricsSubscription::Item> Drain(MetricsSubscription& sub) {
  std::vector<MetricsSubscription::Item> items;
  while (auto item = sub.Pop()) items.push_back(*std::move(item));
  return items;
}

TEST(MetricsHubTest, Create_SizesBelowOne_InvalidArgument) {
  for (auto [history, buffer] : {std::pair<int64_t, int64_t>{0, 1}, {1, 0}}) {
    MetricsHubOptions options;
    options.history_size = history;
    options.subscriber_buffer = buffer;
    EXPECT_EQ(MetricsHub::Create(options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << history << " " << buffer;
  }
}

TEST(MetricsHubTest, OnStep_NumbersEventsAndUpdatesGauges) {
  auto hub = NewHub(10, 10);
  auto sub = hub->Subscribe({"", -1});
  hub->OnStep("networks/a", Step(1, 0.9));
  hub->OnStep("networks/a", Step(2, 0.7));
  auto items = Drain(*sub);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].event->sequence(), 1);
  EXPECT_EQ(items[1].event->sequence(), 2);
  EXPECT_EQ(items[1].event->network(), "networks/a");
  EXPECT_EQ(items[1].event->step().step(), 2);
  EXPECT_DOUBLE_EQ(items[1].event->step().loss(), 0.7);
  EXPECT_EQ(items[1].event->step().saturation().layers_size(), 2);
  EXPECT_GT(items[1].event->time().seconds(), 1700000000);

  auto networks = hub->Networks();
  ASSERT_EQ(networks.size(), 1u);
  EXPECT_EQ(networks[0].id, "a");
  EXPECT_EQ(networks[0].step, 2);
  EXPECT_DOUBLE_EQ(networks[0].loss, 0.7);
  EXPECT_EQ(networks[0].steps_total, 2);
  EXPECT_EQ(networks[0].samples_total, 16);
  EXPECT_DOUBLE_EQ(networks[0].layers[1].weight_gradient_norm, 3.0);
}

TEST(MetricsHubTest, History_Bounded_ReplayKeepsNewest) {
  auto hub = NewHub(5, 100);
  for (int i = 1; i <= 12; ++i) hub->OnStep("networks/a", Step(i));
  auto items = Drain(*hub->Subscribe({"", 0}));
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items.front().event->step().step(), 8);
  EXPECT_EQ(items.back().event->step().step(), 12);
  EXPECT_EQ(hub->Counters().history_events, 5);
  EXPECT_EQ(hub->Counters().events_total, 12);
}

struct ReplayCase {
  std::string label;
  WatchFilter filter;
  std::vector<int64_t> expected_sequences;
};

TEST(MetricsHubTest, Subscribe_Filters_ReplayMatchingEvents) {
  auto hub = NewHub(100, 100);
  hub->OnStep("networks/a", Step(1));  // seq 1
  hub->OnStep("networks/b", Step(1));  // seq 2
  hub->OnStep("networks/a", Step(2));  // seq 3
  v1::ExperimentProgress progress;
  progress.set_experiment_id("e1");
  hub->OnExperimentProgress(progress);  // seq 4
  hub->OnStep("networks/a", Step(3));   // seq 5
  const std::vector<ReplayCase> cases = {
      {"all", {"", 0}, {1, 2, 3, 4, 5}},
      {"all from step 2", {"", 2}, {3, 4, 5}},
      {"one network", {"networks/a", 0}, {1, 3, 5}},
      {"one network from step 3", {"networks/a", 3}, {5}},
      {"live only", {"", -1}, {}},
  };
  for (const ReplayCase& c : cases) {
    std::vector<int64_t> got;
    for (const auto& item : Drain(*hub->Subscribe(c.filter))) {
      got.push_back(item.event->sequence());
    }
    EXPECT_EQ(got, c.expected_sequences) << c.label;
  }
}

TEST(MetricsHubTest, Live_NetworkFilter_ExcludesOthersAndExperiments) {
  auto hub = NewHub(100, 100);
  auto sub = hub->Subscribe({"networks/a", -1});
  hub->OnStep("networks/b", Step(1));
  hub->OnExperimentProgress(v1::ExperimentProgress());
  hub->OnStep("networks/a", Step(1));
  hub->OnNetworkDeleted("networks/a");
  auto items = Drain(*sub);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0].event->has_step());
  EXPECT_TRUE(items[1].event->network_deleted());
}

TEST(MetricsHubTest, Overflow_DropsOldest_CountsOnNextEvent) {
  auto hub = NewHub(100, 3);
  auto sub = hub->Subscribe({"", -1});
  for (int i = 1; i <= 10; ++i) hub->OnStep("networks/a", Step(i));
  auto items = Drain(*sub);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].event->step().step(), 8);
  EXPECT_EQ(items[0].dropped_before, 7);
  EXPECT_EQ(items[1].dropped_before, 0);
  EXPECT_EQ(sub->dropped(), 7);
  EXPECT_EQ(hub->Counters().dropped_events_total, 7);
  // Caught up: nothing more is dropped.
  hub->OnStep("networks/a", Step(11));
  items = Drain(*sub);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].dropped_before, 0);
}

TEST(MetricsHubTest, Replay_LargerThanBuffer_NothingDropped) {
  auto hub = NewHub(100, 2);
  for (int i = 1; i <= 50; ++i) hub->OnStep("networks/a", Step(i));
  auto sub = hub->Subscribe({"", 0});
  EXPECT_EQ(Drain(*sub).size(), 50u);
  EXPECT_EQ(sub->dropped(), 0);
}

TEST(MetricsHubTest, Delete_RemovesGauges) {
  auto hub = NewHub(10, 10);
  hub->OnStep("networks/a", Step(1));
  hub->OnStep("networks/b", Step(1));
  hub->OnNetworkDeleted("networks/a");
  auto networks = hub->Networks();
  ASSERT_EQ(networks.size(), 1u);
  EXPECT_EQ(networks[0].id, "b");
}

// A Train message's steps in one call: an event per step, in order, with
// every field; the gauges count each step and show the last; a subscriber
// is woken once. A deep network's event (more than the arena's first
// block holds) is whole too, and events outlive the hub (ASan checks).
TEST(MetricsHubTest, OnSteps_EventPerStepInOrder_GaugesCountAll_OneWakeUp) {
  auto hub = NewHub(10, 10);
  auto sub = hub->Subscribe({"", -1});
  std::atomic<int> calls{0};
  sub->SetListener([&calls] { ++calls; });
  std::vector<engine::StepResult> steps = {Step(1, 0.9, 3), Step(2, 0.7, 3),
                                           Step(3, 0.6, 12)};
  steps[1].diverged = true;
  hub->OnSteps(
      "networks/a", 0, [&steps](size_t i) -> const auto& { return steps[i]; });
  EXPECT_TRUE(hub->Networks().empty());
  EXPECT_EQ(calls.load(), 0);
  hub->OnSteps(
      "networks/a",
      steps.size(), [&steps](size_t i) -> const auto& { return steps[i]; });
  EXPECT_EQ(calls.load(), 1);

  auto networks = hub->Networks();
  ASSERT_EQ(networks.size(), 1u);
  EXPECT_EQ(networks[0].step, 3);
  EXPECT_DOUBLE_EQ(networks[0].loss, 0.6);
  EXPECT_FALSE(networks[0].diverged);
  EXPECT_EQ(networks[0].steps_total, 3);
  EXPECT_EQ(networks[0].samples_total, 24);
  EXPECT_EQ(networks[0].diverged_steps_total, 1);
  EXPECT_EQ(networks[0].layers.size(), 12u);

  auto items = Drain(*sub);
  hub.reset();
  ASSERT_EQ(items.size(), 3u);
  for (size_t i = 0; i < items.size(); ++i) {
    const v1::MetricEvent& event = *items[i].event;
    EXPECT_EQ(event.sequence(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(event.network(), "networks/a");
    EXPECT_EQ(event.step().step(), steps[i].step);
    EXPECT_DOUBLE_EQ(event.step().loss(), steps[i].loss);
    EXPECT_EQ(event.step().diverged(), steps[i].diverged);
    ASSERT_EQ(event.step().saturation().layers_size(),
              static_cast<int>(steps[i].stats.layers.size()));
    for (int l = 0; l < event.step().saturation().layers_size(); ++l) {
      EXPECT_EQ(event.step().saturation().layers(l).layer(), l);
      EXPECT_DOUBLE_EQ(
          event.step().saturation().layers(l).weight_gradient_norm(),
          1.5 * (l + 1));
    }
  }
}

TEST(MetricsHubTest, Listener_CalledPerEvent_NeverAfterClose) {
  auto hub = NewHub(10, 10);
  auto sub = hub->Subscribe({"", -1});
  std::atomic<int> calls{0};
  sub->SetListener([&calls] { ++calls; });
  hub->OnStep("networks/a", Step(1));
  hub->OnStep("networks/a", Step(2));
  EXPECT_EQ(calls.load(), 2);
  sub->Close();
  const int after_close = calls.load();  // Close wakes it once more
  EXPECT_EQ(after_close, 3);
  hub->OnStep("networks/a", Step(3));
  EXPECT_EQ(calls.load(), after_close);
  EXPECT_EQ(hub->Counters().subscribers, 0);
}

TEST(MetricsHubTest, Shutdown_ClosesSubscriptionsAndRefusesNew) {
  auto hub = NewHub(10, 10);
  auto sub = hub->Subscribe({"", -1});
  hub->Shutdown();
  EXPECT_TRUE(sub->closed());
  EXPECT_FALSE(sub->WaitForEvent(absl::Seconds(5)));  // returns at once
  EXPECT_TRUE(hub->Subscribe({"", 0})->closed());
}

}  // namespace
}  // namespace satlab::service
