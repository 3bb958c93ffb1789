#include "server/service/stream_registry.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/capacity.h"

namespace satlab::service {

StreamRegistry::StreamRegistry(const StreamLimits& limits)
    : limits_(limits), monitor_([this] { MonitorLoop(); }) {}

StreamRegistry::~StreamRegistry() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  monitor_.join();
}

absl::Status StreamRegistry::Register(Stream* stream) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(streams_.size()) >= limits_.max_open_streams) {
    return core::NoCapacity(
        "this stream",
        absl::StrCat("the server has ", streams_.size(),
                     " streams open (Train, WatchMetrics and RunExperiment "
                     "together), its limit"),
        absl::StrCat("max_open_streams=", limits_.max_open_streams),
        "when one ends");
  }
  streams_.insert(stream);
  return absl::OkStatus();
}

void StreamRegistry::Unregister(Stream* stream) {
  {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream);
  }
  absl::MutexLock lock(&budget_mu_);
  waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), stream),
                 waiters_.end());
}

void StreamRegistry::NetworkDeleted(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  for (Stream* stream : streams_) stream->OnNetworkDeleted(id);
}

bool StreamRegistry::TryReserve(int64_t bytes, Stream* waiter) {
  absl::MutexLock lock(&budget_mu_);
  if (buffered_bytes_ == 0 ||
      buffered_bytes_ + bytes <= limits_.max_buffered_bytes) {
    buffered_bytes_ += bytes;
    return true;
  }
  if (std::find(waiters_.begin(), waiters_.end(), waiter) == waiters_.end()) {
    waiters_.push_back(waiter);
  }
  return false;
}

void StreamRegistry::Charge(int64_t bytes) {
  absl::MutexLock lock(&budget_mu_);
  buffered_bytes_ += bytes;
}

void StreamRegistry::Release(int64_t bytes) {
  if (bytes == 0) return;
  {
    absl::MutexLock lock(&budget_mu_);
    buffered_bytes_ -= bytes;
    released_since_trim_ += bytes;
    if (waiters_.empty()) return;
  }
  WakeWaiters();
}

void StreamRegistry::WakeWaiters() {
  absl::MutexLock lock(&mu_);
  std::vector<Stream*> waiters;
  {
    absl::MutexLock budget_lock(&budget_mu_);
    waiters.swap(waiters_);
  }
  // Under mu_, so none of them can unregister (and be deleted) meanwhile; a
  // woken stream that finds the budget full again re-enters waiters_.
  for (Stream* stream : waiters) {
    if (streams_.contains(stream)) stream->OnBufferRoom();
  }
}

int StreamRegistry::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

int64_t StreamRegistry::buffered_bytes() const {
  absl::MutexLock lock(&budget_mu_);
  return buffered_bytes_;
}

void StreamRegistry::MonitorLoop() {
  const absl::Duration tick =
      limits_.idle_timeout > absl::ZeroDuration()
          ? std::clamp(limits_.idle_timeout / 4, absl::Milliseconds(10),
                       absl::Seconds(1))
          : absl::Seconds(1);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), tick)) return;
      if (limits_.idle_timeout > absl::ZeroDuration()) {
        const absl::Time now = absl::Now();
        for (Stream* stream : streams_) {
          stream->CheckIdle(now, limits_.idle_timeout);
        }
      }
    }
    bool trim = false;
    {
      absl::MutexLock lock(&budget_mu_);
      // After a large release, and once more when the load has ended, so
      // the tail of a burst is returned too.
      if (limits_.trim_after_bytes > 0 && released_since_trim_ > 0 &&
          (released_since_trim_ >= limits_.trim_after_bytes ||
           buffered_bytes_ == 0)) {
        released_since_trim_ = 0;
        trim = true;
      }
    }
#ifdef __GLIBC__
    // Returns the free pages of every malloc arena to the OS; a few
    // milliseconds for a heap of hundreds of MiB, on this thread only.
    if (trim) malloc_trim(0);
#endif
  }
}

}  // namespace satlab::service
