// A one-line progress bar on stderr: redrawn in place on a terminal, a line
// every 10% otherwise (logs, CI).
#ifndef SATLAB_CLIENT_CLI_PROGRESS_H_
#define SATLAB_CLIENT_CLI_PROGRESS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace satlab::cli {

class ProgressBar {
 public:
  // `total` units of work; `enabled` false prints nothing.
  ProgressBar(int64_t total, bool enabled);
  // Sets the units done (clamped to 0..total) and the text shown after the
  // bar.
  void Update(int64_t done, const std::string& status);
  // Completes the line.
  void Finish(const std::string& status);

 private:
  void Draw(const std::string& status);

  const int64_t total_;
  const bool enabled_;
  const bool tty_;
  const absl::Time start_;
  int64_t done_ = 0;
  int last_decile_ = -1;
  absl::Time last_draw_ = absl::InfinitePast();
};

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_PROGRESS_H_
