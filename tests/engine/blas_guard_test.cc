// The OpenBLAS core guard's decisions (server/engine/blas_guard.h): when it
// replaces a core, when it keeps one, and that a core whose products are
// wrong is abandoned for the original one.
#include "server/engine/blas_guard.h"

#include <string>

#include "gtest/gtest.h"

namespace satlab::engine {
namespace {

BlasGuardInput FirstRun(const std::string& core, const std::string& preferred) {
  BlasGuardInput input;
  input.core = core;
  input.preferred = preferred;
  input.self_check = [] {
    ADD_FAILURE() << "the self-check runs only after the re-exec";
    return absl::OkStatus();
  };
  return input;
}

TEST(BlasGuardTest, GenericCoreOnAvx512_ReexecsWithSkylakeX) {
  const BlasGuardAction action =
      DecideBlasGuard(FirstRun("Prescott", "SkylakeX"));
  EXPECT_TRUE(action.reexec);
  EXPECT_EQ(action.coretype, "SkylakeX");
  EXPECT_EQ(action.state, "try:Prescott");
}

// OpenBLAS 0.3.21 on AMD Zen 4/5 EPYCs (AVX-512): its AVX2 kernels.
TEST(BlasGuardTest, Avx2CoreOnAvx512_ReexecsWithSkylakeX) {
  const BlasGuardAction action =
      DecideBlasGuard(FirstRun("Haswell", "SkylakeX"));
  EXPECT_TRUE(action.reexec);
  EXPECT_EQ(action.coretype, "SkylakeX");
  EXPECT_EQ(action.state, "try:Haswell");
}

TEST(BlasGuardTest, MatchingCore_RunsAsIs) {
  for (const char* core : {"SkylakeX", "Cooperlake", "SomeFutureCore"}) {
    const BlasGuardAction action = DecideBlasGuard(FirstRun(core, "SkylakeX"));
    EXPECT_FALSE(action.reexec) << core;
    EXPECT_EQ(action.report.active, core);
    EXPECT_EQ(action.report.detected, core);
    EXPECT_FALSE(action.report.forced);
  }
  const BlasGuardAction zen = DecideBlasGuard(FirstRun("Zen", "Haswell"));
  EXPECT_FALSE(zen.reexec);
}

TEST(BlasGuardTest, GuardOff_KeepsGenericCore) {
  BlasGuardInput input = FirstRun("Prescott", "SkylakeX");
  input.enabled = false;
  const BlasGuardAction action = DecideBlasGuard(input);
  EXPECT_FALSE(action.reexec);
  EXPECT_EQ(action.report.active, "Prescott");
  EXPECT_EQ(action.report.note, "guard off");
}

TEST(BlasGuardTest, GenericCoreWithoutAvx2_RunsAsIs) {
  const BlasGuardAction action = DecideBlasGuard(FirstRun("Prescott", ""));
  EXPECT_FALSE(action.reexec);
  EXPECT_FALSE(action.report.forced);
}

TEST(BlasGuardTest, AfterReexec_SelfCheckPasses_ForcedCoreKept) {
  BlasGuardInput input;
  input.state = "try:Prescott";
  input.core = "SkylakeX";
  input.preferred = "SkylakeX";
  int checks = 0;
  input.self_check = [&checks] {
    ++checks;
    return absl::OkStatus();
  };
  const BlasGuardAction action = DecideBlasGuard(input);
  EXPECT_EQ(checks, 1);
  EXPECT_FALSE(action.reexec);
  EXPECT_TRUE(action.report.forced);
  EXPECT_EQ(action.report.detected, "Prescott");
  EXPECT_EQ(action.report.active, "SkylakeX");
}

// The wrong-answer path: the forced core's products are off, so the guard
// goes back to the core OpenBLAS chose, and says why.
TEST(BlasGuardTest, AfterReexec_SelfCheckFails_FallsBackToOriginalCore) {
  BlasGuardInput input;
  input.state = "try:Prescott";
  input.core = "SkylakeX";
  input.preferred = "SkylakeX";
  input.self_check = [] { return absl::InternalError("entry (0, 0) off"); };
  const BlasGuardAction action = DecideBlasGuard(input);
  EXPECT_TRUE(action.reexec);
  EXPECT_EQ(action.coretype, "Prescott");
  EXPECT_EQ(action.state,
            "fallback:Prescott:SkylakeX failed the self-check: entry (0, 0) "
            "off");

  // The run after that reports the fallback and does not check again.
  BlasGuardInput after;
  after.state = action.state;
  after.core = "Prescott";
  after.preferred = "SkylakeX";
  after.self_check = [] {
    ADD_FAILURE() << "no self-check after a fallback";
    return absl::OkStatus();
  };
  const BlasGuardAction final_action = DecideBlasGuard(after);
  EXPECT_FALSE(final_action.reexec);
  EXPECT_FALSE(final_action.report.forced);
  EXPECT_EQ(final_action.report.active, "Prescott");
  EXPECT_EQ(final_action.report.note,
            "SkylakeX failed the self-check: entry (0, 0) off");
}

TEST(BlasGuardTest, SelfCheck_OpenBlas_Passes) {
  const absl::Status s = BlasSelfCheck(OpenBlasGemm());
  EXPECT_TRUE(s.ok()) << s << " (core " << BlasCoreName() << ")";
}

// One entry of one product off by 1e-9 (far more than float64 rounding,
// far less than any visible error: the tail of a 37 x 29 x 67 product)
// fails the check, naming it.
TEST(BlasGuardTest, SelfCheck_OneWrongEntry_Fails) {
  SelfCheckGemm real = OpenBlasGemm();
  SelfCheckGemm wrong = real;
  wrong.f64 = [real](Transpose ta, Transpose tb, int64_t m, int64_t n,
                     int64_t k, const double* a, const double* b, double* c,
                     bool accumulate) {
    real.f64(ta, tb, m, n, k, a, b, c, accumulate);
    if (m == 37) c[m * n - 1] += 1e-9;
  };
  const absl::Status s = BlasSelfCheck(wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("float64 A B [37x29x67] entry (36, 28)"),
            std::string::npos)
      << s;

  SelfCheckGemm wrong32 = real;
  wrong32.f32 = [real](Transpose ta, Transpose tb, int64_t m, int64_t n,
                       int64_t k, const float* a, const float* b, float* c,
                       bool accumulate) {
    real.f32(ta, tb, m, n, k, a, b, c, accumulate);
    if (ta == Transpose::kYes) c[0] = -c[0];
  };
  EXPECT_EQ(BlasSelfCheck(wrong32).code(), absl::StatusCode::kInternal);
}

TEST(BlasGuardTest, PreferredCore_FromCpuFeatures) {
  BlasCpu cpu;
  EXPECT_EQ(PreferredBlasCore(cpu), "");
  cpu.avx2 = cpu.fma = true;
  EXPECT_EQ(PreferredBlasCore(cpu), "Haswell");
  cpu.avx512f = true;  // F alone: SkylakeX's kernels need BW, DQ, VL, CD
  EXPECT_EQ(PreferredBlasCore(cpu), "Haswell");
  cpu.avx512bw = cpu.avx512dq = cpu.avx512vl = cpu.avx512cd = true;
  EXPECT_EQ(PreferredBlasCore(cpu), "SkylakeX");
}

TEST(BlasGuardTest, CoreTiers) {
  EXPECT_EQ(BlasCoreTier("Prescott"), 0);
  EXPECT_EQ(BlasCoreTier("Sandybridge"), 1);
  EXPECT_EQ(BlasCoreTier("Haswell"), 2);
  EXPECT_EQ(BlasCoreTier("zen"), 2);
  EXPECT_EQ(BlasCoreTier("SkylakeX"), 3);
  EXPECT_EQ(BlasCoreTier("NotYetKnown"), 3);
}

TEST(BlasGuardTest, GenericCores) {
  EXPECT_TRUE(IsGenericBlasCore("Prescott"));
  EXPECT_TRUE(IsGenericBlasCore("NEHALEM"));
  EXPECT_FALSE(IsGenericBlasCore("Haswell"));
  EXPECT_FALSE(IsGenericBlasCore("SkylakeX"));
  EXPECT_FALSE(IsGenericBlasCore("Zen"));
  EXPECT_FALSE(IsGenericBlasCore("Cooperlake"));
}

}  // namespace
}  // namespace satlab::engine
