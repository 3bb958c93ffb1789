// Where networks are kept. A store holds networks as values (NetworkRecord)
// and changes them only through the narrow calls below, each atomic: it
// never hands out a lock or a live engine object. The core layer
// (server/core/) keeps the live networks it computes on and writes them
// back through Commit; the in-memory store, the SQLite store and the
// PostgreSQL store implement this same interface and pass the same test
// suite (tests/store/store_contract.h).
#ifndef SATLAB_SERVER_STORE_NETWORK_STORE_H_
#define SATLAB_SERVER_STORE_NETWORK_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/engine/network.h"

namespace satlab::store {

// A request applied to a network under a client's request_id: a retry with
// the same id gets `response` back instead of a second application, across
// restarts too.
struct RequestRecord {
  std::string request_id;
  uint64_t fingerprint = 0;  // of the request, to refuse a reused id
  std::string response;      // the serialized response
};

// One network, whole.
struct NetworkRecord {
  std::string id;  // `networks/{id}`
  absl::Time create_time;
  absl::Time update_time;
  engine::NetworkState state;
  // The most recent requests applied with a request_id, oldest first; the
  // caller bounds how many it keeps.
  std::vector<RequestRecord> requests;
  // How many commits the store has taken of this network since it was
  // created: Load returns it and Create stores 0. Commit takes the
  // revision it writes, one more than the revision its writer read, and
  // writes only over that one (optimistic concurrency: a writer on another
  // replica that committed in between is never overwritten).
  int64_t revision = 0;
};

// Which network the store holds under an id, and how often it was
// committed: a cheap check that a cached copy is still the latest.
struct NetworkVersion {
  absl::Time create_time;
  int64_t revision = 0;
};

// A network without its tensors: what a listing shows.
struct NetworkSummary {
  std::string id;
  absl::Time create_time;
  absl::Time update_time;
  engine::NetworkSpec spec;  // init.explicit_params empty
  int64_t step = 0;
  int64_t samples_seen = 0;
};

class NetworkStore {
 public:
  virtual ~NetworkStore() = default;

  // Adds a network. ALREADY_EXISTS naming `networks/{id}` if the id is
  // taken; RESOURCE_EXHAUSTED naming --max_networks when the store holds
  // its maximum; UNAVAILABLE / INTERNAL (saying what failed) when the
  // backend cannot write. Nothing is added on error.
  virtual absl::Status Create(const NetworkRecord& record) = 0;

  // The network `id`, or NOT_FOUND naming `networks/{id}`.
  virtual absl::StatusOr<NetworkRecord> Load(absl::string_view id) const = 0;

  // Up to `limit` networks with id > `after`, in id order.
  virtual absl::StatusOr<std::vector<NetworkSummary>> List(
      absl::string_view after, int limit) const = 0;

  // Replaces an existing network's state, update time and requests with
  // `record`'s (its create_time must match the stored one, so a network
  // deleted and created again under the same id is never overwritten by
  // the old one's writer) and its revision, which must be the stored
  // revision + 1. NOT_FOUND if absent or recreated; ABORTED naming the
  // network and both revisions when the stored revision is not
  // record.revision - 1 (another writer committed since this writer read
  // it); on any error the stored
  // network is unchanged. When Commit returns OK the change is as durable
  // as the store is (durable()).
  virtual absl::Status Commit(const NetworkRecord& record) = 0;

  // The create time and revision of networks/{id} (no tensors read), or
  // NOT_FOUND naming it.
  virtual absl::StatusOr<NetworkVersion> Version(
      absl::string_view id) const = 0;

  // Removes the network; NOT_FOUND if absent.
  virtual absl::Status Delete(absl::string_view id) = 0;

  // Networks held.
  virtual absl::StatusOr<int64_t> Count() const = 0;

  // Whether what Create/Commit/Delete accept survives a restart of the
  // process (false for the in-memory store).
  virtual bool durable() const = 0;

  // Whether other processes (replicas) write this store too, so that what
  // a process cached of a network may be out of date (PostgreSQL): the
  // core then checks Version before using a cached network and takes a
  // writer lease before changing one.
  virtual bool shared() const { return false; }
};

// The ABORTED answer of Commit to a record read at an older revision.
absl::Status StaleRevisionError(absl::string_view id, int64_t read_at,
                                int64_t stored);

// The ephemeral store: records in memory, copied in and out. Holds at most
// `max_networks`.
std::unique_ptr<NetworkStore> NewInMemoryStore(int64_t max_networks);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_NETWORK_STORE_H_
