// The step team (server/engine/step_team.h): its parts, its threads, and a
// network stepped by teams of 1, 2 and 3 threads (label tsan: the split
// passes share a network's scratch between threads).
#include "server/engine/step_team.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/gemm.h"
#include "server/engine/network.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::Get;
using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::OneHot;
using ::satlab::engine::testing::Params;
using ::satlab::engine::testing::Uniform;
using ::satlab::engine::testing::View;

// Restores the process's threads per step when a test ends.
class StepTeamTest : public ::testing::Test {
 protected:
  void TearDown() override { SetBlasThreads(1); }
};

TEST_F(StepTeamTest, PartOf_CoversTheRangeInOrderOnWholeGrains) {
  for (int64_t count : {0, 1, 7, 8, 100, 128, 784}) {
    for (int64_t grain : {1, 4, 8, 64}) {
      for (int parts : {1, 2, 3, 8}) {
        const std::string where =
            absl::StrCat("count ", count, " grain ", grain, " parts ", parts);
        int64_t expected_begin = 0;
        int64_t smallest = count, largest = 0;
        for (int part = 0; part < parts; ++part) {
          const Range r = PartOf(count, grain, part, parts);
          EXPECT_EQ(r.begin, expected_begin) << where;
          EXPECT_LE(r.begin, r.end) << where;
          if (r.end != count) {
            EXPECT_EQ(r.end % grain, 0) << where;
          }
          expected_begin = r.end;
          if (part + 1 < parts) {  // the last also takes the partial grain
            smallest = std::min(smallest, r.end - r.begin);
            largest = std::max(largest, r.end - r.begin);
          }
        }
        EXPECT_EQ(expected_begin, count) << where;
        if (parts > 1) {
          EXPECT_LE(largest - smallest, grain) << where;
        }
      }
    }
  }
}

TEST_F(StepTeamTest, EveryPartRunsOnceOnItsOwnThread_PartZeroOnTheCaller) {
  SetStepThreads(3);
  ASSERT_EQ(TeamSize(), 3);
  for (int run = 0; run < 2000; ++run) {
    std::vector<std::atomic<int>> calls(3);
    std::vector<std::thread::id> ids(3);
    RunOnTeam(kMinTeamWork, [&](int part, int parts) {
      ASSERT_EQ(parts, 3);
      calls[static_cast<size_t>(part)].fetch_add(1);
      ids[static_cast<size_t>(part)] = std::this_thread::get_id();
    });
    for (int part = 0; part < 3; ++part) {
      ASSERT_EQ(calls[static_cast<size_t>(part)].load(), 1) << "run " << run;
    }
    ASSERT_EQ(ids[0], std::this_thread::get_id());
    ASSERT_NE(ids[1], ids[0]);
    ASSERT_NE(ids[2], ids[0]);
    ASSERT_NE(ids[2], ids[1]);
  }
}

TEST_F(StepTeamTest, SmallWork_RunsWholeOnTheCaller) {
  SetStepThreads(2);
  int parts_seen = 0;
  std::thread::id where;
  RunOnTeam(kMinTeamWork - 1, [&](int part, int parts) {
    EXPECT_EQ(part, 0);
    parts_seen = parts;
    where = std::this_thread::get_id();
  });
  EXPECT_EQ(parts_seen, 1);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST_F(StepTeamTest, InsideATask_TeamOfOneAndNestedWorkRunsWhole) {
  SetStepThreads(2);
  std::vector<int> nested_parts(2, 0);
  std::vector<int> sizes(2, 0);
  // Not vector<bool>: its elements share words, and the parts write theirs
  // at once.
  std::vector<char> same_thread(2, 0);
  RunOnTeam(kMinTeamWork, [&](int part, int) {
    const auto me = std::this_thread::get_id();
    sizes[static_cast<size_t>(part)] = TeamSize();
    RunOnTeam(kMinTeamWork, [&](int, int parts) {
      nested_parts[static_cast<size_t>(part)] = parts;
      same_thread[static_cast<size_t>(part)] = std::this_thread::get_id() == me;
    });
  });
  for (size_t part = 0; part < 2; ++part) {
    EXPECT_EQ(sizes[part], 1) << part;
    EXPECT_EQ(nested_parts[part], 1) << part;
    EXPECT_TRUE(same_thread[part]) << part;
  }
  EXPECT_EQ(TeamSize(), 2);  // outside the task again
}

TEST_F(StepTeamTest, SleepingHelpers_WakeForTheNextTask) {
  SetStepThreads(2);
  std::vector<int64_t> sums;
  for (int run = 0; run < 5; ++run) {
    // Longer than a helper spins (200 us): it is asleep at the next task.
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    std::vector<int64_t> partial(2, 0);
    RunOnTeam(kMinTeamWork, [&](int part, int parts) {
      const Range r = PartOf(1000, 8, part, parts);
      for (int64_t i = r.begin; i < r.end; ++i) {
        partial[static_cast<size_t>(part)] += i;
      }
    });
    sums.push_back(partial[0] + partial[1]);
    EXPECT_GT(partial[1], 0) << "the helper's part ran";
  }
  for (int64_t s : sums) EXPECT_EQ(s, 999 * 1000 / 2);
}

TEST_F(StepTeamTest, Resized_NextTaskUsesTheNewSize) {
  for (int size : {2, 4, 1, 3}) {
    SetStepThreads(size);
    std::atomic<int> calls{0};
    int parts_seen = 0;
    RunOnTeam(kMinTeamWork, [&](int part, int parts) {
      if (part == 0) parts_seen = parts;
      calls.fetch_add(1);
    });
    EXPECT_EQ(parts_seen, size);
    EXPECT_EQ(calls.load(), size);
  }
  SetStepThreads(kMaxStepThreads + 10);
  EXPECT_EQ(StepThreads(), kMaxStepThreads);
  SetStepThreads(0);
  EXPECT_EQ(StepThreads(), 1);
}

// Products of a size the team splits, in every layout, against one call.
TEST_F(StepTeamTest, SplitProducts_AgreeWithOneCall) {
  Rng rng(5);
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      for (const bool accumulate : {false, true}) {
        const int m = 101, n = 70, k = 90;  // 636,300 multiply-adds
        const RowMatrix<double> a =
            ta ? Uniform(rng, k, m, -1, 1) : Uniform(rng, m, k, -1, 1);
        const RowMatrix<double> b =
            tb ? Uniform(rng, n, k, -1, 1) : Uniform(rng, k, n, -1, 1);
        const RowMatrix<double> c0 = Uniform(rng, m, n, -1, 1);
        const Transpose tra = ta ? Transpose::kYes : Transpose::kNo;
        const Transpose trb = tb ? Transpose::kYes : Transpose::kNo;
        RowMatrix<double> one = c0, split = c0;
        SetBlasThreads(1);
        Gemm<double>(tra, trb, m, n, k, a.data(), b.data(), one.data(),
                     accumulate);
        SetBlasThreads(2);
        Gemm<double>(tra, trb, m, n, k, a.data(), b.data(), split.data(),
                     accumulate);
        RowMatrix<double> expected =
            (ta ? RowMatrix<double>(a.transpose()) : a) *
            (tb ? RowMatrix<double>(b.transpose()) : b);
        if (accumulate) expected += c0;
        EXPECT_LT((split - one).cwiseAbs().maxCoeff(), 1e-12)
            << ta << tb << accumulate;
        EXPECT_LT((split - expected).cwiseAbs().maxCoeff(), 1e-11)
            << ta << tb << accumulate;
      }
    }
  }
}

// A network every pass of which the team splits (each product and the
// optimizer's 81,000 parameters are over kMinTeamWork); 40 rows are not a
// whole number of blocks in any layer.
NetworkSpec LargeSpec(DType dtype, Loss loss, Activation output,
                      OptimizerKind kind, double momentum) {
  NetworkSpec spec;
  spec.input_size = 300;
  spec.layers = {{200, Activation::kRelu, 0},
                 {100, Activation::kTanh, 0},
                 {10, output, 0}};
  spec.loss = loss;
  spec.dtype = dtype;
  spec.optimizer.kind = kind;
  spec.optimizer.learning_rate = kind == OptimizerKind::kAdam ? 1e-3 : 0.05;
  spec.optimizer.momentum = momentum;
  spec.init.seed = 11;
  return spec;
}

struct Trained {
  std::vector<StepResult> steps;
  std::vector<LayerParams> params;
  EvalResult eval;  // 600 rows: three chunks of 256
};

Trained Train(const NetworkSpec& spec, int threads) {
  SetBlasThreads(threads);
  Rng rng(3);
  const RowMatrix<double> x = Uniform(rng, 40, 300, -1, 1);
  const RowMatrix<double> y = OneHot(rng, 40, 10);
  const RowMatrix<double> ex = Uniform(rng, 600, 300, -1, 1);
  const RowMatrix<double> ey = OneHot(rng, 600, 10);
  auto net = MakeNetwork(spec);
  Trained run;
  if (net == nullptr) return run;
  for (int i = 0; i < 4; ++i) {
    auto step = net->TrainStep(View(x), View(y));
    EXPECT_TRUE(step.ok()) << step.status();
    if (step.ok()) run.steps.push_back(*std::move(step));
  }
  run.params = Params(*net);
  auto eval = net->Evaluate(View(ex), View(ey));
  EXPECT_TRUE(eval.ok()) << eval.status();
  if (eval.ok()) run.eval = *std::move(eval);
  return run;
}

double RelativeDifference(double a, double b) {
  return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-300});
}

void ExpectStatsNear(const SaturationStats& a, const SaturationStats& b,
                     double tolerance, const std::string& where) {
  ASSERT_EQ(a.layers.size(), b.layers.size()) << where;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerStats& x = a.layers[l];
    const LayerStats& y = b.layers[l];
    EXPECT_LE(RelativeDifference(x.mean_derivative, y.mean_derivative),
              tolerance)
        << where << " layer " << l;
    EXPECT_LE(
        RelativeDifference(x.weight_gradient_norm, y.weight_gradient_norm),
        tolerance)
        << where << " layer " << l;
    EXPECT_LE(RelativeDifference(x.bias_gradient_norm, y.bias_gradient_norm),
              tolerance)
        << where << " layer " << l;
    EXPECT_LE(RelativeDifference(x.mean_activation, y.mean_activation),
              tolerance)
        << where << " layer " << l;
    EXPECT_EQ(x.dead_units, y.dead_units) << where << " layer " << l;
  }
}

void ExpectRunsNear(const Trained& a, const Trained& b, double tolerance,
                    const std::string& where) {
  ASSERT_EQ(a.steps.size(), b.steps.size()) << where;
  for (size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_LE(RelativeDifference(a.steps[i].loss, b.steps[i].loss), tolerance)
        << where << " step " << i;
    EXPECT_EQ(a.steps[i].diverged, b.steps[i].diverged) << where;
    ExpectStatsNear(a.steps[i].stats, b.steps[i].stats, tolerance,
                    absl::StrCat(where, " step ", i));
  }
  ASSERT_EQ(a.params.size(), b.params.size()) << where;
  for (size_t l = 0; l < a.params.size(); ++l) {
    const double scale = a.params[l].weights.cwiseAbs().maxCoeff();
    EXPECT_LE((a.params[l].weights - b.params[l].weights).cwiseAbs().maxCoeff(),
              tolerance * scale)
        << where << " W" << l;
  }
  EXPECT_LE(RelativeDifference(a.eval.loss, b.eval.loss), tolerance) << where;
  ExpectStatsNear(a.eval.stats, b.eval.stats, tolerance,
                  absl::StrCat(where, " evaluate"));
}

void ExpectRunsBitwise(const Trained& a, const Trained& b,
                       const std::string& where) {
  ASSERT_EQ(a.steps.size(), b.steps.size()) << where;
  for (size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss) << where << " step " << i;
    for (size_t l = 0; l < a.steps[i].stats.layers.size(); ++l) {
      EXPECT_EQ(a.steps[i].stats.layers[l].weight_gradient_norm,
                b.steps[i].stats.layers[l].weight_gradient_norm)
          << where << " step " << i;
      EXPECT_EQ(a.steps[i].stats.layers[l].mean_derivative,
                b.steps[i].stats.layers[l].mean_derivative)
          << where << " step " << i;
    }
  }
  for (size_t l = 0; l < a.params.size(); ++l) {
    EXPECT_TRUE(a.params[l].weights == b.params[l].weights) << where << l;
    EXPECT_TRUE(a.params[l].biases == b.params[l].biases) << where << l;
  }
  EXPECT_EQ(a.eval.loss, b.eval.loss) << where;
}

TEST_F(StepTeamTest, TeamsOfTwoAndThree_AgreeWithOneThreadAndRepeatBitwise) {
  struct Case {
    Loss loss;
    Activation output;
    OptimizerKind kind;
    double momentum;
  };
  const Case cases[] = {
      {Loss::kCce, Activation::kSoftmax, OptimizerKind::kSgd, 0},
      {Loss::kBce, Activation::kSigmoid, OptimizerKind::kSgd, 0.9},
      {Loss::kMse, Activation::kSigmoid, OptimizerKind::kAdam, 0}};
  for (const DType dtype : {DType::kFloat64, DType::kFloat32}) {
    // Products split by rows give each entry the same sum in the same
    // order, but OpenBLAS may pick another kernel for a smaller product:
    // agreement to rounding, not bits.
    const double tolerance = dtype == DType::kFloat64 ? 1e-11 : 2e-4;
    for (const Case& c : cases) {
      const NetworkSpec spec =
          LargeSpec(dtype, c.loss, c.output, c.kind, c.momentum);
      const std::string name = absl::StrCat(
          dtype == DType::kFloat64 ? "float64 " : "float32 ", LossName(c.loss),
          c.kind == OptimizerKind::kAdam ? " adam" : " sgd", " momentum ",
          c.momentum);
      const Trained one = Train(spec, 1);
      for (int threads : {2, 3}) {
        const Trained team = Train(spec, threads);
        ExpectRunsNear(one, team, tolerance,
                       absl::StrCat(name, " team of ", threads));
        ExpectRunsBitwise(team, Train(spec, threads),
                          absl::StrCat(name, " team of ", threads, " again"));
      }
    }
  }
}

TEST_F(StepTeamTest, DivergedStepWithATeam_ChangesNothing) {
  NetworkSpec spec = LargeSpec(DType::kFloat64, Loss::kMse,
                               Activation::kIdentity, OptimizerKind::kSgd, 0);
  // A finite loss, gradients of ~1e3 and a learning rate that makes the
  // update overflow: the optimizer's (split) check refuses it.
  spec.optimizer.learning_rate = 1e308;
  SetBlasThreads(2);
  auto net = MakeNetwork(spec);
  ASSERT_NE(net, nullptr);
  Rng rng(8);
  const RowMatrix<double> x = Uniform(rng, 40, 300, -1, 1);
  const RowMatrix<double> y = RowMatrix<double>::Constant(40, 10, 1e3);
  const std::vector<LayerParams> before = Params(*net);
  const StepResult step = *net->TrainStep(View(x), View(y));
  EXPECT_TRUE(std::isfinite(step.loss));
  EXPECT_TRUE(step.diverged);
  const std::vector<LayerParams> after = Params(*net);
  for (size_t l = 0; l < before.size(); ++l) {
    EXPECT_TRUE(before[l].weights == after[l].weights) << l;
    EXPECT_TRUE(before[l].biases == after[l].biases) << l;
  }
}

// A step whose update overflows in one value only, of the first layer's
// weights (the last gradient computed): w = 1e308 on an input that is 0 in
// every row (so the forward pass stays finite), weight decay 0.01 and a
// learning rate of 300 make w - lr (g + wd w) = -2e308 (SGD, momentum) or
// Adam's second moment overflow. Row 290's value sits in a block a helper
// stages inside the backward task; row 152's block straddles the two
// members' rows and is left for the final pass. Nothing is applied, and the
// next step (from the same parameters) is bitwise the step of a twin that
// never took the diverged one: optimizer state and Adam's count untouched,
// nothing left over in the thread's scratch.
TEST_F(StepTeamTest, OneOverflowingValue_NothingAppliedNextStepUnaffected) {
  struct Kind {
    OptimizerKind kind;
    double momentum;
  };
  for (int threads : {1, 2}) {
    SetBlasThreads(threads);
    for (int row : {152, 290}) {
      for (const Kind& k :
           {Kind{OptimizerKind::kSgd, 0}, Kind{OptimizerKind::kSgd, 0.9},
            Kind{OptimizerKind::kAdam, 0}}) {
        const std::string where = absl::StrCat(
            "team of ", threads, ", row ", row,
            k.kind == OptimizerKind::kAdam ? ", adam" : ", sgd momentum ",
            k.momentum);
        NetworkSpec spec = LargeSpec(DType::kFloat64, Loss::kMse,
                                     Activation::kSigmoid, k.kind, k.momentum);
        if (k.kind == OptimizerKind::kSgd) spec.optimizer.learning_rate = 300;
        spec.optimizer.weight_decay = 0.01;
        auto net = MakeNetwork(spec);
        auto twin = MakeNetwork(spec);
        ASSERT_NE(net, nullptr);
        Rng rng(5);
        RowMatrix<double> x = Uniform(rng, 40, 300, -1, 1);
        x.col(row).setZero();
        const RowMatrix<double> y = Uniform(rng, 40, 10, 0, 1);
        // An ordinary step first: momentum and moments are not zero.
        ASSERT_FALSE(net->TrainStep(View(x), View(y))->diverged) << where;
        ASSERT_FALSE(twin->TrainStep(View(x), View(y))->diverged) << where;
        const std::vector<LayerParams> ordinary = Params(*net);
        std::vector<LayerParams> huge = ordinary;
        huge[0].weights(row, 0) = 1e308;
        ASSERT_TRUE(net->SetParameters(huge, false).ok());
        const StepResult bad = *net->TrainStep(View(x), View(y));
        EXPECT_TRUE(std::isfinite(bad.loss)) << where;
        EXPECT_TRUE(bad.diverged) << where;
        const std::vector<LayerParams> after = Params(*net);
        for (size_t l = 0; l < huge.size(); ++l) {
          EXPECT_TRUE(after[l].weights == huge[l].weights) << where << " " << l;
          EXPECT_TRUE(after[l].biases == huge[l].biases) << where << " " << l;
        }
        ASSERT_TRUE(net->SetParameters(ordinary, false).ok());
        ASSERT_TRUE(twin->SetParameters(ordinary, false).ok());
        ASSERT_FALSE(net->TrainStep(View(x), View(y))->diverged) << where;
        ASSERT_FALSE(twin->TrainStep(View(x), View(y))->diverged) << where;
        const std::vector<LayerParams> mine = Params(*net);
        const std::vector<LayerParams> theirs = Params(*twin);
        for (size_t l = 0; l < mine.size(); ++l) {
          EXPECT_TRUE(mine[l].weights == theirs[l].weights)
              << where << " " << l;
          EXPECT_TRUE(mine[l].biases == theirs[l].biases) << where << " " << l;
        }
        EXPECT_FALSE(mine[0].weights == ordinary[0].weights) << where;
      }
    }
  }
}

// Backpropagation with a team of two against float64 central differences,
// on a network whose products the team splits (48 x 64 x 96 = 295K), at
// 300 parameters drawn from every layer.
TEST_F(StepTeamTest, GradientsWithATeam_MatchCentralDifferences) {
  for (const Loss loss : {Loss::kBce, Loss::kCce, Loss::kMse}) {
    NetworkSpec spec;
    spec.input_size = 96;
    spec.layers = {
        {64, Activation::kTanh, 0},
        {64, Activation::kSigmoid, 0},
        {3, loss == Loss::kCce ? Activation::kSoftmax : Activation::kSigmoid,
         0}};
    spec.loss = loss;
    spec.init.scheme = InitScheme::kNormal;
    spec.init.std = 0.3;
    spec.init.seed = 21;
    SetBlasThreads(2);
    auto net = MakeNetwork(spec);
    ASSERT_NE(net, nullptr);
    Rng rng(13);
    const RowMatrix<double> x = Uniform(rng, 48, 96, -1, 1);
    const RowMatrix<double> y =
        loss == Loss::kCce ? OneHot(rng, 48, 3) : Uniform(rng, 48, 3, 0, 1);
    const GradientResult grads = *net->ComputeGradients(View(x), View(y), loss);
    const std::vector<LayerParams> base = Params(*net);
    // A larger step than gradient_test's tiny networks take: the loss here
    // sums 144 terms, whose rounding (~1e-16 each) divided by 2h must stay
    // below the 1e-9 floor.
    const double h = 1e-5;
    for (int i = 0; i < 300; ++i) {
      const int l = static_cast<int>(rng.Below(3));
      std::vector<LayerParams> p = base;
      const RowMatrix<double>& dw = Get<double>(grads.weight_grads[l]);
      const auto row = static_cast<Eigen::Index>(rng.Below(dw.rows()));
      const auto col = static_cast<Eigen::Index>(rng.Below(dw.cols()));
      double* v = &p[static_cast<size_t>(l)].weights(row, col);
      const double saved = *v;
      *v = saved + h;
      ASSERT_TRUE(net->SetParameters(p, false).ok());
      const double plus = net->Evaluate(View(x), View(y))->loss;
      *v = saved - h;
      ASSERT_TRUE(net->SetParameters(p, false).ok());
      const double minus = net->Evaluate(View(x), View(y))->loss;
      const double numeric = (plus - minus) / (2 * h);
      const double analytic = dw(row, col);
      const double scale =
          std::max({std::abs(analytic), std::abs(numeric), 1e-3});
      EXPECT_LE(std::abs(analytic - numeric), 1e-6 * scale)
          << LossName(loss) << " W" << l << "(" << row << "," << col
          << ") analytic " << analytic << " numeric " << numeric;
    }
  }
}

}  // namespace
}  // namespace satlab::engine
