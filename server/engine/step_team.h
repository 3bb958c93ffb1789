// The threads that share one training step with the thread that runs it
// (`--blas_threads`; issue 15, docs/benchmarks.md "One step on two cores").
//
// A step of a large network is eight matrix products with elementwise
// passes between them. OpenBLAS's own pool can split the products but not
// our passes, and a second pool beside it would fight it for the cores
// (its workers spin between products). So the engine keeps one pool, the
// step team: OpenBLAS runs single-threaded inside each member, the products
// are split by rows of their result (gemm.cc) and the passes by ranges of
// their elements. Each member computes every element exactly as one thread
// would, so a team's results are a fixed function of its size.
//
// A team belongs to the thread that calls RunOnTeam (a compute thread): its
// helpers are created on first use, spin briefly between tasks (a step's
// tasks come microseconds apart) and then sleep until the next one.
#ifndef SATLAB_SERVER_ENGINE_STEP_TEAM_H_
#define SATLAB_SERVER_ENGINE_STEP_TEAM_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace satlab::engine {

// Threads per step for every thread that computes from now on (>= 1;
// values above kMaxStepThreads are clamped). A thread's team is resized at
// its next RunOnTeam.
inline constexpr int kMaxStepThreads = 64;
void SetStepThreads(int threads);
int StepThreads();

// Calls `forward` with StepThreads() now and after every SetStepThreads:
// a native engine (native_engine.h) has its own copy of this file, and its
// networks must see the server's setting.
void ForwardStepThreads(void (*forward)(int threads));

// The members the calling thread's next RunOnTeam would use: StepThreads(),
// or 1 inside a team's task (tasks do not split further).
int TeamSize();

// Calls fn(part, parts) once for every part in [0, parts), part 0 on the
// calling thread and the others on its helpers, and returns when all have
// returned: parts = TeamSize(), or 1 when `work` (the multiply-adds or
// values the task covers) is below kMinTeamWork, where a hand-off (~1 us)
// would cost more than it saves, or when the team's threads cannot be
// started. `fn` must not throw; inside it TeamSize() is 1.
inline constexpr int64_t kMinTeamWork = int64_t{1} << 16;
void RunOnTeam(int64_t work, absl::FunctionRef<void(int part, int parts)> fn);

// The parts RunOnTeam gives `work` from a team of `parts`: for a piece of
// a larger task that must split as it would in a task of its own.
inline int PartsFor(int64_t work, int parts) {
  return work < kMinTeamWork ? 1 : parts;
}

// Part `part` of `parts` of [0, count): contiguous ranges in order, their
// boundaries multiples of `grain` (but the last), as equal as that allows.
struct Range {
  int64_t begin;
  int64_t end;
};
Range PartOf(int64_t count, int64_t grain, int part, int parts);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_STEP_TEAM_H_
