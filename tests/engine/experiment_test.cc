#include "server/engine/experiment.h"

#include <atomic>
#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/scalar_nielsen.h"
#include "tests/engine/test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::testing::ScalarNielsen;

using ::testing::HasSubstr;
using testing::Params;

Dataset SingleSample() {
  DatasetOptions o;
  o.kind = DatasetKind::kSingleSample;
  return *GenerateDataset(o, 10, "dataset");
}

// Nielsen's neuron: explicit (w, b), mse vs bce, eta = 0.15.
ExperimentSpec NielsenSpec(double w, double b, int epochs) {
  ExperimentSpec spec;
  spec.init.scheme = InitScheme::kExplicit;
  LayerParams p;
  p.weights = RowMatrix<double>::Constant(1, 1, w);
  p.biases = RowVector<double>::Constant(1, b);
  spec.init.explicit_params = {p};
  ExperimentVariantSpec mse, bce;
  mse.loss = Loss::kMse;
  bce.loss = Loss::kBce;
  spec.variants = {mse, bce};
  spec.epochs = epochs;
  spec.shuffle = false;
  spec.optimizer.learning_rate = 0.15;
  return spec;
}

TEST(RunExperiment, Nielsen_MatchesAPlainScalarSimulation) {
  const Dataset data = SingleSample();
  for (const auto& [w, b] : {std::pair{0.6, 0.9}, std::pair{2.0, 2.0}}) {
    auto curves = RunExperiment(NielsenSpec(w, b, 300), data, Limits{},
                                ExperimentLimits{});
    ASSERT_TRUE(curves.ok()) << curves.status();
    for (int v = 0; v < 2; ++v) {
      const std::vector<double> expected = ScalarNielsen(w, b, v == 1, 300);
      ASSERT_EQ((*curves)[v].size(), 301u);
      for (int e = 0; e <= 300; ++e) {
        EXPECT_NEAR((*curves)[v][e].loss, expected[e], 1e-12 * expected[e])
            << "w=" << w << " variant " << v << " epoch " << e;
        EXPECT_EQ((*curves)[v][e].epoch, e);
        EXPECT_EQ((*curves)[v][e].step, e);
      }
    }
  }
}

TEST(RunExperiment, NielsenFromTwoTwo_MseStallsWhileBceFalls) {
  auto curves = RunExperiment(NielsenSpec(2, 2, 300), SingleSample(), Limits{},
                              ExperimentLimits{});
  ASSERT_TRUE(curves.ok()) << curves.status();
  const auto& mse = (*curves)[0];
  const auto& bce = (*curves)[1];
  // mse: under 10% lower after 100 epochs; bce: more than halved by 50.
  EXPECT_GT(mse[100].loss, 0.9 * mse[0].loss);
  EXPECT_LT(bce[50].loss, 0.5 * bce[0].loss);
  // The attenuation is the seed's a(1 - a) under mse and 1 under bce.
  const double a = 1 / (1 + std::exp(-4.0));
  EXPECT_NEAR(mse[0].stats.output_attenuation, a * (1 - a), 1e-12);
  EXPECT_DOUBLE_EQ(bce[0].stats.output_attenuation, 1.0);
}

ExperimentSpec DeepSpec() {
  ExperimentSpec spec;
  spec.hidden_layers = {{8, Activation::kSigmoid}, {8, Activation::kSigmoid}};
  spec.init.scheme = InitScheme::kUniformFanIn;
  spec.init.seed = 3;
  ExperimentVariantSpec cce, mse, tanh;
  cce.output_activation = Activation::kSoftmax;
  cce.loss = Loss::kCce;
  mse.output_activation = Activation::kSigmoid;
  mse.loss = Loss::kMse;
  tanh.output_activation = Activation::kSigmoid;
  tanh.loss = Loss::kBce;
  tanh.hidden_activation = Activation::kTanh;
  tanh.optimizer = OptimizerSpec{};
  tanh.optimizer->momentum = 0.9;
  spec.variants = {cce, mse, tanh};
  spec.epochs = 5;
  spec.batch_size = 7;
  spec.shuffle_seed = 11;
  spec.optimizer.learning_rate = 0.5;
  return spec;
}

Dataset Blobs() {
  DatasetOptions o;
  o.kind = DatasetKind::kKBlobs;
  o.classes = 3;
  o.samples = 60;
  o.seed = 5;
  return *GenerateDataset(o, 1000, "dataset");
}

TEST(RunExperiment, SameSpecTwice_BitwiseIdenticalCurves) {
  const Dataset data = Blobs();
  auto first = RunExperiment(DeepSpec(), data, Limits{}, ExperimentLimits{});
  auto second = RunExperiment(DeepSpec(), data, Limits{}, ExperimentLimits{});
  ASSERT_TRUE(first.ok() && second.ok());
  for (size_t v = 0; v < first->size(); ++v) {
    for (size_t e = 0; e < (*first)[v].size(); ++e) {
      const EpochRecord& a = (*first)[v][e];
      const EpochRecord& b = (*second)[v][e];
      EXPECT_EQ(a.loss, b.loss) << v << "/" << e;
      EXPECT_EQ(a.accuracy, b.accuracy);
      EXPECT_EQ(a.stats.output_attenuation, b.stats.output_attenuation);
      for (size_t l = 0; l < a.stats.layers.size(); ++l) {
        EXPECT_EQ(a.stats.layers[l].weight_gradient_norm,
                  b.stats.layers[l].weight_gradient_norm);
      }
    }
  }
}

TEST(VariantRun, EveryVariant_StartsFromTheSharedParameters) {
  const Dataset data = Blobs();
  const ExperimentSpec spec = DeepSpec();
  ASSERT_TRUE(
      ValidateExperiment(spec, data, "dataset", Limits{}, ExperimentLimits{})
          .ok());
  auto initial = SharedInitialParameters(spec, data, Limits{});
  ASSERT_TRUE(initial.ok());
  ASSERT_EQ(initial->size(), 3u);
  for (int v = 0; v < 3; ++v) {
    auto run = VariantRun::Create(spec, &data, v, *initial, Limits{});
    ASSERT_TRUE(run.ok()) << run.status();
    const std::vector<LayerParams> params = Params((*run)->network());
    for (size_t l = 0; l < params.size(); ++l) {
      EXPECT_EQ(params[l].weights, (*initial)[l].weights) << v << "/" << l;
      EXPECT_EQ(params[l].biases, (*initial)[l].biases) << v << "/" << l;
    }
  }
}

TEST(VariantRun, AloneOrAfterOthers_SameCurve) {
  const Dataset data = Blobs();
  const ExperimentSpec spec = DeepSpec();
  auto all = RunExperiment(spec, data, Limits{}, ExperimentLimits{});
  ASSERT_TRUE(all.ok());
  auto initial = SharedInitialParameters(spec, data, Limits{});
  auto run = VariantRun::Create(spec, &data, 2, *initial, Limits{});
  ASSERT_TRUE(run.ok());
  const std::atomic<bool> never(false);
  EXPECT_EQ((*run)->Evaluate()->loss, (*all)[2][0].loss);
  for (int e = 1; e <= spec.epochs; ++e) {
    auto record = (*run)->NextEpoch(never);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->loss, (*all)[2][e].loss) << e;
    EXPECT_EQ(record->step, e * 9);  // ceil(60 / 7) steps per epoch
  }
  EXPECT_TRUE((*run)->done());
}

TEST(VariantRun, Cancelled_StopsBeforeTheNextStep) {
  const Dataset data = Blobs();
  const ExperimentSpec spec = DeepSpec();
  auto initial = SharedInitialParameters(spec, data, Limits{});
  auto run = VariantRun::Create(spec, &data, 0, *initial, Limits{});
  ASSERT_TRUE(run.ok());
  const std::atomic<bool> cancelled(true);
  auto record = (*run)->NextEpoch(cancelled);
  EXPECT_EQ(record.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*run)->network().step(), 0);
}

TEST(SummaryAccumulator, Curve_GivesHalfLossEpochAndMeans) {
  SummaryAccumulator acc;
  const double losses[] = {4, 3, 2.5, 1.9, 1};
  for (int e = 0; e < 5; ++e) {
    EpochRecord r;
    r.epoch = e;
    r.loss = losses[e];
    r.accuracy = 0.1 * e;
    r.stats.output_attenuation = e == 0 ? 0.5 : 1.0;
    acc.Add(r);
  }
  const VariantSummary s = acc.Result();
  EXPECT_EQ(s.initial_loss, 4);
  EXPECT_EQ(s.final_loss, 1);
  EXPECT_DOUBLE_EQ(s.final_accuracy, 0.4);
  EXPECT_EQ(s.epochs_to_half_loss, 3);
  EXPECT_EQ(s.initial_output_attenuation, 0.5);
  EXPECT_DOUBLE_EQ(s.mean_output_attenuation, 4.5 / 5);
}

struct BadSpec {
  const char* name;
  void (*mutate)(ExperimentSpec*, ExperimentLimits*);
  absl::StatusCode code;
  const char* message;
};

TEST(ValidateExperiment, BadSpecs_NameTheField) {
  const BadSpec cases[] = {
      {"no epochs", [](ExperimentSpec* s, ExperimentLimits*) { s->epochs = 0; },
       absl::StatusCode::kInvalidArgument, "spec.epochs: expected >= 1, got 0"},
      {"bce on softmax",
       [](ExperimentSpec* s, ExperimentLimits*) {
         s->variants[1].output_activation = Activation::kSoftmax;
         s->variants[1].loss = Loss::kBce;
       },
       absl::StatusCode::kInvalidArgument,
       "spec.variants[1].loss: bce needs a sigmoid output layer, got softmax"},
      {"no variants",
       [](ExperimentSpec* s, ExperimentLimits*) { s->variants.clear(); },
       absl::StatusCode::kInvalidArgument, "spec.variants: expected at least"},
      {"softmax hidden",
       [](ExperimentSpec* s, ExperimentLimits*) {
         s->hidden_layers[1].activation = Activation::kSoftmax;
       },
       absl::StatusCode::kInvalidArgument,
       "spec.hidden_layers[1].activation: softmax is allowed on the output "
       "layer only"},
      {"zero units",
       [](ExperimentSpec* s, ExperimentLimits*) {
         s->hidden_layers[0].units = 0;
       },
       absl::StatusCode::kInvalidArgument,
       "spec.hidden_layers[0].units: expected >= 1, got 0"},
      {"bad learning rate",
       [](ExperimentSpec* s, ExperimentLimits*) {
         s->variants[2].optimizer->learning_rate = -1;
       },
       absl::StatusCode::kInvalidArgument,
       "spec.variants[2].optimizer.sgd.learning_rate: expected finite > 0"},
      {"negative batch",
       [](ExperimentSpec* s, ExperimentLimits*) { s->batch_size = -1; },
       absl::StatusCode::kInvalidArgument, "spec.batch_size: expected >= 0"},
      {"too much work",
       [](ExperimentSpec*, ExperimentLimits* l) { l->max_work = 1000; },
       absl::StatusCode::kResourceExhausted, "work limit"},
      {"too many epochs",
       [](ExperimentSpec* s, ExperimentLimits*) { s->epochs = 1'000'000; },
       absl::StatusCode::kResourceExhausted,
       "spec.epochs: expected at most 100000"},
  };
  const Dataset data = Blobs();
  for (const BadSpec& c : cases) {
    ExperimentSpec spec = DeepSpec();
    ExperimentLimits limits;
    c.mutate(&spec, &limits);
    const absl::Status s =
        ValidateExperiment(spec, data, "dataset", Limits{}, limits);
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.name;
  }
}

TEST(ValidateExperiment, BceTargetsOutsideUnitRange_NameTheRow) {
  Dataset data = Blobs();
  data.targets(4, 1) = 2;
  ExperimentSpec spec = DeepSpec();
  const absl::Status s = ValidateExperiment(spec, data, "spec.dataset.inline",
                                            Limits{}, ExperimentLimits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("spec.variants[0].loss: cce needs targets in [0, 1], "
                        "got 2 at spec.dataset.inline.targets[4, 1]"));
}

}  // namespace
}  // namespace satlab::engine
