// Unit tests of `satlab experiment`'s run loop and report, fed crafted
// server messages (no server): variant numbers from the wire are bounds
// checked, progress counts clamped; curves and CSV come out in order.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "client/cli/experiment_report.h"
#include "client/cli/experiment_run.h"
#include "client/cli/progress.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace satlab::cli {
namespace {

using ::testing::HasSubstr;

// Two runs of two variants each, like the nielsen preset.
Plan TwoRuns() {
  Plan plan;
  plan.name = "test";
  for (const char* suffix : {" from a", " from b"}) {
    Run run;
    run.spec.add_variants()->set_label("mse");
    run.spec.add_variants()->set_label("bce");
    run.spec.set_epochs(2);
    run.suffix = suffix;
    plan.runs.push_back(run);
  }
  return plan;
}

v1::EpochMetrics Epoch(int variant, int epoch, double loss) {
  v1::EpochMetrics m;
  m.set_variant(variant);
  m.set_epoch(epoch);
  m.set_loss(loss);
  m.set_label(variant == 0 ? "mse" : "bce");
  return m;
}

TEST(CurveSetTest, VariantOutOfRange_DataLossNotACrash) {
  const Plan plan = TwoRuns();
  CurveSet curves;
  curves.BeginRun(plan, 0);
  for (int variant : {2, 3, -1, 1 << 30, -(1 << 30)}) {
    const absl::Status s = curves.AddEpoch(Epoch(variant, 0, 1.0));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << variant;
    EXPECT_THAT(s.message(),
                HasSubstr("epoch.variant: expected a variant in 0..1 (the "
                          "spec has 2), got " +
                          std::to_string(variant)));
    v1::VariantSummary summary;
    summary.set_variant(variant);
    EXPECT_THAT(curves.AddSummary(summary).message(),
                HasSubstr("summary.variant: expected a variant in 0..1"));
  }
}

TEST(CurveSetTest, SecondRun_IndexesItsOwnVariantsOnly) {
  const Plan plan = TwoRuns();
  CurveSet curves;
  curves.BeginRun(plan, 0);
  ASSERT_TRUE(curves.AddEpoch(Epoch(1, 0, 1.0)).ok());
  curves.BeginRun(plan, 1);
  // Variant 2 exists overall, but not in the second run's spec.
  EXPECT_EQ(curves.AddEpoch(Epoch(2, 0, 1.0)).code(),
            absl::StatusCode::kDataLoss);
  ASSERT_TRUE(curves.AddEpoch(Epoch(1, 1, 0.5)).ok());
  ASSERT_TRUE(curves.AddEpoch(Epoch(1, 0, 0.7)).ok());
  const std::vector<Curve> all = curves.Take();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[3].variant, 3);
  EXPECT_EQ(all[3].run, 1);
  EXPECT_EQ(all[3].label, "bce from b");
  ASSERT_EQ(all[3].epochs.size(), 2u);
  EXPECT_EQ(all[3].epochs[0].epoch(), 0);    // sorted
  EXPECT_EQ(all[3].epochs[0].variant(), 3);  // renumbered
  EXPECT_EQ(all[1].label, "bce from a");
}

TEST(ReportTest, CurvesCsv_RowPerVariantAndEpoch) {
  const Plan plan = TwoRuns();
  CurveSet curves;
  curves.BeginRun(plan, 0);
  ASSERT_TRUE(curves.AddEpoch(Epoch(0, 0, 0.5)).ok());
  PlanResult result;
  result.curves = curves.Take();
  const std::string csv = CurvesCsv(result.curves, 1);
  EXPECT_THAT(csv, HasSubstr("variant,label,epoch,step,loss,accuracy,"
                             "output_attenuation,diverged,"
                             "layer0_mean_derivative,"));
  EXPECT_THAT(csv, HasSubstr("\n0,mse from a,0,0,0.5,0,0,0,,,,,,\n"));
  EXPECT_EQ(LayerColumn(0, 2), 11);
}

TEST(ProgressBarTest, CountsFromTheWireOutOfRange_ClampedNotACrash) {
  // A negative count used to make a negative-length bar string.
  ::testing::internal::CaptureStderr();
  {
    ProgressBar bar(10, /*enabled=*/true);
    bar.Update(-5, "negative");
    bar.Update(std::numeric_limits<int64_t>::min(), "min");
    bar.Update(std::numeric_limits<int64_t>::max(), "max");
    bar.Finish("done");
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("[" + std::string(30, '.') + "]   0%"));
  EXPECT_THAT(err, HasSubstr("[" + std::string(30, '#') + "] 100%"));
}

}  // namespace
}  // namespace satlab::cli
