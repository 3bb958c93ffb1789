#include "server/engine/cpu.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace satlab::engine {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int AffinityCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// The process's cgroup path for a controller ("" for v2's unified line
// "0::/path"), from /proc/self/cgroup.
std::optional<std::string> CgroupPath(absl::string_view controller) {
  const std::optional<std::string> text = ReadFile("/proc/self/cgroup");
  if (!text.has_value()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (controller.empty() ? parts[0] == "0" && parts[1].empty()
                           : absl::StrContains(parts[1], controller)) {
      return std::string(parts[2]);
    }
  }
  return std::nullopt;
}

// The tightest quota on the path from the process's cgroup up to the root
// (a parent's limit binds its children), v2 first, then v1's cpu
// controller. Inside a container the path is usually "/" already.
std::optional<double> CgroupQuota() {
  std::optional<double> tightest;
  auto take = [&tightest](std::optional<double> q) {
    if (q.has_value() && (!tightest.has_value() || *q < *tightest)) {
      tightest = q;
    }
  };
  auto walk = [&](const std::string& mount, std::string path, auto read) {
    while (true) {
      take(read(mount + (path == "/" ? "" : path)));
      if (path.empty() || path == "/") break;
      path = path.substr(0, path.rfind('/'));
      if (path.empty()) path = "/";
    }
  };
  if (const auto v2 = CgroupPath(""); v2.has_value()) {
    walk("/sys/fs/cgroup", *v2, [](const std::string& dir) {
      const auto text = ReadFile(dir + "/cpu.max");
      return text.has_value() ? ParseCgroupV2CpuMax(*text) : std::nullopt;
    });
  }
  if (const auto v1 = CgroupPath("cpu"); v1.has_value()) {
    for (const char* mount :
         {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
      walk(mount, *v1, [](const std::string& dir) {
        const auto quota = ReadFile(dir + "/cpu.cfs_quota_us");
        const auto period = ReadFile(dir + "/cpu.cfs_period_us");
        return quota.has_value() && period.has_value()
                   ? ParseCgroupV1Quota(*quota, *period)
                   : std::nullopt;
      });
    }
  }
  return tightest;
}

}  // namespace

std::optional<double> ParseCgroupV2CpuMax(absl::string_view text) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  if (parts.size() != 2 || parts[0] == "max") return std::nullopt;
  double quota = 0, period = 0;
  if (!absl::SimpleAtod(parts[0], &quota) ||
      !absl::SimpleAtod(parts[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

std::optional<double> ParseCgroupV1Quota(absl::string_view quota_text,
                                         absl::string_view period_text) {
  double quota = 0, period = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(quota_text), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(period_text), &period) ||
      quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

int CoresFrom(int affinity, std::optional<double> quota) {
  int cores = std::max(1, affinity);
  if (quota.has_value()) {
    // 0.01 of slack: a quota of exactly 2 cores is 2, not 3, after
    // rounding up a value computed in floating point.
    const int by_quota =
        std::max(1, static_cast<int>(std::ceil(*quota - 0.01)));
    cores = std::min(cores, by_quota);
  }
  return cores;
}

std::string UsableCores::Describe() const {
  return absl::StrCat(cores, " (affinity ", affinity, ", ",
                      quota.has_value()
                          ? absl::StrCat("cgroup quota ", *quota, " cores")
                          : std::string("no cgroup quota"),
                      ")");
}

UsableCores DetectUsableCores() {
  UsableCores usable;
  usable.affinity = AffinityCount();
  usable.quota = CgroupQuota();
  usable.cores = CoresFrom(usable.affinity, usable.quota);
  return usable;
}

ThreadPlan PlanThreads(int cores, int compute_requested, int blas_requested) {
  cores = std::max(1, cores);
  ThreadPlan plan;
  if (compute_requested > 0 && blas_requested > 0) {
    plan.compute_threads = compute_requested;
    plan.blas_threads = blas_requested;
  } else if (compute_requested > 0) {
    plan.compute_threads = compute_requested;
    plan.blas_threads = std::max(1, cores / compute_requested);
  } else if (blas_requested > 0) {
    plan.blas_threads = blas_requested;
    plan.compute_threads = std::max(1, cores / blas_requested);
  } else {
    plan.compute_threads = cores;
    plan.blas_threads = 1;
  }
  plan.oversubscribed =
      int64_t{plan.compute_threads} * plan.blas_threads > cores;
  return plan;
}

}  // namespace satlab::engine
