// The SQLite store's faults, each made for real (issue 12, item 6): a
// corrupt file, a newer schema, a read-only directory (a read-only bind
// mount), a full disk (a small tmpfs), a second store on one directory,
// and SIGKILL of a committing process. Mounting needs root: the tests
// check geteuid() and fail loudly without it (CI runs as root).
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite_store.h"
#include "tests/store/store_contract.h"

namespace satlab::store::testing {
namespace {

using engine::DType;

absl::StatusOr<std::unique_ptr<NetworkStore>> OpenAt(const std::string& dir) {
  SqliteStoreOptions options;
  options.data_dir = dir;
  options.max_networks = 1000;
  return NewSqliteStore(options);
}

bool Contains(const absl::Status& s, absl::string_view what) {
  return s.message().find(what) != absl::string_view::npos;
}

// A tmpfs of `size` mounted on a fresh directory for the test's life.
class Tmpfs {
 public:
  explicit Tmpfs(const std::string& options) {
    path_ = dir_.path() + "/mnt";
    mkdir(path_.c_str(), 0755);
    if (mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error_ = absl::StrCat("mount -t tmpfs -o ", options, " ", path_, ": ",
                            std::strerror(errno));
      return;
    }
    mounted_ = true;
  }
  ~Tmpfs() {
    if (mounted_ && umount2(path_.c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "umount " << path_ << ": " << std::strerror(errno);
    }
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  TempDir dir_;
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

class SqliteFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tmp_.path() + "/data"; }
  // Tests that mount call this first.
  static bool NeedRoot() {
    if (geteuid() != 0) {
      ADD_FAILURE() << "this test mounts file systems and must run as root "
                       "(CI does); euid is "
                    << geteuid();
      return false;
    }
    return true;
  }

  TempDir tmp_;
  std::string dir_;
};

// Overwrites `n` bytes of `path` at `offset` with `byte`.
void Scribble(const std::string& path, off_t offset, size_t n, char byte) {
  int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  std::string junk(n, byte);
  ASSERT_EQ(pwrite(fd, junk.data(), n, offset), static_cast<ssize_t>(n));
  close(fd);
}

std::vector<NetworkRecord> Fill(NetworkStore& store, int n) {
  std::vector<NetworkRecord> records;
  for (int i = 0; i < n; ++i) {
    records.push_back(MakeRecord(absl::StrCat("n", i), DType::kFloat32,
                                 Optimizer::kAdam, i, {16, 32, 4}));
    EXPECT_TRUE(store.Create(records.back()).ok());
  }
  return records;
}

TEST_F(SqliteFaultTest, CorruptHeaderIsDataLossNamingTheFile) {
  {
    auto store = OpenAt(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    Fill(**store, 3);
  }
  Scribble(dir_ + "/satlab.db", 0, 100, '\x5a');
  auto store = OpenAt(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss)
      << store.status();
  EXPECT_TRUE(Contains(store.status(), dir_ + "/satlab.db")) << store.status();
  EXPECT_TRUE(Contains(store.status(), "backup")) << store.status();
  // The failed open released the directory's lock: a retry reports the
  // same damage, not "another satlab-server".
  auto retry = OpenAt(dir_);
  EXPECT_EQ(retry.status().code(), absl::StatusCode::kDataLoss)
      << retry.status();
}

TEST_F(SqliteFaultTest, CorruptTablePageFailsTheIntegrityCheck) {
  {
    auto store = OpenAt(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    Fill(**store, 20);
  }
  // Page 2 is the networks table's root (the first table the migration
  // creates); garbage there breaks the b-tree that quick_check walks.
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/satlab.db").c_str(), &st), 0);
  ASSERT_GT(st.st_size, 3 * 4096);
  Scribble(dir_ + "/satlab.db", 4096, 4096, '\xa5');
  auto store = OpenAt(dir_);
  ASSERT_FALSE(store.ok()) << "a corrupt store opened";
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss)
      << store.status();
  EXPECT_TRUE(Contains(store.status(), dir_ + "/satlab.db")) << store.status();
}

TEST_F(SqliteFaultTest, UnreadableDatabaseIsAStartupError) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
  // A directory where the file should be: no user, root included, can
  // open it as a database.
  ASSERT_EQ(mkdir((dir_ + "/satlab.db").c_str(), 0755), 0);
  auto store = OpenAt(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition)
      << store.status();
  EXPECT_TRUE(Contains(store.status(), dir_ + "/satlab.db")) << store.status();
}

TEST_F(SqliteFaultTest, NewerSchemaIsFailedPrecondition) {
  std::vector<NetworkRecord> records;
  {
    auto store = OpenAt(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    records = Fill(**store, 2);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/satlab.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         absl::StrCat("PRAGMA user_version = ",
                                      kSqliteSchemaVersion + 98)
                             .c_str(),
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = OpenAt(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition)
      << store.status();
  EXPECT_TRUE(Contains(store.status(), absl::StrCat("schema version ",
                                                    kSqliteSchemaVersion + 98)))
      << store.status();
  EXPECT_TRUE(Contains(store.status(), dir_)) << store.status();
}

// Takes a database of this binary's schema back to version 3, as a
// version-3 binary left it: each experiment's spec in its own row.
constexpr const char* kBackToVersion3 =
    "ALTER TABLE experiments ADD COLUMN spec BLOB NOT NULL DEFAULT x''; "
    "UPDATE experiments SET spec = (SELECT spec FROM experiment_specs s "
    "WHERE s.id = experiments.id); "
    "DROP TABLE experiment_specs; "
    "PRAGMA user_version = 3; ";

// A database written by an earlier binary (schema version 1: no revision
// column, no experiment claims) opens, migrates in place and keeps every
// network bitwise, at revision 0, committable.
TEST_F(SqliteFaultTest, VersionOneDatabaseMigratesKeepingEveryNetwork) {
  std::vector<NetworkRecord> records;
  {
    auto store = OpenAt(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    records = Fill(**store, 3);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/satlab.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         absl::StrCat(kBackToVersion3,
                                      "ALTER TABLE networks DROP COLUMN "
                                      "revision; "
                                      "DROP TABLE experiment_claims; "
                                      "PRAGMA user_version = 1")
                             .c_str(),
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto store = OpenAt(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  for (NetworkRecord& r : records) {
    absl::StatusOr<NetworkRecord> got = (*store)->Load(r.id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameRecord(*got, r));
    Advance(r);
    EXPECT_TRUE((*store)->Commit(r).ok());
  }
  store->reset();
  ASSERT_EQ(sqlite3_open((dir_ + "/satlab.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), kSqliteSchemaVersion);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

// A version-3 database (each experiment's spec in its row) migrates to
// version 4 keeping every experiment whole, and what it holds afterwards
// updates and deletes as any other.
TEST_F(SqliteFaultTest, VersionThreeDatabaseMigratesKeepingEveryExperiment) {
  SqliteStoreOptions options;
  options.data_dir = dir_;
  std::vector<ExperimentRecord> records;
  {
    auto stores = OpenSqliteStores(options);
    ASSERT_TRUE(stores.ok()) << stores.status();
    for (int i = 0; i < 3; ++i) {
      ExperimentRecord r;
      r.id = absl::StrCat("exp-", i);
      // A spec of several pages (overflow pages in the old row), with
      // every byte value.
      for (int b = 0; b < 20000 * (i + 1); ++b) {
        r.spec.push_back(static_cast<char>((b * 7 + i) & 0xff));
      }
      r.status = i;
      r.curves = std::string(100 + i, 'c');
      r.summary = absl::StrCat("summary ", i);
      r.create_time = absl::FromUnixNanos(1'700'000'000'000'000'000 + i);
      r.update_time = r.create_time + absl::Seconds(1);
      ASSERT_TRUE(stores->experiments->CreateExperiment(r).ok());
      records.push_back(r);
    }
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/satlab.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kBackToVersion3, nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto stores = OpenSqliteStores(options);
  ASSERT_TRUE(stores.ok()) << stores.status();
  auto listed = stores->experiments->ListExperiments("", 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ((*listed)[i].id, records[i].id);
    EXPECT_EQ((*listed)[i].spec, records[i].spec) << records[i].id;
    EXPECT_EQ((*listed)[i].curves, records[i].curves);
    EXPECT_EQ((*listed)[i].summary, records[i].summary);
    EXPECT_EQ((*listed)[i].create_time, records[i].create_time);
  }
  ExperimentRecord done = records[1];
  done.status = 9;
  done.summary = "done";
  ASSERT_TRUE(stores->experiments->UpdateExperiment(done).ok());
  auto got = stores->experiments->LoadExperiment(done.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spec, records[1].spec);
  EXPECT_EQ(got->summary, "done");
  ASSERT_TRUE(stores->experiments->DeleteExperiment(records[0].id).ok());
  ASSERT_TRUE(stores->experiments->CreateExperiment(records[0]).ok());
}

TEST_F(SqliteFaultTest, ReadOnlyDirectoryIsAClearStartupError) {
  if (!NeedRoot()) return;
  Tmpfs fs("size=8m");
  ASSERT_TRUE(fs.mounted()) << fs.error();
  std::string rw = fs.path() + "/data";
  std::vector<NetworkRecord> records;
  {
    auto store = OpenAt(rw);
    ASSERT_TRUE(store.ok()) << store.status();
    records = Fill(**store, 2);
  }
  // The same directory through a read-only bind mount (root ignores
  // permission bits, so chmod would not stop a write).
  std::string ro = tmp_.path() + "/ro";
  ASSERT_EQ(mkdir(ro.c_str(), 0755), 0);
  ASSERT_EQ(mount(rw.c_str(), ro.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  int rc = mount(nullptr, ro.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY,
                 nullptr);
  int err = errno;
  if (rc == 0) {
    auto store = OpenAt(ro);
    EXPECT_FALSE(store.ok()) << "a store opened on a read-only mount";
    EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition)
        << store.status();
    EXPECT_TRUE(Contains(store.status(), ro)) << store.status();
    EXPECT_TRUE(Contains(store.status(), "writable")) << store.status();
  }
  ASSERT_EQ(umount2(ro.c_str(), MNT_DETACH), 0) << std::strerror(errno);
  ASSERT_EQ(rc, 0) << "read-only remount: " << std::strerror(err);
  // Nothing was lost or changed by the refused start.
  auto store = OpenAt(rw);
  ASSERT_TRUE(store.ok()) << store.status();
  for (const auto& r : records) {
    auto got = (*store)->Load(r.id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameRecord(*got, r));
  }
}

TEST_F(SqliteFaultTest, FullDiskIsResourceExhaustedAndKeepsEveryCommit) {
  if (!NeedRoot()) return;
  Tmpfs fs("size=2m");
  ASSERT_TRUE(fs.mounted()) << fs.error();
  std::string dir = fs.path() + "/data";
  std::map<std::string, NetworkRecord> committed;
  absl::Status failure;
  {
    auto store = OpenAt(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    // ~100 KB records: a 2 MiB disk fills within a few dozen writes. Each
    // round creates one network and advances every earlier one.
    for (int i = 0; i < 200 && failure.ok(); ++i) {
      NetworkRecord r = MakeRecord(absl::StrCat("f", i), DType::kFloat32,
                                   Optimizer::kAdam, i, {32, 128, 32});
      failure = (*store)->Create(r);
      if (failure.ok()) committed[r.id] = r;
      for (auto& [id, c] : committed) {
        if (!failure.ok()) break;
        NetworkRecord next = c;
        Advance(next);
        failure = (*store)->Commit(next);
        if (failure.ok()) c = next;
      }
    }
    ASSERT_FALSE(failure.ok()) << "a 2 MiB disk never filled";
    EXPECT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
    EXPECT_TRUE(Contains(failure, dir)) << failure;
    ASSERT_GT(committed.size(), 2u);
    std::cout << "disk full after " << committed.size()
              << " networks: " << failure << "\n";
    // The failed call changed nothing; the rest still reads.
    for (const auto& [id, r] : committed) {
      auto got = (*store)->Load(id);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(SameRecord(*got, r)) << id;
    }
    EXPECT_EQ(*(*store)->Count(), static_cast<int64_t>(committed.size()));
  }
  // A restart on the still-full disk opens and has every commit.
  auto store = OpenAt(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  for (const auto& [id, r] : committed) {
    auto got = (*store)->Load(id);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameRecord(*got, r)) << id;
  }
}

TEST_F(SqliteFaultTest, SecondStoreOnOneDirectoryIsRefusedUntilTheFirstCloses) {
  auto first = OpenAt(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  NetworkRecord r = MakeRecord("one", DType::kFloat64, Optimizer::kSgd, 1);
  ASSERT_TRUE((*first)->Create(r).ok());

  auto second = OpenAt(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition)
      << second.status();
  EXPECT_TRUE(Contains(second.status(), "another satlab-server"))
      << second.status();
  EXPECT_TRUE(Contains(second.status(), dir_ + "/LOCK")) << second.status();

  // Another process (the real case: a second server) is refused too.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto other = OpenAt(dir_);
    _exit(!other.ok() &&
                  other.status().code() == absl::StatusCode::kFailedPrecondition
              ? 0
              : 1);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
      << "a second process opened a locked store";

  first->reset();
  second = OpenAt(dir_);
  ASSERT_TRUE(second.ok()) << second.status();
  auto got = (*second)->Load("one");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, r));
}

// What the child commits: network k's record at `step`, rebuilt
// deterministically from its creation record.
NetworkRecord RecordAt(int k, int64_t step) {
  NetworkRecord r = MakeRecord(absl::StrCat("k", k), DType::kFloat32,
                               Optimizer::kAdam, k, {8, 24, 3}, 1);
  while (r.state.step < step) Advance(r);
  return r;
}

// The child: commits to kNetworks networks round-robin, forever, reporting
// each acknowledged commit (network, step) on `fd`.
[[noreturn]] void CommitForever(const std::string& dir, int fd, int networks) {
  auto store = OpenAt(dir);
  if (!store.ok()) _exit(3);
  std::vector<NetworkRecord> current;
  for (int k = 0; k < networks; ++k) {
    auto loaded = (*store)->Load(absl::StrCat("k", k));
    if (loaded.ok()) {
      current.push_back(*std::move(loaded));
    } else {
      current.push_back(RecordAt(k, 0));
      if (!(*store)->Create(current.back()).ok()) _exit(4);
      int64_t msg[2] = {k, current.back().state.step};
      if (write(fd, msg, sizeof msg) != sizeof msg) _exit(5);
    }
  }
  for (int64_t i = 0;; ++i) {
    int k = static_cast<int>(i % networks);
    NetworkRecord next = current[k];
    Advance(next);
    if (!(*store)->Commit(next).ok()) _exit(6);
    current[k] = std::move(next);
    int64_t msg[2] = {k, current[k].state.step};
    if (write(fd, msg, sizeof msg) != sizeof msg) _exit(5);
  }
}

TEST_F(SqliteFaultTest, SigkillNeverLosesAnAcknowledgedCommit) {
  constexpr int kNetworks = 4;
  constexpr int kRounds = 12;
  std::mt19937 rng(12345);
  std::map<int, int64_t> acknowledged;
  int64_t total_commits = 0;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CommitForever(dir_, fds[1], kNetworks);
    }
    close(fds[1]);
    // The first rounds kill early (during open and creation), later ones
    // mid-stream.
    int ms = std::uniform_int_distribution<int>(round < 2 ? 1 : 20, 250)(rng);
    absl::SleepFor(absl::Milliseconds(ms));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus))
        << "the child exited by itself with " << WEXITSTATUS(wstatus);
    int64_t msg[2];
    ssize_t n;
    while ((n = read(fds[0], msg, sizeof msg)) == sizeof msg) {
      acknowledged[static_cast<int>(msg[0])] = msg[1];
      ++total_commits;
    }
    close(fds[0]);

    auto store = OpenAt(dir_);  // runs quick_check
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status();
    for (const auto& [k, step] : acknowledged) {
      auto got = (*store)->Load(absl::StrCat("k", k));
      ASSERT_TRUE(got.ok()) << got.status();
      // The child may have been killed between a commit and its report:
      // the store can be one step ahead of what was acknowledged, never
      // behind.
      ASSERT_TRUE(got->state.step == step || got->state.step == step + 1)
          << "k" << k << ": stored step " << got->state.step
          << ", acknowledged " << step;
      EXPECT_TRUE(SameRecord(*got, RecordAt(k, got->state.step)));
      acknowledged[k] = got->state.step;
    }
  }
  // A full integrity check (quick_check skips index/content cross-checks).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/satlab.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "ok");
  sqlite3_finalize(s);
  sqlite3_close(db);
  EXPECT_GT(total_commits, kRounds) << "the children barely committed";
  std::cout << "SIGKILL rounds: " << kRounds
            << ", acknowledged commits: " << total_commits << "\n";
}

}  // namespace
}  // namespace satlab::store::testing
