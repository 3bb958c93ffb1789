// The server-wide memory budget: an accountant of the bytes that clients
// make the server hold. Networks are charged their parameters and
// optimizer state for as long as they exist; a compute call is charged
// its scratch space and result while it runs. A request that would go over
// the budget is refused (RESOURCE_EXHAUSTED, saying what was asked and
// what is left) before anything is allocated.
//
// What is not counted (docs/reliability/compute.md): gRPC's own buffers
// (request and response messages in flight, bounded by max_message_bytes
// per message), the scratch each compute thread keeps between steps (at
// most 3 x 32 MiB per thread and precision, see DenseNetwork::Trim),
// metric history and stream buffers (bounded by their own flags), and the
// process's code and libraries.
#ifndef SATLAB_SERVER_CORE_MEMORY_BUDGET_H_
#define SATLAB_SERVER_CORE_MEMORY_BUDGET_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace satlab::core {

class MemoryBudget : public std::enable_shared_from_this<MemoryBudget> {
 public:
  // Bytes held until the Charge is destroyed (or Release()d). Move-only;
  // keeps the budget alive, so a charge may outlive whoever made it.
  class Charge {
   public:
    Charge() = default;
    Charge(Charge&& other) noexcept;
    Charge& operator=(Charge&& other) noexcept;
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    ~Charge() { Release(); }

    void Release();
    int64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Charge(std::shared_ptr<MemoryBudget> budget, int64_t bytes)
        : budget_(std::move(budget)), bytes_(bytes) {}
    std::shared_ptr<MemoryBudget> budget_;
    int64_t bytes_ = 0;
  };

  // `limit_bytes` >= 1. Always held by a shared_ptr (Create).
  static std::shared_ptr<MemoryBudget> Create(int64_t limit_bytes);

  // 75% of the memory this process may use: the cgroup limit (v2
  // /sys/fs/cgroup/memory.max, else v1 memory.limit_in_bytes) when there
  // is one, else physical memory.
  static int64_t DefaultLimit();

  // Charges `bytes` for `what` (e.g. "networks/a: parameters and optimizer
  // state"), or NoCapacity (capacity.h) "<what> needs N bytes: only M of
  // the server's memory budget of L bytes are left (--memory_budget_bytes);
  // retry later, or delete networks" and nothing charged. Thread-safe.
  absl::StatusOr<Charge> TryCharge(int64_t bytes, absl::string_view what);

  int64_t limit() const { return limit_; }
  int64_t used() const;
  // limit() - used(), at least 0; a hint only (another call may charge
  // before this one does).
  int64_t available() const;

 private:
  explicit MemoryBudget(int64_t limit_bytes) : limit_(limit_bytes) {}
  void Return(int64_t bytes);

  const int64_t limit_;
  mutable absl::Mutex mu_;
  int64_t used_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace satlab::core

#endif  // SATLAB_SERVER_CORE_MEMORY_BUDGET_H_
