#include "server/store/writer_lease.h"

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace satlab::store {

absl::Status CheckLeaseRequest(absl::string_view owner, absl::Duration ttl) {
  if (owner.empty()) {
    return absl::InvalidArgumentError(
        "owner: expected a replica id, got an empty string");
  }
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl: expected > 0, got ", absl::FormatDuration(ttl)));
  }
  return absl::OkStatus();
}

absl::Status LeaseHeldError(absl::string_view network_id,
                            absl::string_view holder, absl::Time expires) {
  return absl::AbortedError(absl::StrCat(
      "networks/", network_id, " is being written by another replica (", holder,
      ", lease until ", absl::FormatTime(expires, absl::UTCTimeZone()),
      "); retry when it finishes"));
}

namespace {

class InMemoryWriterLeaseStore final : public WriterLeaseStore {
 public:
  absl::StatusOr<WriterLease> AcquireLease(absl::string_view network_id,
                                           absl::string_view owner,
                                           absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    WriterLease& lease = leases_[network_id];
    if (!lease.owner.empty() && lease.owner != owner && lease.expires > now) {
      return LeaseHeldError(network_id, lease.owner, lease.expires);
    }
    lease = WriterLease{std::string(network_id), std::string(owner), now + ttl};
    return lease;
  }

  absl::Status ReleaseLease(absl::string_view network_id,
                            absl::string_view owner) override {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(network_id);
    if (it != leases_.end() && it->second.owner == owner) leases_.erase(it);
    return absl::OkStatus();
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, WriterLease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<WriterLeaseStore> NewInMemoryWriterLeaseStore() {
  return std::make_unique<InMemoryWriterLeaseStore>();
}

}  // namespace satlab::store
