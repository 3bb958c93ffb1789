#include "server/store/postgres_store.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "server/store/codec.h"

namespace satlab::store {
namespace {

// Schema migrations: kMigrations[i] takes the database from version i to
// i + 1 (table satlab_schema). Applied at open under kMigrationLock, in one
// transaction; append, never edit.
//
// Version 1: the SQLite store's version 1 in PostgreSQL's types. Ids
// compare as bytes (COLLATE "C"), so listings page in the same order as
// SQLite's whatever the database's locale. The state and request frames
// are stored out of line uncompressed (STORAGE EXTERNAL): float tensors do
// not compress, and pglz trying cost a 3 MB Commit 15x its time
// (docs/notes/pg.md).
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE networks (
  id TEXT COLLATE "C" PRIMARY KEY,
  create_time_ns BIGINT NOT NULL,
  update_time_ns BIGINT NOT NULL,
  step BIGINT NOT NULL,
  samples_seen BIGINT NOT NULL,
  spec BYTEA NOT NULL,
  state BYTEA NOT NULL,
  requests BYTEA NOT NULL
);
CREATE TABLE metric_history (
  network_id TEXT COLLATE "C" NOT NULL,
  seq BIGINT NOT NULL,
  time_ns BIGINT NOT NULL,
  event BYTEA NOT NULL,
  PRIMARY KEY (network_id, seq)
);
CREATE TABLE experiments (
  id TEXT COLLATE "C" PRIMARY KEY,
  spec BYTEA NOT NULL,
  status INTEGER NOT NULL,
  curves BYTEA NOT NULL,
  summary BYTEA NOT NULL,
  create_time_ns BIGINT NOT NULL,
  update_time_ns BIGINT NOT NULL
);
ALTER TABLE networks ALTER COLUMN state SET STORAGE EXTERNAL;
ALTER TABLE networks ALTER COLUMN requests SET STORAGE EXTERNAL;
)sql",
    // Version 2: writer leases (WriterLeaseStore), on the database
    // server's clock so replicas' clocks need not agree.
    R"sql(
CREATE TABLE writer_leases (
  network_id TEXT COLLATE "C" PRIMARY KEY,
  owner TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
)sql",
    // Version 3: each network's revision (NetworkRecord::revision), so a
    // replica's commit never overwrites one another replica made since it
    // read the network.
    R"sql(
ALTER TABLE networks ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
)sql",
    // Version 4: experiment claims (ExperimentStore's units), on the
    // database server's clock. A free unit expires at the epoch.
    R"sql(
CREATE TABLE experiment_claims (
  experiment_id TEXT COLLATE "C" NOT NULL,
  unit INTEGER NOT NULL,
  owner TEXT NOT NULL DEFAULT '',
  expires_at TIMESTAMPTZ NOT NULL DEFAULT to_timestamp(0),
  done BOOLEAN NOT NULL DEFAULT FALSE,
  progress BYTEA NOT NULL DEFAULT '',
  PRIMARY KEY (experiment_id, unit)
);
ALTER TABLE experiment_claims ALTER COLUMN progress SET STORAGE EXTERNAL;
)sql",
    // Version 5 (issue 14 item 5): the metric feed (MetricFeed).
    // Published events take their seq from one sequence, started above
    // every seq stored so far, so a reader's cursor orders all replicas'
    // events; `origin` names the publishing process; deletions are rows of
    // their own (the network's history rows go); metric_publishers makes a
    // retried publish skip what an earlier attempt committed.
    R"sql(
CREATE SEQUENCE metric_feed_seq;
SELECT setval('metric_feed_seq',
              GREATEST(1, (SELECT COALESCE(MAX(seq), 0) FROM metric_history)));
ALTER TABLE metric_history ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE INDEX metric_history_by_seq ON metric_history (seq);
CREATE TABLE metric_deletions (
  seq BIGINT PRIMARY KEY,
  network_id TEXT COLLATE "C" NOT NULL,
  origin TEXT NOT NULL,
  time_ns BIGINT NOT NULL
);
CREATE TABLE metric_publishers (
  origin TEXT PRIMARY KEY,
  last_seq BIGINT NOT NULL,
  update_time_ns BIGINT NOT NULL
);
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) ==
              kPostgresSchemaVersion);

// Advisory lock keys (one 64-bit space per database, shared with anything
// else that uses advisory locks there): "satlabM1" held by the session that
// migrates, "satlabC1" by the transaction that creates a network, so that
// --max_networks holds across replicas.
constexpr int64_t kMigrationLock = 0x7361746c61624d31;
constexpr int64_t kCreateLock = 0x7361746c61624331;
// "satlabF1": held by the transaction that publishes metric events, so
// that feed seqs become visible in increasing order (a reader that saw seq
// N committed never later finds a smaller one).
constexpr int64_t kFeedLock = 0x7361746c61624631;
// The channel Publish notifies (payload: the last seq published).
constexpr char kFeedChannel[] = "satlab_metrics";
// Deletion rows kept for readers that fall behind.
constexpr int64_t kFeedDeletionsKept = 10000;
// Events per INSERT statement of a publish (5 parameters each; PostgreSQL
// takes at most 65535 per statement).
constexpr size_t kFeedRowsPerInsert = 500;

// Type OIDs of the parameters (pg_type.h is a server header; these never
// change).
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// A statement's parameters, all sent in binary format: integers big-endian,
// text and bytea as their bytes. Views point into the caller's strings,
// which must outlive the statement.
class Params {
 public:
  Params& Text(absl::string_view v) { return View(kTextOid, v); }
  Params& Bytes(absl::string_view v) { return View(kByteaOid, v); }
  Params& Int64(int64_t v) {
    std::string be(8, '\0');
    for (int i = 0; i < 8; ++i) {
      be[i] = static_cast<char>(static_cast<uint64_t>(v) >> (56 - 8 * i));
    }
    params_.push_back({kInt8Oid, std::move(be), {}, true});
    return *this;
  }
  Params& Int32(int32_t v) {
    std::string be(4, '\0');
    for (int i = 0; i < 4; ++i) {
      be[i] = static_cast<char>(static_cast<uint32_t>(v) >> (24 - 8 * i));
    }
    params_.push_back({kInt4Oid, std::move(be), {}, true});
    return *this;
  }

  PGresult* Run(PGconn* conn, const char* sql) const {
    std::vector<Oid> types;
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
    for (const Param& p : params_) {
      absl::string_view v = p.owned ? absl::string_view(p.bytes) : p.view;
      types.push_back(p.type);
      // A null pointer would send SQL NULL; the columns are NOT NULL.
      values.push_back(v.data() == nullptr ? "" : v.data());
      lengths.push_back(static_cast<int>(v.size()));
      formats.push_back(1);
    }
    return PQexecParams(conn, sql, static_cast<int>(params_.size()),
                        types.data(), values.data(), lengths.data(),
                        formats.data(), /*resultFormat=*/1);
  }

 private:
  struct Param {
    Oid type;
    std::string bytes;
    absl::string_view view;
    bool owned;
  };
  Params& View(Oid type, absl::string_view v) {
    params_.push_back({type, {}, v, false});
    return *this;
  }
  std::vector<Param> params_;
};

// Binary-format result values.
absl::string_view Value(const PGresult* r, int row, int col) {
  return absl::string_view(PQgetvalue(r, row, col),
                           static_cast<size_t>(PQgetlength(r, row, col)));
}
int64_t Int64At(const PGresult* r, int row, int col) {
  const auto* p =
      reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return static_cast<int64_t>(v);
}
int32_t Int32At(const PGresult* r, int row, int col) {
  const auto* p =
      reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
  return static_cast<int32_t>(v);
}
int64_t RowsChanged(const PGresult* r) {
  const char* n = PQcmdTuples(const_cast<PGresult*>(r));
  return n == nullptr || *n == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

absl::Status NotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("networks/", id, " not found"));
}
absl::Status ExperimentNotFound(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("experiments/", id, " not found"));
}

std::string Trimmed(const char* message) {
  return std::string(
      absl::StripTrailingAsciiWhitespace(message == nullptr ? "" : message));
}

// host:port/dbname of a connection URI, for messages (never the password).
absl::StatusOr<std::string> Describe(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string why = error != nullptr ? Trimmed(error) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("--store: expected a PostgreSQL connection URI ",
                     "(postgresql://user@host:port/database), got one libpq ",
                     "cannot read: ", why));
  }
  std::string host = "localhost", port = "5432", db;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    if (std::strcmp(o->keyword, "host") == 0) host = o->val;
    if (std::strcmp(o->keyword, "port") == 0) port = o->val;
    if (std::strcmp(o->keyword, "dbname") == 0) db = o->val;
  }
  PQconninfoFree(options);
  return absl::StrCat("postgresql://", host, ":", port, "/", db);
}

// A connection to options.url with the store's timeouts (keepalives,
// tcp_user_timeout), its notices silenced. UNAVAILABLE naming `where`.
absl::StatusOr<PGconn*> Connect(const PostgresStoreOptions& options,
                                absl::string_view where,
                                const char* application_name) {
  const std::string timeout = absl::StrCat(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.connect_timeout)));
  // A server that vanishes mid-statement (a cut network, a dead machine:
  // no RST) fails the call after io_timeout instead of hanging it for the
  // kernel's ~15 minutes: TCP keepalives on an idle wait, and
  // tcp_user_timeout on unacknowledged data.
  const int64_t io_ms =
      std::max<int64_t>(1000, absl::ToInt64Milliseconds(options.io_timeout));
  const std::string user_timeout = absl::StrCat(io_ms);
  const std::string idle = absl::StrCat(std::max<int64_t>(1, io_ms / 3000));
  // Later entries override earlier ones, so the URL's own settings win.
  const char* keywords[] = {"connect_timeout",
                            "application_name",
                            "keepalives",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "tcp_user_timeout",
                            "dbname",
                            nullptr};
  const char* values[] = {timeout.c_str(),      application_name,    "1",
                          idle.c_str(),         idle.c_str(),        "2",
                          user_timeout.c_str(), options.url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "out of memory connecting to the PostgreSQL store ", where));
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat(
        "the PostgreSQL store ", where,
        " is unavailable (cannot connect: ", why, "); nothing changed, retry"));
  }
  // libpq prints the server's notices (a table that already exists, the
  // notice of a shutdown) on stderr; what matters reaches the caller as
  // a status instead.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return conn;
}

class PostgresStore final : public NetworkStore,
                            public ExperimentStore,
                            public MetricHistoryStore,
                            public WriterLeaseStore {
 public:
  PostgresStore(PostgresStoreOptions options, std::string where)
      : options_(std::move(options)), where_(std::move(where)) {}

  ~PostgresStore() override {
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr) PQfinish(conn_);
  }

  absl::Status Open() {
    absl::MutexLock lock(&mu_);
    absl::Status s = MigrateLocked();
    if (!s.ok() && conn_ != nullptr) {
      // Ends the session: its transaction rolls back, its lock is released.
      PQfinish(conn_);
      conn_ = nullptr;
    }
    return s;
  }

  absl::Status Create(const NetworkRecord& record) override {
    absl::StatusOr<EncodedRecord> encoded = EncodeRecord(record);
    if (!encoded.ok()) return encoded.status();
    const EncodedRecord& e = *encoded;
    absl::MutexLock lock(&mu_);
    return TransactionLocked(
        absl::StrCat("write networks/", record.id),
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          absl::StatusOr<Result> r = ExecLocked(
              "lock network creation", "SELECT pg_advisory_xact_lock($1)",
              Params().Int64(kCreateLock), false);
          if (!r.ok()) return r.status();
          r = ExecLocked(absl::StrCat("read networks/", record.id),
                         "SELECT 1 FROM networks WHERE id = $1",
                         Params().Text(record.id), false);
          if (!r.ok()) return r.status();
          if (PQntuples(r->get()) > 0) {
            return absl::AlreadyExistsError(
                absl::StrCat("networks/", record.id, " already exists"));
          }
          r = ExecLocked("count networks", "SELECT COUNT(*) FROM networks",
                         Params(), false);
          if (!r.ok()) return r.status();
          if (Int64At(r->get(), 0, 0) >= options_.max_networks) {
            return absl::ResourceExhaustedError(absl::StrCat(
                "the server holds its limit of ", options_.max_networks,
                " networks (--max_networks); delete one first"));
          }
          Params p;
          BindRecord(p, record, e);
          r = ExecLocked(absl::StrCat("write networks/", record.id),
                         "INSERT INTO networks (id, create_time_ns, "
                         "update_time_ns, step, samples_seen, spec, state, "
                         "requests) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                         p, false);
          return r.status();
        });
  }

  absl::StatusOr<NetworkRecord> Load(absl::string_view id) const override {
    absl::StatusOr<Result> r;
    {
      absl::MutexLock lock(&mu_);
      r = ExecLocked(absl::StrCat("read networks/", id),
                     "SELECT create_time_ns, update_time_ns, state, requests, "
                     "revision FROM networks WHERE id = $1",
                     Params().Text(id), true);
    }
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    if (PQntuples(res) == 0) return NotFound(id);
    // Decoded outside the lock: other callers need not wait for it.
    try {
      NetworkRecord record;
      record.id = std::string(id);
      record.create_time = absl::FromUnixNanos(Int64At(res, 0, 0));
      record.update_time = absl::FromUnixNanos(Int64At(res, 0, 1));
      absl::StatusOr<engine::NetworkState> state =
          DecodeNetworkState(Value(res, 0, 2));
      if (!state.ok()) return Damaged(id, state.status());
      record.state = *std::move(state);
      absl::StatusOr<std::vector<RequestRecord>> requests =
          DecodeRequests(Value(res, 0, 3));
      if (!requests.ok()) return Damaged(id, requests.status());
      record.requests = *std::move(requests);
      record.revision = Int64At(res, 0, 4);
      return record;
    } catch (const std::bad_alloc&) {
      return OutOfMemory(id);
    }
  }

  absl::StatusOr<std::vector<NetworkSummary>> List(absl::string_view after,
                                                   int limit) const override {
    std::vector<NetworkSummary> page;
    if (limit <= 0) return page;
    absl::StatusOr<Result> r;
    {
      absl::MutexLock lock(&mu_);
      r = ExecLocked("list networks",
                     "SELECT id, create_time_ns, update_time_ns, step, "
                     "samples_seen, spec FROM networks WHERE id > $1 "
                     "ORDER BY id LIMIT $2",
                     Params().Text(after).Int64(limit), true);
    }
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    for (int i = 0; i < PQntuples(res); ++i) {
      NetworkSummary s;
      s.id = std::string(Value(res, i, 0));
      s.create_time = absl::FromUnixNanos(Int64At(res, i, 1));
      s.update_time = absl::FromUnixNanos(Int64At(res, i, 2));
      s.step = Int64At(res, i, 3);
      s.samples_seen = Int64At(res, i, 4);
      absl::StatusOr<engine::NetworkSpec> spec =
          DecodeNetworkSpec(Value(res, i, 5));
      if (!spec.ok()) return Damaged(s.id, spec.status());
      s.spec = *std::move(spec);
      page.push_back(std::move(s));
    }
    return page;
  }

  absl::Status Commit(const NetworkRecord& record) override {
    absl::StatusOr<EncodedRecord> encoded = EncodeRecord(record);
    if (!encoded.ok()) return encoded.status();
    const EncodedRecord& e = *encoded;
    Params p;
    BindRecord(p, record, e);
    p.Int64(record.revision);
    absl::MutexLock lock(&mu_);
    // One statement: atomic by itself. A retry after a lost connection
    // repeats it; if the first attempt had been applied, the row is then
    // at this revision with this record's update time: found below.
    absl::StatusOr<Result> r =
        ExecLocked(absl::StrCat("write networks/", record.id),
                   "UPDATE networks SET update_time_ns = $3, step = $4, "
                   "samples_seen = $5, spec = $6, state = $7, requests = $8, "
                   "revision = $9 WHERE id = $1 AND create_time_ns = $2 "
                   "AND revision = $9 - 1",
                   p, true);
    if (!r.ok()) return r.status();
    if (RowsChanged(r->get()) > 0) return absl::OkStatus();
    // No row matched: absent, deleted and created again since this record
    // was loaded (a different create_time), or committed by another
    // replica since (a later revision).
    absl::StatusOr<Result> v = ExecLocked(
        absl::StrCat("read networks/", record.id),
        "SELECT create_time_ns, revision, update_time_ns FROM networks "
        "WHERE id = $1",
        Params().Text(record.id), true);
    if (!v.ok()) return v.status();
    const PGresult* res = v->get();
    if (PQntuples(res) == 0 ||
        Int64At(res, 0, 0) != absl::ToUnixNanos(record.create_time)) {
      return NotFound(record.id);
    }
    if (Int64At(res, 0, 1) == record.revision &&
        Int64At(res, 0, 2) == absl::ToUnixNanos(record.update_time)) {
      return absl::OkStatus();  // this commit, applied by the first attempt
    }
    return StaleRevisionError(record.id, record.revision - 1,
                              Int64At(res, 0, 1));
  }

  absl::StatusOr<NetworkVersion> Version(absl::string_view id) const override {
    absl::StatusOr<Result> r;
    {
      absl::MutexLock lock(&mu_);
      r = ExecLocked(absl::StrCat("read networks/", id),
                     "SELECT create_time_ns, revision FROM networks "
                     "WHERE id = $1",
                     Params().Text(id), true);
    }
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return NotFound(id);
    return NetworkVersion{absl::FromUnixNanos(Int64At(r->get(), 0, 0)),
                          Int64At(r->get(), 0, 1)};
  }

  absl::Status Delete(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(absl::StrCat("delete networks/", id),
                                          "DELETE FROM networks WHERE id = $1",
                                          Params().Text(id), false);
    if (!r.ok()) return r.status();
    if (RowsChanged(r->get()) == 0) return NotFound(id);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> Count() const override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        "count networks", "SELECT COUNT(*) FROM networks", Params(), true);
    if (!r.ok()) return r.status();
    return Int64At(r->get(), 0, 0);
  }

  bool durable() const override { return true; }
  bool shared() const override { return true; }

  // ExperimentStore.

  absl::Status CreateExperiment(const ExperimentRecord& record) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        absl::StrCat("write experiments/", record.id),
        "INSERT INTO experiments (id, spec, status, curves, summary, "
        "create_time_ns, update_time_ns) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        Params()
            .Text(record.id)
            .Bytes(record.spec)
            .Int32(record.status)
            .Bytes(record.curves)
            .Bytes(record.summary)
            .Int64(absl::ToUnixNanos(record.create_time))
            .Int64(absl::ToUnixNanos(record.update_time)),
        false);
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(
          absl::StrCat("experiments/", record.id, " already exists"));
    }
    return r.status();
  }

  absl::StatusOr<ExperimentRecord> LoadExperiment(
      absl::string_view id) const override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r =
        ExecLocked(absl::StrCat("read experiments/", id),
                   "SELECT id, spec, status, curves, summary, create_time_ns, "
                   "update_time_ns FROM experiments WHERE id = $1",
                   Params().Text(id), true);
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return ExperimentNotFound(id);
    return ExperimentRow(r->get(), 0);
  }

  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      absl::string_view after, int limit) const override {
    std::vector<ExperimentRecord> page;
    if (limit <= 0) return page;
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        "list experiments",
        "SELECT id, spec, status, curves, summary, create_time_ns, "
        "update_time_ns FROM experiments WHERE id > $1 ORDER BY id LIMIT $2",
        Params().Text(after).Int64(limit), true);
    if (!r.ok()) return r.status();
    for (int i = 0; i < PQntuples(r->get()); ++i) {
      page.push_back(ExperimentRow(r->get(), i));
    }
    return page;
  }

  absl::Status UpdateExperiment(const ExperimentRecord& record) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r =
        ExecLocked(absl::StrCat("write experiments/", record.id),
                   "UPDATE experiments SET status = $3, curves = $4, "
                   "summary = $5, update_time_ns = $6 WHERE id = $1 AND "
                   "create_time_ns = $2",
                   Params()
                       .Text(record.id)
                       .Int64(absl::ToUnixNanos(record.create_time))
                       .Int32(record.status)
                       .Bytes(record.curves)
                       .Bytes(record.summary)
                       .Int64(absl::ToUnixNanos(record.update_time)),
                   true);
    if (!r.ok()) return r.status();
    if (RowsChanged(r->get()) == 0) return ExperimentNotFound(record.id);
    return absl::OkStatus();
  }

  absl::Status DeleteExperiment(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        absl::StrCat("delete experiments/", id),
        "DELETE FROM experiments WHERE id = $1", Params().Text(id), false);
    if (!r.ok()) return r.status();
    if (RowsChanged(r->get()) == 0) return ExperimentNotFound(id);
    return absl::OkStatus();
  }

  // Experiment claims (table experiment_claims, the server's clock).

  absl::Status OfferExperimentUnits(absl::string_view id, int variants,
                                    absl::string_view owner,
                                    absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const std::string what =
        absl::StrCat("offer the units of experiments/", id);
    absl::MutexLock lock(&mu_);
    return TransactionLocked(
        what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          absl::StatusOr<Result> r = ExecLocked(
              what, "DELETE FROM experiment_claims WHERE experiment_id = $1",
              Params().Text(id), false);
          if (!r.ok()) return r.status();
          r = ExecLocked(
              what,
              "INSERT INTO experiment_claims (experiment_id, unit, owner, "
              "expires_at) VALUES ($1, -1, $2, clock_timestamp() + $3 * "
              "interval '1 microsecond')",
              Params().Text(id).Text(owner).Int64(
                  absl::ToInt64Microseconds(ttl)),
              false);
          if (!r.ok()) return r.status();
          return ExecLocked(what,
                            "INSERT INTO experiment_claims (experiment_id, "
                            "unit) SELECT $1, generate_series(0, $2 - 1)",
                            Params().Text(id).Int32(variants), false)
              .status();
        });
  }

  absl::StatusOr<ExperimentUnit> ClaimExperimentUnit(
      absl::string_view id, int32_t unit, absl::string_view owner,
      absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const std::string what =
        absl::StrCat("claim unit ", unit, " of experiments/", id);
    absl::MutexLock lock(&mu_);
    // One statement takes a free or expired claim or renews our own.
    absl::StatusOr<Result> r = ExecLocked(
        what,
        "UPDATE experiment_claims SET owner = $3, expires_at = "
        "clock_timestamp() + $4 * interval '1 microsecond' WHERE "
        "experiment_id = $1 AND unit = $2 AND (owner = $3 OR expires_at <= "
        "clock_timestamp()) RETURNING experiment_id, unit, owner, "
        "(extract(epoch FROM "
        "expires_at) * 1000000)::bigint, done",
        Params().Text(id).Int32(unit).Text(owner).Int64(
            absl::ToInt64Microseconds(ttl)),
        true);
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 1) return UnitRow(r->get(), 0);
    return HeldOrGoneLocked(id, unit);
  }

  absl::StatusOr<std::optional<ExperimentUnit>> ClaimFreeExperimentUnit(
      absl::string_view owner, absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    // SKIP LOCKED: replicas racing pass over the row another one is
    // taking; the row lock re-checks the condition, so a unit just taken
    // (committed) is not taken twice.
    absl::StatusOr<Result> r = ExecLocked(
        "claim a free experiment unit",
        "UPDATE experiment_claims c SET owner = $1, expires_at = "
        "clock_timestamp() + $2 * interval '1 microsecond' FROM (SELECT "
        "experiment_id, unit FROM experiment_claims WHERE NOT done AND "
        "expires_at <= clock_timestamp() ORDER BY experiment_id, unit LIMIT 1 "
        "FOR UPDATE SKIP LOCKED) f WHERE c.experiment_id = f.experiment_id "
        "AND c.unit = f.unit RETURNING c.experiment_id, c.unit, c.owner, "
        "(extract(epoch FROM c.expires_at) * 1000000)::bigint, c.done",
        Params().Text(owner).Int64(absl::ToInt64Microseconds(ttl)), false);
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) return std::optional<ExperimentUnit>();
    return std::optional<ExperimentUnit>(UnitRow(r->get(), 0));
  }

  absl::Status ReportExperimentUnit(absl::string_view id, int32_t unit,
                                    absl::string_view owner, absl::Duration ttl,
                                    absl::string_view progress,
                                    bool done) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    const std::string what =
        absl::StrCat("report unit ", unit, " of experiments/", id);
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        what,
        "UPDATE experiment_claims SET expires_at = clock_timestamp() + $4 * "
        "interval '1 microsecond', progress = $5, done = $6 <> 0 WHERE "
        "experiment_id = $1 AND unit = $2 AND owner = $3",
        Params()
            .Text(id)
            .Int32(unit)
            .Text(owner)
            .Int64(absl::ToInt64Microseconds(ttl))
            .Bytes(progress)
            .Int32(done ? 1 : 0),
        true);
    if (!r.ok()) return r.status();
    if (RowsChanged(r->get()) == 1) return absl::OkStatus();
    return HeldOrGoneLocked(id, unit).status();
  }

  absl::Status ReleaseExperimentUnit(absl::string_view id, int32_t unit,
                                     absl::string_view owner) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked(
               absl::StrCat("release unit ", unit, " of experiments/", id),
               "UPDATE experiment_claims SET expires_at = to_timestamp(0) "
               "WHERE experiment_id = $1 AND unit = $2 AND owner = $3",
               Params().Text(id).Int32(unit).Text(owner), true)
        .status();
  }

  absl::StatusOr<std::vector<ExperimentUnit>> ListExperimentUnits(
      absl::string_view id) const override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        absl::StrCat("read the units of experiments/", id),
        "SELECT experiment_id, unit, owner, (extract(epoch FROM expires_at) "
        "* 1000000)::bigint, done, progress FROM experiment_claims WHERE "
        "experiment_id = $1 ORDER BY "
        "unit",
        Params().Text(id), true);
    if (!r.ok()) return r.status();
    std::vector<ExperimentUnit> out;
    for (int i = 0; i < PQntuples(r->get()); ++i) {
      out.push_back(UnitRow(r->get(), i));
      out.back().progress = std::string(Value(r->get(), i, 5));
    }
    return out;
  }

  absl::Status DeleteExperimentUnits(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked(absl::StrCat("delete the units of experiments/", id),
                      "DELETE FROM experiment_claims WHERE experiment_id = $1",
                      Params().Text(id), true)
        .status();
  }

  // MetricHistoryStore.

  absl::Status AppendMetrics(absl::string_view network_id,
                             const std::vector<MetricRecord>& events) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked(
        "write metric history",
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          absl::StatusOr<Result> r = ExecLocked(
              "read metric history",
              "SELECT MAX(seq) FROM metric_history WHERE network_id = $1",
              Params().Text(network_id), false);
          if (!r.ok()) return r.status();
          int64_t last = PQgetisnull(r->get(), 0, 0)
                             ? std::numeric_limits<int64_t>::min()
                             : Int64At(r->get(), 0, 0);
          for (size_t i = 0; i < events.size(); ++i) {
            if (events[i].seq <= last) {
              return absl::InvalidArgumentError(
                  absl::StrCat("events[", i, "].seq: expected more than ", last,
                               ", got ", events[i].seq));
            }
            last = events[i].seq;
            r = ExecLocked("write metric history",
                           "INSERT INTO metric_history (network_id, seq, "
                           "time_ns, event) VALUES ($1, $2, $3, $4)",
                           Params()
                               .Text(network_id)
                               .Int64(events[i].seq)
                               .Int64(absl::ToUnixNanos(events[i].time))
                               .Bytes(events[i].event),
                           false);
            if (!r.ok()) return r.status();
          }
          // Drops every event at or below the (bound+1)-th newest.
          r = ExecLocked(
              "trim metric history",
              "DELETE FROM metric_history WHERE network_id = $1 AND seq <= "
              "(SELECT seq FROM metric_history WHERE network_id = $1 "
              "ORDER BY seq DESC LIMIT 1 OFFSET $2)",
              Params()
                  .Text(network_id)
                  .Int64(options_.metric_history_per_network),
              false);
          return r.status();
        });
  }

  absl::StatusOr<std::vector<MetricRecord>> ReadMetrics(
      absl::string_view network_id, int64_t from_seq,
      int limit) const override {
    std::vector<MetricRecord> out;
    if (limit <= 0) return out;
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = ExecLocked(
        "read metric history",
        "SELECT seq, time_ns, event FROM metric_history WHERE "
        "network_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        Params().Text(network_id).Int64(from_seq).Int64(limit), true);
    if (!r.ok()) return r.status();
    for (int i = 0; i < PQntuples(r->get()); ++i) {
      MetricRecord m;
      m.seq = Int64At(r->get(), i, 0);
      m.time = absl::FromUnixNanos(Int64At(r->get(), i, 1));
      m.event = std::string(Value(r->get(), i, 2));
      out.push_back(std::move(m));
    }
    return out;
  }

  absl::Status DeleteMetrics(absl::string_view network_id) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked("delete metric history",
                      "DELETE FROM metric_history WHERE network_id = $1",
                      Params().Text(network_id), true)
        .status();
  }

  // MetricFeed::Publish (PostgresMetricFeed reads on a connection of its
  // own; publishing shares the store's). Not retried here; a caller may
  // publish the same entries again after an error: table
  // metric_publishers remembers each origin's last origin_seq published,
  // so what an attempt with an unknown outcome did commit is skipped.
  absl::Status PublishMetrics(absl::string_view origin,
                              const std::vector<FeedEntry>& entries) {
    if (entries.empty()) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    return TransactionLocked(
        "publish metric events",
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          absl::StatusOr<Result> r = ExecLocked(
              "lock the metric feed", "SELECT pg_advisory_xact_lock($1)",
              Params().Int64(kFeedLock), false);
          if (!r.ok()) return r.status();
          r = ExecLocked("read the metric feed's publishers",
                         "SELECT last_seq FROM metric_publishers WHERE "
                         "origin = $1",
                         Params().Text(origin), false);
          if (!r.ok()) return r.status();
          size_t begin = 0;
          if (PQntuples(r->get()) == 1) {
            const int64_t done = Int64At(r->get(), 0, 0);
            while (begin < entries.size() &&
                   entries[begin].origin_seq <= done) {
              ++begin;
            }
          }
          if (begin == entries.size()) return absl::OkStatus();
          // The batch's seqs as one block (no other publisher runs under
          // the lock), so the rows go in multi-row INSERTs: one round trip
          // per kFeedRowsPerInsert events instead of one per event.
          const int64_t n = static_cast<int64_t>(entries.size() - begin);
          r = ExecLocked("number metric events",
                         "SELECT setval('metric_feed_seq', "
                         "nextval('metric_feed_seq') + $1 - 1)",
                         Params().Int64(n), false);
          if (!r.ok()) return r.status();
          const int64_t last = Int64At(r->get(), 0, 0);
          // entries[i] is numbered first + i (i >= begin).
          const int64_t first = last - n + 1 - static_cast<int64_t>(begin);
          bool deletions = false;
          std::vector<absl::string_view> trimmed;
          // Step events [from, to) of `entries`, inserted in chunks.
          auto insert = [&](size_t from, size_t to)
                            ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
            for (size_t chunk = from; chunk < to; chunk += kFeedRowsPerInsert) {
              const size_t stop = std::min(to, chunk + kFeedRowsPerInsert);
              std::string sql =
                  "INSERT INTO metric_history (network_id, seq, time_ns, "
                  "event, origin) VALUES ";
              Params p;
              for (size_t i = chunk; i < stop; ++i) {
                const int k = static_cast<int>(5 * (i - chunk));
                absl::StrAppend(&sql, i == chunk ? "" : ",", "($", k + 1, ",$",
                                k + 2, ",$", k + 3, ",$", k + 4, ",$", k + 5,
                                ")");
                p.Text(entries[i].network)
                    .Int64(first + static_cast<int64_t>(i))
                    .Int64(absl::ToUnixNanos(entries[i].time))
                    .Bytes(entries[i].event)
                    .Text(origin);
              }
              absl::StatusOr<Result> q =
                  ExecLocked("write metric history", sql.c_str(), p, false);
              if (!q.ok()) return q.status();
            }
            return absl::OkStatus();
          };
          size_t run = begin;  // the first step event not inserted yet
          for (size_t i = begin; i < entries.size(); ++i) {
            const FeedEntry& e = entries[i];
            if (!e.deleted) {
              if (trimmed.empty() || trimmed.back() != e.network) {
                trimmed.push_back(e.network);
              }
              continue;
            }
            // The steps before a deletion go in first (and with it).
            if (absl::Status st = insert(run, i); !st.ok()) return st;
            run = i + 1;
            r = ExecLocked("delete metric history",
                           "DELETE FROM metric_history WHERE network_id = $1",
                           Params().Text(e.network), false);
            if (!r.ok()) return r.status();
            r = ExecLocked("publish a deletion",
                           "INSERT INTO metric_deletions (seq, network_id, "
                           "origin, time_ns) VALUES ($1, $2, $3, $4)",
                           Params()
                               .Int64(first + static_cast<int64_t>(i))
                               .Text(e.network)
                               .Text(origin)
                               .Int64(absl::ToUnixNanos(e.time)),
                           false);
            if (!r.ok()) return r.status();
            deletions = true;
          }
          if (absl::Status st = insert(run, entries.size()); !st.ok()) {
            return st;
          }
          std::sort(trimmed.begin(), trimmed.end());
          trimmed.erase(std::unique(trimmed.begin(), trimmed.end()),
                        trimmed.end());
          for (absl::string_view network : trimmed) {
            r = ExecLocked(
                "trim metric history",
                "DELETE FROM metric_history WHERE network_id = $1 AND seq <= "
                "(SELECT seq FROM metric_history WHERE network_id = $1 "
                "ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                Params().Text(network).Int64(
                    options_.metric_history_per_network),
                false);
            if (!r.ok()) return r.status();
          }
          if (deletions) {
            r = ExecLocked(
                "trim metric deletions",
                "DELETE FROM metric_deletions WHERE seq <= (SELECT seq FROM "
                "metric_deletions ORDER BY seq DESC LIMIT 1 OFFSET $1)",
                Params().Int64(kFeedDeletionsKept), false);
            if (!r.ok()) return r.status();
          }
          r = ExecLocked(
              "record the metric feed's publisher",
              "INSERT INTO metric_publishers (origin, last_seq, "
              "update_time_ns) VALUES ($1, $2, $3) ON CONFLICT (origin) DO "
              "UPDATE SET last_seq = EXCLUDED.last_seq, update_time_ns = "
              "EXCLUDED.update_time_ns",
              Params()
                  .Text(origin)
                  .Int64(entries.back().origin_seq)
                  .Int64(absl::ToUnixNanos(absl::Now())),
              false);
          if (!r.ok()) return r.status();
          // Publishers gone for a day (a process each) are forgotten.
          r = ExecLocked(
              "forget old metric feed publishers",
              "DELETE FROM metric_publishers WHERE update_time_ns "
              "< $1",
              Params().Int64(absl::ToUnixNanos(absl::Now() - absl::Hours(24))),
              false);
          if (!r.ok()) return r.status();
          // Delivered at COMMIT, to every session listening (this one too).
          const std::string payload = absl::StrCat(last);
          r = ExecLocked("notify metric readers", "SELECT pg_notify($1, $2)",
                         Params().Text(kFeedChannel).Text(payload), false);
          return r.status();
        });
  }

  const PostgresStoreOptions& options() const { return options_; }
  const std::string& where() const { return where_; }

  // WriterLeaseStore.

  absl::StatusOr<WriterLease> AcquireLease(absl::string_view network_id,
                                           absl::string_view owner,
                                           absl::Duration ttl) override {
    if (absl::Status s = CheckLeaseRequest(owner, ttl); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    return TakeLeaseLocked(network_id, owner, ttl);
  }

  absl::Status ReleaseLease(absl::string_view network_id,
                            absl::string_view owner) override {
    absl::MutexLock lock(&mu_);
    // One statement, its own transaction, unsynced (see TakeLeaseLocked).
    // Giving up a lease we no longer hold changes nothing, so a retry is
    // harmless.
    return ExecLocked(absl::StrCat("release the writer lease of networks/",
                                   network_id),
                      "DELETE FROM writer_leases USING (SELECT set_config("
                      "'synchronous_commit', 'off', true)) AS unsynced "
                      "WHERE network_id = $1 AND owner = $2",
                      Params().Text(network_id).Text(owner), true)
        .status();
  }

 private:
  // $1..$8 as the networks table's columns.
  static void BindRecord(Params& p, const NetworkRecord& r,
                         const EncodedRecord& e) {
    p.Text(r.id)
        .Int64(absl::ToUnixNanos(r.create_time))
        .Int64(absl::ToUnixNanos(r.update_time))
        .Int64(r.state.step)
        .Int64(r.state.samples_seen)
        .Bytes(e.spec)
        .Bytes(e.state)
        .Bytes(e.requests);
  }

  // A unit from columns experiment_id, unit, owner, expiry (microseconds),
  // done.
  static ExperimentUnit UnitRow(const PGresult* r, int row) {
    ExperimentUnit u;
    u.experiment_id = std::string(Value(r, row, 0));
    u.unit = Int32At(r, row, 1);
    u.owner = std::string(Value(r, row, 2));
    u.expires = absl::FromUnixMicros(Int64At(r, row, 3));
    u.done = *PQgetvalue(r, row, 4) != 0;
    return u;
  }

  // Why a claim or report changed no row: another owner's claim, or none.
  absl::StatusOr<ExperimentUnit> HeldOrGoneLocked(absl::string_view id,
                                                  int32_t unit) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<Result> r =
        ExecLocked(absl::StrCat("read unit ", unit, " of experiments/", id),
                   "SELECT experiment_id, unit, owner, (extract(epoch FROM "
                   "expires_at) * 1000000)::bigint, done FROM "
                   "experiment_claims WHERE experiment_id = $1 AND "
                   "unit = $2",
                   Params().Text(id).Int32(unit), true);
    if (!r.ok()) return r.status();
    if (PQntuples(r->get()) == 0) {
      return absl::NotFoundError(
          absl::StrCat("experiments/", id, " has no unit ", unit,
                       " (it ended, was deleted or started over)"));
    }
    const ExperimentUnit u = UnitRow(r->get(), 0);
    return UnitHeldError(id, unit, u.owner, u.expires);
  }

  static ExperimentRecord ExperimentRow(const PGresult* r, int row) {
    ExperimentRecord e;
    e.id = std::string(Value(r, row, 0));
    e.spec = std::string(Value(r, row, 1));
    e.status = Int32At(r, row, 2);
    e.curves = std::string(Value(r, row, 3));
    e.summary = std::string(Value(r, row, 4));
    e.create_time = absl::FromUnixNanos(Int64At(r, row, 5));
    e.update_time = absl::FromUnixNanos(Int64At(r, row, 6));
    return e;
  }

  // A connection that works, made now if there is none or the last one
  // broke. UNAVAILABLE naming the store when the server cannot be reached.
  absl::Status ConnectedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (conn_ != nullptr) {
      // Reads what the server sent while the connection was idle (the
      // notice of a shutdown, an EOF), so one it closed is found broken
      // here and not by the statement about to run.
      if (PQstatus(conn_) == CONNECTION_OK && PQconsumeInput(conn_) == 1 &&
          PQstatus(conn_) == CONNECTION_OK) {
        return absl::OkStatus();
      }
      PQfinish(conn_);
      conn_ = nullptr;
    }
    if (pinned_ > 0) {
      // A new connection would run the rest of a transaction outside it
      // (or without the migration lock): the call fails instead, and the
      // server rolled back what the lost session had begun.
      return absl::UnavailableError(absl::StrCat(
          "the PostgreSQL store ", where_,
          " is unavailable (lost the connection inside a transaction); "
          "nothing changed, retry"));
    }
    absl::StatusOr<PGconn*> conn = Connect(options_, where_, "satlab-server");
    if (!conn.ok()) return conn.status();
    conn_ = *conn;
    return absl::OkStatus();
  }

  // Runs one statement. When the connection turns out broken and `retry`
  // (the statement may run twice), connects again and runs it once more.
  absl::StatusOr<Result> ExecLocked(absl::string_view what, const char* sql,
                                    const Params& params, bool retry) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (int attempt = 0;; ++attempt) {
      if (absl::Status s = ConnectedLocked(); !s.ok()) return s;
      Result r(params.Run(conn_, sql));
      ExecStatusType status =
          r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
      if (PQstatus(conn_) == CONNECTION_BAD) {
        std::string why = Trimmed(PQerrorMessage(conn_));
        PQfinish(conn_);
        conn_ = nullptr;
        if (retry && attempt == 0 && pinned_ == 0) continue;
        return absl::UnavailableError(absl::StrCat(
            "the PostgreSQL store ", where_, " is unavailable (", what,
            ": lost the connection: ", why,
            "); retry (a write may or may not have been applied)"));
      }
      return ErrorOf(r.get(), what);
    }
  }

  // Takes or renews the lease: one statement, its own transaction; a
  // second one only to name another holder. Repeating the first after a
  // lost reply renews what it took (the same owner), so a broken connection
  // is retried.
  //
  // Unsynced: the leases are taken and given back around every unary
  // mutation, so their commits do not wait for the disk. The statement
  // sets synchronous_commit off for its own transaction (set_config with
  // is_local, in a FROM subquery evaluated before the write; the commit
  // reads the setting before it is reset), one round trip where BEGIN, SET
  // LOCAL, the statement and COMMIT were four. A lease PostgreSQL loses in
  // a crash only lets another writer in early, and the revision check of
  // Commit still refuses that writer's stale commit; the networks' own
  // commits keep waiting for the disk (docs/benchmarks.md, "Replicas").
  absl::StatusOr<WriterLease> TakeLeaseLocked(absl::string_view network_id,
                                              absl::string_view owner,
                                              absl::Duration ttl)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Another owner's lease may be released between the two statements:
    // then the next round takes it.
    for (int round = 0; round < 4; ++round) {
      // One statement takes a free or expired lease or renews our own;
      // it returns no row when another owner's lease still runs.
      absl::StatusOr<Result> r = ExecLocked(
          absl::StrCat("take the writer lease of networks/", network_id),
          "INSERT INTO writer_leases AS l (network_id, owner, expires_at) "
          "SELECT $1, $2, clock_timestamp() + $3 * interval '1 microsecond' "
          "FROM (SELECT set_config('synchronous_commit', 'off', true)) "
          "AS unsynced ON CONFLICT (network_id) DO UPDATE SET "
          "owner = EXCLUDED.owner, "
          "expires_at = EXCLUDED.expires_at WHERE l.owner = EXCLUDED.owner "
          "OR l.expires_at <= clock_timestamp() "
          "RETURNING (extract(epoch FROM expires_at) * 1000000)::bigint",
          Params()
              .Text(network_id)
              .Text(owner)
              .Int64(absl::ToInt64Microseconds(ttl)),
          true);
      if (!r.ok()) return r.status();
      if (PQntuples(r->get()) == 1) {
        return WriterLease{std::string(network_id), std::string(owner),
                           absl::FromUnixMicros(Int64At(r->get(), 0, 0))};
      }
      r = ExecLocked(
          absl::StrCat("read the writer lease of networks/", network_id),
          "SELECT owner, (extract(epoch FROM expires_at) * 1000000)::bigint "
          "FROM writer_leases WHERE network_id = $1",
          Params().Text(network_id), true);
      if (!r.ok()) return r.status();
      if (PQntuples(r->get()) == 1) {
        return LeaseHeldError(network_id, Value(r->get(), 0, 0),
                              absl::FromUnixMicros(Int64At(r->get(), 0, 1)));
      }
    }
    // Writers on other replicas keep taking and releasing it: busy, as a
    // held lease is (the same code, so that clients retry alike).
    return absl::AbortedError(absl::StrCat(
        "networks/", network_id,
        " is being written by other replicas (its writer lease changed hands "
        "4 times while this one was taking it); retry when they finish"));
  }

  // Runs `body` in one transaction: COMMIT when it returns OK, ROLLBACK
  // otherwise.
  template <typename Body>
  absl::Status TransactionLocked(absl::string_view what, Body body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Nothing has run yet, so BEGIN may be retried on a fresh connection.
    absl::StatusOr<Result> r = ExecLocked(what, "BEGIN", Params(), true);
    if (!r.ok()) return r.status();
    ++pinned_;
    absl::Status s = body();
    if (s.ok()) {
      r = ExecLocked(what, "COMMIT", Params(), false);
      s = r.status();
    }
    if (!s.ok() && conn_ != nullptr &&
        PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      Result(PQexec(conn_, "ROLLBACK"));
    }
    --pinned_;
    return s;
  }

  // Brings the schema to kPostgresSchemaVersion (see Open).
  absl::Status MigrateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Waits while another replica migrates; the lock is the session's, so
    // a replica that dies mid-migration releases it with its connection.
    absl::StatusOr<Result> r = ExecLocked("wait for the schema migration lock",
                                          "SELECT pg_advisory_lock($1)",
                                          Params().Int64(kMigrationLock), true);
    if (!r.ok()) return r.status();
    // The lock is this session's: no reconnecting until it is released.
    ++pinned_;
    absl::Status s = TransactionLocked(
        "migrate the schema",
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          absl::StatusOr<Result> q =
              ExecLocked("create satlab_schema",
                         "CREATE TABLE IF NOT EXISTS satlab_schema ("
                         "one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), "
                         "version INTEGER NOT NULL)",
                         Params(), false);
          if (!q.ok()) return q.status();
          q = ExecLocked("read the schema version",
                         "SELECT version FROM satlab_schema", Params(), false);
          if (!q.ok()) return q.status();
          const int version =
              PQntuples(q->get()) == 0 ? 0 : Int32At(q->get(), 0, 0);
          if (version > kPostgresSchemaVersion) {
            return absl::FailedPreconditionError(absl::StrCat(
                "the PostgreSQL store ", where_, " has schema version ",
                version, "; this satlab-server knows versions up to ",
                kPostgresSchemaVersion,
                ": a newer satlab wrote it. Run that version (or a newer "
                "one), or point --store at another database"));
          }
          for (int v = version; v < kPostgresSchemaVersion; ++v) {
            // Several statements: PQexec, the simple protocol, runs them all.
            Result m(PQexec(conn_, kMigrations[v]));
            if (m == nullptr || PQresultStatus(m.get()) != PGRES_COMMAND_OK) {
              return absl::InternalError(
                  absl::StrCat("the PostgreSQL store ", where_,
                               ": migration to schema version ", v + 1,
                               " failed: ", Trimmed(PQerrorMessage(conn_)),
                               "; nothing of it was applied"));
            }
          }
          q = ExecLocked("write the schema version",
                         "INSERT INTO satlab_schema (one, version) VALUES "
                         "(TRUE, $1) ON CONFLICT (one) DO UPDATE SET version "
                         "= EXCLUDED.version",
                         Params().Int32(kPostgresSchemaVersion), false);
          return q.status();
        });
    if (s.ok()) {
      s = ExecLocked("release the schema migration lock",
                     "SELECT pg_advisory_unlock($1)",
                     Params().Int64(kMigrationLock), false)
              .status();
    }
    --pinned_;
    return s;
  }

  // A failed statement on a working connection, by SQLSTATE: what the
  // caller can do about it.
  absl::Status ErrorOf(const PGresult* r, absl::string_view what) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const char* state =
        r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const std::string code = state == nullptr ? "" : state;
    const std::string detail =
        absl::StrCat(what, ": ",
                     r == nullptr ? Trimmed(PQerrorMessage(conn_))
                                  : Trimmed(PQresultErrorMessage(r)));
    if (code == "23505") {  // unique_violation
      return absl::AlreadyExistsError(
          absl::StrCat("the PostgreSQL store ", where_, ": ", detail));
    }
    if (code == "53100") {  // disk_full
      return absl::ResourceExhaustedError(
          absl::StrCat("the PostgreSQL store ", where_, " is out of disk (",
                       detail, "); nothing changed"));
    }
    if (code == "54000") {  // program_limit_exceeded: a value too large
      return absl::ResourceExhaustedError(
          absl::StrCat("a record is larger than the PostgreSQL store ", where_,
                       " keeps in one value (", detail, "); nothing changed"));
    }
    if (absl::StartsWith(code, "08") || absl::StartsWith(code, "53") ||
        absl::StartsWith(code, "57P") || code == "40001" || code == "40P01" ||
        code == "25006") {
      // Connection trouble, no resources, shutting down, a conflict with
      // another transaction, or a read-only standby: worth a retry.
      return absl::UnavailableError(
          absl::StrCat("the PostgreSQL store ", where_, " is unavailable (",
                       detail, "); nothing changed, retry"));
    }
    if (code == "42501") {  // insufficient_privilege
      return absl::FailedPreconditionError(absl::StrCat(
          "the PostgreSQL store ", where_, " refused (", detail,
          "); nothing changed. Grant the --store user rights on its tables"));
    }
    return absl::InternalError(absl::StrCat("the PostgreSQL store ", where_,
                                            ": ", detail, "; nothing changed"));
  }

  absl::Status OutOfMemory(absl::string_view id) const {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server ran out of memory to copy networks/", id,
                     "; nothing changed"));
  }

  absl::Status Damaged(absl::string_view id, const absl::Status& why) const {
    return absl::DataLossError(absl::StrCat("networks/", id, " in ", where_,
                                            " is damaged: ", why.message()));
  }

  const PostgresStoreOptions options_;
  const std::string where_;  // for messages: postgresql://host:port/db
  // One connection, used by one caller at a time, replaced when it breaks.
  mutable absl::Mutex mu_;
  mutable PGconn* conn_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Above 0 while a transaction or the migration lock lives on conn_:
  // losing conn_ then fails the call rather than reconnecting.
  int pinned_ ABSL_GUARDED_BY(mu_) = 0;
};

// The reading side of the metric feed: a connection of its own that
// LISTENs on kFeedChannel and reads the numbered rows (the store's
// connection is shared under its mutex and must not wait for
// notifications), made again when it breaks. Used by one reader thread;
// Interrupt may come from any.
class PostgresMetricFeed final : public MetricFeed {
 public:
  explicit PostgresMetricFeed(std::shared_ptr<PostgresStore> store)
      : store_(std::move(store)),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

  ~PostgresMetricFeed() override {
    absl::MutexLock lock(&mu_);
    if (conn_ != nullptr) PQfinish(conn_);
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  absl::Status Publish(absl::string_view origin,
                       const std::vector<FeedEntry>& entries) override {
    return store_->PublishMetrics(origin, entries);
  }

  absl::StatusOr<int64_t> LastSeq() override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = QueryLocked(
        "read the metric feed's position",
        "SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM metric_history), "
        "(SELECT COALESCE(MAX(seq), 0) FROM metric_deletions))",
        Params());
    if (!r.ok()) return r.status();
    return Int64At(r->get(), 0, 0);
  }

  absl::StatusOr<std::vector<FeedRecord>> Read(int64_t after,
                                               absl::string_view own_origin,
                                               int limit) override {
    std::vector<FeedRecord> out;
    if (limit <= 0) return out;
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Result> r = QueryLocked(
        "read the metric feed",
        "(SELECT seq, network_id, origin, time_ns, FALSE, CASE WHEN origin = "
        "$2 THEN ''::bytea ELSE event END FROM metric_history WHERE seq > $1 "
        "ORDER BY seq LIMIT $3) UNION ALL (SELECT seq, network_id, origin, "
        "time_ns, TRUE, ''::bytea FROM metric_deletions WHERE seq > $1 ORDER "
        "BY seq LIMIT $3) ORDER BY 1 LIMIT $3",
        Params().Int64(after).Text(own_origin).Int64(limit));
    if (!r.ok()) return r.status();
    const PGresult* res = r->get();
    out.reserve(PQntuples(res));
    for (int i = 0; i < PQntuples(res); ++i) {
      FeedRecord& f = out.emplace_back();
      f.seq = Int64At(res, i, 0);
      f.network = std::string(Value(res, i, 1));
      f.origin = std::string(Value(res, i, 2));
      f.time = absl::FromUnixNanos(Int64At(res, i, 3));
      f.deleted = Value(res, i, 4) != absl::string_view("\0", 1);
      f.event = std::string(Value(res, i, 5));
    }
    return out;
  }

  bool WaitForPublish(absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    if (conn_ == nullptr && !ConnectLocked().ok()) {
      // Nothing to listen on: wait the timeout out; the caller's Read
      // reports the error and the next call connects again.
      Poll(-1, deadline);
      return false;
    }
    while (true) {
      if (DrainLocked()) return true;
      if (conn_ == nullptr) return false;  // it broke: catch up, reconnect
      if (Poll(PQsocket(conn_), deadline) <= 0) return false;
    }
  }

  void Interrupt() override {
    const uint64_t one = 1;
    // A full counter (never, in practice) still wakes the poll.
    (void)!write(wake_fd_, &one, sizeof(one));
  }

 private:
  // A connection listening on kFeedChannel.
  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<PGconn*> conn =
        Connect(store_->options(), store_->where(), "satlab-metric-feed");
    if (!conn.ok()) return conn.status();
    Result r(PQexec(*conn, absl::StrCat("LISTEN ", kFeedChannel).c_str()));
    if (r == nullptr || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      std::string why = Trimmed(PQerrorMessage(*conn));
      PQfinish(*conn);
      return absl::UnavailableError(absl::StrCat(
          "the PostgreSQL store ", store_->where(),
          " is unavailable (listen for metric events: ", why, "); retry"));
    }
    conn_ = *conn;
    return absl::OkStatus();
  }

  void DropLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PQfinish(conn_);
    conn_ = nullptr;
  }

  // Reads what arrived; true when it held notifications (all consumed).
  // Drops a broken connection.
  bool DrainLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
      DropLocked();
      return false;
    }
    bool any = false;
    while (PGnotify* n = PQnotifies(conn_)) {
      any = true;
      PQfreemem(n);
    }
    return any;
  }

  // Waits for `fd` (none when < 0) to be readable until `deadline`: 1 when
  // it is, 0 at the deadline, -1 on Interrupt.
  int Poll(int fd, absl::Time deadline) {
    while (true) {
      const int64_t ms = std::max<int64_t>(
          0, absl::ToInt64Milliseconds(deadline - absl::Now()) + 1);
      pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
      const int n = poll(fds, fd >= 0 ? 2 : 1,
                         static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return 0;
      if (fds[0].revents != 0) {
        uint64_t count;
        (void)!read(wake_fd_, &count, sizeof(count));
        return -1;
      }
      if (n > 0) return 1;
      if (absl::Now() >= deadline) return 0;
    }
  }

  absl::StatusOr<Result> QueryLocked(absl::string_view what, const char* sql,
                                     const Params& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Finds a broken connection; notifications stay queued for the next
    // WaitForPublish (one may announce a commit this read misses).
    if (conn_ != nullptr &&
        (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK)) {
      DropLocked();
    }
    if (conn_ == nullptr) {
      if (absl::Status s = ConnectLocked(); !s.ok()) return s;
    }
    Result r(params.Run(conn_, sql));
    const ExecStatusType status =
        r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.get());
    if (status == PGRES_TUPLES_OK) return r;
    std::string why = r == nullptr ? Trimmed(PQerrorMessage(conn_))
                                   : Trimmed(PQresultErrorMessage(r.get()));
    if (PQstatus(conn_) == CONNECTION_BAD) DropLocked();
    return absl::UnavailableError(
        absl::StrCat("the PostgreSQL store ", store_->where(),
                     " is unavailable (", what, ": ", why, "); retry"));
  }

  const std::shared_ptr<PostgresStore> store_;
  const int wake_fd_;
  absl::Mutex mu_;
  PGconn* conn_ ABSL_GUARDED_BY(mu_) = nullptr;
};

absl::StatusOr<std::unique_ptr<PostgresStore>> OpenStore(
    const PostgresStoreOptions& options) {
  if (!IsPostgresUrl(options.url)) {
    // Not echoed: a mistyped URI may still hold a password.
    return absl::InvalidArgumentError(
        "--store: expected postgresql://user@host:port/database, got a value "
        "that starts with neither postgresql:// nor postgres://");
  }
  if (options.max_networks < 1 || options.metric_history_per_network < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_networks and metric_history_per_network: expected at least 1, "
        "got ",
        options.max_networks, " and ", options.metric_history_per_network));
  }
  absl::StatusOr<std::string> where = Describe(options.url);
  if (!where.ok()) return where.status();
  auto store = std::make_unique<PostgresStore>(options, *std::move(where));
  if (absl::Status s = store->Open(); !s.ok()) return s;
  return store;
}

}  // namespace

bool IsPostgresUrl(absl::string_view store) {
  return absl::StartsWith(store, "postgresql://") ||
         absl::StartsWith(store, "postgres://");
}

std::string DescribePostgresUrl(const std::string& url) {
  absl::StatusOr<std::string> where = Describe(url);
  return where.ok() ? *where : "(a URI libpq cannot read)";
}

absl::StatusOr<PostgresStores> OpenPostgresStores(
    const PostgresStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<PostgresStore>> store = OpenStore(options);
  if (!store.ok()) return store.status();
  std::shared_ptr<PostgresStore> shared = *std::move(store);
  return PostgresStores{shared, shared, shared, shared,
                        std::make_shared<PostgresMetricFeed>(shared)};
}

absl::StatusOr<std::unique_ptr<NetworkStore>> NewPostgresStore(
    const PostgresStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<PostgresStore>> store = OpenStore(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<NetworkStore>(*std::move(store));
}

}  // namespace satlab::store
