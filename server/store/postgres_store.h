// The shared store of issue 14: one PostgreSQL database that several
// satlab-server replicas may use at once (docs/storage.md, "PostgreSQL").
// Tables and blobs mirror the SQLite store's: each network is one row whose
// state is the codec's encoding (server/store/codec.h). Create, Commit and
// Delete are each one transaction (or one statement): when they return OK
// the server has committed them (durable as PostgreSQL's own settings make
// a commit: fsync and synchronous_commit on by default), and on any error
// nothing changed.
//
// Connection loss (server down, restarted, network cut) is UNAVAILABLE
// naming the store; the next call connects again. Reads and Commit (which
// writes the same values when repeated) are retried once on a connection
// found broken; Create and Delete are not (a retry could report the first
// attempt's effect as an error).
#ifndef SATLAB_SERVER_STORE_POSTGRES_STORE_H_
#define SATLAB_SERVER_STORE_POSTGRES_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/store/experiment_store.h"
#include "server/store/metric_feed.h"
#include "server/store/network_store.h"
#include "server/store/writer_lease.h"

namespace satlab::store {

// The schema version this binary creates and reads (table satlab_schema).
inline constexpr int kPostgresSchemaVersion = 5;

// Whether `store` names a PostgreSQL database (postgresql:// or
// postgres://, the URI forms libpq reads).
bool IsPostgresUrl(absl::string_view store);

// postgresql://host:port/database of a connection URI, for logs and
// messages: without user and password.
std::string DescribePostgresUrl(const std::string& url);

struct PostgresStoreOptions {
  // A libpq connection URI, postgresql://[user[:password]@]host[:port]/db
  // [?param=value...] (--store). Messages name host, port and database,
  // never the password.
  std::string url;
  // Networks the store holds at most (--max_networks), across every
  // replica that shares the database.
  int64_t max_networks = 1000;
  // Metric events kept per network (MetricHistoryStore), >= 1.
  int64_t metric_history_per_network = 10000;
  // How long connecting may take before the call fails UNAVAILABLE (libpq's
  // connect_timeout; a connect_timeout in the URL wins).
  absl::Duration connect_timeout = absl::Seconds(5);
  // How long a call waits on a server that stopped answering without
  // closing the connection (a cut network, a dead machine) before it fails
  // UNAVAILABLE: TCP keepalives every io_timeout/3 with 2 probes, and
  // tcp_user_timeout = io_timeout. URL parameters keepalives_* and
  // tcp_user_timeout win. Not a statement timeout: a long statement on a
  // live server is not cut.
  absl::Duration io_timeout = absl::Seconds(30);
};

// The store as all four interfaces: one connection (reconnected when
// lost), shared by the four pointers. `leases` (table writer_leases, timed
// by the database server's clock) are the replicas' writer leases
// (NetworkCore::AcquireWriter, docs/storage.md).
struct PostgresStores {
  std::shared_ptr<NetworkStore> networks;
  std::shared_ptr<ExperimentStore> experiments;
  std::shared_ptr<MetricHistoryStore> metrics;
  std::shared_ptr<WriterLeaseStore> leases;
  // The replicas' shared metric events (metric_feed.h): publishes on the
  // store's connection, LISTENs and reads on one of its own.
  std::shared_ptr<MetricFeed> feed;
};

// Connects, then brings the schema to kPostgresSchemaVersion under a
// session advisory lock, so that replicas starting at once apply each
// migration exactly once (the others wait, then find it applied). Errors:
// INVALID_ARGUMENT (a URL libpq cannot parse, bad options), UNAVAILABLE
// (cannot connect), FAILED_PRECONDITION (a newer schema), INTERNAL (a
// migration failed; nothing of it is applied).
absl::StatusOr<PostgresStores> OpenPostgresStores(
    const PostgresStoreOptions& options);

// The same, as a NetworkStore alone.
absl::StatusOr<std::unique_ptr<NetworkStore>> NewPostgresStore(
    const PostgresStoreOptions& options);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_POSTGRES_STORE_H_
