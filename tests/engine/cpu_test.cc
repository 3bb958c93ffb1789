// Usable cores (affinity and cgroup quota) and the thread plan over them
// (server/engine/cpu.h).
#include "server/engine/cpu.h"

#include <sched.h>

#include "gtest/gtest.h"

namespace satlab::engine {
namespace {

TEST(CpuTest, CgroupV2CpuMax_Parsed) {
  EXPECT_FALSE(ParseCgroupV2CpuMax("max 100000\n").has_value());
  EXPECT_DOUBLE_EQ(*ParseCgroupV2CpuMax("150000 100000\n"), 1.5);
  EXPECT_DOUBLE_EQ(*ParseCgroupV2CpuMax("200000 100000"), 2.0);
  EXPECT_FALSE(ParseCgroupV2CpuMax("").has_value());
  EXPECT_FALSE(ParseCgroupV2CpuMax("abc 100000").has_value());
}

TEST(CpuTest, CgroupV1Quota_Parsed) {
  EXPECT_FALSE(ParseCgroupV1Quota("-1\n", "100000\n").has_value());
  EXPECT_DOUBLE_EQ(*ParseCgroupV1Quota("50000\n", "100000\n"), 0.5);
  EXPECT_FALSE(ParseCgroupV1Quota("50000", "0").has_value());
}

TEST(CpuTest, CoresFrom_QuotaRoundsUpAndCaps) {
  EXPECT_EQ(CoresFrom(8, std::nullopt), 8);
  EXPECT_EQ(CoresFrom(8, 1.5), 2);
  EXPECT_EQ(CoresFrom(8, 2.0), 2);
  EXPECT_EQ(CoresFrom(8, 2.0000001), 2);
  EXPECT_EQ(CoresFrom(8, 0.5), 1);
  EXPECT_EQ(CoresFrom(2, 16.0), 2);
  EXPECT_EQ(CoresFrom(0, std::nullopt), 1);
}

TEST(CpuTest, DetectUsableCores_WithinAffinity) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const UsableCores usable = DetectUsableCores();
  EXPECT_EQ(usable.affinity, CPU_COUNT(&set));
  EXPECT_GE(usable.cores, 1);
  EXPECT_LE(usable.cores, usable.affinity);
  EXPECT_NE(usable.Describe().find("affinity"), std::string::npos);
}

// One row per request: cores, compute and BLAS asked -> chosen.
TEST(CpuTest, PlanThreads_NeverOversubscribesByDefault) {
  struct Case {
    int cores, compute, blas;
    int want_compute, want_blas;
    bool oversubscribed;
  };
  const Case cases[] = {
      {2, 0, 0, 2, 1, false}, {8, 0, 0, 8, 1, false}, {1, 0, 0, 1, 1, false},
      {2, 1, 0, 1, 2, false}, {8, 3, 0, 3, 2, false}, {4, 0, 2, 2, 2, false},
      {2, 0, 4, 1, 4, true},  {2, 2, 2, 2, 2, true},  {2, 4, 0, 4, 1, true},
      {0, 0, 0, 1, 1, false},
  };
  for (const Case& c : cases) {
    const ThreadPlan plan = PlanThreads(c.cores, c.compute, c.blas);
    EXPECT_EQ(plan.compute_threads, c.want_compute)
        << c.cores << " " << c.compute << " " << c.blas;
    EXPECT_EQ(plan.blas_threads, c.want_blas)
        << c.cores << " " << c.compute << " " << c.blas;
    EXPECT_EQ(plan.oversubscribed, c.oversubscribed)
        << c.cores << " " << c.compute << " " << c.blas;
    if (c.compute == 0 && c.blas == 0) {
      EXPECT_LE(plan.compute_threads * plan.blas_threads, std::max(1, c.cores));
    }
  }
}

}  // namespace
}  // namespace satlab::engine
