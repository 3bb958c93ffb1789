#include "server/engine/datasets.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace satlab::engine {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMaxSamples = 10'000;

DatasetOptions Options(DatasetKind kind, int64_t samples = 40,
                       uint64_t seed = 7) {
  DatasetOptions o;
  o.kind = kind;
  o.samples = samples;
  o.seed = seed;
  return o;
}

TEST(GenerateDataset, SingleSample_IsNielsensXOneYZero) {
  auto data = GenerateDataset(Options(DatasetKind::kSingleSample), kMaxSamples,
                              "dataset");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->inputs.rows(), 1);
  ASSERT_EQ(data->inputs.cols(), 1);
  ASSERT_EQ(data->targets.cols(), 1);
  EXPECT_EQ(data->inputs(0, 0), 1.0);
  EXPECT_EQ(data->targets(0, 0), 0.0);
}

TEST(GenerateDataset, Xor_LabelsAreXorOfTheCorners) {
  DatasetOptions o = Options(DatasetKind::kXor, 8);
  o.single_output = true;
  auto data = GenerateDataset(o, kMaxSamples, "dataset");
  ASSERT_TRUE(data.ok()) << data.status();
  for (int i = 0; i < 8; ++i) {
    const int x1 = static_cast<int>(data->inputs(i, 0));
    const int x2 = static_cast<int>(data->inputs(i, 1));
    EXPECT_EQ(data->targets(i, 0), x1 ^ x2) << "row " << i;
  }
}

TEST(GenerateDataset, EveryKind_SameSeedSameDataDifferentSeedDifferentData) {
  for (DatasetKind kind :
       {DatasetKind::kXor, DatasetKind::kCircles, DatasetKind::kSpirals,
        DatasetKind::kGaussianBlobs, DatasetKind::kKBlobs}) {
    DatasetOptions o = Options(kind);
    o.noise = 0.1;
    auto a = GenerateDataset(o, kMaxSamples, "dataset");
    auto b = GenerateDataset(o, kMaxSamples, "dataset");
    o.seed = 8;
    auto c = GenerateDataset(o, kMaxSamples, "dataset");
    ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << DatasetKindName(kind);
    EXPECT_EQ(a->inputs, b->inputs) << DatasetKindName(kind);
    EXPECT_EQ(a->targets, b->targets) << DatasetKindName(kind);
    EXPECT_NE(a->inputs, c->inputs) << DatasetKindName(kind);
    EXPECT_EQ(a->inputs.rows(), 40);
    EXPECT_EQ(a->inputs.cols(), 2);
  }
}

TEST(GenerateDataset, OneHotTargets_OneOnePerRowAndBalancedClasses) {
  DatasetOptions o = Options(DatasetKind::kKBlobs, 60);
  o.classes = 4;
  auto data = GenerateDataset(o, kMaxSamples, "dataset");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->targets.cols(), 4);
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(data->targets.row(i).sum(), 1.0);
    EXPECT_EQ(data->targets(i, i % 4), 1.0);
  }
}

TEST(GenerateDataset, Circles_RadiiSeparateTheClasses) {
  auto data = GenerateDataset(Options(DatasetKind::kCircles, 200), kMaxSamples,
                              "dataset");
  ASSERT_TRUE(data.ok()) << data.status();
  for (int i = 0; i < 200; ++i) {
    const double r = data->inputs.row(i).norm();
    if (data->targets(i, 0) == 1) {
      EXPECT_LE(r, 2.0 + 1e-12);
    } else {
      EXPECT_GE(r, 3.0 - 1e-12);
      EXPECT_LE(r, 5.0 + 1e-12);
    }
  }
}

struct BadCase {
  const char* name;
  DatasetOptions options;
  absl::StatusCode code;
  const char* message;
};

TEST(GenerateDataset, BadOptions_NameTheField) {
  DatasetOptions zero = Options(DatasetKind::kXor, 0);
  DatasetOptions huge = Options(DatasetKind::kXor, kMaxSamples + 1);
  DatasetOptions noise = Options(DatasetKind::kCircles);
  noise.noise = -1;
  DatasetOptions classes = Options(DatasetKind::kKBlobs);
  classes.classes = 1;
  DatasetOptions single = Options(DatasetKind::kKBlobs);
  single.single_output = true;
  const BadCase cases[] = {
      {"zero samples", zero, absl::StatusCode::kInvalidArgument,
       "spec.dataset.builtin.samples: expected >= 1, got 0"},
      {"too many", huge, absl::StatusCode::kResourceExhausted,
       "spec.dataset.builtin.samples: expected at most 10000"},
      {"negative noise", noise, absl::StatusCode::kInvalidArgument,
       "spec.dataset.builtin.noise: expected finite >= 0, got -1"},
      {"one class", classes, absl::StatusCode::kInvalidArgument,
       "spec.dataset.builtin.classes: expected in [2, 64], got 1"},
      {"single output, 3 classes", single, absl::StatusCode::kInvalidArgument,
       "spec.dataset.builtin.single_output: needs two-class data"},
  };
  for (const BadCase& c : cases) {
    auto data = GenerateDataset(c.options, kMaxSamples, "spec.dataset.builtin");
    ASSERT_FALSE(data.ok()) << c.name;
    EXPECT_EQ(data.status().code(), c.code) << c.name;
    EXPECT_THAT(std::string(data.status().message()), HasSubstr(c.message))
        << c.name;
  }
}

}  // namespace
}  // namespace satlab::engine
