// Process figures for the standard process_* metrics, read from /proc.
#ifndef SATLAB_SERVER_HTTP_PROCESS_METRICS_H_
#define SATLAB_SERVER_HTTP_PROCESS_METRICS_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace satlab::http {

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  int64_t resident_memory_bytes = 0;
  int64_t virtual_memory_bytes = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;            // soft RLIMIT_NOFILE
  double start_time_seconds = 0;  // since the Unix epoch
};

// This process's figures. UNAVAILABLE when /proc cannot be read.
absl::StatusOr<ProcessStats> ReadProcessStats();

}  // namespace satlab::http

#endif  // SATLAB_SERVER_HTTP_PROCESS_METRICS_H_
