// Experiments as resources (issue 12): RunExperiment keeps each run as
// `experiments/{id}`; GetExperiment / ListExperiments / DeleteExperiment;
// re-attach and rerun by experiment_id; a restart keeps them (SQLite) and
// marks interrupted runs FAILED.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/service/convert.h"
#include "server/service/experiments.h"
#include "server/store/sqlite_store.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

v1::RunExperimentRequest Nielsen(absl::string_view id, int epochs = 30) {
  v1::RunExperimentRequest request;
  request.set_experiment_id(std::string(id));
  v1::ExperimentSpec& spec = *request.mutable_spec();
  spec.set_display_name("nielsen");
  spec.mutable_dataset()->mutable_builtin()->set_kind(
      v1::DATASET_KIND_SINGLE_SAMPLE);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_EXPLICIT);
  auto* p = spec.mutable_init()->add_parameters();
  *p->mutable_weights() = MakeTensor(1, 1, {2.0});
  *p->mutable_biases() = MakeVector({2.0});
  for (v1::Loss loss : {v1::LOSS_MSE, v1::LOSS_BCE}) {
    auto* v = spec.add_variants();
    v->set_output_activation(v1::ACTIVATION_SIGMOID);
    v->set_loss(loss);
  }
  spec.set_epochs(epochs);
  spec.set_no_shuffle(true);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.15);
  return request;
}

// A run long enough to catch while it runs (k-blobs, many epochs).
v1::RunExperimentRequest Long(absl::string_view id) {
  v1::RunExperimentRequest request = Nielsen(id, 10000);
  auto* data = request.mutable_spec()->mutable_dataset()->mutable_builtin();
  data->set_kind(v1::DATASET_KIND_K_BLOBS);
  data->set_samples(500);
  data->set_seed(1);
  request.mutable_spec()->mutable_init()->Clear();
  request.mutable_spec()->mutable_init()->set_seed(3);
  auto* layer = request.mutable_spec()->add_hidden_layers();
  layer->set_units(32);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  request.mutable_spec()->mutable_variants(0)->set_output_activation(
      v1::ACTIVATION_SOFTMAX);
  request.mutable_spec()->mutable_variants(0)->set_loss(v1::LOSS_CCE);
  return request;
}

struct Streamed {
  absl::Status status;
  std::vector<v1::RunExperimentResponse> messages;
  std::vector<v1::EpochMetrics> curves;  // in stream order
  v1::ExperimentSummary summary;
};

Streamed RunStreamed(Client& client, const v1::RunExperimentRequest& request) {
  Streamed out;
  auto summary = client.RunExperiment(
      request,
      [&](const v1::RunExperimentResponse& m) {
        out.messages.push_back(m);
        if (m.has_epoch()) out.curves.push_back(m.epoch());
        return true;
      },
      absl::Seconds(60));
  out.status = summary.status();
  if (summary.ok()) out.summary = *summary;
  return out;
}

void ExpectCurvesEqual(
    const google::protobuf::RepeatedPtrField<v1::EpochMetrics>& stored,
    const std::vector<v1::EpochMetrics>& streamed) {
  ASSERT_EQ(stored.size(), static_cast<int>(streamed.size()));
  for (int i = 0; i < stored.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(stored[i], streamed[i]))
        << "epoch message " << i << ": " << stored[i].ShortDebugString()
        << " vs " << streamed[i].ShortDebugString();
  }
}

using ExperimentResourceTest = ServiceTest;

TEST_F(ExperimentResourceTest, Run_RecordsTheStreamedCurvesAndSummary) {
  Streamed run = RunStreamed(*client_, Nielsen("nielsen-a"));
  ASSERT_TRUE(run.status.ok()) << run.status;
  ASSERT_FALSE(run.messages.empty());
  EXPECT_EQ(run.messages.front().experiment(), "experiments/nielsen-a");
  EXPECT_EQ(run.curves.size(), 2u * 31);

  auto got = client_->GetExperiment("experiments/nielsen-a");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name(), "experiments/nielsen-a");
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(
      MessageDifferencer::Equals(got->spec(), Nielsen("nielsen-a").spec()));
  EXPECT_TRUE(MessageDifferencer::Equals(got->summary(), run.summary));
  EXPECT_EQ(got->epochs_total(), 62);
  EXPECT_FALSE(got->curves_truncated());
  EXPECT_GT(got->create_time().seconds(), 0);
  ExpectCurvesEqual(got->curves(), run.curves);
}

TEST_F(ExperimentResourceTest, NoId_ServerAssignsOneAndNamesItOnTheStream) {
  Streamed run = RunStreamed(*client_, Nielsen("", 3));
  ASSERT_TRUE(run.status.ok()) << run.status;
  const std::string name = run.messages.front().experiment();
  EXPECT_THAT(name, ::testing::StartsWith("experiments/exp-"));
  for (const auto& m : run.messages) EXPECT_EQ(m.experiment(), name);
  auto got = client_->GetExperiment(name);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectCurvesEqual(got->curves(), run.curves);
}

TEST_F(ExperimentResourceTest, List_PagesInNameOrderWithoutCurves) {
  for (const char* id : {"exp-c", "exp-a", "exp-b"}) {
    ASSERT_TRUE(RunStreamed(*client_, Nielsen(id, 2)).status.ok());
  }
  auto first = client_->ListExperiments(2);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->experiments_size(), 2);
  EXPECT_EQ(first->experiments(0).name(), "experiments/exp-a");
  EXPECT_EQ(first->experiments(1).name(), "experiments/exp-b");
  EXPECT_EQ(first->experiments(0).curves_size(), 0);
  EXPECT_EQ(first->experiments(0).state(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_EQ(first->experiments(0).summary().variants_size(), 2);
  ASSERT_FALSE(first->next_page_token().empty());
  auto second = client_->ListExperiments(2, first->next_page_token());
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->experiments_size(), 1);
  EXPECT_EQ(second->experiments(0).name(), "experiments/exp-c");
  EXPECT_TRUE(second->next_page_token().empty());
}

TEST_F(ExperimentResourceTest, Delete_ThenNotFoundNamingIt) {
  ASSERT_TRUE(RunStreamed(*client_, Nielsen("gone", 2)).status.ok());
  ASSERT_TRUE(client_->DeleteExperiment("experiments/gone").ok());
  auto got = client_->GetExperiment("experiments/gone");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("experiments/gone"));
  absl::Status again = client_->DeleteExperiment("experiments/gone");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("experiments/gone"));
}

TEST_F(ExperimentResourceTest, BadNamesIdsAndTokens_InvalidArgument) {
  for (const char* name : {"", "experiments/", "experiments/Bad", "networks/x",
                           "experiments/9a", "experiments/a/b"}) {
    auto got = client_->GetExperiment(name);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(got.status().message(), HasSubstr("name")) << name;
    EXPECT_EQ(client_->DeleteExperiment(name).code(),
              absl::StatusCode::kInvalidArgument)
        << name;
  }
  auto page = client_->ListExperiments(10, "Not a token");
  EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(page.status().message(), HasSubstr("page_token"));
  page = client_->ListExperiments(-1);
  EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(page.status().message(), HasSubstr("page_size"));
  Streamed bad = RunStreamed(*client_, Nielsen("Bad_Id", 2));
  EXPECT_EQ(bad.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status.message(), HasSubstr("experiment_id"));
  // Nothing was kept.
  auto all = client_->ListExperiments(0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->experiments_size(), 0);
}

// The CLI sends inline data as float32 when every value is exact; an
// experiment stored from double data is the same experiment (the server
// widens float data to those doubles), one with other values is not.
TEST_F(ExperimentResourceTest, SameIdAgain_FloatOrDoubleData_SameExperiment) {
  v1::RunExperimentRequest doubles = Nielsen("widened", 5);
  auto* data = doubles.mutable_spec()->mutable_dataset()->mutable_inline_();
  *data->mutable_inputs() = MakeTensor(2, 1, {1.0, 0.5});
  *data->mutable_targets() = MakeTensor(2, 1, {0.0, 0.25});
  Streamed run = RunStreamed(*client_, doubles);
  ASSERT_TRUE(run.status.ok()) << run.status;
  v1::RunExperimentRequest floats = doubles;
  auto* f = floats.mutable_spec()->mutable_dataset()->mutable_inline_();
  for (v1::Tensor* t : {f->mutable_inputs(), f->mutable_targets()}) {
    for (const double v : t->double_values()) {
      t->add_float_values(static_cast<float>(v));
    }
    t->clear_double_values();
  }
  Streamed replay = RunStreamed(*client_, floats);
  ASSERT_TRUE(replay.status.ok()) << replay.status;
  // Replayed, not trained again: the same summary, elapsed_seconds included.
  EXPECT_TRUE(MessageDifferencer::Equals(replay.summary, run.summary));
  // 0.1 is not exact in float: stored as double, the float request is
  // another experiment under that id, and refused.
  v1::RunExperimentRequest inexact = doubles;
  inexact.set_experiment_id("inexact");
  inexact.mutable_spec()
      ->mutable_dataset()
      ->mutable_inline_()
      ->mutable_targets()
      ->set_double_values(1, 0.1);
  ASSERT_TRUE(RunStreamed(*client_, inexact).status.ok());
  v1::RunExperimentRequest rounded = floats;
  rounded.set_experiment_id("inexact");
  rounded.mutable_spec()
      ->mutable_dataset()
      ->mutable_inline_()
      ->mutable_targets()
      ->set_float_values(1, 0.1f);
  Streamed refused = RunStreamed(*client_, rounded);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kAlreadyExists)
      << refused.status;
}

TEST_F(ExperimentResourceTest, SameIdAgain_ReplaysTheStoredRunWithoutTraining) {
  Streamed run = RunStreamed(*client_, Nielsen("again", 5));
  ASSERT_TRUE(run.status.ok()) << run.status;
  // With no spec: re-attach by id alone.
  v1::RunExperimentRequest by_id;
  by_id.set_experiment_id("again");
  Streamed replay = RunStreamed(*client_, by_id);
  ASSERT_TRUE(replay.status.ok()) << replay.status;
  ASSERT_EQ(replay.curves.size(), run.curves.size());
  for (size_t i = 0; i < run.curves.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(replay.curves[i], run.curves[i]));
    EXPECT_EQ(replay.messages[i].epochs_done(), run.messages[i].epochs_done());
  }
  // The same summary, elapsed_seconds included: nothing ran again.
  EXPECT_TRUE(MessageDifferencer::Equals(replay.summary, run.summary));
  // With the same spec too.
  Streamed same = RunStreamed(*client_, Nielsen("again", 5));
  ASSERT_TRUE(same.status.ok()) << same.status;
  EXPECT_TRUE(MessageDifferencer::Equals(same.summary, run.summary));
  // A different spec under that id is refused.
  Streamed other = RunStreamed(*client_, Nielsen("again", 6));
  EXPECT_EQ(other.status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(other.status.message(), HasSubstr("experiments/again"));
}

TEST_F(ExperimentResourceTest,
       Running_AlreadyExistsAndNotDeletable_ThenCancelled) {
  absl::Notification first;
  std::atomic<bool> stop{false};
  absl::Status long_status;
  std::thread runner([&] {
    auto s = client_->RunExperiment(
        Long("busy"),
        [&](const v1::RunExperimentResponse&) {
          if (!first.HasBeenNotified()) first.Notify();
          return !stop.load();
        },
        absl::Seconds(60));
    long_status = s.status();
    if (!first.HasBeenNotified()) first.Notify();
  });
  ASSERT_TRUE(first.WaitForNotificationWithTimeout(absl::Seconds(30)));
  auto got = client_->GetExperiment("experiments/busy");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_RUNNING);
  v1::RunExperimentRequest attach;
  attach.set_experiment_id("busy");
  Streamed second = RunStreamed(*client_, attach);
  EXPECT_EQ(second.status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(second.status.message(), HasSubstr("experiments/busy"));
  absl::Status del = client_->DeleteExperiment("experiments/busy");
  EXPECT_EQ(del.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(del.message(), HasSubstr("experiments/busy"));
  stop.store(true);
  runner.join();
  EXPECT_EQ(long_status.code(), absl::StatusCode::kCancelled);
  // The server records the cancellation when the call ends.
  v1::ExperimentState state = v1::EXPERIMENT_STATE_RUNNING;
  for (int i = 0; i < 200 && state == v1::EXPERIMENT_STATE_RUNNING; ++i) {
    auto now = client_->GetExperiment("experiments/busy");
    ASSERT_TRUE(now.ok()) << now.status();
    state = now->state();
    if (state == v1::EXPERIMENT_STATE_RUNNING)
      absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(state, v1::EXPERIMENT_STATE_CANCELLED);
  EXPECT_TRUE(client_->DeleteExperiment("experiments/busy").ok());
}

TEST_F(ExperimentResourceTest, CancelledThenRunAgain_StartsOverAndSucceeds) {
  const v1::RunExperimentRequest request = Nielsen("retry", 200);
  int seen = 0;
  auto cut = client_->RunExperiment(
      request, [&](const v1::RunExperimentResponse&) { return ++seen < 3; },
      absl::Seconds(60));
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kCancelled);
  v1::ExperimentState state = v1::EXPERIMENT_STATE_RUNNING;
  for (int i = 0; i < 200 && state == v1::EXPERIMENT_STATE_RUNNING; ++i) {
    auto now = client_->GetExperiment("experiments/retry");
    ASSERT_TRUE(now.ok()) << now.status();
    state = now->state();
    if (state == v1::EXPERIMENT_STATE_RUNNING)
      absl::SleepFor(absl::Milliseconds(20));
  }
  // A fast run may finish before the cancellation lands.
  ASSERT_TRUE(state == v1::EXPERIMENT_STATE_CANCELLED ||
              state == v1::EXPERIMENT_STATE_SUCCEEDED);
  Streamed rerun = RunStreamed(*client_, request);
  ASSERT_TRUE(rerun.status.ok()) << rerun.status;
  Streamed fresh = RunStreamed(*client_, Nielsen("fresh", 200));
  ASSERT_TRUE(fresh.status.ok()) << fresh.status;
  ASSERT_EQ(rerun.curves.size(), fresh.curves.size());
  // Variants interleave differently from run to run; each one's epochs
  // are the same.
  for (Streamed* r : {&rerun, &fresh}) {
    std::stable_sort(r->curves.begin(), r->curves.end(),
                     [](const v1::EpochMetrics& a, const v1::EpochMetrics& b) {
                       return a.variant() < b.variant();
                     });
  }
  for (size_t i = 0; i < fresh.curves.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(rerun.curves[i], fresh.curves[i]));
  }
  auto got = client_->GetExperiment("experiments/retry");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(got->error().empty());
  EXPECT_EQ(got->curves_size(), static_cast<int>(fresh.curves.size()));
}

TEST_F(ExperimentResourceTest, RecordBound_TruncatesCurvesKeepsSummary) {
  TearDown();
  options_.service.max_experiment_record_bytes = 2000;
  Start();
  Streamed run = RunStreamed(*client_, Nielsen("small", 100));
  ASSERT_TRUE(run.status.ok()) << run.status;
  auto got = client_->GetExperiment("experiments/small");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->curves_truncated());
  EXPECT_GT(got->curves_size(), 0);
  EXPECT_LT(got->curves_size(), static_cast<int>(run.curves.size()));
  EXPECT_LE(static_cast<int64_t>(got->ByteSizeLong()), 2000 + 200);
  EXPECT_TRUE(MessageDifferencer::Equals(got->summary(), run.summary));
}

// A fresh directory under $TMPDIR, removed at the end.
class TempDataDir {
 public:
  TempDataDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "satlab-exper-XXXXXX")
            .string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDataDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class DurableExperimentTest : public ServiceTest {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path();
    Start();
  }
  void Restart() {
    TearDown();
    server_.reset();
    Start();
  }
  TempDataDir dir_;
};

TEST_F(DurableExperimentTest, Restart_KeepsCurvesAndSummary) {
  Streamed run = RunStreamed(*client_, Nielsen("kept", 20));
  ASSERT_TRUE(run.status.ok()) << run.status;
  Restart();
  auto got = client_->GetExperiment("experiments/kept");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
  EXPECT_TRUE(MessageDifferencer::Equals(got->summary(), run.summary));
  ExpectCurvesEqual(got->curves(), run.curves);
}

// Spare compute threads, for a call whose claim waits while its workers
// train, and requests whose inline data set (4,096 x 64 values, 2.2 MB)
// makes writing their record a long claim.
class ClaimWaitTest : public DurableExperimentTest {
 protected:
  void SetUp() override {
    options_.compute_threads = 4;
    DurableExperimentTest::SetUp();
  }

  static v1::RunExperimentRequest WithLargeData(
      v1::RunExperimentRequest request) {
    constexpr int kRows = 4096, kFeatures = 64;
    std::vector<double> inputs(kRows * kFeatures), targets(kRows * 2, 0.0);
    for (size_t i = 0; i < inputs.size(); ++i) {
      inputs[i] = static_cast<double>((i * 7919) % 1000) / 1000.0;
    }
    for (size_t r = 0; r < kRows; ++r) targets[r * 2 + r % 2] = 1.0;
    v1::Minibatch* data =
        request.mutable_spec()->mutable_dataset()->mutable_inline_();
    *data->mutable_inputs() = MakeTensor(kRows, kFeatures, inputs);
    *data->mutable_targets() = MakeTensor(kRows, 2, targets);
    return request;
  }
};

// The workers start before the experiment's record is written, and hold
// what they complete until it commits. Two calls race for one new id:
// while one writes the record (a 2.2 MB inline data set), the other's
// claim waits on it and its workers train on spare compute threads; that
// claim then fails, and its call must have streamed no epoch of an
// experiment the store does not have.
TEST_F(ClaimWaitTest, RacingForOneId_TheLoserStreamsNoEpoch) {
  v1::RunExperimentRequest request = WithLargeData(Long("raced"));
  request.mutable_spec()->set_epochs(4);
  request.mutable_spec()->set_batch_size(64);
  int lost = 0;
  for (int round = 0; round < 10; ++round) {
    request.set_experiment_id(absl::StrCat("raced", round));
    Streamed runs[2];
    std::thread other([&] { runs[1] = RunStreamed(*client_, request); });
    runs[0] = RunStreamed(*client_, request);
    other.join();
    // Both succeed only when one call came after the other had finished
    // (a replay of the stored run, not a race).
    ASSERT_TRUE(runs[0].status.ok() || runs[1].status.ok())
        << "round " << round << ": " << runs[0].status << " / "
        << runs[1].status;
    for (const Streamed& run : runs) {
      if (run.status.ok()) {
        EXPECT_EQ(run.curves.size(), 2u * 5) << "round " << round;
        continue;
      }
      ++lost;
      EXPECT_EQ(run.status.code(), absl::StatusCode::kAlreadyExists)
          << "round " << round << ": " << run.status;
      EXPECT_THAT(run.status.message(), HasSubstr(request.experiment_id()));
      EXPECT_TRUE(run.curves.empty())
          << "round " << round << ": the call failed (" << run.status
          << ") after streaming " << run.curves.size()
          << " epochs of an experiment it did not own";
    }
    auto got = client_->GetExperiment(
        absl::StrCat("experiments/", request.experiment_id()));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
    EXPECT_EQ(got->curves_size(), 2 * 5);
  }
  // The point is the race: a run where no call ever lost tested nothing.
  EXPECT_GT(lost, 0) << "no round raced: the calls never overlapped";
}

// Held epochs count toward the stream's window: a call whose claim waits
// (here on another call's 2.2 MB record) while its workers finish many tiny
// epochs parks them at the window, and they resume once the claim commits:
// every epoch arrives, in order per variant.
TEST_F(ClaimWaitTest, TinyEpochsWhileTheClaimWaits_AllArriveInOrder) {
  constexpr int kEpochs = 3000;
  v1::RunExperimentRequest big = WithLargeData(Long(""));
  big.mutable_spec()->set_epochs(1);
  for (int round = 0; round < 5; ++round) {
    big.set_experiment_id(absl::StrCat("big", round));
    Streamed first;
    std::thread other([&] { first = RunStreamed(*client_, big); });
    Streamed tiny =
        RunStreamed(*client_, Nielsen(absl::StrCat("tiny", round), kEpochs));
    other.join();
    ASSERT_TRUE(first.status.ok()) << first.status;
    ASSERT_TRUE(tiny.status.ok()) << "round " << round << ": " << tiny.status;
    ASSERT_EQ(tiny.curves.size(), 2u * (kEpochs + 1)) << "round " << round;
    int next[2] = {0, 0};
    for (const v1::EpochMetrics& epoch : tiny.curves) {
      ASSERT_EQ(epoch.epoch(), next[epoch.variant()]++)
          << "round " << round << ", variant " << epoch.variant();
    }
  }
}

TEST(ExperimentRecordTest, ProgressRecordOf_IsRecordOfWithoutTheSpec) {
  v1::Experiment experiment;
  experiment.set_name("experiments/e1");
  *experiment.mutable_spec() = Nielsen("e1", 3).spec();
  experiment.set_state(v1::EXPERIMENT_STATE_RUNNING);
  experiment.set_error("none yet");
  service::TimeToProto(absl::FromUnixSeconds(100),
                       experiment.mutable_create_time());
  service::TimeToProto(absl::FromUnixSeconds(200),
                       experiment.mutable_update_time());
  const store::ExperimentRecord whole = service::RecordOf(experiment);
  const store::ExperimentRecord progress =
      service::ProgressRecordOf(experiment);
  EXPECT_FALSE(whole.spec.empty());
  EXPECT_EQ(progress.id, "e1");
  const auto fields = [](const store::ExperimentRecord& r) {
    return std::tie(r.id, r.spec, r.status, r.curves, r.summary, r.create_time,
                    r.update_time);
  };
  store::ExperimentRecord without_spec = whole;
  without_spec.spec.clear();
  EXPECT_TRUE(fields(progress) == fields(without_spec));
}

TEST_F(DurableExperimentTest, RunningAtRestart_ShowsFailedAndRunsAgain) {
  TearDown();
  server_.reset();
  {
    // What a server killed mid-run leaves behind.
    store::SqliteStoreOptions store_options;
    store_options.data_dir = dir_.path();
    auto stores = store::OpenSqliteStores(store_options);
    ASSERT_TRUE(stores.ok()) << stores.status();
    v1::Experiment running;
    running.set_name("experiments/cut");
    *running.mutable_spec() = Nielsen("cut", 4).spec();
    running.set_state(v1::EXPERIMENT_STATE_RUNNING);
    ASSERT_TRUE(
        stores->experiments->CreateExperiment(service::RecordOf(running)).ok());
  }
  Start();
  auto got = client_->GetExperiment("experiments/cut");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_FAILED);
  EXPECT_THAT(got->error(), HasSubstr("interrupted"));
  // Marked FAILED through an update without the spec: the stored one stays.
  EXPECT_TRUE(
      MessageDifferencer::Equals(got->spec(), Nielsen("cut", 4).spec()));
  v1::RunExperimentRequest by_id;
  by_id.set_experiment_id("cut");
  Streamed rerun = RunStreamed(*client_, by_id);
  ASSERT_TRUE(rerun.status.ok()) << rerun.status;
  EXPECT_EQ(rerun.curves.size(), 2u * 5);
  got = client_->GetExperiment("experiments/cut");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
}

// Every step event WatchMetrics replays for `name` from `start_step`,
// until `want` arrived (bounded by a deadline).
std::vector<v1::MetricEvent> Replay(Client& client, const std::string& name,
                                    int want) {
  std::vector<v1::MetricEvent> events;
  v1::WatchMetricsRequest request;
  request.set_name(name);
  request.set_start_step(0);
  absl::Status s = client.WatchMetrics(
      request,
      [&](const v1::WatchMetricsResponse& r) {
        if (r.event().has_step()) events.push_back(r.event());
        return static_cast<int>(events.size()) < want;
      },
      absl::Seconds(10));
  EXPECT_TRUE(s.ok() || absl::IsCancelled(s)) << s;
  return events;
}

TEST_F(DurableExperimentTest, WatchMetricsReplay_SurvivesARestart) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "watched").ok());
  v1::Minibatch batch;
  *batch.mutable_inputs() = MakeTensor(1, 1, {1.0});
  *batch.mutable_targets() = MakeTensor(1, 1, {0.0});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client_->TrainStep("networks/watched", batch).ok());
  }
  const std::vector<v1::MetricEvent> before =
      Replay(*client_, "networks/watched", 5);
  ASSERT_EQ(before.size(), 5u);
  Restart();
  const std::vector<v1::MetricEvent> after =
      Replay(*client_, "networks/watched", 5);
  ASSERT_EQ(after.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(after[i], before[i])) << i;
    EXPECT_EQ(after[i].step().step(), i + 1);
  }
  // New events continue the sequence.
  ASSERT_TRUE(client_->TrainStep("networks/watched", batch).ok());
  const std::vector<v1::MetricEvent> more =
      Replay(*client_, "networks/watched", 6);
  ASSERT_EQ(more.size(), 6u);
  EXPECT_GT(more[5].sequence(), before[4].sequence());
  EXPECT_EQ(more[5].step().step(), 6);
  // A deleted network's history is gone after the next restart.
  ASSERT_TRUE(client_->DeleteNetwork("networks/watched").ok());
  Restart();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "watched").ok());
  ASSERT_TRUE(client_->TrainStep("networks/watched", batch).ok());
  const std::vector<v1::MetricEvent> fresh =
      Replay(*client_, "networks/watched", 1);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].step().step(), 1);
}

}  // namespace
}  // namespace satlab::testing
