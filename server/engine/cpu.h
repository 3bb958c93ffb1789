// How many cores this process may use, and how the server splits them
// between compute threads (one call each) and OpenBLAS threads (one large
// product each), so that the two never oversubscribe the CPU.
#ifndef SATLAB_SERVER_ENGINE_CPU_H_
#define SATLAB_SERVER_ENGINE_CPU_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace satlab::engine {

// Cores the process may run on: the CPUs in its affinity mask
// (sched_getaffinity: taskset, cpusets, docker --cpuset-cpus), capped by
// the CFS quota of its cgroup (cgroup v2 cpu.max or v1
// cpu.cfs_quota_us / cpu.cfs_period_us: docker --cpus) rounded up. At
// least 1.
struct UsableCores {
  int affinity = 1;              // CPUs in the affinity mask
  std::optional<double> quota;   // quota / period, when limited
  int cores = 1;                 // min(affinity, ceil(quota)), >= 1
  std::string Describe() const;  // "2 (affinity 2, no cgroup quota)"
};
UsableCores DetectUsableCores();

// The quota in cores from a cgroup v2 cpu.max line ("max 100000" or
// "150000 100000"); nullopt for "max" or a malformed line.
std::optional<double> ParseCgroupV2CpuMax(absl::string_view text);
// The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us files'
// contents (quota -1: unlimited).
std::optional<double> ParseCgroupV1Quota(absl::string_view quota,
                                         absl::string_view period);
// min(affinity, ceil(quota - 0.01)), at least 1: a quota of 1.5 cores
// lets two threads run, 2.0 two.
int CoresFrom(int affinity, std::optional<double> quota);

// Compute threads x BLAS threads for `cores` cores. A request of 0 means
// "choose": compute threads default to one per core (concurrent calls, the
// common load, run side by side), BLAS threads to what is left per compute
// thread (1 when every core has a compute thread). An explicit value is
// kept; the other one is chosen to fit beside it. `oversubscribed` when the
// explicit values alone exceed the cores (the server warns).
struct ThreadPlan {
  int compute_threads = 1;
  int blas_threads = 1;
  bool oversubscribed = false;
};
ThreadPlan PlanThreads(int cores, int compute_requested, int blas_requested);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_CPU_H_
