#include "server/engine/step_team.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace satlab::engine {
namespace {

std::atomic<int> step_threads{1};
std::atomic<void (*)(int)> forward_to{nullptr};

// Set on a team's helpers for their life, and on the caller while it runs
// its part: a task that reaches RunOnTeam (a product inside a split pass)
// runs whole on the thread that has it.
thread_local bool in_task = false;

void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// A caller and size() - 1 helpers. One task at a time: Run returns only
// when every helper has finished it, so a helper never sees two
// generations pass while it works.
class Team {
 public:
  explicit Team(int size) : size_(size) {
    helpers_.reserve(static_cast<size_t>(size - 1));
    try {
      for (int part = 1; part < size; ++part) {
        helpers_.emplace_back([this, part] { Loop(part); });
      }
    } catch (...) {
      Stop();  // the helpers already started
      throw;
    }
  }

  ~Team() { Stop(); }

  int size() const { return size_; }

  void Run(absl::FunctionRef<void(int, int)> fn) {
    task_ = &fn;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    // Sequentially consistent with the helpers' `sleepers_` increment and
    // generation check: either this sees a sleeper and wakes it, or the
    // sleeper sees the new generation and does not wait.
    generation_.fetch_add(1);
    if (sleepers_.load() > 0) {
      absl::MutexLock lock(&mu_);
      wake_.SignalAll();
    }
    in_task = true;
    fn(0, size());
    in_task = false;
    while (pending_.load(std::memory_order_acquire) != 0) Pause();
    task_ = nullptr;
  }

 private:
  void Stop() {
    quit_.store(true);
    generation_.fetch_add(1);
    {
      absl::MutexLock lock(&mu_);
      wake_.SignalAll();
    }
    for (std::thread& t : helpers_) t.join();
  }

  // How long an idle helper spins before it sleeps: longer than the gaps
  // inside a step and between the steps of a stream, short enough that an
  // idle server's helpers stop using the core at once.
  static constexpr std::chrono::microseconds kSpin{200};

  void Loop(int part) {
    in_task = true;
    uint64_t seen = 0;
    for (;;) {
      uint64_t now = WaitForTask(seen);
      if (quit_.load()) return;
      seen = now;
      (*task_)(part, size());
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  // The generation after `seen`, once there is one.
  uint64_t WaitForTask(uint64_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0;; ++i) {
      const uint64_t now = generation_.load(std::memory_order_acquire);
      if (now != seen) return now;
      Pause();
      if (i % 64 == 63 && std::chrono::steady_clock::now() > deadline) break;
    }
    absl::MutexLock lock(&mu_);
    sleepers_.fetch_add(1);
    uint64_t now;
    while ((now = generation_.load()) == seen) wake_.Wait(&mu_);
    sleepers_.fetch_sub(1);
    return now;
  }

  const int size_;
  std::vector<std::thread> helpers_;  // grows while the first ones run
  // Written by Run before it bumps generation_, read by helpers after they
  // see the new generation.
  const absl::FunctionRef<void(int, int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  absl::Mutex mu_;
  absl::CondVar wake_;
};

// The calling thread's team (none while it has run no split work).
std::unique_ptr<Team>& ThreadTeam() {
  thread_local std::unique_ptr<Team> team;
  return team;
}

}  // namespace

void SetStepThreads(int threads) {
  step_threads.store(std::clamp(threads, 1, kMaxStepThreads));
  if (auto* forward = forward_to.load()) forward(step_threads.load());
}

void ForwardStepThreads(void (*forward)(int threads)) {
  forward_to.store(forward);
  forward(step_threads.load());
}

int StepThreads() { return step_threads.load(); }

int TeamSize() { return in_task ? 1 : StepThreads(); }

void RunOnTeam(int64_t work, absl::FunctionRef<void(int, int)> fn) {
  const int size = TeamSize();
  if (PartsFor(work, size) == 1) {
    fn(0, 1);
    return;
  }
  std::unique_ptr<Team>& team = ThreadTeam();
  if (team == nullptr || team->size() != size) {
    team.reset();
    try {
      team = std::make_unique<Team>(size);
    } catch (const std::exception&) {
      // No thread or memory for helpers: the step runs on this thread
      // alone, as a team of one.
      team.reset();
      fn(0, 1);
      return;
    }
  }
  team->Run(fn);
}

Range PartOf(int64_t count, int64_t grain, int part, int parts) {
  // Whole grains, the first (units % parts) parts one grain more; the last
  // part also takes the partial grain at the end.
  const int64_t units = count / grain;
  auto start = [&](int p) {
    const int64_t whole =
        units / parts * p + std::min<int64_t>(p, units % parts);
    return p == parts ? count : whole * grain;
  };
  return {start(part), start(part + 1)};
}

}  // namespace satlab::engine
