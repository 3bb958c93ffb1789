#include "server/http/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace satlab::http {
namespace {

absl::StatusOr<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Seconds since the epoch at which the machine booted (/proc/stat btime).
absl::StatusOr<int64_t> BootTime() {
  auto stat = ReadFile("/proc/stat");
  if (!stat.ok()) return stat.status();
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      int64_t btime = 0;
      if (absl::SimpleAtoi(line, &btime)) return btime;
    }
  }
  return absl::UnavailableError("/proc/stat: no btime line");
}

}  // namespace

absl::StatusOr<ProcessStats> ReadProcessStats() {
  auto stat = ReadFile("/proc/self/stat");
  if (!stat.ok()) return stat.status();
  // Fields after "pid (comm) ": the command may contain spaces and
  // parentheses, so split after the last ')'. Field 3 (state) is index 0.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) {
    return absl::UnavailableError("/proc/self/stat: unexpected format");
  }
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(*stat).substr(paren + 2), ' ', absl::SkipEmpty());
  // utime = field 14, stime = 15, starttime = 22, vsize = 23, rss = 24.
  auto field = [&fields](int number) -> int64_t {
    int64_t value = 0;
    const size_t index = static_cast<size_t>(number - 3);
    if (index < fields.size()) (void)absl::SimpleAtoi(fields[index], &value);
    return value;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const int64_t page = sysconf(_SC_PAGESIZE);
  ProcessStats out;
  out.cpu_seconds = static_cast<double>(field(14) + field(15)) / ticks;
  out.virtual_memory_bytes = field(23);
  out.resident_memory_bytes = field(24) * page;
  if (auto boot = BootTime(); boot.ok()) {
    out.start_time_seconds =
        static_cast<double>(*boot) + static_cast<double>(field(22)) / ticks;
  }
  if (DIR* dir = opendir("/proc/self/fd"); dir != nullptr) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++out.open_fds;
    }
    closedir(dir);
    --out.open_fds;  // the descriptor opendir itself held
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.max_fds = static_cast<int64_t>(limit.rlim_cur);
  }
  return out;
}

}  // namespace satlab::http
