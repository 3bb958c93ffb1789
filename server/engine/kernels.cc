#include "server/engine/kernels.h"

#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/engine/kernels_internal.h"

namespace satlab::engine::kernels {
namespace {

const KernelTable& TableOf(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return Avx2Kernels();
    case Isa::kAvx512:
      return Avx512Kernels();
    case Isa::kBaseline:
      break;
  }
  return BaselineKernels();
}

struct Active {
  std::atomic<Isa> isa;
  std::atomic<const KernelTable*> table;
};

// Chosen on first use (the first kernel call or ActiveIsa()).
Active& ActiveState() {
  static Active active{{BestIsa()}, {&TableOf(BestIsa())}};
  return active;
}

const KernelTable& Table() {
  return *ActiveState().table.load(std::memory_order_relaxed);
}

template <typename T>
const TypedKernels<T>& Typed() {
  if constexpr (sizeof(T) == 4) {
    return Table().f32;
  } else {
    return Table().f64;
  }
}

}  // namespace

absl::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kBaseline:
      break;
  }
  return "baseline";
}

absl::StatusOr<Isa> ParseIsa(absl::string_view name) {
  for (Isa isa : {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512}) {
    if (name == IsaName(isa)) return isa;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "kernels: expected one of baseline, avx2, avx512, got \"", name, "\""));
}

bool IsaSupported(Isa isa) {
  // __builtin_cpu_supports also checks that the OS saves the wider
  // registers (XCR0), not only the CPUID bits.
  switch (isa) {
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512dq");
    case Isa::kBaseline:
      break;
  }
  return true;
}

Isa BestIsa() {
  if (IsaSupported(Isa::kAvx512)) return Isa::kAvx512;
  if (IsaSupported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kBaseline;
}

Isa ActiveIsa() { return ActiveState().isa.load(std::memory_order_relaxed); }

absl::Status SetActiveIsa(Isa isa) {
  if (!IsaSupported(isa)) {
    return absl::FailedPreconditionError(
        absl::StrCat("kernels: this CPU does not support ", IsaName(isa),
                     " (best: ", IsaName(BestIsa()), ")"));
  }
  ActiveState().table.store(&TableOf(isa), std::memory_order_relaxed);
  ActiveState().isa.store(isa, std::memory_order_relaxed);
  return absl::OkStatus();
}

std::string Description() {
  // __builtin_cpu_supports takes string literals only.
  const std::pair<const char*, bool> features[] = {
      {"sse4.2", __builtin_cpu_supports("sse4.2")},
      {"avx", __builtin_cpu_supports("avx")},
      {"avx2", __builtin_cpu_supports("avx2")},
      {"fma", __builtin_cpu_supports("fma")},
      {"avx512f", __builtin_cpu_supports("avx512f")},
      {"avx512dq", __builtin_cpu_supports("avx512dq")},
      {"avx512bw", __builtin_cpu_supports("avx512bw")},
      {"avx512vl", __builtin_cpu_supports("avx512vl")}};
  std::vector<absl::string_view> present = {"sse2"};
  for (const auto& [name, has] : features) {
    if (has) present.push_back(name);
  }
  return absl::StrCat(IsaName(ActiveIsa()),
                      " (cpu: ", absl::StrJoin(present, " "), ")");
}

template <typename T>
void Sigmoid(const T* z, int64_t count, T* out) {
  Typed<T>().sigmoid(z, count, out);
}
template <typename T>
void ExpOfNonPositive(const T* x, int64_t count, T* out) {
  Typed<T>().exp_of_non_positive(x, count, out);
}
template <typename T>
void SigmoidDerivative(const T* a, int64_t count, T* d) {
  Typed<T>().sigmoid_derivative(a, count, d);
}
template <typename T>
void MultiplyInPlace(const T* y, int64_t count, T* x) {
  Typed<T>().multiply_in_place(y, count, x);
}
template <typename T>
int64_t CountBelow(const T* x, int64_t count, T threshold) {
  return Typed<T>().count_below(x, count, threshold);
}
template <typename T>
void SmallProduct(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_row,
                  int64_t a_col, const T* b, T* c, bool accumulate) {
  Typed<T>().small_product(m, n, k, a, a_row, a_col, b, c, accumulate);
}

template <typename T>
bool SgdUpdate(const T* p, const T* g, int64_t count, T lr, T wd, T* out) {
  return Typed<T>().sgd_update(p, g, count, lr, wd, out);
}

template <typename T>
T Sum(const T* x, int64_t count) {
  return Typed<T>().sum(x, count);
}
template <typename T>
T SumOfSquares(const T* x, int64_t count) {
  return Typed<T>().sum_of_squares(x, count);
}

template <typename T>
DerivativeStats<T> LogisticDerivativeStats(const T* a, int64_t count,
                                           T threshold, T* d) {
  return Typed<T>().logistic_derivative_stats(a, count, threshold, d);
}

template void Sigmoid<float>(const float*, int64_t, float*);
template void Sigmoid<double>(const double*, int64_t, double*);
template void ExpOfNonPositive<float>(const float*, int64_t, float*);
template void ExpOfNonPositive<double>(const double*, int64_t, double*);
template void SigmoidDerivative<float>(const float*, int64_t, float*);
template void SigmoidDerivative<double>(const double*, int64_t, double*);
template void MultiplyInPlace<float>(const float*, int64_t, float*);
template void MultiplyInPlace<double>(const double*, int64_t, double*);
template int64_t CountBelow<float>(const float*, int64_t, float);
template int64_t CountBelow<double>(const double*, int64_t, double);
template void SmallProduct<float>(int64_t, int64_t, int64_t, const float*,
                                  int64_t, int64_t, const float*, float*, bool);
template void SmallProduct<double>(int64_t, int64_t, int64_t, const double*,
                                   int64_t, int64_t, const double*, double*,
                                   bool);

template bool SgdUpdate<float>(const float*, const float*, int64_t, float,
                               float, float*);
template bool SgdUpdate<double>(const double*, const double*, int64_t, double,
                                double, double*);
template float Sum<float>(const float*, int64_t);
template double Sum<double>(const double*, int64_t);
template float SumOfSquares<float>(const float*, int64_t);
template double SumOfSquares<double>(const double*, int64_t);
template DerivativeStats<float> LogisticDerivativeStats<float>(const float*,
                                                               int64_t, float,
                                                               float*);
template DerivativeStats<double> LogisticDerivativeStats<double>(const double*,
                                                                 int64_t,
                                                                 double,
                                                                 double*);

}  // namespace satlab::engine::kernels
