#include "server/engine/native_engine.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/engine/network.h"
#include "server/engine/step_team.h"

namespace satlab::engine {
namespace {

// Set once by UseNativeEngine, read by every NewNetworkImpl.
std::atomic<const EngineEntry*> g_entry{nullptr};

bool HasV3() {
#if defined(__clang__)
  // clang 14 knows the features, not GCC's level names.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#else
  return __builtin_cpu_supports("x86-64-v3");
#endif
}

bool HasV4() {
#if defined(__clang__)
  return HasV3() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
#else
  return __builtin_cpu_supports("x86-64-v4");
#endif
}

RowMatrix<double> AsDouble(const AnyMatrix& m) {
  return std::visit(
      [](const auto& v) {
        return RowMatrix<double>(v.template cast<double>());
      },
      m);
}

// A small network of each dtype, trained a few steps by both engines: the
// native one must agree with the portable one to rounding (FMA and wider
// sums change the last bits, never more). Sigmoid and tanh layers, MSE and
// BCE from logits, plain SGD and Adam: every kind of code the engine has.
absl::Status CheckAgainstPortable(const EngineEntry& entry) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (int variant = 0; variant < 2; ++variant) {
      NetworkSpec spec;
      spec.input_size = 5;
      spec.dtype = dtype;
      spec.init.seed = 7 + variant;
      for (auto [units, activation] : {std::pair{19, Activation::kTanh},
                                       {11, Activation::kSigmoid},
                                       {3, Activation::kSigmoid}}) {
        LayerSpec layer;
        layer.units = units;
        layer.activation = activation;
        spec.layers.push_back(layer);
      }
      spec.loss = variant == 0 ? Loss::kMse : Loss::kBce;
      if (variant == 1) spec.optimizer.kind = OptimizerKind::kAdam;
      const int64_t rows = 37;
      std::vector<double> x64(rows * 5), y64(rows * 3);
      for (size_t i = 0; i < x64.size(); ++i) x64[i] = std::sin(0.7 * i);
      for (size_t i = 0; i < y64.size(); ++i) y64[i] = (i * 7 % 5) < 2;
      std::vector<float> x32(x64.begin(), x64.end()),
          y32(y64.begin(), y64.end());
      MatrixView x, y;
      if (dtype == DType::kFloat32) {
        x.f32 = x32.data();
        y.f32 = y32.data();
      } else {
        x.f64 = x64.data();
        y.f64 = y64.data();
      }
      x.rows = y.rows = rows;
      x.cols = 5;
      y.cols = 3;
      std::unique_ptr<NetworkImpl> portable = MakeNetworkImpl(spec);
      std::unique_ptr<NetworkImpl> native = entry.make(spec);
      if (native == nullptr) {
        return absl::InternalError("the native engine made no network");
      }
      for (int step = 0; step < 5; ++step) {
        auto a = portable->TrainStep(x, y, nullptr);
        auto b = native->TrainStep(x, y, nullptr);
        if (!a.ok() || !b.ok()) {
          return absl::InternalError(absl::StrCat(
              "a check step failed: portable ", a.status().ToString(),
              ", native ", b.status().ToString()));
        }
      }
      // float32 rounds at ~6e-8 per operation, float64 at ~1e-16; five
      // steps of a 3-layer network stay far inside these bounds unless
      // something other than rounding differs.
      const double tolerance = dtype == DType::kFloat32 ? 1e-4 : 1e-10;
      for (int l = 0; l < 3; ++l) {
        for (const auto& [p, n] : {std::pair{AsDouble(portable->weights(l)),
                                             AsDouble(native->weights(l))},
                                   std::pair{AsDouble(portable->biases(l)),
                                             AsDouble(native->biases(l))}}) {
          for (int64_t i = 0; i < p.size(); ++i) {
            const double pv = p.data()[i], nv = n.data()[i];
            if (!(std::abs(pv - nv) <= tolerance * (1 + std::abs(pv)))) {
              return absl::FailedPreconditionError(absl::StrFormat(
                  "the %s engine disagrees with the portable one beyond "
                  "rounding (layer %d, parameter %d: %.17g against %.17g); "
                  "keeping the portable engine",
                  entry.level, l, i, nv, pv));
            }
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string CpuIsaLevel() {
  if (HasV4()) return "x86-64-v4";
  if (HasV3()) return "x86-64-v3";
  return "";
}

absl::Status UseNativeEngine(const std::string& dir) {
  const std::string level = CpuIsaLevel();
  if (level.empty()) {
    return absl::FailedPreconditionError(
        "--engine=native needs an x86-64-v3 CPU (AVX2, FMA, BMI2) or "
        "better; this one has neither v3 nor v4");
  }
  const std::string path =
      absl::StrCat(dir, "/libsatlab_engine_", level, ".so");
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("no native engine for this CPU (", level, ") at ", path));
  }
  // RTLD_LOCAL: the object's symbols (its own copies of Eigen's and the
  // engine's inline functions, compiled for the level) never resolve
  // anything of the portable binary's, nor the reverse.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot load ", path, ": ", dlerror()));
  }
  using EntryFn = const EngineEntry* (*)();
  auto fn = reinterpret_cast<EntryFn>(dlsym(handle, "satlab_engine_entry"));
  const EngineEntry* entry = fn == nullptr ? nullptr : fn();
  if (entry == nullptr || entry->abi != kEngineAbi) {
    dlclose(handle);
    return absl::InternalError(absl::StrCat(
        path, " is not a satlab engine of this build (",
        entry == nullptr ? "no entry" : absl::StrCat("abi ", entry->abi),
        ", expected abi ", kEngineAbi, ")"));
  }
  if (absl::Status s = CheckAgainstPortable(*entry); !s.ok()) {
    // The check's networks are gone: nothing of the object is referenced.
    dlclose(handle);
    return s;
  }
  g_entry.store(entry, std::memory_order_release);
  ForwardStepThreads(entry->set_blas_threads);
  return absl::OkStatus();
}

std::string EngineName() {
  const EngineEntry* entry = g_entry.load(std::memory_order_acquire);
  return entry == nullptr ? "portable" : entry->level;
}

std::unique_ptr<NetworkImpl> NewNetworkImpl(const NetworkSpec& spec) {
  const EngineEntry* entry = g_entry.load(std::memory_order_acquire);
  return entry == nullptr ? MakeNetworkImpl(spec) : entry->make(spec);
}

std::unique_ptr<NetworkImpl> NewNetworkImpl(const NetworkSpec& spec,
                                            NetworkState* state) {
  const EngineEntry* entry = g_entry.load(std::memory_order_acquire);
  return entry == nullptr ? MakeNetworkImpl(spec, state)
                          : entry->restore(spec, state);
}

}  // namespace satlab::engine
