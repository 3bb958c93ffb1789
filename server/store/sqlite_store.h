// The durable store: one SQLite database, <data_dir>/satlab.db, in WAL mode
// (docs/storage.md). Each network is one row whose state is the codec's
// encoding (server/store/codec.h). Create, Commit and Delete are each one
// SQLite transaction: when they return OK the change is on disk (with
// synchronous=FULL, the default), and on any error nothing changed.
#ifndef SATLAB_SERVER_STORE_SQLITE_STORE_H_
#define SATLAB_SERVER_STORE_SQLITE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/experiment_store.h"
#include "server/store/network_store.h"

namespace satlab::store {

// The schema version this binary creates and reads (PRAGMA user_version).
inline constexpr int kSqliteSchemaVersion = 4;

struct SqliteStoreOptions {
  // The directory holding satlab.db and LOCK; created (with its parents)
  // if missing.
  std::string data_dir;
  // Networks the store holds at most (--max_networks).
  int64_t max_networks = 1000;
  // PRAGMA synchronous: FULL syncs the WAL at every commit, so what
  // Commit acknowledged survives a power loss; NORMAL survives a crash of
  // the process but not of the machine (docs/notes/store.md measures both).
  bool synchronous_full = true;
  // How long a statement waits for SQLite's own file locks before the call
  // fails UNAVAILABLE. Only this process writes (the LOCK file keeps other
  // servers out), so waits come from checkpoints and outside readers such
  // as the sqlite3 shell.
  absl::Duration busy_timeout = absl::Seconds(5);
  // Metric events kept per network (MetricHistoryStore), >= 1.
  int64_t metric_history_per_network = 10000;
};

// Opens (creating if needed) the store under options.data_dir: takes an
// exclusive lock on <data_dir>/LOCK for the store's life, checks the file's
// integrity (PRAGMA quick_check) and its schema version, and applies the
// migrations this binary knows in one transaction. Errors, each naming the
// path and what to do: FAILED_PRECONDITION (another server holds the
// directory, a newer schema, an unwritable directory), DATA_LOSS (a corrupt
// file), INVALID_ARGUMENT (bad options).
absl::StatusOr<std::unique_ptr<NetworkStore>> NewSqliteStore(
    const SqliteStoreOptions& options);

// The same store as all three interfaces: one database, one connection, one
// lock; the three pointers share one object.
struct SqliteStores {
  std::shared_ptr<NetworkStore> networks;
  std::shared_ptr<ExperimentStore> experiments;
  std::shared_ptr<MetricHistoryStore> metrics;
};
absl::StatusOr<SqliteStores> OpenSqliteStores(
    const SqliteStoreOptions& options);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_SQLITE_STORE_H_
