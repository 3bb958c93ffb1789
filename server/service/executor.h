// A fixed pool of compute threads with a bounded queue. gRPC callback
// threads enqueue here and return; the only numerics they run themselves are
// TrainSteps smaller than the hand-off would cost, and only when they need
// not wait for a lock (core::NetworkCore::TryStepInline).
#ifndef SATLAB_SERVER_SERVICE_EXECUTOR_H_
#define SATLAB_SERVER_SERVICE_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace satlab::service {

class Executor {
 public:
  // `threads` >= 1 workers; at most `max_queued` tasks wait for a worker.
  Executor(int threads, int max_queued);
  // Runs every queued task, then joins the workers.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. Returns false (and drops it) when the queue is full or
  // the executor is shutting down; the caller answers
  // TrainingServiceImpl::SubmitRefused (RESOURCE_EXHAUSTED, or UNAVAILABLE
  // when stopping()).
  bool TrySubmit(absl::AnyInvocable<void() &&> task);

  // Whether Shutdown has begun (no task is accepted any more).
  bool stopping() const;

  // Stops accepting tasks, runs what is queued, joins. Idempotent.
  void Shutdown();

  int threads() const { return static_cast<int>(workers_.size()); }
  int queued() const;
  // Tasks that threw std::bad_alloc out (caught, counted, and the worker
  // carried on).
  int64_t escaped_allocation_failures() const {
    return escaped_.load(std::memory_order_relaxed);
  }

 private:
  void WorkerLoop();

  const int max_queued_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  std::atomic<int64_t> escaped_{0};
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXECUTOR_H_
