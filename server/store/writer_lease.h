// One writer per network across replicas (issue 14 item 2; taken by
// NetworkCore::AcquireWriter on a shared store): a lease on a network held
// by an owner (a replica's id) until an expiry, renewed by its holder while
// it writes (a step, an open Train stream). A replica that dies stops renewing,
// so its leases expire and another replica may take the network over. On one
// replica the core's own writer slot does this job; the lease extends it to
// several replicas sharing the PostgreSQL store.
#ifndef SATLAB_SERVER_STORE_WRITER_LEASE_H_
#define SATLAB_SERVER_STORE_WRITER_LEASE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace satlab::store {

struct WriterLease {
  std::string network_id;
  std::string owner;
  // When the lease lapses unless renewed, on the clock of whatever keeps
  // the leases (the database server's for PostgreSQL).
  absl::Time expires;
};

class WriterLeaseStore {
 public:
  virtual ~WriterLeaseStore() = default;
  // Takes the lease on `network_id` for `owner` until `ttl` from now, or
  // renews it when `owner` holds it already. ABORTED naming the network
  // and the holder when another owner holds an unexpired lease (the code a
  // second writer gets on one replica: retry later); INVALID_ARGUMENT for
  // an empty owner or a ttl <= 0; UNAVAILABLE when the store cannot answer.
  virtual absl::StatusOr<WriterLease> AcquireLease(absl::string_view network_id,
                                                   absl::string_view owner,
                                                   absl::Duration ttl) = 0;
  // Gives the lease up if `owner` holds it; otherwise changes nothing (not
  // an error: it may have expired and been taken over).
  virtual absl::Status ReleaseLease(absl::string_view network_id,
                                    absl::string_view owner) = 0;
};

// Leases in this process's memory, on absl::Now(): for one replica and for
// tests of the callers.
std::unique_ptr<WriterLeaseStore> NewInMemoryWriterLeaseStore();

// Checks AcquireLease's arguments (shared by the implementations).
absl::Status CheckLeaseRequest(absl::string_view owner, absl::Duration ttl);

// The ABORTED answer to a writer that finds another owner's lease.
absl::Status LeaseHeldError(absl::string_view network_id,
                            absl::string_view holder, absl::Time expires);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_WRITER_LEASE_H_
