#include "client/cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace satlab::cli {

ProgressBar::ProgressBar(int64_t total, bool enabled)
    : total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(absl::Now()) {}

void ProgressBar::Update(int64_t done, const std::string& status) {
  // Counts may come from the server: clamped, a negative or huge one draws
  // an empty or full bar instead of a negative-length string.
  done_ = std::clamp<int64_t>(done, 0, total_);
  if (!enabled_) return;
  if (tty_) {
    // At most ~20 redraws a second: a fast loop must not drown in output.
    if (absl::Now() - last_draw_ < absl::Milliseconds(50) && done_ < total_) {
      return;
    }
    last_draw_ = absl::Now();
    Draw(status);
    return;
  }
  const int decile = static_cast<int>(10 * done_ / total_);
  if (decile != last_decile_) {
    last_decile_ = decile;
    Draw(status);
  }
}

void ProgressBar::Finish(const std::string& status) {
  done_ = total_;
  if (!enabled_) return;
  Draw(status);
  if (tty_) std::fputc('\n', stderr);
}

void ProgressBar::Draw(const std::string& status) {
  constexpr int kWidth = 30;
  const double fraction = static_cast<double>(done_) / total_;
  const int filled = static_cast<int>(fraction * kWidth);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start_);
  const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s[%s] %3.0f%% %6.1fs eta %5.1fs  %s%s",
               tty_ ? "\r\033[K" : "", bar.c_str(), 100 * fraction, elapsed,
               eta, status.c_str(), tty_ ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace satlab::cli
