// The PostgreSQL store against a real PostgreSQL server the test starts
// (ThrowawayPostgres): the NetworkStore contract, the experiment and metric
// history contract, migrations with concurrent starters, --max_networks
// across replicas, and a server that goes down and comes back.
#include "server/store/postgres_store.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/store/writer_lease.h"
#include "tests/store/aux_store_contract.h"
#include "tests/store/store_contract.h"
#include "tests/store/throwaway_postgres.h"

namespace satlab::store::testing {
namespace {

using satlab::testing::ThrowawayPostgres;

// One server for the tests of this process, stopped when it exits.
absl::StatusOr<ThrowawayPostgres*> Shared() {
  static auto* started = new absl::StatusOr<std::unique_ptr<ThrowawayPostgres>>(
      ThrowawayPostgres::Start());
  static std::unique_ptr<ThrowawayPostgres> owner;
  if (!started->ok()) return started->status();
  if (owner == nullptr) owner = std::move(**started);
  return owner.get();
}

// The URL of a database of its own for each test directory, created on
// first use (a reopen under the same directory finds the same data).
absl::StatusOr<std::string> DatabaseFor(const std::string& dir) {
  static absl::Mutex mu(absl::kConstInit);
  absl::MutexLock lock(&mu);
  absl::StatusOr<ThrowawayPostgres*> pg = Shared();
  if (!pg.ok()) return pg.status();
  static auto* made = new std::set<std::string>();
  const std::string name =
      absl::StrCat("t_", absl::Hex(std::hash<std::string>{}(dir)));
  if (made->insert(name).second) {
    if (absl::Status s = (*pg)->CreateDatabase(name); !s.ok()) return s;
  }
  return (*pg)->Url(name);
}

PostgresStoreOptions Options(std::string url, int64_t max_networks = 100) {
  PostgresStoreOptions options;
  options.url = std::move(url);
  options.max_networks = max_networks;
  return options;
}

INSTANTIATE_TEST_SUITE_P(
    Postgres, StoreContractTest,
    ::testing::Values(StoreFactory{
        "postgres",
        [](const std::string& dir, int64_t max_networks)
            -> absl::StatusOr<std::unique_ptr<NetworkStore>> {
          absl::StatusOr<std::string> url = DatabaseFor(dir);
          if (!url.ok()) return url.status();
          return NewPostgresStore(Options(*url, max_networks));
        }}),
    StoreFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, AuxStoreTest,
    ::testing::Values(AuxFactory{
        "postgres",
        [](const std::string& dir, int64_t per_network) {
          absl::StatusOr<std::string> url = DatabaseFor(dir);
          EXPECT_TRUE(url.ok()) << url.status();
          if (!url.ok()) return AuxStores();
          PostgresStoreOptions options = Options(*url);
          options.metric_history_per_network = per_network;
          absl::StatusOr<PostgresStores> s = OpenPostgresStores(options);
          EXPECT_TRUE(s.ok()) << s.status();
          if (!s.ok()) return AuxStores();
          return AuxStores{s->experiments, s->metrics, true};
        }}),
    AuxFactoryName);

// Replicas starting at the same moment on an empty database: each opens
// without error, the schema is created once, and every store works.
TEST(PostgresStoreTest, ConcurrentStartersMigrateOnceAndAllWork) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  constexpr int kStarters = 8;
  std::atomic<int> ready{0};
  std::vector<absl::StatusOr<PostgresStores>> opened(
      kStarters, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kStarters; ++i) {
    threads.emplace_back([&, i] {
      // All connect at once: the migration lock is what orders them.
      ++ready;
      for (int spin = 0; ready.load() < kStarters && spin < 10'000'000;
           ++spin) {
      }
      opened[i] = OpenPostgresStores(Options(*url));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStarters; ++i) {
    ASSERT_TRUE(opened[i].ok())
        << "starter " << i << ": " << opened[i].status();
  }
  absl::StatusOr<ThrowawayPostgres*> pg = Shared();
  ASSERT_TRUE(pg.ok());
  const std::string db = url->substr(url->rfind('/') + 1);
  EXPECT_EQ(*(*pg)->Query(db, "SELECT COUNT(*) FROM satlab_schema"), "1");
  EXPECT_EQ(*(*pg)->Query(db, "SELECT version FROM satlab_schema"),
            absl::StrCat(kPostgresSchemaVersion));
  for (int i = 0; i < kStarters; ++i) {
    NetworkRecord r = MakeRecord(absl::StrCat("s", i), engine::DType::kFloat32,
                                 Optimizer::kSgd, static_cast<uint64_t>(i));
    ASSERT_TRUE(opened[i]->networks->Create(r).ok());
  }
  for (int i = 0; i < kStarters; ++i) {
    EXPECT_EQ(*opened[i]->networks->Count(), kStarters);
  }
}

TEST(PostgresStoreTest, NewerSchemaIsFailedPreconditionAndChangesNothing) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  ASSERT_TRUE(OpenPostgresStores(Options(*url)).ok());
  absl::StatusOr<ThrowawayPostgres*> pg = Shared();
  ASSERT_TRUE(pg.ok());
  const std::string db = url->substr(url->rfind('/') + 1);
  ASSERT_TRUE((*pg)->Query(db, "UPDATE satlab_schema SET version = 99").ok());
  absl::StatusOr<PostgresStores> s = OpenPostgresStores(Options(*url));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition)
      << s.status();
  EXPECT_NE(s.status().message().find("schema version 99"), std::string::npos)
      << s.status();
  EXPECT_EQ(*(*pg)->Query(db, "SELECT version FROM satlab_schema"), "99");
}

// Two replicas (two stores on one database) create at once: exactly
// --max_networks networks exist afterwards.
TEST(PostgresStoreTest, MaxNetworksHoldsAcrossReplicas) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  constexpr int kMax = 6;
  std::vector<std::unique_ptr<NetworkStore>> replicas;
  for (int i = 0; i < 2; ++i) {
    auto s = NewPostgresStore(Options(*url, kMax));
    ASSERT_TRUE(s.ok()) << s.status();
    replicas.push_back(*std::move(s));
  }
  std::atomic<int> created{0};
  std::atomic<int> exhausted{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < kMax; ++n) {
        absl::Status s = replicas[i]->Create(
            MakeRecord(absl::StrCat("r", i, "-", n), engine::DType::kFloat32,
                       Optimizer::kSgd, static_cast<uint64_t>(n)));
        if (s.ok()) {
          ++created;
        } else if (s.code() == absl::StatusCode::kResourceExhausted) {
          ++exhausted;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), kMax);
  EXPECT_EQ(exhausted.load(), kMax);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(*replicas[0]->Count(), kMax);
}

// Three replicas (stores of their own) racing for the free units of two
// experiments: every unit goes to exactly one of them.
TEST(PostgresStoreTest, ExperimentUnitsGoToOneReplicaEach) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  std::vector<std::shared_ptr<ExperimentStore>> replicas;
  for (int i = 0; i < 3; ++i) {
    auto s = OpenPostgresStores(Options(*url));
    ASSERT_TRUE(s.ok()) << s.status();
    replicas.push_back(s->experiments);
  }
  constexpr int kVariants = 12;
  for (const char* id : {"ea", "eb"}) {
    ASSERT_TRUE(
        replicas[0]
            ->OfferExperimentUnits(id, kVariants, "r0", absl::Seconds(30))
            .ok());
  }
  absl::Mutex mu;
  std::vector<std::pair<std::string, int>> won;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      while (true) {
        auto unit = replicas[i]->ClaimFreeExperimentUnit(absl::StrCat("r", i),
                                                         absl::Seconds(30));
        if (!unit.ok()) {
          ++errors;
          return;
        }
        if (!unit->has_value()) return;
        absl::MutexLock lock(&mu);
        won.emplace_back((*unit)->experiment_id, (*unit)->unit);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<std::pair<std::string, int>> distinct(won.begin(), won.end());
  EXPECT_EQ(won.size(), 2u * kVariants);  // the coordinators are held
  EXPECT_EQ(distinct.size(), won.size());
  for (const char* id : {"ea", "eb"}) {
    auto units = replicas[1]->ListExperimentUnits(id);
    ASSERT_TRUE(units.ok()) << units.status();
    ASSERT_EQ(units->size(), kVariants + 1u);
    EXPECT_EQ((*units)[0].owner, "r0");
    for (const ExperimentUnit& u : *units) EXPECT_FALSE(u.owner.empty());
  }
}

// A port nothing listens on (bound, then closed).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(PostgresStoreTest, BadOrUnreachableUrlFailsAtOpenWithoutItsPassword) {
  absl::StatusOr<PostgresStores> s =
      OpenPostgresStores(Options("mysql://u:secretpw@127.0.0.1/db"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
      << s.status();
  EXPECT_EQ(s.status().message().find("secretpw"), std::string::npos);
  s = OpenPostgresStores(
      Options("postgresql://u:secretpw@127.0.0.1/db?no_such_option=1"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument)
      << s.status();
  EXPECT_EQ(s.status().message().find("secretpw"), std::string::npos);
  const int port = FreePort();
  s = OpenPostgresStores(
      Options(absl::StrCat("postgresql://u:secretpw@127.0.0.1:", port, "/db")));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_NE(s.status().message().find(absl::StrCat(
                "PostgreSQL store postgresql://127.0.0.1:", port, "/db")),
            std::string::npos)
      << s.status();
  EXPECT_EQ(s.status().message().find("secretpw"), std::string::npos);
}

// A test process that ends without destroying its server (killed by a
// timeout, or holding a shared one for its whole life) leaves neither a
// running server nor its directory: the script's watcher stops the one and
// removes the other. A CI machine runs hundreds of such processes.
TEST(ThrowawayPostgresTest, OwnerEndingWithoutCleanupLeavesNothingBehind) {
  int fds[2];
  // Close-on-exec: the server and the watcher the child starts must not
  // hold the write end (the read below waits for its end of file).
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> pg =
        ThrowawayPostgres::Start();
    const std::string line =
        pg.ok() ? absl::StrCat((*pg)->port(), " ", (*pg)->dir()) : "";
    (void)!write(fds[1], line.data(), line.size());
    _exit(pg.ok() ? 0 : 1);  // no destructors: the object is abandoned
  }
  close(fds[1]);
  std::string line;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) line.append(buf, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child could not start PostgreSQL";
  const size_t space = line.find(' ');
  ASSERT_NE(space, std::string::npos) << line;
  const int port = std::stoi(line.substr(0, space));
  const std::string dir = line.substr(space + 1);
  ASSERT_EQ(dir.rfind("/tmp/satlab-pg-", 0), 0u) << dir;

  auto dir_exists = [&] {
    struct stat st;
    return stat(dir.c_str(), &st) == 0;
  };
  auto accepting = [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  };
  // The watcher polls once a second; a fast shutdown takes well under 30 s.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while ((dir_exists() || accepting()) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_FALSE(accepting()) << "PostgreSQL still listens on " << port;
  EXPECT_FALSE(dir_exists()) << dir << " was left behind";
}

// The server stops under an open store: every call is UNAVAILABLE naming
// the store (no crash, no hang); after a restart the same store object
// reconnects and holds what was committed before.
TEST(PostgresStoreTest, ServerDownIsUnavailableNamingTheStoreThenRecovers) {
  absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> pg =
      ThrowawayPostgres::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  absl::StatusOr<PostgresStores> s = OpenPostgresStores(Options((*pg)->Url()));
  ASSERT_TRUE(s.ok()) << s.status();
  NetworkRecord r =
      MakeRecord("down", engine::DType::kFloat64, Optimizer::kAdam, 7);
  ASSERT_TRUE(s->networks->Create(r).ok());
  Advance(r);
  ASSERT_TRUE(s->networks->Commit(r).ok());

  ASSERT_TRUE((*pg)->Stop().ok());
  const std::string where = absl::StrCat(
      "PostgreSQL store postgresql://127.0.0.1:", (*pg)->port(), "/satlab");
  auto expect_unavailable = [&](const absl::Status& st, const char* call) {
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << call << ": " << st;
    EXPECT_NE(st.message().find(where), std::string::npos)
        << call << ": " << st;
  };
  NetworkRecord later = r;
  Advance(later);
  expect_unavailable(s->networks->Load("down").status(), "Load");
  expect_unavailable(s->networks->Commit(later), "Commit");
  expect_unavailable(s->networks->Create(MakeRecord(
                         "new", engine::DType::kFloat32, Optimizer::kSgd, 1)),
                     "Create");
  expect_unavailable(s->networks->Delete("down"), "Delete");
  expect_unavailable(s->networks->List("", 10).status(), "List");
  expect_unavailable(s->networks->Count().status(), "Count");
  expect_unavailable(s->experiments->LoadExperiment("e").status(),
                     "LoadExperiment");
  expect_unavailable(s->metrics->ReadMetrics("down", 0, 10).status(),
                     "ReadMetrics");

  ASSERT_TRUE((*pg)->Restart().ok());
  // The first call after the restart (a write) already gets through.
  ASSERT_TRUE(s->networks->Commit(later).ok());
  // So does a transaction, on a stale connection of another store.
  ASSERT_TRUE((*pg)->Stop().ok());
  ASSERT_TRUE((*pg)->Restart().ok());
  NetworkRecord other =
      MakeRecord("after", engine::DType::kFloat32, Optimizer::kSgd, 3);
  ASSERT_TRUE(s->networks->Create(other).ok());
  ASSERT_TRUE(s->networks->Delete("after").ok());
  absl::StatusOr<NetworkRecord> got = s->networks->Load("down");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, later));
  EXPECT_EQ(*s->networks->Count(), 1);
}

// The writer lease contract on two handles of one lease store (two
// replicas): exclusive, renewable by its holder, released only by it,
// expiring on its own, and exactly one winner when owners race.
void ExpectLeaseContract(WriterLeaseStore& a, WriterLeaseStore& b) {
  absl::StatusOr<WriterLease> got =
      a.AcquireLease("n", "replica-a", absl::Seconds(30));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->owner, "replica-a");
  EXPECT_GT(got->expires, absl::Now() + absl::Seconds(20));
  absl::StatusOr<WriterLease> other =
      b.AcquireLease("n", "replica-b", absl::Seconds(30));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAborted)
      << other.status();
  EXPECT_NE(other.status().message().find("networks/n"), std::string::npos);
  EXPECT_NE(other.status().message().find("replica-a"), std::string::npos)
      << other.status();
  EXPECT_TRUE(a.AcquireLease("n", "replica-a", absl::Seconds(30)).ok());
  EXPECT_TRUE(b.ReleaseLease("n", "replica-b").ok());  // not its lease
  EXPECT_EQ(b.AcquireLease("n", "replica-b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_TRUE(a.ReleaseLease("n", "replica-a").ok());
  EXPECT_TRUE(b.AcquireLease("n", "replica-b", absl::Seconds(30)).ok());

  ASSERT_TRUE(a.AcquireLease("e", "replica-a", absl::Milliseconds(300)).ok());
  EXPECT_EQ(b.AcquireLease("e", "replica-b", absl::Seconds(1)).status().code(),
            absl::StatusCode::kAborted);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(b.AcquireLease("e", "replica-b", absl::Seconds(1)).ok())
      << "an expired lease must be free";

  EXPECT_EQ(a.AcquireLease("x", "", absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.AcquireLease("x", "a", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kInvalidArgument);

  constexpr int kRaces = 30;
  std::atomic<int> wins{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      WriterLeaseStore& store = t == 0 ? a : b;
      for (int i = 0; i < kRaces; ++i) {
        absl::StatusOr<WriterLease> l =
            store.AcquireLease(absl::StrCat("race", i),
                               absl::StrCat("owner", t), absl::Seconds(30));
        if (l.ok()) {
          ++wins;
        } else if (l.status().code() != absl::StatusCode::kAborted) {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), kRaces);
  EXPECT_EQ(errors.load(), 0);
}

TEST(WriterLeaseTest, InMemoryLeasesFollowTheContract) {
  std::unique_ptr<WriterLeaseStore> leases = NewInMemoryWriterLeaseStore();
  ExpectLeaseContract(*leases, *leases);
}

TEST(WriterLeaseTest, PostgresLeasesHoldAcrossReplicas) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<PostgresStores> a = OpenPostgresStores(Options(*url));
  absl::StatusOr<PostgresStores> b = OpenPostgresStores(Options(*url));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ExpectLeaseContract(*a->leases, *b->leases);
}

// The leases are taken and given back around every unary mutation, so
// their commits must not wait for the disk (synchronous_commit off for
// those statements alone); ordinary commits still do. Counted in
// pg_stat_wal.wal_sync, which a backend publishes when it exits.
TEST(WriterLeaseTest, PostgresLeaseCommitsDoNotWaitForTheDisk) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<ThrowawayPostgres*> pg = Shared();
  ASSERT_TRUE(pg.ok()) << pg.status();
  const std::string database = url->substr(url->rfind('/') + 1);
  auto syncs = [&]() -> int64_t {
    absl::StatusOr<std::string> v =
        (*pg)->Query(database, "SELECT wal_sync FROM pg_stat_wal");
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? std::stoll(*v) : -1;
  };
  {  // migrations, and their synced commits, out of the way
    absl::StatusOr<PostgresStores> first = OpenPostgresStores(Options(*url));
    ASSERT_TRUE(first.ok()) << first.status();
  }
  // Control: 40 ordinary commits each wait for the disk.
  ASSERT_TRUE((*pg)->Query(database, "CREATE TABLE synced (n int)").ok());
  int64_t before = syncs();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE((*pg)->Query(database, "INSERT INTO synced VALUES (1)").ok());
  }
  const int64_t synced = syncs() - before;
  EXPECT_GE(synced, 40) << "this PostgreSQL does not sync commits";

  before = syncs();
  {
    absl::StatusOr<PostgresStores> stores = OpenPostgresStores(Options(*url));
    ASSERT_TRUE(stores.ok()) << stores.status();
    for (int i = 0; i < 100; ++i) {
      const std::string id = absl::StrCat("n", i % 10);
      ASSERT_TRUE(
          stores->leases->AcquireLease(id, "r1", absl::Seconds(5)).ok());
      ASSERT_TRUE(stores->leases->ReleaseLease(id, "r1").ok());
    }
  }  // its connection closes: the backend publishes its counts
  const int64_t leases = syncs() - before;
  // 200 commits; what syncs is PostgreSQL's WAL writer in the background
  // (every 200 ms) and the connection's start-up.
  EXPECT_LT(leases, 40) << "200 lease commits waited for the disk " << leases
                        << " times (40 ordinary commits: " << synced << ")";
}

}  // namespace
}  // namespace satlab::store::testing

namespace satlab::store::testing {
namespace {

// Issue 14 item 5: what one replica publishes, another reads back in one
// order, its own without event bytes, deletions as rows; a publish wakes a
// waiting reader; Interrupt ends a wait at once.
TEST(PostgresMetricFeedTest, PublishedEventsReadBackInOrderAndWakeReaders) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<PostgresStores> a = OpenPostgresStores(Options(*url));
  absl::StatusOr<PostgresStores> b = OpenPostgresStores(Options(*url));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_NE(b->feed, nullptr);
  absl::StatusOr<int64_t> start = b->feed->LastSeq();
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, 0);
  // The first wait connects and LISTENs; nothing was published yet.
  EXPECT_FALSE(b->feed->WaitForPublish(absl::Milliseconds(50)));

  const absl::Time t = absl::FromUnixSeconds(1700000000);
  std::vector<FeedEntry> batch = {
      {"networks/x", t, false, "x1", 1},
      {"networks/y", t, false, "y1", 2},
      {"networks/x", t, false, "x2", 3},
  };
  ASSERT_TRUE(a->feed->Publish("a#1", batch).ok());
  EXPECT_TRUE(b->feed->WaitForPublish(absl::Seconds(10)));
  // Published again (a retry after a lost COMMIT): nothing new.
  ASSERT_TRUE(a->feed->Publish("a#1", batch).ok());
  ASSERT_TRUE(
      b->feed->Publish("b#1", {{"networks/z", t, false, "z1", 1}}).ok());
  // Partly published before: only the new entry goes in.
  batch.push_back({"networks/y", t, true, "", 4});
  ASSERT_TRUE(a->feed->Publish("a#1", batch).ok());

  absl::StatusOr<std::vector<FeedRecord>> read =
      b->feed->Read(*start, "b#1", 100);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 4u);
  std::vector<std::string> got;
  for (size_t i = 0; i < read->size(); ++i) {
    const FeedRecord& r = (*read)[i];
    if (i > 0) {
      EXPECT_GT(r.seq, (*read)[i - 1].seq);
    }
    EXPECT_EQ(r.time, t);
    got.push_back(absl::StrCat(r.network, ":", r.origin, ":", r.event,
                               r.deleted ? ":deleted" : ""));
  }
  // y1 went with y's deletion; b's own z1 comes without its bytes.
  EXPECT_EQ(got, (std::vector<std::string>{
                     "networks/x:a#1:x1", "networks/x:a#1:x2",
                     "networks/z:b#1:", "networks/y:a#1::deleted"}));
  EXPECT_EQ(*b->feed->LastSeq(), read->back().seq);
  // Paged from a cursor.
  read = b->feed->Read((*read)[1].seq, "", 1);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].event, "z1");
  // The history is the same rows: AttachHistory loads them.
  absl::StatusOr<std::vector<MetricRecord>> history =
      b->metrics->ReadMetrics("networks/x", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[1].event, "x2");

  std::thread interrupter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    b->feed->Interrupt();
  });
  // The two later publishes' notifications are still queued.
  EXPECT_TRUE(b->feed->WaitForPublish(absl::Seconds(10)));
  const absl::Time before = absl::Now();
  EXPECT_FALSE(b->feed->WaitForPublish(absl::Seconds(20)));
  EXPECT_LT(absl::Now() - before, absl::Seconds(10));
  interrupter.join();
}

}  // namespace
}  // namespace satlab::store::testing

namespace satlab::store::testing {
namespace {

// A flush's worth of a fast Train stream (2000 step events of ~300 bytes
// over 4 networks) is published in one transaction, read back whole.
TEST(PostgresMetricFeedTest, LargeBatchPublishesInOneTransaction) {
  TempDir dir;
  absl::StatusOr<std::string> url = DatabaseFor(dir.path());
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<PostgresStores> a = OpenPostgresStores(Options(*url));
  ASSERT_TRUE(a.ok()) << a.status();
  constexpr int kEvents = 2000;
  std::vector<FeedEntry> batch;
  for (int i = 0; i < kEvents; ++i) {
    batch.push_back({absl::StrCat("networks/n", i % 4), absl::Now(), false,
                     std::string(300, static_cast<char>('a' + i % 26)), i + 1});
  }
  const absl::Time start = absl::Now();
  ASSERT_TRUE(a->feed->Publish("a#1", batch).ok());
  const absl::Duration took = absl::Now() - start;
  std::printf("published %d events in %s (%.1f us each)\n", kEvents,
              absl::FormatDuration(took).c_str(),
              absl::ToDoubleMicroseconds(took) / kEvents);
  absl::StatusOr<std::vector<FeedRecord>> read =
      a->feed->Read(0, "", kEvents + 10);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) {
    EXPECT_EQ((*read)[i].network, batch[i].network);
    EXPECT_EQ((*read)[i].event, batch[i].event);
  }
}

}  // namespace
}  // namespace satlab::store::testing
