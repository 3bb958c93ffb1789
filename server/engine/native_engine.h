// Opt-in engines compiled for an x86-64 ISA level (--engine=native; issue
// 15, docs/benchmarks.md "Native engines").
//
// The portable engine (the default) computes the same bits on every x86-64
// CPU: its Eigen code is SSE2 and only its own kernels are dispatched, each
// reproducing the SSE2 order without FMA. That costs the tiny networks
// ~1.3x against a -march=native build, whose Eigen code uses the CPU's
// widest vectors and FMA everywhere. A native engine is that build: the
// network code (dense_network.cc and what it calls) compiled once for
// x86-64-v3 (AVX2, FMA) and once for x86-64-v4 (AVX-512), each into a shared
// object of its own (libsatlab_engine_x86-64-v3.so, ...), loaded with dlopen
// so that the inline functions each copy compiles for its level never mix
// with the portable binary's. Its results are as deterministic (same seed,
// same bits) on one CPU level, but differ in the last bits from the portable
// engine and between levels: a cluster must run one engine on every replica
// for its bitwise failover to hold.
#ifndef SATLAB_SERVER_ENGINE_NATIVE_ENGINE_H_
#define SATLAB_SERVER_ENGINE_NATIVE_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "server/engine/network_impl.h"

namespace satlab::engine {

// What a native engine's shared object exports (engine_entry.cc) through
// its one C symbol, `satlab_engine_entry`. `abi` guards against an object
// from another build: everything crossing is C++ of this source tree.
inline constexpr int kEngineAbi = 2;
struct EngineEntry {
  int abi;
  const char* level;  // "x86-64-v3", "x86-64-v4"
  std::unique_ptr<NetworkImpl> (*make)(const NetworkSpec& spec);
  std::unique_ptr<NetworkImpl> (*restore)(const NetworkSpec& spec,
                                          NetworkState* state);
  // The object's SetBlasThreads (gemm.h): its step team is its own.
  void (*set_blas_threads)(int threads);
};

// The highest level this CPU runs that a native engine is built for:
// "x86-64-v4" (AVX-512 F, BW, CD, DQ, VL and the v3 set), "x86-64-v3"
// (AVX, AVX2, FMA, BMI1, BMI2, F16C, LZCNT, MOVBE), or "" (neither).
std::string CpuIsaLevel();

// Loads `dir`/libsatlab_engine_<CpuIsaLevel()>.so, checks it against the
// portable engine (a few training steps of small float32 and float64
// networks must agree to rounding), and makes every network created or
// restored from then on use it (networks that exist keep their engine).
// FAILED_PRECONDITION when the CPU is below x86-64-v3 or the check fails
// (the portable engine stays), NOT_FOUND naming the file when it is
// missing, INTERNAL for a file dlopen or its entry refuses. Call once at
// startup, before any network computes; the object is never unloaded.
absl::Status UseNativeEngine(const std::string& dir);

// "portable", or the level of the native engine in use.
std::string EngineName();

// The engine's factories, as network.cc calls them: the native engine's
// when one is in use, else the portable MakeNetworkImpl.
std::unique_ptr<NetworkImpl> NewNetworkImpl(const NetworkSpec& spec);
std::unique_ptr<NetworkImpl> NewNetworkImpl(const NetworkSpec& spec,
                                            NetworkState* state);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_NATIVE_ENGINE_H_
