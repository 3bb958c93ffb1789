#include <map>
#include <new>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/store/network_store.h"

namespace satlab::store {
namespace {

absl::Status NotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("networks/", id, " not found"));
}

absl::Status OutOfMemory(absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "the server ran out of memory to keep ", what, "; nothing changed"));
}

class InMemoryStore final : public NetworkStore {
 public:
  explicit InMemoryStore(int64_t max_networks) : max_networks_(max_networks) {}

  absl::Status Create(const NetworkRecord& record) override {
    // The copy is made before the lock: a large record does not hold up
    // other callers, and a failed allocation changes nothing.
    NetworkRecord copy;
    try {
      copy = record;
    } catch (const std::bad_alloc&) {
      return OutOfMemory(absl::StrCat("networks/", record.id));
    }
    absl::MutexLock lock(&mu_);
    if (records_.count(record.id) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("networks/", record.id, " already exists"));
    }
    if (static_cast<int64_t>(records_.size()) >= max_networks_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server holds its limit of ", max_networks_,
                       " networks (--max_networks); delete one first"));
    }
    copy.revision = 0;
    records_.emplace(record.id, std::move(copy));
    return absl::OkStatus();
  }

  absl::StatusOr<NetworkRecord> Load(absl::string_view id) const override {
    absl::ReaderMutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return NotFound(id);
    try {
      return it->second;
    } catch (const std::bad_alloc&) {
      return OutOfMemory(absl::StrCat("a copy of networks/", id));
    }
  }

  absl::StatusOr<std::vector<NetworkSummary>> List(absl::string_view after,
                                                   int limit) const override {
    absl::ReaderMutexLock lock(&mu_);
    std::vector<NetworkSummary> page;
    for (auto it = records_.upper_bound(after);
         it != records_.end() && static_cast<int>(page.size()) < limit; ++it) {
      const NetworkRecord& r = it->second;
      page.push_back({r.id, r.create_time, r.update_time, r.state.spec,
                      r.state.step, r.state.samples_seen});
    }
    return page;
  }

  absl::Status Commit(const NetworkRecord& record) override {
    NetworkRecord copy;
    try {
      copy = record;
    } catch (const std::bad_alloc&) {
      return OutOfMemory(absl::StrCat("networks/", record.id));
    }
    NetworkRecord old;  // freed after the lock is released
    {
      absl::MutexLock lock(&mu_);
      auto it = records_.find(record.id);
      if (it == records_.end() ||
          it->second.create_time != record.create_time) {
        return NotFound(record.id);
      }
      if (it->second.revision != record.revision - 1) {
        return StaleRevisionError(record.id, record.revision - 1,
                                  it->second.revision);
      }
      old = std::exchange(it->second, std::move(copy));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<NetworkVersion> Version(absl::string_view id) const override {
    absl::ReaderMutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) return NotFound(id);
    return NetworkVersion{it->second.create_time, it->second.revision};
  }

  absl::Status Delete(absl::string_view id) override {
    NetworkRecord old;  // freed after the lock is released
    {
      absl::MutexLock lock(&mu_);
      auto it = records_.find(id);
      if (it == records_.end()) return NotFound(id);
      old = std::move(it->second);
      records_.erase(it);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Count() const override {
    absl::ReaderMutexLock lock(&mu_);
    return static_cast<int64_t>(records_.size());
  }

  bool durable() const override { return false; }

 private:
  const int64_t max_networks_;
  mutable absl::Mutex mu_;
  std::map<std::string, NetworkRecord, std::less<>> records_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status StaleRevisionError(absl::string_view id, int64_t read_at,
                                int64_t stored) {
  return absl::AbortedError(
      absl::StrCat("networks/", id, " was changed by another writer (revision ",
                   stored, ") since this copy was read (revision ", read_at,
                   "); nothing was written: read it again and retry"));
}

std::unique_ptr<NetworkStore> NewInMemoryStore(int64_t max_networks) {
  return std::make_unique<InMemoryStore>(max_networks);
}

}  // namespace satlab::store
