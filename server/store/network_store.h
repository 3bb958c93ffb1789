// Where networks live. The service reaches every network through this
// interface so that a durable (SQLite) or shared (PostgreSQL) store can
// replace the in-memory one without touching the handlers.
#ifndef SATLAB_SERVER_STORE_NETWORK_STORE_H_
#define SATLAB_SERVER_STORE_NETWORK_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/engine/network.h"

namespace satlab::store {

// One stored network. Concurrency contract:
//  - `mu` guards the network's mutable state: a writer (step, parameter
//    update) holds it exclusively for the duration of the change; readers
//    (Forward, ComputeGradients, Evaluate, Get) hold it shared, so they
//    always see the state between two steps, never half of one.
//  - `writer` is the single writer slot. A writer claims it with
//    TryAcquireWriter() before taking `mu`; a second writer fails at once
//    instead of queueing behind a long Train stream.
struct NetworkEntry {
  NetworkEntry(std::string id_in, std::unique_ptr<engine::Network> net,
               absl::Time created)
      : id(std::move(id_in)),
        create_time(created),
        network(std::move(net)),
        update_time(created) {}

  bool TryAcquireWriter() {
    bool expected = false;
    return writer.compare_exchange_strong(expected, true);
  }
  void ReleaseWriter() { writer.store(false); }

  const std::string id;
  const absl::Time create_time;
  mutable absl::Mutex mu;
  std::unique_ptr<engine::Network> network ABSL_GUARDED_BY(mu);
  absl::Time update_time ABSL_GUARDED_BY(mu);
  std::atomic<bool> writer{false};
  // Set when the network is deleted; open streams check it between steps.
  std::atomic<bool> deleted{false};
};

class NetworkStore {
 public:
  virtual ~NetworkStore() = default;

  // Adds `entry`. ALREADY_EXISTS if its id is taken; RESOURCE_EXHAUSTED when
  // the store holds its maximum number of networks.
  virtual absl::Status Insert(std::shared_ptr<NetworkEntry> entry) = 0;

  // The entry with `id`, or NOT_FOUND naming `networks/{id}`.
  virtual absl::StatusOr<std::shared_ptr<NetworkEntry>> Find(
      absl::string_view id) const = 0;

  // Up to `limit` entries with id > `after`, in id order.
  virtual std::vector<std::shared_ptr<NetworkEntry>> List(
      absl::string_view after, int limit) const = 0;

  // Removes the entry (marking it deleted); NOT_FOUND if absent.
  virtual absl::Status Erase(absl::string_view id) = 0;

  virtual int64_t size() const = 0;
};

// The default store: a mutex-guarded ordered map in memory.
std::unique_ptr<NetworkStore> NewInMemoryStore(int64_t max_networks);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_NETWORK_STORE_H_
