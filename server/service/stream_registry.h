// Every open Train, WatchMetrics and RunExperiment stream of one server:
// caps how many may be open at once, ends Train streams that sit idle, and
// keeps the byte budget shared by the minibatches that Train streams hold.
//
// Lock order: the registry's lock, then a stream's own lock, then the
// budget's lock. The registry calls into a stream (CheckIdle, OnBufferRoom)
// only with its lock held and only while the stream is registered, so a
// stream that has called Unregister is never called again and may be
// deleted. A stream therefore must not call Register/Unregister/Release
// while holding its own lock; Charge and HasBufferRoom it may.
#ifndef SATLAB_SERVER_SERVICE_STREAM_REGISTRY_H_
#define SATLAB_SERVER_SERVICE_STREAM_REGISTRY_H_

#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace satlab::service {

struct StreamLimits {
  // Streams (Train + WatchMetrics + RunExperiment) open at once, server-wide;
  // one more is refused with RESOURCE_EXHAUSTED.
  int max_open_streams = 1000;
  // A Train stream that for this long neither received a message nor had a
  // response taken by its client, while none of its steps was computing,
  // ends with DEADLINE_EXCEEDED and releases the network's writer slot.
  // Zero turns the timeout off.
  absl::Duration idle_timeout = absl::Seconds(120);
  // Minibatch bytes one Train stream holds received but not yet stepped
  // before it stops reading (gRPC flow control then holds the client back).
  int64_t max_stream_buffered_bytes = int64_t{32} << 20;
  // The same, summed over every Train stream of the server.
  int64_t max_buffered_bytes = int64_t{256} << 20;
  // Once this many buffered bytes were released since the last time, the
  // monitor hands free heap memory back to the OS (glibc malloc_trim):
  // without it the allocator keeps the high-water mark of a burst of large
  // minibatches (docs/reliability/stream.md). Zero turns it off.
  int64_t trim_after_bytes = int64_t{64} << 20;
};

class StreamRegistry {
 public:
  class Stream {
   public:
    // Called about once per tick with the registry's lock held: ends the
    // stream if it has been idle for `timeout`. Streams that may be quiet
    // for good reason (WatchMetrics on a quiet network) keep the default.
    virtual void CheckIdle(absl::Time /*now*/, absl::Duration /*timeout*/) {}
    // Called when bytes of the shared budget were released after this
    // stream found it full (HasBufferRoom returned false).
    virtual void OnBufferRoom() {}
    // Called with the registry's lock held when networks/{id} was deleted:
    // a stream on that network ends now instead of at its next message.
    virtual void OnNetworkDeleted(absl::string_view /*id*/) {}

   protected:
    ~Stream() = default;
  };

  explicit StreamRegistry(const StreamLimits& limits);
  // Stops the idle monitor. Every stream must have unregistered.
  ~StreamRegistry();
  StreamRegistry(const StreamRegistry&) = delete;
  StreamRegistry& operator=(const StreamRegistry&) = delete;

  // Counts `stream` as open. RESOURCE_EXHAUSTED (naming the limit) when
  // max_open_streams are open already; the stream is then not registered.
  absl::Status Register(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for a running CheckIdle/OnBufferRoom on `stream` to return; after
  // this the registry never calls `stream` again.
  void Unregister(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);

  // Reserves `bytes` (the expected size of the message a stream is about
  // to read) if the budget has room for them, or if nothing is buffered at
  // all (so a message larger than the budget still gets through, alone).
  // Otherwise reserves nothing, remembers `waiter`, which gets OnBufferRoom
  // once bytes are released, and returns false.
  bool TryReserve(int64_t bytes, Stream* waiter)
      ABSL_LOCKS_EXCLUDED(budget_mu_);
  // Counts `bytes` more that arrived beyond a reservation (always accepted:
  // they are here already).
  void Charge(int64_t bytes) ABSL_LOCKS_EXCLUDED(budget_mu_);
  // Returns `bytes` to the budget and wakes the streams waiting for room.
  // Must not be called while holding any stream's lock.
  void Release(int64_t bytes) ABSL_LOCKS_EXCLUDED(mu_, budget_mu_);

  // Tells every open stream that networks/{id} was deleted.
  void NetworkDeleted(absl::string_view id) ABSL_LOCKS_EXCLUDED(mu_);

  const StreamLimits& limits() const { return limits_; }
  int open_streams() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t buffered_bytes() const ABSL_LOCKS_EXCLUDED(budget_mu_);

 private:
  // Checks every stream for idleness about four times per timeout (every
  // second without a timeout), and trims the heap after large releases.
  void MonitorLoop();
  void WakeWaiters() ABSL_LOCKS_EXCLUDED(mu_, budget_mu_);

  const StreamLimits limits_;

  mutable absl::Mutex mu_;
  absl::flat_hash_set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  mutable absl::Mutex budget_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int64_t buffered_bytes_ ABSL_GUARDED_BY(budget_mu_) = 0;
  int64_t released_since_trim_ ABSL_GUARDED_BY(budget_mu_) = 0;
  std::vector<Stream*> waiters_ ABSL_GUARDED_BY(budget_mu_);

  std::thread monitor_;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_STREAM_REGISTRY_H_
