// The core over a store: the writer slot, deletion while writing, the
// commit points, request ids and restarts (a new core over the same
// store), and a store whose writes fail (memory never runs ahead of it).
#include "server/core/network_core.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/capacity.h"
#include "tests/core/core_test_util.h"

namespace satlab::core {
namespace {

using ::satlab::core::testing::FlakyStore;
using ::satlab::core::testing::SameBits;
using ::satlab::core::testing::SmallSpec;
using ::satlab::core::testing::StepOne;
using ::satlab::core::testing::TestBatch;
using ::satlab::core::testing::TrainOne;
using ::satlab::core::testing::TryOneInline;
using ::testing::HasSubstr;

std::string NoRecord(const StepsOutcome&) { return ""; }

absl::StatusOr<std::vector<engine::LayerParams>> NoParams(
    const engine::NetworkSpec&) {
  return absl::InvalidArgumentError("layers: not converted");
}

class NetworkCoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart(); }

  // A new core over the same store, as after a process restart.
  void Restart(CoreOptions options = {}) {
    core_.reset();
    core_ = std::make_unique<NetworkCore>(options, &store_);
  }

  absl::StatusOr<StepsOutcome> Step(int i, RequestKey key = {},
                                    Replay* replay = nullptr) {
    Replay ignored;
    const TestBatch batch(i);
    return TrainOne(*core_, "n", batch.view(), key, NoRecord,
                    replay != nullptr ? replay : &ignored);
  }

  int64_t StoredStep() {
    auto record = store_.Load("n");
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() ? record->state.step : -1;
  }

  std::vector<engine::AnyMatrix> LiveWeights() {
    auto params = core_->GetParameters(
        "n",
        [](const engine::NetworkSpec&, int64_t) -> absl::StatusOr<int64_t> {
          return 0;
        });
    EXPECT_TRUE(params.ok()) << params.status();
    return params.ok() ? params->weights : std::vector<engine::AnyMatrix>{};
  }

  std::vector<engine::AnyMatrix> StoredWeights() {
    auto record = store_.Load("n");
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() ? record->state.weights
                       : std::vector<engine::AnyMatrix>{};
  }

  // Durable, so that every commit point reaches it at once (an ephemeral
  // store is written by Flush: EphemeralStore_CommitsDeferredToFlush).
  FlakyStore store_{/*durable=*/true};
  std::unique_ptr<NetworkCore> core_;
};

TEST_F(NetworkCoreTest, WriterSlot_SecondWriterAbortedUntilSessionCloses) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  auto session = core_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok()) << session.status();

  auto step = Step(0);
  EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(step.status().message(),
              HasSubstr("networks/n is being written by another caller"));
  EXPECT_EQ(core_->OpenWriter("n", {}).status().code(),
            absl::StatusCode::kAborted);
  Replay replay;
  auto set = core_->SetParameters(
      "n", NoParams, false, {},
      [](const NetworkInfo&) { return std::string(); }, &replay);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kAborted);
  // Readers are not writers.
  EXPECT_TRUE(core_->Get("n").ok());

  ASSERT_TRUE((*session)->Close().ok());
  EXPECT_TRUE(Step(0).ok());
}

TEST_F(NetworkCoreTest, DeletedWhileWriting_SessionStepAbortedCloseOk) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  auto session = core_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok());
  const TestBatch batch(0);
  ASSERT_TRUE(StepOne(**session, batch.view()).ok());
  ASSERT_TRUE(core_->Delete("n").ok());
  auto step = StepOne(**session, batch.view());
  EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(step.status().message(), HasSubstr("networks/n was deleted"));
  EXPECT_TRUE((*session)->Close().ok());
  EXPECT_EQ(core_->Get("n").status().code(), absl::StatusCode::kNotFound);
  // Its memory went back to the budget with the session.
  EXPECT_EQ(core_->memory_budget().used(), 0);
}

TEST_F(NetworkCoreTest, UnaryTrainStep_CommittedWhenOk) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  for (int i = 0; i < 3; ++i) {
    auto step = Step(i);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_EQ(step->durable_step, i + 1);
    EXPECT_EQ(StoredStep(), i + 1);
  }
  EXPECT_TRUE(SameBits(LiveWeights(), StoredWeights()));
}

TEST_F(NetworkCoreTest, UnaryTrainStep_SeveralBatchesAllOrNothingOneCommit) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  const TestBatch b0(0), b1(1), b2(2);
  std::vector<Batch> batches = {b0.view(), b1.view(), b2.view()};
  const BatchFields fields{"batches", /*indexed=*/true};
  Replay replay;
  // A bad last minibatch: none of the message is applied or committed.
  batches[2].inputs.cols = 2;
  const int commits = store_.commits();
  auto bad = core_->TrainStep("n", batches, fields, {}, {}, NoRecord, &replay);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("batches[2]"));
  EXPECT_EQ(core_->Get("n")->step, 0);
  EXPECT_EQ(store_.commits(), commits);

  batches[2] = b2.view();
  auto steps =
      core_->TrainStep("n", batches, fields, {}, {}, NoRecord, &replay);
  ASSERT_TRUE(steps.ok()) << steps.status();
  ASSERT_EQ(steps->results.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(steps->results[i].step, i + 1);
  EXPECT_EQ(steps->durable_step, 3);
  EXPECT_EQ(StoredStep(), 3);
  EXPECT_EQ(store_.commits(), commits + 1);

  // The same as three single steps, bitwise.
  const auto several = LiveWeights();
  ASSERT_TRUE(core_->Delete("n").ok());
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Step(i).ok());
  EXPECT_TRUE(SameBits(LiveWeights(), several));
}

TEST_F(NetworkCoreTest, Session_SeveralBatchesCommitWhenDueBadOneAppliesNone) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  NetworkCore::SessionOptions options;
  options.commit_every_steps = 2;
  options.commit_interval = absl::Hours(1);
  auto session = core_->OpenWriter("n", options);
  ASSERT_TRUE(session.ok());
  const TestBatch b0(0), b1(1), b2(2);
  std::vector<Batch> batches = {b0.view(), b1.view(), b2.view()};
  const BatchFields fields{"batches", /*indexed=*/true};
  std::vector<StepOutcome> applied;
  batches[1].targets.cols = 3;
  auto bad = (*session)->Steps(batches, fields, {}, &applied);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("batches[1]"));
  EXPECT_TRUE(applied.empty());
  EXPECT_EQ(core_->Get("n")->step, 0);

  batches[1] = b1.view();
  ASSERT_TRUE((*session)->Steps(batches, fields, {}, &applied).ok());
  ASSERT_EQ(applied.size(), 3u);
  std::vector<int64_t> durable;
  for (const StepOutcome& step : applied) durable.push_back(step.durable_step);
  EXPECT_EQ(durable, (std::vector<int64_t>{0, 2, 2}));
  EXPECT_EQ(applied[2].result.step, 3);
  EXPECT_EQ(StoredStep(), 2);
  ASSERT_TRUE((*session)->Close().ok());
  EXPECT_EQ(StoredStep(), 3);
}

TEST_F(NetworkCoreTest, SetParameters_CommittedWhenOk) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  std::vector<engine::LayerParams> params = {
      {engine::RowMatrix<double>::Constant(3, 8, 0.25),
       engine::RowVector<double>::Constant(8, -0.5)},
      {engine::RowMatrix<double>::Constant(8, 2, 0.125),
       engine::RowVector<double>::Constant(2, 1.0)}};
  Replay replay;
  auto info = core_->SetParameters(
      "n",
      [&params](const engine::NetworkSpec&) {
        return absl::StatusOr<std::vector<engine::LayerParams>>(params);
      },
      true, {}, [](const NetworkInfo&) { return std::string(); }, &replay);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(std::get<engine::RowMatrix<double>>(StoredWeights()[0])(2, 7),
            0.25);
  // Bad parameters: INVALID_ARGUMENT naming the layer, nothing committed.
  const int commits = store_.commits();
  params[1].weights.resize(8, 3);
  auto bad = core_->SetParameters(
      "n",
      [&params](const engine::NetworkSpec&) {
        return absl::StatusOr<std::vector<engine::LayerParams>>(params);
      },
      true, {}, [](const NetworkInfo&) { return std::string(); }, &replay);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("layers[1].weights"));
  EXPECT_EQ(store_.commits(), commits);
}

TEST_F(NetworkCoreTest, Session_CommitsEveryNStepsAndAtClose) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  NetworkCore::SessionOptions options;
  options.commit_every_steps = 3;
  options.commit_interval = absl::Hours(1);
  auto session = core_->OpenWriter("n", options);
  ASSERT_TRUE(session.ok());
  std::vector<int64_t> durable;
  for (int i = 0; i < 7; ++i) {
    const TestBatch batch(i);
    auto step = StepOne(**session, batch.view());
    ASSERT_TRUE(step.ok()) << step.status();
    durable.push_back(step->durable_step);
  }
  EXPECT_EQ(durable, (std::vector<int64_t>{0, 0, 3, 3, 3, 6, 6}));
  EXPECT_EQ(StoredStep(), 6);
  // Get shows the live step and what is durable.
  auto info = core_->Get("n");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->step, 7);
  EXPECT_EQ(info->durable_step, 6);
  auto listed = core_->List("", 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, 7);
  ASSERT_TRUE((*session)->Close().ok());
  EXPECT_EQ(StoredStep(), 7);
  EXPECT_EQ((*session)->durable_step(), 7);
  EXPECT_TRUE(SameBits(LiveWeights(), StoredWeights()));
}

TEST_F(NetworkCoreTest, Session_CommitsEveryInterval) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  NetworkCore::SessionOptions options;
  options.commit_every_steps = 1'000'000;
  options.commit_interval = absl::Milliseconds(50);
  auto session = core_->OpenWriter("n", options);
  ASSERT_TRUE(session.ok());
  const TestBatch batch(0);
  const absl::Time opened = absl::Now();
  auto first = StepOne(**session, batch.view());
  ASSERT_TRUE(first.ok());
  if (absl::Now() - opened < absl::Milliseconds(50)) {
    EXPECT_EQ(first->durable_step, 0);
    EXPECT_EQ(StoredStep(), 0);
  }
  absl::SleepFor(absl::Milliseconds(60));
  auto second = StepOne(**session, batch.view());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->durable_step, 2);
  EXPECT_EQ(StoredStep(), 2);
}

TEST_F(NetworkCoreTest, CoreDefaults_SessionUsesCoreOptions) {
  CoreOptions options;
  options.commit_every_steps = 2;
  options.commit_interval = absl::ZeroDuration();
  Restart(options);
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  auto session = core_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok());
  const TestBatch batch(0);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(StepOne(**session, batch.view()).ok());
  }
  EXPECT_EQ(StoredStep(), 4);
}

TEST_F(NetworkCoreTest, RequestId_DeduplicatedAcrossRestart) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  const RequestKey key{"retry-1", 42};
  Replay replay;
  const TestBatch batch(0);
  auto first = TrainOne(
      *core_, "n", batch.view(), key,
      [](const StepsOutcome& s) {
        return absl::StrCat("step ", s.results.back().step);
      },
      &replay);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(replay.response.has_value());

  Restart();
  Replay again;
  auto retried = TrainOne(*core_, "n", batch.view(), key, NoRecord, &again);
  ASSERT_TRUE(retried.ok()) << retried.status();
  ASSERT_TRUE(again.response.has_value());
  EXPECT_EQ(*again.response, "step 1");
  EXPECT_EQ(core_->Get("n")->step, 1);  // not applied twice

  Replay other;
  auto reused = TrainOne(*core_, "n", batch.view(), RequestKey{"retry-1", 43},
                         NoRecord, &other);
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reused.status().message(),
              HasSubstr("request_id: \"retry-1\" was already used"));
}

TEST_F(NetworkCoreTest, RequestIds_OldestForgottenBeyondLimit) {
  CoreOptions options;
  options.request_ids_per_network = 2;
  Restart(options);
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  for (const char* id : {"a", "b", "c"}) {
    Replay replay;
    ASSERT_TRUE(Step(0, RequestKey{id, 1}, &replay).ok());
  }
  Replay replay;
  ASSERT_TRUE(Step(0, RequestKey{"a", 1}, &replay).ok());
  EXPECT_FALSE(replay.response.has_value());  // applied again: forgotten
  EXPECT_EQ(core_->Get("n")->step, 4);
}

TEST_F(NetworkCoreTest, Restart_ContinuesBitwiseLikeUninterrupted) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  auto session = core_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok());
  for (int i = 0; i < 5; ++i) {
    const TestBatch batch(i);
    ASSERT_TRUE(StepOne(**session, batch.view()).ok());
  }
  ASSERT_TRUE((*session)->Close().ok());
  session->reset();
  Restart();
  for (int i = 5; i < 9; ++i) ASSERT_TRUE(Step(i).ok());

  // The same nine steps on one engine network, never stored.
  auto reference =
      engine::Network::Create(SmallSpec(), engine::Limits{}, "spec");
  ASSERT_TRUE(reference.ok());
  for (int i = 0; i < 9; ++i) {
    const TestBatch batch(i);
    const Batch b = batch.view();
    ASSERT_TRUE((*reference)->TrainStep(b.inputs, b.targets).ok());
  }
  auto expected = (*reference)->ExportState();
  ASSERT_TRUE(expected.ok());
  EXPECT_TRUE(SameBits(LiveWeights(), expected->weights));
  auto stored = store_.Load("n");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state.optimizer_updates, 9);
  EXPECT_TRUE(SameBits(stored->state.optimizer_slots[1].weights,
                       expected->optimizer_slots[1].weights));
}

TEST_F(NetworkCoreTest, FailingStore_MutationFailsLiveStateEqualsStored) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  ASSERT_TRUE(Step(0).ok());
  const auto before = StoredWeights();
  store_.FailCommits(absl::UnavailableError("disk full"));

  auto step = Step(1);
  EXPECT_EQ(step.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(step.status().message(), HasSubstr("disk full"));
  EXPECT_EQ(core_->Get("n")->step, 1);
  EXPECT_TRUE(SameBits(LiveWeights(), before));

  // A session: its due commit fails, the network is back at the stored
  // state, and durable_step says so.
  NetworkCore::SessionOptions options;
  options.commit_every_steps = 2;
  auto session = core_->OpenWriter("n", options);
  ASSERT_TRUE(session.ok());
  const TestBatch batch(2);
  ASSERT_TRUE(StepOne(**session, batch.view()).ok());
  auto due = StepOne(**session, batch.view());
  EXPECT_EQ(due.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*session)->durable_step(), 1);
  EXPECT_EQ(core_->Get("n")->step, 1);
  EXPECT_TRUE(SameBits(LiveWeights(), before));

  // Once the store works again, so does the network.
  store_.FailCommits(absl::OkStatus());
  ASSERT_TRUE((*session)->Close().ok());
  ASSERT_TRUE(Step(1).ok());
  EXPECT_EQ(StoredStep(), 2);
}

TEST_F(NetworkCoreTest, FailingStore_SetParametersLeavesStoredParameters) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  const auto before = StoredWeights();
  store_.FailCommits(absl::ResourceExhaustedError("no space left on device"));
  std::vector<engine::LayerParams> params = {
      {engine::RowMatrix<double>::Zero(3, 8),
       engine::RowVector<double>::Zero(8)},
      {engine::RowMatrix<double>::Zero(8, 2),
       engine::RowVector<double>::Zero(2)}};
  Replay replay;
  auto set = core_->SetParameters(
      "n",
      [&params](const engine::NetworkSpec&) {
        return absl::StatusOr<std::vector<engine::LayerParams>>(params);
      },
      false, RequestKey{"r", 1},
      [](const NetworkInfo&) { return std::string("x"); }, &replay);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(SameBits(LiveWeights(), before));
  // The failed request's id was not kept either.
  store_.FailCommits(absl::OkStatus());
  Replay again;
  ASSERT_TRUE(
      core_
          ->SetParameters(
              "n",
              [&params](const engine::NetworkSpec&) {
                return absl::StatusOr<std::vector<engine::LayerParams>>(params);
              },
              false, RequestKey{"r", 1},
              [](const NetworkInfo&) { return std::string("x"); }, &again)
          .ok());
  EXPECT_FALSE(again.response.has_value());
}

TEST(NetworkCoreInlineTest, TryStepInline_OnlyForTinyStepsOnAnEphemeralStore) {
  FlakyStore ephemeral;
  NetworkCore core({}, &ephemeral);
  ASSERT_TRUE(core.Create("n", SmallSpec()).ok());
  const TestBatch batch(0);
  auto inline_step = TryOneInline(core, "n", batch.view(), {});
  ASSERT_TRUE(inline_step.has_value());
  ASSERT_TRUE(inline_step->ok()) << inline_step->status();
  EXPECT_EQ(core.Get("n")->step, 1);
  // With a request id: the executor's job.
  EXPECT_FALSE(
      TryOneInline(core, "n", batch.view(), RequestKey{"id", 1}).has_value());
  // A durable store may block on its commit: never inline.
  FlakyStore durable(/*durable=*/true);
  NetworkCore on_disk({}, &durable);
  ASSERT_TRUE(on_disk.Create("n", SmallSpec()).ok());
  EXPECT_FALSE(TryOneInline(on_disk, "n", batch.view(), {}).has_value());
}

TEST(NetworkCoreEphemeralTest, EphemeralStore_CommitsDeferredToFlush) {
  FlakyStore ephemeral;
  auto core = std::make_unique<NetworkCore>(CoreOptions{}, &ephemeral);
  ASSERT_TRUE(core->Create("n", SmallSpec()).ok());
  // Each network is charged twice: live, and its copy in the store.
  EXPECT_EQ(core->memory_budget().used(), 2 * engine::StateBytes(SmallSpec()));
  const TestBatch batch(0);
  Replay replay;
  auto step = TrainOne(*core, "n", batch.view(), {}, NoRecord, &replay);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->durable_step, 1);
  // Nobody but this core reads the store: nothing copied yet.
  EXPECT_EQ(ephemeral.commits(), 0);
  EXPECT_EQ(ephemeral.Load("n")->state.step, 0);
  ASSERT_TRUE(core->Flush().ok());
  EXPECT_EQ(ephemeral.Load("n")->state.step, 1);
  ASSERT_TRUE(TrainOne(*core, "n", batch.view(), {}, NoRecord, &replay).ok());
  // A new core over the same store, once the old one has flushed.
  ASSERT_TRUE(core->Flush().ok());
  core.reset();
  EXPECT_EQ(ephemeral.Load("n")->state.step, 2);
  NetworkCore next({}, &ephemeral);
  EXPECT_EQ(next.Get("n")->step, 2);
}

TEST_F(NetworkCoreTest, Create_DuplicateIdAlreadyExistsNothingCharged) {
  ASSERT_TRUE(core_->Create("n", SmallSpec()).ok());
  const int64_t used = core_->memory_budget().used();
  auto again = core_->Create("n", SmallSpec());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(core_->memory_budget().used(), used);
}

TEST_F(NetworkCoreTest, MemoryBudget_FullIsNoCapacity) {
  CoreOptions options;
  options.memory_budget_bytes = 100;
  Restart(options);
  auto created = core_->Create("n", SmallSpec());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(created.status().message(),
              HasSubstr("(--memory_budget_bytes); retry later"));
  EXPECT_EQ(store_.Count().value_or(-1), 0);
}

TEST(CapacityTest, OneShapeForEveryRefusal) {
  const absl::Status full =
      NoCapacity("this Forward", "the compute queue is full",
                 "max_queued_calls=4", "send less");
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(full.message(),
            "this Forward: the compute queue is full (--max_queued_calls=4); "
            "retry later, or send less");
  EXPECT_EQ(ShuttingDown("this Forward").code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace satlab::core
