#include "server/service/executor.h"

#include <cstdio>
#include <new>
#include <utility>

namespace satlab::service {

Executor::Executor(int threads, int max_queued) : max_queued_(max_queued) {
  workers_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

Executor::~Executor() { Shutdown(); }

bool Executor::TrySubmit(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || static_cast<int>(queue_.size()) >= max_queued_) return false;
  queue_.push_back(std::move(task));
  return true;
}

int Executor::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

bool Executor::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Executor::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  for (auto& worker : workers_) worker.join();
}

void Executor::WorkerLoop() {
  for (;;) {
    absl::AnyInvocable<void() &&> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Executor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    // Tasks report their own failures (TrainingServiceImpl::RunUnary turns
    // std::bad_alloc into RESOURCE_EXHAUSTED). This is the last line: an
    // allocation failure that escaped a task must not take the process
    // down with every other user's state.
    try {
      std::move(task)();
    } catch (const std::bad_alloc&) {
      escaped_.fetch_add(1, std::memory_order_relaxed);
      std::fputs("satlab: executor task ran out of memory\n", stderr);
    }
  }
}

}  // namespace satlab::service
