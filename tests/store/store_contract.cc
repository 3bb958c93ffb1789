#include "tests/store/store_contract.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace satlab::store::testing {

using engine::AnyMatrix;
using engine::DType;

std::unique_ptr<NetworkStore> StoreContractTest::Open(int64_t max_networks) {
  absl::StatusOr<std::unique_ptr<NetworkStore>> store =
      GetParam().open(dir_.path(), max_networks);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

namespace {

void ExpectLoads(const NetworkStore& store, const NetworkRecord& want) {
  absl::StatusOr<NetworkRecord> got = store.Load(want.id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, want));
}

TEST_P(StoreContractTest, RoundTripIsBitwiseForEveryDtypeAndOptimizer) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<NetworkRecord> records;
  uint64_t seed = 1;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (Optimizer opt :
         {Optimizer::kSgd, Optimizer::kMomentum, Optimizer::kAdam}) {
      records.push_back(MakeRecord(absl::StrCat("net-", seed), dtype, opt, seed,
                                   {4, 7, 5, 3}, static_cast<int>(seed)));
      ++seed;
    }
  }
  for (const auto& r : records) ASSERT_TRUE(store->Create(r).ok());
  for (const auto& r : records) ExpectLoads(*store, r);
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    for (const auto& r : records) ExpectLoads(*reopened, r);
  }
}

TEST_P(StoreContractTest, LoadOfAbsentIsNotFound) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<NetworkRecord> got = store->Load("nope");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("networks/nope"), std::string::npos)
      << got.status();
}

TEST_P(StoreContractTest, CreateOfTakenIdIsAlreadyExistsAndChangesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord first = MakeRecord("a", DType::kFloat32, Optimizer::kAdam, 1);
  NetworkRecord second = MakeRecord("a", DType::kFloat64, Optimizer::kSgd, 2);
  ASSERT_TRUE(store->Create(first).ok());
  absl::Status s = store->Create(second);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_NE(s.message().find("networks/a"), std::string::npos) << s;
  ExpectLoads(*store, first);
  EXPECT_EQ(*store->Count(), 1);
}

TEST_P(StoreContractTest, CreateBeyondMaxNetworksIsResourceExhausted) {
  auto store = Open(3);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(absl::StrCat("n", i), DType::kFloat32,
                                        Optimizer::kSgd, i))
                    .ok());
  }
  absl::Status s =
      store->Create(MakeRecord("n3", DType::kFloat32, Optimizer::kSgd, 3));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("--max_networks"), std::string::npos) << s;
  EXPECT_EQ(*store->Count(), 3);
  EXPECT_EQ(store->Load("n3").status().code(), absl::StatusCode::kNotFound);
  // A taken id is ALREADY_EXISTS even when the store is full.
  EXPECT_EQ(store->Create(MakeRecord("n0", DType::kFloat32, Optimizer::kSgd, 9))
                .code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(store->Delete("n1").ok());
  EXPECT_TRUE(
      store->Create(MakeRecord("n3", DType::kFloat32, Optimizer::kSgd, 3))
          .ok());
}

// Tenant ownership (docs/security.md) lives in the stored id: tenant
// "alpha"'s network "n" is "alpha.n" (core::TenantScope). Every backend
// must keep such ids exactly and list one tenant's ids
// as one contiguous run after "alpha." (the service reads a tenant's page
// as that run), whatever tenants sort around it.
TEST_P(StoreContractTest, TenantScopedIdsRoundTripAndListContiguously) {
  const std::vector<std::string> ids = {"alpha.n", "alpha-x.n", "beta.n",
                                        "alpha.m", "plain",     "alpha.z-1",
                                        "alpha0.a"};
  auto store = Open();
  ASSERT_NE(store, nullptr);
  uint64_t seed = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(
        store->Create(MakeRecord(id, DType::kFloat64, Optimizer::kSgd, ++seed))
            .ok());
  }
  auto page = store->List("alpha.", 100);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> run;
  for (const NetworkSummary& s : *page) {
    if (!absl::StartsWith(s.id, "alpha.")) break;
    run.push_back(s.id);
  }
  EXPECT_EQ(run, (std::vector<std::string>{"alpha.m", "alpha.n", "alpha.z-1"}));
  for (const auto& s : *page) {
    if (absl::StartsWith(s.id, "alpha.")) {
      EXPECT_TRUE(std::find(run.begin(), run.end(), s.id) != run.end())
          << s.id << " outside the contiguous run";
    }
  }
  EXPECT_EQ(store->Load("alpha.n")->id, "alpha.n");
  EXPECT_EQ(store->Load("beta.n")->id, "beta.n");
}

TEST_P(StoreContractTest, ListPagesInIdOrderWithAfterAndLimit) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::string> ids = {"m", "b", "z", "a", "k", "c", "y"};
  uint64_t seed = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(id, DType::kFloat64,
                                        Optimizer::kMomentum, ++seed))
                    .ok());
  }
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    absl::StatusOr<std::vector<NetworkSummary>> page = store->List(after, 3);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->size(), 3u);
    if (page->empty()) break;
    for (const auto& s : *page) {
      seen.push_back(s.id);
      NetworkRecord want = *store->Load(s.id);
      EXPECT_EQ(s.create_time, want.create_time);
      EXPECT_EQ(s.update_time, want.update_time);
      EXPECT_EQ(s.step, want.state.step);
      EXPECT_EQ(s.samples_seen, want.state.samples_seen);
      EXPECT_TRUE(SameSpec(s.spec, want.state.spec));
    }
    after = page->back().id;
  }
  EXPECT_EQ(seen, sorted);
  EXPECT_TRUE(store->List("", 0)->empty());
  // A default-constructed `after` (null data) is the start too.
  absl::StatusOr<std::vector<NetworkSummary>> first =
      store->List(absl::string_view(), 100);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), ids.size());
  EXPECT_TRUE(store->List("z", 5)->empty());
  absl::StatusOr<std::vector<NetworkSummary>> mid = store->List("c", 2);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 2u);
  EXPECT_EQ((*mid)[0].id, "k");
  EXPECT_EQ((*mid)[1].id, "m");
  // `after` need not be a stored id.
  mid = store->List("bb", 1);
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 1u);
  EXPECT_EQ((*mid)[0].id, "c");
}

TEST_P(StoreContractTest, CommitReplacesStateTimeAndRequests) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord r = MakeRecord("x", DType::kFloat32, Optimizer::kAdam, 5);
  ASSERT_TRUE(store->Create(r).ok());
  for (int i = 0; i < 3; ++i) {
    Advance(r);
    ASSERT_TRUE(store->Commit(r).ok());
    ExpectLoads(*store, r);
  }
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    ExpectLoads(*reopened, r);
  }
}

TEST_P(StoreContractTest,
       CommitOfAbsentOrRecreatedIsNotFoundAndChangesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord ghost = MakeRecord("g", DType::kFloat64, Optimizer::kSgd, 1);
  absl::Status s = store->Commit(ghost);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(*store->Count(), 0);

  NetworkRecord old = MakeRecord("r", DType::kFloat64, Optimizer::kAdam, 2);
  ASSERT_TRUE(store->Create(old).ok());
  ASSERT_TRUE(store->Delete("r").ok());
  NetworkRecord recreated =
      MakeRecord("r", DType::kFloat32, Optimizer::kSgd, 3);
  ASSERT_NE(recreated.create_time, old.create_time);
  ASSERT_TRUE(store->Create(recreated).ok());
  Advance(old);  // the old network's writer commits late
  s = store->Commit(old);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("networks/r"), std::string::npos) << s;
  ExpectLoads(*store, recreated);
}

// Two writers read the same revision; the first to commit wins, the second
// is ABORTED naming both revisions and changes nothing (what keeps a
// replica whose lease lapsed from overwriting another's commit).
TEST_P(StoreContractTest, CommitOverAnotherWritersRevisionIsAbortedAndKeepsIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  NetworkRecord base = MakeRecord("v", DType::kFloat32, Optimizer::kAdam, 4);
  base.revision = 7;  // Create stores revision 0 whatever it is given
  ASSERT_TRUE(store->Create(base).ok());
  base.revision = 0;
  absl::StatusOr<NetworkVersion> v = store->Version("v");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->revision, 0);
  EXPECT_EQ(v->create_time, base.create_time);
  ExpectLoads(*store, base);

  NetworkRecord first = base;
  Advance(first);
  NetworkRecord second = base;
  Advance(second);
  Advance(second);  // other contents, the same revision a second writer
  second.revision = first.revision;  // would write after reading `base`
  ASSERT_TRUE(store->Commit(first).ok());
  absl::Status s = store->Commit(second);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("networks/v"), std::string::npos) << s;
  EXPECT_NE(s.message().find("revision 1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("revision 0"), std::string::npos) << s;
  ExpectLoads(*store, first);
  // Skipping a revision is refused too.
  NetworkRecord ahead = first;
  ahead.revision += 2;
  s = store->Commit(ahead);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ExpectLoads(*store, first);
  v = store->Version("v");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->revision, 1);
  EXPECT_EQ(store->Version("absent").status().code(),
            absl::StatusCode::kNotFound);
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    ExpectLoads(*reopened, first);
  }
}

TEST_P(StoreContractTest, DeleteRemovesAndCounts) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Count(), 0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(store
                    ->Create(MakeRecord(absl::StrCat("d", i), DType::kFloat32,
                                        Optimizer::kSgd, i))
                    .ok());
    EXPECT_EQ(*store->Count(), i + 1);
  }
  ASSERT_TRUE(store->Delete("d2").ok());
  EXPECT_EQ(*store->Count(), 3);
  EXPECT_EQ(store->Load("d2").status().code(), absl::StatusCode::kNotFound);
  absl::Status s = store->Delete("d2");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("networks/d2"), std::string::npos) << s;
  EXPECT_EQ(*store->Count(), 3);
  std::vector<std::string> ids;
  absl::StatusOr<std::vector<NetworkSummary>> all = store->List("", 10);
  ASSERT_TRUE(all.ok()) << all.status();
  for (const auto& n : *all) ids.push_back(n.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"d0", "d1", "d3"}));
  if (store->durable()) {
    store.reset();
    auto reopened = Open();
    ASSERT_NE(reopened, nullptr);
    EXPECT_EQ(*reopened->Count(), 3);
    EXPECT_EQ(reopened->Load("d2").status().code(),
              absl::StatusCode::kNotFound);
  }
}

// Writers commit their own networks while readers load and list them all:
// every Load sees one whole commit (every tensor element equals the
// record's step), every listing is in order, and at the end each network
// holds its writer's last commit.
TEST_P(StoreContractTest, ConcurrentCommitLoadListSeeWholeRecords) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kWriters = 3;
  constexpr int kReaders = 3;
  constexpr int kCommits = 40;
  auto stamped = [](int w, int64_t step) {
    NetworkRecord r = MakeRecord(absl::StrCat("w", w), DType::kFloat32,
                                 Optimizer::kMomentum, 1, {8, 16, 4}, 1);
    r.state.step = step;
    r.revision = step;
    auto stamp = [&](std::vector<AnyMatrix>& ts) {
      for (auto& t : ts) std::get<0>(t).setConstant(static_cast<float>(step));
    };
    stamp(r.state.weights);
    stamp(r.state.biases);
    for (auto& s : r.state.optimizer_slots) {
      stamp(s.weights);
      stamp(s.biases);
    }
    return r;
  };
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_TRUE(store->Create(stamped(w, 0)).ok());
  }
  std::atomic<int> errors{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int64_t step = 1; step <= kCommits; ++step) {
        if (!store->Commit(stamped(w, step)).ok()) ++errors;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      int rounds = 0;
      while (writing.load() || rounds < 5) {
        ++rounds;
        absl::StatusOr<NetworkRecord> got =
            store->Load(absl::StrCat("w", (rounds + r) % kWriters));
        if (!got.ok()) {
          ++errors;
          continue;
        }
        float want = static_cast<float>(got->state.step);
        for (const auto& t : got->state.weights) {
          const auto& m = std::get<0>(t);
          for (int64_t i = 0; i < m.size(); ++i) {
            if (m.data()[i] != want) ++errors;
          }
        }
        absl::StatusOr<std::vector<NetworkSummary>> page = store->List("", 10);
        if (!page.ok() || page->size() != kWriters) {
          ++errors;
          continue;
        }
        for (int i = 0; i < kWriters; ++i) {
          if ((*page)[i].id != absl::StrCat("w", i)) ++errors;
        }
        if (rounds > 100000) break;  // bounded even if the writers hang
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing = false;
  for (size_t i = kWriters; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(errors.load(), 0);
  for (int w = 0; w < kWriters; ++w) ExpectLoads(*store, stamped(w, kCommits));
  EXPECT_EQ(*store->Count(), kWriters);
}

}  // namespace
}  // namespace satlab::store::testing
