#include "server/engine/blas_guard.h"

#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace satlab::engine {
namespace {

struct Shape {
  Transpose trans_a, trans_b;
  int64_t m, n, k;
  bool accumulate;
};

// Odd sizes (kernel tails), the engine's three products (A B, A^T B,
// A B^T), and the benchmark network's first layer's depth (k = 784 spans
// several of OpenBLAS's k blocks). About 0.05 s at startup, only when the
// guard has replaced a core.
constexpr Shape kShapes[] = {
    {Transpose::kNo, Transpose::kNo, 1, 1, 1, false},
    {Transpose::kNo, Transpose::kNo, 3, 5, 7, true},
    {Transpose::kNo, Transpose::kNo, 37, 29, 67, false},
    {Transpose::kYes, Transpose::kNo, 45, 33, 71, true},
    {Transpose::kNo, Transpose::kYes, 53, 41, 19, false},
    {Transpose::kNo, Transpose::kNo, 96, 80, 784, true},
    {Transpose::kYes, Transpose::kNo, 160, 96, 128, false},
    {Transpose::kNo, Transpose::kYes, 128, 300, 96, false},
};

template <typename T, typename Fn>
absl::Status CheckProducts(const Fn& gemm, absl::string_view precision) {
  std::mt19937_64 rng(20261201);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (const Shape& s : kShapes) {
    // Stored shapes: A is [m, k] or [k, m], B [k, n] or [n, k].
    std::vector<T> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
    for (T& v : a) v = static_cast<T>(u(rng));
    for (T& v : b) v = static_cast<T>(u(rng));
    for (T& v : c) v = static_cast<T>(u(rng));
    const std::vector<T> c0 = c;
    gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, a.data(), b.data(), c.data(),
         s.accumulate);
    auto a_at = [&](int64_t i, int64_t p) -> double {
      return s.trans_a == Transpose::kYes ? a[p * s.m + i] : a[i * s.k + p];
    };
    auto b_at = [&](int64_t p, int64_t j) -> double {
      return s.trans_b == Transpose::kYes ? b[j * s.k + p] : b[p * s.n + j];
    };
    const double eps = std::numeric_limits<T>::epsilon();
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double ref = s.accumulate ? static_cast<double>(c0[i * s.n + j]) : 0;
        double magnitude = std::abs(ref);
        for (int64_t p = 0; p < s.k; ++p) {
          ref += a_at(i, p) * b_at(p, j);
          magnitude += std::abs(a_at(i, p) * b_at(p, j));
        }
        const double got = c[i * s.n + j];
        const double bound =
            4.0 * static_cast<double>(s.k + 1) * eps * magnitude +
            std::numeric_limits<T>::min();
        if (!(std::abs(got - ref) <= bound)) {
          return absl::InternalError(absl::StrCat(
              "BLAS self-check: ", precision, " ",
              s.trans_a == Transpose::kYes ? "A^T" : "A",
              s.trans_b == Transpose::kYes ? " B^T" : " B", " [", s.m, "x", s.n,
              "x", s.k, s.accumulate ? ", accumulate" : "", "] entry (", i,
              ", ", j, "): expected ", ref, " within ", bound, ", got ", got));
        }
      }
    }
  }
  return absl::OkStatus();
}

// The guard's state in kBlasGuardEnv: "try:<orig>" or
// "fallback:<orig>:<reason>".
constexpr absl::string_view kTry = "try:";
constexpr absl::string_view kFallback = "fallback:";

absl::Mutex g_report_mutex(absl::kConstInit);
// Set once at startup, read by every /metrics scrape.
std::optional<BlasCoreReport>& Report()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_report_mutex) {
  static auto* report = new std::optional<BlasCoreReport>();
  return *report;
}

}  // namespace

std::string BlasCoreName() {
  const char* name = openblas_get_corename();
  return name != nullptr ? std::string(name) : std::string("unknown");
}

int BlasCoreTier(absl::string_view core) {
  // OpenBLAS's x86-64 cores (its driver/others/dynamic.c) by the widest
  // instructions their kernels use. A name not listed (a newer OpenBLAS)
  // counts as the best, so that the guard leaves it alone.
  struct Tier {
    int tier;
    std::initializer_list<absl::string_view> cores;
  };
  static const Tier kTiers[] = {
      {0,
       {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
        "Opteron", "Opteron_SSE3", "Barcelona", "Bobcat", "Katmai",
        "Coppermine", "Northwood", "Banias", "Athlon", "unknown"}},
      {1, {"Sandybridge", "Bulldozer", "Piledriver", "Steamroller"}},
      {2, {"Haswell", "Zen", "Excavator"}},
      {3, {"SkylakeX", "Cooperlake", "SapphireRapids"}},
  };
  for (const Tier& t : kTiers) {
    for (absl::string_view name : t.cores) {
      if (absl::EqualsIgnoreCase(core, name)) return t.tier;
    }
  }
  return 3;
}

bool IsGenericBlasCore(absl::string_view core) {
  return BlasCoreTier(core) == 0;
}

BlasCpu DetectBlasCpu() {
  BlasCpu cpu;
  cpu.avx2 = __builtin_cpu_supports("avx2");
  cpu.fma = __builtin_cpu_supports("fma");
  cpu.avx512f = __builtin_cpu_supports("avx512f");
  cpu.avx512bw = __builtin_cpu_supports("avx512bw");
  cpu.avx512dq = __builtin_cpu_supports("avx512dq");
  cpu.avx512vl = __builtin_cpu_supports("avx512vl");
  cpu.avx512cd = __builtin_cpu_supports("avx512cd");
  return cpu;
}

std::string PreferredBlasCore(const BlasCpu& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl &&
      cpu.avx512cd) {
    return "SkylakeX";
  }
  if (cpu.avx2 && cpu.fma) return "Haswell";
  return "";
}

SelfCheckGemm OpenBlasGemm() { return {BlasGemm<float>, BlasGemm<double>}; }

absl::Status BlasSelfCheck(const SelfCheckGemm& gemm) {
  if (absl::Status s = CheckProducts<float>(gemm.f32, "float32"); !s.ok()) {
    return s;
  }
  return CheckProducts<double>(gemm.f64, "float64");
}

BlasGuardAction DecideBlasGuard(const BlasGuardInput& input) {
  BlasGuardAction action;
  BlasCoreReport& report = action.report;
  report.active = input.core;
  if (!input.state.has_value()) {
    report.detected = input.core;
    if (!input.enabled) {
      report.note = "guard off";
    } else if (input.preferred.empty() ||
               BlasCoreTier(input.preferred) <= BlasCoreTier(input.core)) {
      report.note = "OpenBLAS's choice";
    } else {
      action.reexec = true;
      action.coretype = input.preferred;
      action.state = absl::StrCat(kTry, input.core);
    }
    return action;
  }
  const absl::string_view state = *input.state;
  if (absl::StartsWith(state, kTry)) {
    const std::string original(state.substr(kTry.size()));
    report.detected = original;
    const absl::Status check = input.self_check();
    if (check.ok()) {
      report.forced = true;
      report.note = absl::StrCat("replaced ", original, ", self-check passed");
      return action;
    }
    action.reexec = true;
    action.coretype = original;
    action.state = absl::StrCat(kFallback, original, ":", input.core,
                                " failed the self-check: ", check.message());
    return action;
  }
  if (absl::StartsWith(state, kFallback)) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(state.substr(kFallback.size()), absl::MaxSplits(':', 1));
    report.detected = std::string(parts[0]);
    report.note = parts.size() > 1 ? std::string(parts[1]) : "fallback";
    return action;
  }
  // An unknown state (set by hand): run as is.
  report.detected = input.core;
  report.note = absl::StrCat("ignored ", kBlasGuardEnv, "=", state);
  return action;
}

absl::StatusOr<BlasCoreReport> GuardBlasCore(bool enabled, char** argv) {
  BlasGuardInput input;
  input.enabled = enabled;
  if (const char* state = std::getenv(kBlasGuardEnv); state != nullptr) {
    input.state = state;
  }
  input.core = BlasCoreName();
  input.preferred = PreferredBlasCore(DetectBlasCpu());
  input.self_check = [] { return BlasSelfCheck(OpenBlasGemm()); };
  BlasGuardAction action = DecideBlasGuard(input);
  if (!action.reexec) {
    // Children (none today) start from OpenBLAS's own detection again.
    unsetenv(kBlasGuardEnv);
    return action.report;
  }
  setenv("OPENBLAS_CORETYPE", action.coretype.c_str(), 1);
  setenv(kBlasGuardEnv, action.state.c_str(), 1);
  execv("/proc/self/exe", argv);
  const int error = errno;
  unsetenv(kBlasGuardEnv);
  if (input.state.has_value()) {
    // The active core failed its self-check and cannot be left.
    return absl::InternalError(
        absl::StrCat("BLAS guard: ", action.state,
                     "; re-executing failed: ", std::strerror(error)));
  }
  action.report.note = absl::StrCat("could not re-execute to replace ",
                                    input.core, ": ", std::strerror(error));
  return action.report;
}

void SetBlasCoreReport(const BlasCoreReport& report) {
  absl::MutexLock lock(&g_report_mutex);
  Report() = report;
}

BlasCoreReport CurrentBlasCoreReport() {
  {
    absl::MutexLock lock(&g_report_mutex);
    if (Report().has_value()) return *Report();
  }
  BlasCoreReport report;
  report.detected = report.active = BlasCoreName();
  report.note = "OpenBLAS's choice";
  return report;
}

}  // namespace satlab::engine
