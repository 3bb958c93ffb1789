// A guard for OpenBLAS's CPU detection. OpenBLAS 0.3.21 (Debian, built
// with DYNAMIC_ARCH) picks its kernels for the CPU when the library loads,
// and on CPUs it does not know picks kernels older than the CPU: "Prescott"
// (SSE3) on AVX-512 Xeons whose model the VM masks, "Haswell" (AVX2) on
// AMD EPYCs with AVX-512 (Zen 4 and 5). Products run 3.2-4.1x and 1.4-1.7x
// slower than with its SkylakeX kernels on the same CPU (docs/benchmarks.md).
// The only switch is the OPENBLAS_CORETYPE environment variable, read at
// load time, before main: so the guard re-executes the process once with it
// set, checks the new core's products against a float64 reference, and
// re-executes again with the original core if any is off.
//
//   start ─ a core below the CPU's (tiers below)? ─ no ─> run as is
//              │ yes: OPENBLAS_CORETYPE=<better>,
//              SATLAB_BLAS_GUARD_STATE=try:<orig>
//              v
//           exec ─ self-check passes? ─ yes ─> run (forced)
//              │ no: OPENBLAS_CORETYPE=<orig>,
//              SATLAB_BLAS_GUARD_STATE=fallback:...
//              v
//           exec ─> run with the original core (the reason is reported)
//
// OPENBLAS_CORETYPE set by the user counts as OpenBLAS's choice: a lesser
// one is replaced as well (--blas_core_guard=false keeps it), which is also
// how the guard is tested on a machine OpenBLAS does recognise.
#ifndef SATLAB_SERVER_ENGINE_BLAS_GUARD_H_
#define SATLAB_SERVER_ENGINE_BLAS_GUARD_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/engine/gemm.h"

namespace satlab::engine {

// The environment variable that carries the guard's state across exec.
inline constexpr char kBlasGuardEnv[] = "SATLAB_BLAS_GUARD_STATE";

// Which BLAS kernels the process runs, for logs and /metrics.
struct BlasCoreReport {
  std::string detected;  // the core OpenBLAS chose at first load
  std::string active;    // openblas_get_corename() now
  bool forced = false;   // the guard replaced `detected` with `active`
  std::string note;      // what the guard did, in a few words
};

// OpenBLAS's core name, e.g. "Haswell", "SkylakeX", "Prescott".
std::string BlasCoreName();

// An OpenBLAS core's tier: 0 SSE-era kernels (what it falls back to), 1
// AVX, 2 AVX2 (Haswell, Zen), 3 AVX-512 (SkylakeX, Cooperlake,
// SapphireRapids) and any name not known here. The guard replaces a core
// whose tier is below that of PreferredBlasCore.
int BlasCoreTier(absl::string_view core);
bool IsGenericBlasCore(absl::string_view core);  // tier 0

// CPU features the choice of a better core depends on.
struct BlasCpu {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512cd = false;
};
BlasCpu DetectBlasCpu();

// The OpenBLAS core for a CPU with these features: "SkylakeX" with the
// AVX-512 subsets its kernels use, "Haswell" with AVX2 and FMA, else "".
std::string PreferredBlasCore(const BlasCpu& cpu);

// Products for the self-check: C (+)= op(A) op(B), row-major as Gemm.
struct SelfCheckGemm {
  std::function<void(Transpose, Transpose, int64_t, int64_t, int64_t,
                     const float*, const float*, float*, bool)>
      f32;
  std::function<void(Transpose, Transpose, int64_t, int64_t, int64_t,
                     const double*, const double*, double*, bool)>
      f64;
};
// OpenBLAS's sgemm/dgemm, called directly (Gemm sends small products to the
// engine's own kernels).
SelfCheckGemm OpenBlasGemm();

// Runs a set of products (odd sizes, every transpose the engine uses,
// overwrite and accumulate, in both precisions; up to 96 x 80 x 784)
// through `gemm` and compares every entry with a float64 loop:
// |c - ref| <= 4 k eps sum_p |a_ip b_pj| + the smallest normal, the
// worst-case rounding bound of a k-term sum with room for any summation
// order and FMA. INTERNAL naming the product and entry on the first miss.
absl::Status BlasSelfCheck(const SelfCheckGemm& gemm);

// What the guard does next, given where it is.
struct BlasGuardInput {
  bool enabled = true;
  // kBlasGuardEnv as found: absent on the first run.
  std::optional<std::string> state;
  std::string core;       // BlasCoreName()
  std::string preferred;  // PreferredBlasCore(DetectBlasCpu())
  // Only consulted when state is "try:...": BlasSelfCheck of the core.
  std::function<absl::Status()> self_check;
};
struct BlasGuardAction {
  // Re-execute with OPENBLAS_CORETYPE = `coretype` and kBlasGuardEnv =
  // `state`; otherwise run on and report `report`.
  bool reexec = false;
  std::string coretype;
  std::string state;
  BlasCoreReport report;
};
BlasGuardAction DecideBlasGuard(const BlasGuardInput& input);

// The whole guard, first thing in main(): decides, and re-executes
// /proc/self/exe with `argv` when the decision says so (does not return
// then). Returns the report to log; INTERNAL when a core failed the
// self-check and the process could not be re-executed to leave it (the
// process must not compute with it).
absl::StatusOr<BlasCoreReport> GuardBlasCore(bool enabled, char** argv);

// The report /metrics shows: set by main after GuardBlasCore; until then
// OpenBLAS's own choice, unforced.
void SetBlasCoreReport(const BlasCoreReport& report);
BlasCoreReport CurrentBlasCoreReport();

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_BLAS_GUARD_H_
