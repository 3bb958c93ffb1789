#include "server/core/memory_budget.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/capacity.h"

namespace satlab::core {
namespace {

// The number in `path` (a cgroup limit file), or 0 when it is missing,
// "max" or not a number.
int64_t ReadLimit(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return 0;
  int64_t value = 0;
  return absl::SimpleAtoi(text, &value) && value > 0 ? value : 0;
}

}  // namespace

MemoryBudget::Charge::Charge(Charge&& other) noexcept
    : budget_(std::move(other.budget_)), bytes_(other.bytes_) {
  other.bytes_ = 0;
}

MemoryBudget::Charge& MemoryBudget::Charge::operator=(Charge&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::move(other.budget_);
    bytes_ = other.bytes_;
    other.bytes_ = 0;
  }
  return *this;
}

void MemoryBudget::Charge::Release() {
  if (budget_ != nullptr) budget_->Return(bytes_);
  budget_.reset();
  bytes_ = 0;
}

std::shared_ptr<MemoryBudget> MemoryBudget::Create(int64_t limit_bytes) {
  return std::shared_ptr<MemoryBudget>(new MemoryBudget(limit_bytes));
}

int64_t MemoryBudget::DefaultLimit() {
  const int64_t physical = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) *
                           static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  int64_t limit = physical > 0 ? physical : int64_t{1} << 30;
  // An unlimited v1 cgroup reports a huge number; the minimum handles it.
  for (const char* path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const int64_t cgroup = ReadLimit(path);
    if (cgroup > 0 && cgroup < limit) limit = cgroup;
  }
  return limit / 4 * 3;
}

absl::StatusOr<MemoryBudget::Charge> MemoryBudget::TryCharge(
    int64_t bytes, absl::string_view what) {
  absl::MutexLock lock(&mu_);
  const int64_t left = limit_ - used_;
  if (bytes > left) {
    return NoCapacity(absl::StrCat(what, " needs ", bytes, " bytes"),
                      absl::StrCat("only ", left > 0 ? left : 0,
                                   " of the server's memory budget of ", limit_,
                                   " bytes are left"),
                      "memory_budget_bytes", "delete networks");
  }
  used_ += bytes;
  return Charge(shared_from_this(), bytes);
}

int64_t MemoryBudget::used() const {
  absl::MutexLock lock(&mu_);
  return used_;
}

int64_t MemoryBudget::available() const {
  absl::MutexLock lock(&mu_);
  return limit_ > used_ ? limit_ - used_ : 0;
}

void MemoryBudget::Return(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  used_ -= bytes;
}

}  // namespace satlab::core
