#include "server/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/store/codec.h"
#include "server/store/writer_lease.h"

namespace satlab::store {
namespace {

// Schema migrations: kMigrations[i] takes a database from user_version i to
// i + 1. Applied at open, all in one transaction; append, never edit.
//
// Version 1: networks (state as the codec's encoding; the spec and counters
// also in their own columns so a listing reads no tensors), the metric
// history of each network (bounded by its writer) and experiments.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE networks (
  id TEXT PRIMARY KEY NOT NULL,
  create_time_ns INTEGER NOT NULL,
  update_time_ns INTEGER NOT NULL,
  step INTEGER NOT NULL,
  samples_seen INTEGER NOT NULL,
  spec BLOB NOT NULL,
  state BLOB NOT NULL,
  requests BLOB NOT NULL
);
CREATE TABLE metric_history (
  network_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  time_ns INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (network_id, seq)
);
CREATE TABLE experiments (
  id TEXT PRIMARY KEY NOT NULL,
  spec BLOB NOT NULL,
  status INTEGER NOT NULL,
  curves BLOB NOT NULL,
  summary BLOB NOT NULL,
  create_time_ns INTEGER NOT NULL,
  update_time_ns INTEGER NOT NULL
);
)sql",
    // Version 2: each network's revision (NetworkRecord::revision), so a
    // commit never overwrites one made since its record was read.
    R"sql(
ALTER TABLE networks ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
)sql",
    // Version 3: experiment claims (ExperimentStore's units), on this
    // process's clock in microseconds since the epoch (one server owns a
    // directory; the claims let it pick up what a crash left running).
    R"sql(
CREATE TABLE experiment_claims (
  experiment_id TEXT NOT NULL,
  unit INTEGER NOT NULL,
  owner TEXT NOT NULL DEFAULT '',
  expires_us INTEGER NOT NULL DEFAULT 0,
  done INTEGER NOT NULL DEFAULT 0,
  progress BLOB NOT NULL DEFAULT x'',
  PRIMARY KEY (experiment_id, unit)
);
)sql",
    // Version 4: an experiment's spec (with an inline data set, up to the
    // request size) in a table of its own, written once: SQLite rewrites a
    // whole row on UPDATE, so every progress record (one a second while an
    // experiment runs) and the final one rewrote the data set too — 3.5 ms
    // against 0.5 ms per update for the 0.5 MB digits spec.
    R"sql(
CREATE TABLE experiment_specs (
  id TEXT PRIMARY KEY NOT NULL,
  spec BLOB NOT NULL
);
INSERT INTO experiment_specs (id, spec) SELECT id, spec FROM experiments;
ALTER TABLE experiments DROP COLUMN spec;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) ==
              kSqliteSchemaVersion);

absl::Status NotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("networks/", id, " not found"));
}

// Finalizes a prepared statement.
struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// Resets a statement and drops its bindings when a call is done with it,
// on every path out.
class Use {
 public:
  explicit Use(const Stmt& s) : s_(s.get()) {}
  ~Use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_;
};

std::string ColumnBlob(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p == nullptr
             ? std::string()
             : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

absl::Status ExperimentNotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("experiments/", id, " not found"));
}

// SQLite binds a null pointer as NULL, and `id > NULL` matches nothing: a
// default-constructed (empty) string_view must bind as ''.
void BindText(sqlite3_stmt* s, int i, absl::string_view v) {
  sqlite3_bind_text(s, i, v.data() == nullptr ? "" : v.data(),
                    static_cast<int>(v.size()), SQLITE_STATIC);
}
void BindBlob(sqlite3_stmt* s, int i, absl::string_view v) {
  // A zero-length blob, not NULL: the columns are NOT NULL.
  sqlite3_bind_blob64(s, i, v.empty() ? "" : v.data(), v.size(), SQLITE_STATIC);
}

class SqliteStore final : public NetworkStore,
                          public ExperimentStore,
                          public MetricHistoryStore {
 public:
  SqliteStore(SqliteStoreOptions options, std::string db_path, int lock_fd)
      : options_(std::move(options)),
        db_path_(std::move(db_path)),
        lock_fd_(lock_fd) {}

  ~SqliteStore() override {
    // Statements first: sqlite3_close refuses while any is open.
    for (Stmt* s :
         {&exists_,     &insert_,     &count_,    &select_,     &list_,
          &update_,     &delete_,     &begin_,    &commit_,     &rollback_,
          &exp_insert_, &exp_select_, &exp_list_, &exp_update_, &exp_delete_,
          &m_last_,     &m_insert_,   &m_trim_,   &m_read_,     &m_delete_,
          &version_}) {
      s->reset();
    }
    if (db_ != nullptr) sqlite3_close(db_);
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
  }

  absl::Status Open() {
    int rc = sqlite3_open_v2(
        db_path_.c_str(), &db_,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
        nullptr);
    if (rc != SQLITE_OK) return Error(rc, "open");
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(
        db_,
        static_cast<int>(absl::ToInt64Milliseconds(options_.busy_timeout)));

    // The version first: reading it also reads the file header, so a file
    // that is not a database fails here (SQLITE_NOTADB -> DATA_LOSS).
    absl::StatusOr<int64_t> version = QueryInt("PRAGMA user_version");
    if (!version.ok()) return version.status();
    if (*version > kSqliteSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          db_path_, " has schema version ", *version, "; this satlab-server ",
          "knows versions up to ", kSqliteSchemaVersion,
          ": a newer satlab wrote it. Run that version (or a newer one), or "
          "point --data_dir at another directory"));
    }
    if (absl::Status s = QuickCheck(); !s.ok()) return s;
    if (absl::Status s = Exec("PRAGMA journal_mode=WAL"); !s.ok()) return s;
    if (absl::Status s =
            Exec(options_.synchronous_full ? "PRAGMA synchronous=FULL"
                                           : "PRAGMA synchronous=NORMAL");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Migrate(static_cast<int>(*version)); !s.ok()) return s;

    for (auto [stmt, sql] : std::vector<std::pair<Stmt*, const char*>>{
             {&exists_, "SELECT 1 FROM networks WHERE id = ?1"},
             {&insert_,
              "INSERT INTO networks (id, create_time_ns, update_time_ns, "
              "step, samples_seen, spec, state, requests) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
             {&count_, "SELECT COUNT(*) FROM networks"},
             {&select_,
              "SELECT create_time_ns, update_time_ns, state, requests, "
              "revision FROM networks WHERE id = ?1"},
             {&version_,
              "SELECT create_time_ns, revision FROM networks WHERE id = ?1"},
             {&list_,
              "SELECT id, create_time_ns, update_time_ns, step, samples_seen, "
              "spec FROM networks WHERE id > ?1 ORDER BY id LIMIT ?2"},
             {&update_,
              "UPDATE networks SET update_time_ns = ?3, step = ?4, "
              "samples_seen = ?5, spec = ?6, state = ?7, requests = ?8, "
              "revision = ?9 WHERE id = ?1 AND create_time_ns = ?2 AND "
              "revision = ?9 - 1"},
             {&delete_, "DELETE FROM networks WHERE id = ?1"},
             {&begin_, "BEGIN IMMEDIATE"},
             {&commit_, "COMMIT"},
             {&rollback_, "ROLLBACK"},
             {&exp_insert_,
              "INSERT INTO experiments (id, status, curves, summary, "
              "create_time_ns, update_time_ns) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
             {&exp_select_,
              "SELECT e.id, s.spec, e.status, e.curves, e.summary, "
              "e.create_time_ns, e.update_time_ns FROM experiments e "
              "JOIN experiment_specs s ON s.id = e.id WHERE e.id = ?1"},
             {&exp_list_,
              "SELECT e.id, s.spec, e.status, e.curves, e.summary, "
              "e.create_time_ns, e.update_time_ns FROM experiments e "
              "JOIN experiment_specs s ON s.id = e.id WHERE e.id > ?1 "
              "ORDER BY e.id LIMIT ?2"},
             {&exp_update_,
              "UPDATE experiments SET status = ?3, curves = ?4, summary = ?5, "
              "update_time_ns = ?6 WHERE id = ?1 AND create_time_ns = ?2"},
             {&exp_delete_, "DELETE FROM experiments WHERE id = ?1"},
             {&m_last_,
              "SELECT MAX(seq) FROM metric_history WHERE network_id = ?1"},
             {&m_insert_,
              "INSERT INTO metric_history (network_id, seq, time_ns, event) "
              "VALUES (?1, ?2, ?3, ?4)"},
             // Drops every event at or below the (bound+1)-th newest.
             {&m_trim_,
              "DELETE FROM metric_history WHERE network_id = ?1 AND seq <= "
              "(SELECT seq FROM metric_history WHERE network_id = ?1 "
              "ORDER BY seq DESC LIMIT 1 OFFSET ?2)"},
             {&m_read_,
              "SELECT seq, time_ns, event FROM metric_history WHERE "
              "network_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3"},
             {&m_delete_, "DELETE FROM metric_history WHERE network_id = ?1"},
         }) {
      sqlite3_stmt* s = nullptr;
      rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s,
                              nullptr);
      if (rc != SQLITE_OK) return Error(rc, "prepare");
      stmt->reset(s);
    }
    return absl::OkStatus();
  }

  absl::Status Create(const NetworkRecord& record) override {
    absl::StatusOr<EncodedRecord> encoded = EncodeRecord(record);
    if (!encoded.ok()) return encoded.status();
    const EncodedRecord& e = *encoded;
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return CreateLocked(record, e);
    });
  }

  absl::StatusOr<NetworkRecord> Load(absl::string_view id) const override {
    NetworkRecord record;
    std::string state;
    std::string requests;
    try {
      absl::MutexLock lock(&mu_);
      Use q(select_);
      BindText(q.get(), 1, id);
      int rc = sqlite3_step(q.get());
      if (rc == SQLITE_DONE) return NotFound(id);
      if (rc != SQLITE_ROW)
        return Error(rc, absl::StrCat("read networks/", id));
      record.create_time =
          absl::FromUnixNanos(sqlite3_column_int64(q.get(), 0));
      record.update_time =
          absl::FromUnixNanos(sqlite3_column_int64(q.get(), 1));
      state = ColumnBlob(q.get(), 2);
      requests = ColumnBlob(q.get(), 3);
      record.revision = sqlite3_column_int64(q.get(), 4);
    } catch (const std::bad_alloc&) {
      return OutOfMemory(id);
    }
    // Decoded outside the lock: other callers need not wait for it.
    try {
      record.id = std::string(id);
      absl::StatusOr<engine::NetworkState> decoded = DecodeNetworkState(state);
      if (!decoded.ok()) return Damaged(id, decoded.status());
      record.state = *std::move(decoded);
      absl::StatusOr<std::vector<RequestRecord>> reqs =
          DecodeRequests(requests);
      if (!reqs.ok()) return Damaged(id, reqs.status());
      record.requests = *std::move(reqs);
    } catch (const std::bad_alloc&) {
      return OutOfMemory(id);
    }
    return record;
  }

  absl::StatusOr<std::vector<NetworkSummary>> List(absl::string_view after,
                                                   int limit) const override {
    std::vector<NetworkSummary> page;
    // SQLite reads a negative LIMIT as none.
    if (limit <= 0) return page;
    struct Row {
      NetworkSummary summary;
      std::string spec;
    };
    std::vector<Row> rows;
    {
      absl::MutexLock lock(&mu_);
      Use q(list_);
      BindText(q.get(), 1, after);
      sqlite3_bind_int(q.get(), 2, limit);
      int rc;
      while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
        Row row;
        const unsigned char* id = sqlite3_column_text(q.get(), 0);
        row.summary.id.assign(
            reinterpret_cast<const char*>(id),
            static_cast<size_t>(sqlite3_column_bytes(q.get(), 0)));
        row.summary.create_time =
            absl::FromUnixNanos(sqlite3_column_int64(q.get(), 1));
        row.summary.update_time =
            absl::FromUnixNanos(sqlite3_column_int64(q.get(), 2));
        row.summary.step = sqlite3_column_int64(q.get(), 3);
        row.summary.samples_seen = sqlite3_column_int64(q.get(), 4);
        row.spec = ColumnBlob(q.get(), 5);
        rows.push_back(std::move(row));
      }
      if (rc != SQLITE_DONE) return Error(rc, "list networks");
    }
    for (Row& row : rows) {
      absl::StatusOr<engine::NetworkSpec> spec = DecodeNetworkSpec(row.spec);
      if (!spec.ok()) return Damaged(row.summary.id, spec.status());
      row.summary.spec = *std::move(spec);
      page.push_back(std::move(row.summary));
    }
    return page;
  }

  absl::Status Commit(const NetworkRecord& record) override {
    absl::StatusOr<EncodedRecord> encoded = EncodeRecord(record);
    if (!encoded.ok()) return encoded.status();
    const EncodedRecord& e = *encoded;
    absl::MutexLock lock(&mu_);
    {
      Use q(update_);
      BindRecord(q.get(), record, e);
      sqlite3_bind_int64(q.get(), 9, record.revision);
      int rc = sqlite3_step(q.get());
      if (rc != SQLITE_DONE) {
        return Error(rc, absl::StrCat("write networks/", record.id));
      }
      if (sqlite3_changes(db_) > 0) return absl::OkStatus();
    }
    // No row matched: absent, deleted and created again since this record
    // was loaded (a different create_time), or committed by another writer.
    absl::StatusOr<NetworkVersion> stored = VersionLocked(record.id);
    if (!stored.ok()) return stored.status();
    if (stored->create_time != record.create_time) return NotFound(record.id);
    return StaleRevisionError(record.id, record.revision - 1, stored->revision);
  }

  absl::StatusOr<NetworkVersion> Version(absl::string_view id) const override {
    absl::MutexLock lock(&mu_);
    return VersionLocked(id);
  }

  absl::Status Delete(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    Use q(delete_);
    BindText(q.get(), 1, id);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) {
      return Error(rc, absl::StrCat("delete networks/", id));
    }
    if (sqlite3_changes(db_) == 0) return NotFound(id);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Count() const override {
    absl::MutexLock lock(&mu_);
    return CountLocked();
  }

  bool durable() const override { return true; }

  // ExperimentStore.

  absl::Status CreateExperiment(const ExperimentRecord& record) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return CreateExperimentLocked(record);
    });
  }

  absl::StatusOr<ExperimentRecord> LoadExperiment(
      absl::string_view id) const override {
    absl::MutexLock lock(&mu_);
    Use q(exp_select_);
    BindText(q.get(), 1, id);
    int rc = sqlite3_step(q.get());
    if (rc == SQLITE_DONE) return ExperimentNotFound(id);
    if (rc != SQLITE_ROW) {
      return Error(rc, absl::StrCat("read experiments/", id));
    }
    return ExperimentRow(q.get());
  }

  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      absl::string_view after, int limit) const override {
    std::vector<ExperimentRecord> page;
    if (limit <= 0) return page;
    absl::MutexLock lock(&mu_);
    Use q(exp_list_);
    BindText(q.get(), 1, after);
    sqlite3_bind_int(q.get(), 2, limit);
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
      page.push_back(ExperimentRow(q.get()));
    }
    if (rc != SQLITE_DONE) return Error(rc, "list experiments");
    return page;
  }

  absl::Status UpdateExperiment(const ExperimentRecord& record) override {
    absl::MutexLock lock(&mu_);
    Use q(exp_update_);
    BindText(q.get(), 1, record.id);
    sqlite3_bind_int64(q.get(), 2, absl::ToUnixNanos(record.create_time));
    sqlite3_bind_int(q.get(), 3, record.status);
    BindBlob(q.get(), 4, record.curves);
    BindBlob(q.get(), 5, record.summary);
    sqlite3_bind_int64(q.get(), 6, absl::ToUnixNanos(record.update_time));
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) {
      return Error(rc, absl::StrCat("write experiments/", record.id));
    }
    if (sqlite3_changes(db_) == 0) return ExperimentNotFound(record.id);
    return absl::OkStatus();
  }

  absl::Status DeleteExperiment(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return DeleteExperimentLocked(id);
    });
  }

  // Experiment claims (table experiment_claims, this process's clock).

  absl::Status OfferExperimentUnits(absl::string_view id, int variants,
                                    absl::string_view owner,
                                    absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const std::string what =
        absl::StrCat("offer the units of experiments/", id);
    const int64_t expires = absl::ToUnixMicros(absl::Now() + ttl);
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      absl::Status s =
          RunLocked("DELETE FROM experiment_claims WHERE experiment_id = ?1",
                    what, [&](sqlite3_stmt* q) { BindText(q, 1, id); });
      for (int32_t u = kCoordinatorUnit; u < variants && s.ok(); ++u) {
        s = RunLocked(
            "INSERT INTO experiment_claims (experiment_id, unit, owner, "
            "expires_us) VALUES (?1, ?2, ?3, ?4)",
            what, [&](sqlite3_stmt* q) {
              BindText(q, 1, id);
              sqlite3_bind_int(q, 2, u);
              BindText(q, 3, u == kCoordinatorUnit ? owner : "");
              sqlite3_bind_int64(q, 4, u == kCoordinatorUnit ? expires : 0);
            });
      }
      return s;
    });
  }

  absl::StatusOr<ExperimentUnit> ClaimExperimentUnit(
      absl::string_view id, int32_t unit, absl::string_view owner,
      absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    std::optional<ExperimentUnit> claimed;
    absl::Status s = RunLocked(
        "UPDATE experiment_claims SET owner = ?3, expires_us = ?4 WHERE "
        "experiment_id = ?1 AND unit = ?2 AND (owner = ?3 OR expires_us <= "
        "?5) RETURNING experiment_id, unit, owner, expires_us, done",
        absl::StrCat("claim unit ", unit, " of experiments/", id),
        [&](sqlite3_stmt* q) {
          BindText(q, 1, id);
          sqlite3_bind_int(q, 2, unit);
          BindText(q, 3, owner);
          sqlite3_bind_int64(q, 4, absl::ToUnixMicros(now + ttl));
          sqlite3_bind_int64(q, 5, absl::ToUnixMicros(now));
        },
        [&](sqlite3_stmt* q) { claimed = UnitRow(q); });
    if (!s.ok()) return s;
    if (claimed.has_value()) return *std::move(claimed);
    return HeldOrGoneLocked(id, unit);
  }

  absl::StatusOr<std::optional<ExperimentUnit>> ClaimFreeExperimentUnit(
      absl::string_view owner, absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    std::optional<ExperimentUnit> claimed;
    absl::Status s = RunLocked(
        "UPDATE experiment_claims SET owner = ?1, expires_us = ?2 WHERE "
        "rowid = (SELECT rowid FROM experiment_claims WHERE done = 0 AND "
        "expires_us <= ?3 ORDER BY experiment_id, unit LIMIT 1) RETURNING "
        "experiment_id, unit, owner, expires_us, done",
        "claim a free experiment unit",
        [&](sqlite3_stmt* q) {
          BindText(q, 1, owner);
          sqlite3_bind_int64(q, 2, absl::ToUnixMicros(now + ttl));
          sqlite3_bind_int64(q, 3, absl::ToUnixMicros(now));
        },
        [&](sqlite3_stmt* q) { claimed = UnitRow(q); });
    if (!s.ok()) return s;
    return claimed;
  }

  absl::Status ReportExperimentUnit(absl::string_view id, int32_t unit,
                                    absl::string_view owner, absl::Duration ttl,
                                    absl::string_view progress,
                                    bool done) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    absl::Status s = RunLocked(
        "UPDATE experiment_claims SET expires_us = ?4, progress = ?5, done = "
        "?6 WHERE experiment_id = ?1 AND unit = ?2 AND owner = ?3",
        absl::StrCat("report unit ", unit, " of experiments/", id),
        [&](sqlite3_stmt* q) {
          BindText(q, 1, id);
          sqlite3_bind_int(q, 2, unit);
          BindText(q, 3, owner);
          sqlite3_bind_int64(q, 4, absl::ToUnixMicros(now + ttl));
          BindBlob(q, 5, progress);
          sqlite3_bind_int(q, 6, done ? 1 : 0);
        });
    if (!s.ok()) return s;
    if (sqlite3_changes(db_) == 1) return absl::OkStatus();
    return HeldOrGoneLocked(id, unit).status();
  }

  absl::Status ReleaseExperimentUnit(absl::string_view id, int32_t unit,
                                     absl::string_view owner) override {
    absl::MutexLock lock(&mu_);
    return RunLocked(
        "UPDATE experiment_claims SET expires_us = 0 WHERE experiment_id = ?1 "
        "AND unit = ?2 AND owner = ?3",
        absl::StrCat("release unit ", unit, " of experiments/", id),
        [&](sqlite3_stmt* q) {
          BindText(q, 1, id);
          sqlite3_bind_int(q, 2, unit);
          BindText(q, 3, owner);
        });
  }

  absl::StatusOr<std::vector<ExperimentUnit>> ListExperimentUnits(
      absl::string_view id) const override {
    std::vector<ExperimentUnit> out;
    absl::MutexLock lock(&mu_);
    absl::Status s = RunLocked(
        "SELECT experiment_id, unit, owner, expires_us, done, progress FROM "
        "experiment_claims WHERE experiment_id = ?1 ORDER BY unit",
        absl::StrCat("read the units of experiments/", id),
        [&](sqlite3_stmt* q) { BindText(q, 1, id); },
        [&](sqlite3_stmt* q) {
          out.push_back(UnitRow(q));
          out.back().progress = ColumnBlob(q, 5);
        });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status DeleteExperimentUnits(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    return RunLocked("DELETE FROM experiment_claims WHERE experiment_id = ?1",
                     absl::StrCat("delete the units of experiments/", id),
                     [&](sqlite3_stmt* q) { BindText(q, 1, id); });
  }

  // MetricHistoryStore.

  absl::Status AppendMetrics(absl::string_view network_id,
                             const std::vector<MetricRecord>& events) override {
    absl::MutexLock lock(&mu_);
    return InTransactionLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return AppendMetricsLocked(network_id, events);
    });
  }

  absl::StatusOr<std::vector<MetricRecord>> ReadMetrics(
      absl::string_view network_id, int64_t from_seq,
      int limit) const override {
    std::vector<MetricRecord> out;
    if (limit <= 0) return out;
    absl::MutexLock lock(&mu_);
    Use q(m_read_);
    BindText(q.get(), 1, network_id);
    sqlite3_bind_int64(q.get(), 2, from_seq);
    sqlite3_bind_int(q.get(), 3, limit);
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
      MetricRecord m;
      m.seq = sqlite3_column_int64(q.get(), 0);
      m.time = absl::FromUnixNanos(sqlite3_column_int64(q.get(), 1));
      m.event = ColumnBlob(q.get(), 2);
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return Error(rc, "read metric history");
    return out;
  }

  absl::Status DeleteMetrics(absl::string_view network_id) override {
    absl::MutexLock lock(&mu_);
    Use q(m_delete_);
    BindText(q.get(), 1, network_id);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) return Error(rc, "delete metric history");
    return absl::OkStatus();
  }

 private:
  // Runs `sql` (prepared per call: the claims are a few statements a
  // second) with `bind`'s values, handing each result row to `row`.
  absl::Status RunLocked(const char* sql, absl::string_view what,
                         const std::function<void(sqlite3_stmt*)>& bind,
                         const std::function<void(sqlite3_stmt*)>& row =
                             nullptr) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
    Stmt q(raw);
    if (rc != SQLITE_OK) return Error(rc, what);
    bind(q.get());
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
      if (row) row(q.get());
    }
    if (rc != SQLITE_DONE) return Error(rc, what);
    return absl::OkStatus();
  }

  // A unit from columns experiment_id, unit, owner, expires_us, done.
  static ExperimentUnit UnitRow(sqlite3_stmt* q) {
    ExperimentUnit u;
    const unsigned char* id = sqlite3_column_text(q, 0);
    u.experiment_id.assign(reinterpret_cast<const char*>(id),
                           static_cast<size_t>(sqlite3_column_bytes(q, 0)));
    u.unit = sqlite3_column_int(q, 1);
    const unsigned char* owner = sqlite3_column_text(q, 2);
    u.owner.assign(reinterpret_cast<const char*>(owner),
                   static_cast<size_t>(sqlite3_column_bytes(q, 2)));
    u.expires = absl::FromUnixMicros(sqlite3_column_int64(q, 3));
    u.done = sqlite3_column_int(q, 4) != 0;
    return u;
  }

  // Why a claim or report changed no row: another owner's claim, or none.
  absl::StatusOr<ExperimentUnit> HeldOrGoneLocked(absl::string_view id,
                                                  int32_t unit) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<ExperimentUnit> found;
    absl::Status s = RunLocked(
        "SELECT experiment_id, unit, owner, expires_us, done FROM "
        "experiment_claims WHERE experiment_id = ?1 AND unit = ?2",
        absl::StrCat("read unit ", unit, " of experiments/", id),
        [&](sqlite3_stmt* q) {
          BindText(q, 1, id);
          sqlite3_bind_int(q, 2, unit);
        },
        [&](sqlite3_stmt* q) { found = UnitRow(q); });
    if (!s.ok()) return s;
    if (!found.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("experiments/", id, " has no unit ", unit,
                       " (it ended, was deleted or started over)"));
    }
    return UnitHeldError(id, unit, found->owner, found->expires);
  }

  static ExperimentRecord ExperimentRow(sqlite3_stmt* s) {
    ExperimentRecord r;
    const unsigned char* id = sqlite3_column_text(s, 0);
    r.id.assign(reinterpret_cast<const char*>(id),
                static_cast<size_t>(sqlite3_column_bytes(s, 0)));
    r.spec = ColumnBlob(s, 1);
    r.status = sqlite3_column_int(s, 2);
    r.curves = ColumnBlob(s, 3);
    r.summary = ColumnBlob(s, 4);
    r.create_time = absl::FromUnixNanos(sqlite3_column_int64(s, 5));
    r.update_time = absl::FromUnixNanos(sqlite3_column_int64(s, 6));
    return r;
  }

  absl::Status AppendMetricsLocked(absl::string_view network_id,
                                   const std::vector<MetricRecord>& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t last = std::numeric_limits<int64_t>::min();
    {
      Use q(m_last_);
      BindText(q.get(), 1, network_id);
      int rc = sqlite3_step(q.get());
      if (rc != SQLITE_ROW) return Error(rc, "read metric history");
      if (sqlite3_column_type(q.get(), 0) != SQLITE_NULL) {
        last = sqlite3_column_int64(q.get(), 0);
      }
    }
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].seq <= last) {
        return absl::InvalidArgumentError(
            absl::StrCat("events[", i, "].seq: expected more than ", last,
                         ", got ", events[i].seq));
      }
      last = events[i].seq;
      Use q(m_insert_);
      BindText(q.get(), 1, network_id);
      sqlite3_bind_int64(q.get(), 2, events[i].seq);
      sqlite3_bind_int64(q.get(), 3, absl::ToUnixNanos(events[i].time));
      BindBlob(q.get(), 4, events[i].event);
      int rc = sqlite3_step(q.get());
      if (rc != SQLITE_DONE) return Error(rc, "write metric history");
    }
    Use q(m_trim_);
    BindText(q.get(), 1, network_id);
    sqlite3_bind_int64(q.get(), 2, options_.metric_history_per_network);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) return Error(rc, "trim metric history");
    return absl::OkStatus();
  }

  static void BindRecord(sqlite3_stmt* s, const NetworkRecord& r,
                         const EncodedRecord& e) {
    BindText(s, 1, r.id);
    sqlite3_bind_int64(s, 2, absl::ToUnixNanos(r.create_time));
    sqlite3_bind_int64(s, 3, absl::ToUnixNanos(r.update_time));
    sqlite3_bind_int64(s, 4, r.state.step);
    sqlite3_bind_int64(s, 5, r.state.samples_seen);
    sqlite3_bind_blob64(s, 6, e.spec.data(), e.spec.size(), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 7, e.state.data(), e.state.size(), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 8, e.requests.data(), e.requests.size(),
                        SQLITE_STATIC);
  }

  absl::Status CreateLocked(const NetworkRecord& record, const EncodedRecord& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    {
      Use q(exists_);
      BindText(q.get(), 1, record.id);
      int rc = sqlite3_step(q.get());
      if (rc == SQLITE_ROW) {
        return absl::AlreadyExistsError(
            absl::StrCat("networks/", record.id, " already exists"));
      }
      if (rc != SQLITE_DONE) {
        return Error(rc, absl::StrCat("read networks/", record.id));
      }
    }
    absl::StatusOr<int64_t> count = CountLocked();
    if (!count.ok()) return count.status();
    if (*count >= options_.max_networks) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server holds its limit of ", options_.max_networks,
                       " networks (--max_networks); delete one first"));
    }
    Use q(insert_);
    BindRecord(q.get(), record, e);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) {
      return Error(rc, absl::StrCat("write networks/", record.id));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<NetworkVersion> VersionLocked(absl::string_view id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Use q(version_);
    BindText(q.get(), 1, id);
    int rc = sqlite3_step(q.get());
    if (rc == SQLITE_DONE) return NotFound(id);
    if (rc != SQLITE_ROW) return Error(rc, absl::StrCat("read networks/", id));
    return NetworkVersion{absl::FromUnixNanos(sqlite3_column_int64(q.get(), 0)),
                          sqlite3_column_int64(q.get(), 1)};
  }

  absl::StatusOr<int64_t> CountLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Use q(count_);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_ROW) return Error(rc, "count networks");
    return sqlite3_column_int64(q.get(), 0);
  }

  // The experiment's row, then its spec's (experiment_specs).
  absl::Status CreateExperimentLocked(const ExperimentRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    {
      Use q(exp_insert_);
      BindText(q.get(), 1, record.id);
      sqlite3_bind_int(q.get(), 2, record.status);
      BindBlob(q.get(), 3, record.curves);
      BindBlob(q.get(), 4, record.summary);
      sqlite3_bind_int64(q.get(), 5, absl::ToUnixNanos(record.create_time));
      sqlite3_bind_int64(q.get(), 6, absl::ToUnixNanos(record.update_time));
      int rc = sqlite3_step(q.get());
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(
            absl::StrCat("experiments/", record.id, " already exists"));
      }
      if (rc != SQLITE_DONE) {
        return Error(rc, absl::StrCat("write experiments/", record.id));
      }
    }
    return RunLocked("INSERT INTO experiment_specs (id, spec) VALUES (?1, ?2)",
                     absl::StrCat("write the spec of experiments/", record.id),
                     [&](sqlite3_stmt* q) {
                       BindText(q, 1, record.id);
                       BindBlob(q, 2, record.spec);
                     });
  }

  absl::Status DeleteExperimentLocked(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    {
      Use q(exp_delete_);
      BindText(q.get(), 1, id);
      int rc = sqlite3_step(q.get());
      if (rc != SQLITE_DONE) {
        return Error(rc, absl::StrCat("delete experiments/", id));
      }
      if (sqlite3_changes(db_) == 0) return ExperimentNotFound(id);
    }
    return RunLocked("DELETE FROM experiment_specs WHERE id = ?1",
                     absl::StrCat("delete the spec of experiments/", id),
                     [&](sqlite3_stmt* q) { BindText(q, 1, id); });
  }

  // Runs `body` in one BEGIN IMMEDIATE ... COMMIT transaction; rolled back
  // whole when `body` or the commit fails.
  absl::Status InTransactionLocked(absl::FunctionRef<absl::Status()> body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (absl::Status s = Step(begin_, "begin a transaction"); !s.ok()) {
      return s;
    }
    absl::Status s = body();
    if (s.ok()) s = Step(commit_, "commit");
    if (!s.ok()) RollbackLocked();
    return s;
  }

  // Ends a failed transaction. SQLite may have rolled it back already
  // (after SQLITE_FULL, for one), so this runs only if one is still open.
  void RollbackLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sqlite3_get_autocommit(db_) == 0) {
      Use q(rollback_);
      sqlite3_step(q.get());
    }
  }

  absl::Status Step(const Stmt& stmt, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Use q(stmt);
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_DONE) return Error(rc, what);
    return absl::OkStatus();
  }

  // Only at open, before other threads can see the store.
  absl::Status Exec(const char* sql) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(rc, sql);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> QueryInt(const char* sql)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
    Stmt s(raw);
    if (rc != SQLITE_OK) return Error(rc, sql);
    rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW) return Error(rc, sql);
    return sqlite3_column_int64(s.get(), 0);
  }

  absl::Status QuickCheck() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &raw, nullptr);
    Stmt s(raw);
    if (rc != SQLITE_OK) return Error(rc, "integrity check");
    std::string problems;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(s.get(), 0);
      std::string line = t == nullptr ? "" : reinterpret_cast<const char*>(t);
      if (line == "ok") continue;
      if (!problems.empty()) problems += "; ";
      problems += line;
    }
    if (rc != SQLITE_DONE) return Error(rc, "integrity check");
    if (!problems.empty()) {
      return absl::DataLossError(absl::StrCat(
          db_path_, " failed its integrity check (", problems,
          "). Restore it from a backup, or move it aside to start empty"));
    }
    return absl::OkStatus();
  }

  absl::Status Migrate(int from) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (from == kSqliteSchemaVersion) return absl::OkStatus();
    if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    absl::Status s;
    for (int v = from; v < kSqliteSchemaVersion && s.ok(); ++v) {
      s = Exec(kMigrations[v]);
      if (s.ok()) {
        // user_version is part of the transaction: a crash mid-migration
        // leaves the old version and none of its changes.
        s = Exec(absl::StrCat("PRAGMA user_version = ", v + 1).c_str());
      }
    }
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok() && sqlite3_get_autocommit(db_) == 0) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return s;
  }

  absl::Status OutOfMemory(absl::string_view id) const {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server ran out of memory to copy networks/", id,
                     "; nothing changed"));
  }

  absl::Status Damaged(absl::string_view id, const absl::Status& why) const {
    return absl::DataLossError(absl::StrCat("networks/", id, " in ", db_path_,
                                            " is damaged: ", why.message()));
  }

  // A failed SQLite call as a status whose code says what the caller can
  // do: retry later (UNAVAILABLE), free space (RESOURCE_EXHAUSTED), fix the
  // directory (FAILED_PRECONDITION), restore a backup (DATA_LOSS).
  absl::Status Error(int rc, absl::string_view what) const {
    std::string detail = absl::StrCat(
        what, ": ", db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    switch (rc & 0xff) {
      case SQLITE_FULL:
        return absl::ResourceExhaustedError(absl::StrCat(
            "the disk holding --data_dir ", options_.data_dir, " is full (",
            detail, "); nothing changed. Free space there"));
      case SQLITE_TOOBIG:
        return absl::ResourceExhaustedError(
            absl::StrCat("a record is larger than SQLite stores in one value (",
                         detail, "); nothing changed"));
      case SQLITE_READONLY:
      case SQLITE_CANTOPEN:
      case SQLITE_PERM:
      case SQLITE_AUTH:
        return absl::FailedPreconditionError(
            absl::StrCat("cannot write ", db_path_, " (", detail,
                         "); nothing changed. Make --data_dir ",
                         options_.data_dir, " writable or choose another"));
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return absl::UnavailableError(absl::StrCat(
            db_path_, " is busy (", detail, "); nothing changed, retry"));
      case SQLITE_IOERR:
        return absl::UnavailableError(absl::StrCat(
            "I/O error on ", db_path_, " (", detail, "); nothing changed"));
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        return absl::DataLossError(absl::StrCat(
            db_path_, " is corrupt or not a satlab store (", detail,
            "). Restore it from a backup, or move it aside to start empty"));
      case SQLITE_NOMEM:
        return absl::ResourceExhaustedError(
            absl::StrCat("out of memory: ", detail, "; nothing changed"));
      default:
        return absl::InternalError(absl::StrCat(
            "SQLite error on ", db_path_, ": ", detail, "; nothing changed"));
    }
  }

  const SqliteStoreOptions options_;
  const std::string db_path_;
  const int lock_fd_;
  // One connection, used by one caller at a time; only Open() touches it
  // before the store is shared.
  mutable absl::Mutex mu_;
  sqlite3* db_ = nullptr;
  Stmt exists_ ABSL_GUARDED_BY(mu_);
  Stmt insert_ ABSL_GUARDED_BY(mu_);
  Stmt count_ ABSL_GUARDED_BY(mu_);
  Stmt select_ ABSL_GUARDED_BY(mu_);
  Stmt version_ ABSL_GUARDED_BY(mu_);
  Stmt list_ ABSL_GUARDED_BY(mu_);
  Stmt update_ ABSL_GUARDED_BY(mu_);
  Stmt delete_ ABSL_GUARDED_BY(mu_);
  Stmt begin_ ABSL_GUARDED_BY(mu_);
  Stmt commit_ ABSL_GUARDED_BY(mu_);
  Stmt rollback_ ABSL_GUARDED_BY(mu_);
  Stmt exp_insert_ ABSL_GUARDED_BY(mu_);
  Stmt exp_select_ ABSL_GUARDED_BY(mu_);
  Stmt exp_list_ ABSL_GUARDED_BY(mu_);
  Stmt exp_update_ ABSL_GUARDED_BY(mu_);
  Stmt exp_delete_ ABSL_GUARDED_BY(mu_);
  Stmt m_last_ ABSL_GUARDED_BY(mu_);
  Stmt m_insert_ ABSL_GUARDED_BY(mu_);
  Stmt m_trim_ ABSL_GUARDED_BY(mu_);
  Stmt m_read_ ABSL_GUARDED_BY(mu_);
  Stmt m_delete_ ABSL_GUARDED_BY(mu_);
};

std::string Errno(int err) { return std::strerror(err); }

absl::StatusOr<std::unique_ptr<SqliteStore>> OpenStore(
    const SqliteStoreOptions& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError(
        "data_dir: expected a directory, got an empty path");
  }
  if (options.metric_history_per_network < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric_history_per_network: expected at least 1, got ",
                     options.metric_history_per_network));
  }
  const std::string& dir = options.data_dir;
  // Missing parents too: the default (~/.local/state/satlab) must work on
  // a fresh account.
  std::error_code created;
  std::filesystem::create_directories(dir, created);
  if (created) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create --data_dir ", dir, ": ", created.message(),
                     ". Create it, or choose another directory"));
  }
  std::string lock_path = absl::StrCat(dir, "/LOCK");
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", lock_path, ": ", Errno(errno),
                     ". Make --data_dir ", dir, " writable or choose another"));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another satlab-server is using --data_dir ", dir, " (", lock_path,
          " is locked). Stop it, or choose another directory"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot lock ", lock_path, ": ", Errno(err)));
  }
  // The lock is held from here until the store is destroyed (the fd closes).
  auto store = std::make_unique<SqliteStore>(
      options, absl::StrCat(dir, "/satlab.db"), fd);
  if (absl::Status s = store->Open(); !s.ok()) return s;
  return store;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NetworkStore>> NewSqliteStore(
    const SqliteStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenStore(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<NetworkStore>(*std::move(store));
}

absl::StatusOr<SqliteStores> OpenSqliteStores(
    const SqliteStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = OpenStore(options);
  if (!store.ok()) return store.status();
  std::shared_ptr<SqliteStore> shared = *std::move(store);
  return SqliteStores{shared, shared, shared};
}

}  // namespace satlab::store
