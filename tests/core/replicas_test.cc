// Several cores over one shared store, as replicas over one PostgreSQL
// database (issue 14 item 2), without a database: FlakyStores marked
// shared() over one in-memory store, and one in-memory lease store. The
// same rules run against a real PostgreSQL in the cluster e2e tests.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/network_core.h"
#include "tests/core/core_test_util.h"

namespace satlab::core {
namespace {

using ::satlab::core::testing::FlakyStore;
using ::satlab::core::testing::SameBits;
using ::satlab::core::testing::SmallSpec;
using ::satlab::core::testing::StepOne;
using ::satlab::core::testing::TestBatch;
using ::satlab::core::testing::TrainOne;
using ::testing::HasSubstr;

std::string NoRecord(const StepsOutcome&) { return ""; }

absl::StatusOr<int64_t> NoBytes(const engine::NetworkSpec&, int64_t) {
  return 0;
}

class ReplicasTest : public ::testing::Test {
 protected:
  // Two replicas, "a" and "b".
  void SetUp() override { Start(absl::Seconds(5)); }

  void Start(absl::Duration lease_ttl) {
    a_.reset();
    b_.reset();
    for (int i = 0; i < 2; ++i) {
      CoreOptions options;
      options.replica_id = i == 0 ? "replica-a" : "replica-b";
      options.lease_ttl = lease_ttl;
      options.commit_every_steps = 1000;
      options.commit_interval = absl::Hours(1);
      (i == 0 ? a_ : b_) = std::make_unique<NetworkCore>(
          options, i == 0 ? &store_a_ : &store_b_, leases_.get());
    }
  }

  absl::StatusOr<StepsOutcome> Step(NetworkCore& core, int i,
                                    RequestKey key = {}) {
    Replay replay;
    const TestBatch batch(i);
    return TrainOne(core, "n", batch.view(), key, NoRecord, &replay);
  }

  std::vector<engine::AnyMatrix> Weights(NetworkCore& core) {
    auto params = core.GetParameters("n", NoBytes);
    EXPECT_TRUE(params.ok()) << params.status();
    return params.ok() ? params->weights : std::vector<engine::AnyMatrix>{};
  }

  std::shared_ptr<store::NetworkStore> db_ = store::NewInMemoryStore(100);
  std::unique_ptr<store::WriterLeaseStore> leases_ =
      store::NewInMemoryWriterLeaseStore();
  FlakyStore store_a_{db_, /*shared=*/true};
  FlakyStore store_b_{db_, /*shared=*/true};
  std::unique_ptr<NetworkCore> a_;
  std::unique_ptr<NetworkCore> b_;
};

TEST_F(ReplicasTest, ReadersOnAnyReplicaSeeTheLatestCommit) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  auto seen = b_->Get("n");  // b caches it at step 0
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->step, 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Step(*a_, i).ok());
  seen = b_->Get("n");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->step, 3);
  EXPECT_EQ(seen->durable_step, 3);
  EXPECT_TRUE(SameBits(Weights(*a_), Weights(*b_)));
  auto page = b_->List("", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].step, 3);
}

// Leases that, once armed, hold the next AcquireLease until released: a
// writer caught between taking its slot and reading the store.
class HeldLeases final : public store::WriterLeaseStore {
 public:
  explicit HeldLeases(store::WriterLeaseStore* leases) : leases_(leases) {}
  void Arm() { armed_.store(true); }
  void WaitUntilHeld() { held_.WaitForNotification(); }
  void Release() { release_.Notify(); }

  absl::StatusOr<store::WriterLease> AcquireLease(absl::string_view network_id,
                                                  absl::string_view owner,
                                                  absl::Duration ttl) override {
    if (armed_.exchange(false)) {
      held_.Notify();
      release_.WaitForNotification();
    }
    return leases_->AcquireLease(network_id, owner, ttl);
  }
  absl::Status ReleaseLease(absl::string_view network_id,
                            absl::string_view owner) override {
    return leases_->ReleaseLease(network_id, owner);
  }

 private:
  store::WriterLeaseStore* const leases_;
  std::atomic<bool> armed_{false};
  absl::Notification held_, release_;
};

// A reader on the replica whose writer is still taking its lease (the
// writer slot is taken, the store not yet read) sees the other replica's
// commits, not the state it cached before them (the cluster test once read
// a durable step of 0 there for a network trained to step 516).
TEST_F(ReplicasTest,
       ReaderBesideAWriterStillTakingItsLeaseSeesTheLatestCommit) {
  HeldLeases held(leases_.get());
  CoreOptions options;
  options.replica_id = "replica-c";
  options.lease_ttl = absl::Seconds(5);
  NetworkCore c(options, &store_b_, &held);
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  auto seen = c.Get("n");  // c caches it at step 0
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->step, 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Step(*a_, i).ok());
  held.Arm();
  std::thread writer([&] {
    auto session = c.OpenWriter("n", {});
    EXPECT_TRUE(session.ok()) << session.status();
  });
  held.WaitUntilHeld();
  seen = c.Get("n");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->step, 3);
  EXPECT_EQ(seen->durable_step, 3);
  auto page = c.List("", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].step, 3);
  EXPECT_TRUE(SameBits(Weights(*a_), Weights(c)));
  held.Release();
  writer.join();
}

TEST_F(ReplicasTest, SecondWriterOnAnotherReplicaAbortedNamingTheHolder) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  auto session = a_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok()) << session.status();
  const TestBatch batch(0);
  ASSERT_TRUE(StepOne(**session, batch.view()).ok());

  auto step = Step(*b_, 1);
  EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted) << step.status();
  EXPECT_THAT(step.status().message(),
              HasSubstr("networks/n is being written by another replica "
                        "(replica-a"));
  EXPECT_EQ(b_->OpenWriter("n", {}).status().code(),
            absl::StatusCode::kAborted);
  // Readers are not writers; b sees the durable state (step 0: the
  // session's step is not committed yet), a its live one.
  EXPECT_EQ(b_->Get("n")->step, 0);
  EXPECT_EQ(a_->Get("n")->step, 1);

  ASSERT_TRUE((*session)->Close().ok());
  // Once a lets go, b writes, continuing from a's commit.
  auto next = Step(*b_, 1);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->results.back().step, 2);
  EXPECT_EQ(a_->Get("n")->step, 2);
  EXPECT_TRUE(SameBits(Weights(*a_), Weights(*b_)));
}

// The same minibatches applied alternately on two replicas give what one
// core applying them all gives, bitwise.
TEST_F(ReplicasTest, AlternatingReplicasEqualOneCoreBitwise) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  for (int i = 0; i < 10; ++i) {
    auto step = Step(i % 2 == 0 ? *a_ : *b_, i);
    ASSERT_TRUE(step.ok()) << i << ": " << step.status();
    EXPECT_EQ(step->results.back().step, i + 1);
  }
  FlakyStore alone(/*durable=*/true);
  NetworkCore one(CoreOptions{}, &alone);
  ASSERT_TRUE(one.Create("n", SmallSpec()).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Step(one, i).ok());
  EXPECT_TRUE(SameBits(Weights(one), Weights(*a_)));
  EXPECT_TRUE(SameBits(Weights(one), Weights(*b_)));
}

// Writers on both replicas race for one network, retrying when refused:
// every acknowledged step is counted once, none lost.
TEST_F(ReplicasTest, RacingWritersLoseNoUpdate) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  constexpr int kStepsEach = 60;
  std::atomic<int> refused{0};
  std::atomic<int> failed{0};
  auto writer = [&](NetworkCore* core, int offset) {
    for (int done = 0, tries = 0; done < kStepsEach && tries < 100000;
         ++tries) {
      auto step = Step(*core, offset + done);
      if (step.ok()) {
        ++done;
      } else if (absl::IsAborted(step.status())) {
        ++refused;
        std::this_thread::yield();
      } else {
        ++failed;
        return;
      }
    }
  };
  std::thread ta(writer, a_.get(), 0);
  std::thread tb(writer, b_.get(), 1000);
  ta.join();
  tb.join();
  EXPECT_EQ(failed.load(), 0);
  auto stored = db_->Load("n");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state.step, 2 * kStepsEach);
  EXPECT_EQ(stored->revision, 2 * kStepsEach);
  EXPECT_EQ(a_->Get("n")->step, 2 * kStepsEach);
  EXPECT_EQ(b_->Get("n")->step, 2 * kStepsEach);
}

// A stream whose lease lapsed (its replica stalled) while another replica
// wrote: its next step is ABORTED and nothing the other wrote is lost.
TEST_F(ReplicasTest, LapsedLeaseNeverOverwritesAnotherReplicasCommit) {
  Start(absl::Milliseconds(150));
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  auto session = a_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok()) << session.status();
  const TestBatch batch(0);
  ASSERT_TRUE(StepOne(**session, batch.view()).ok());  // not committed
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(Step(*b_, 7).ok());  // b takes the lapsed lease and commits
  auto stored = db_->Load("n");
  ASSERT_TRUE(stored.ok());
  const int64_t b_revision = stored->revision;

  auto step = StepOne(**session, batch.view());
  EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted) << step.status();
  EXPECT_THAT(step.status().message(), HasSubstr("lease lapsed"));
  EXPECT_TRUE((*session)->Close().ok());
  stored = db_->Load("n");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->revision, b_revision);
  EXPECT_EQ(stored->state.step, 1);
  EXPECT_EQ(a_->Get("n")->step, 1);
  EXPECT_TRUE(SameBits(Weights(*a_), Weights(*b_)));
}

// Even without leases (a stalled writer past every check), the commit
// itself refuses to overwrite a newer revision, and the writer falls back
// to the store's state.
TEST_F(ReplicasTest, StaleCommitAbortedAndLiveStateFallsBack) {
  CoreOptions options;
  options.commit_every_steps = 1;
  FlakyStore sa(db_, true);
  FlakyStore sb(db_, true);
  NetworkCore a(options, &sa);  // no lease store
  NetworkCore b(options, &sb);
  ASSERT_TRUE(a.Create("n", SmallSpec()).ok());
  auto session = a.OpenWriter("n", {});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(Step(b, 3).ok());  // b commits revision 1 under a's session
  const TestBatch batch(0);
  auto step = StepOne(**session, batch.view());
  EXPECT_EQ(step.status().code(), absl::StatusCode::kAborted) << step.status();
  EXPECT_THAT(step.status().message(),
              HasSubstr("was changed by another writer"));
  EXPECT_TRUE(SameBits(Weights(a), Weights(b)));
  EXPECT_EQ(a.Get("n")->step, 1);
}

TEST_F(ReplicasTest, RequestIdsHoldAcrossReplicas) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  Replay replay;
  const TestBatch batch(2);
  auto record = [](const StepsOutcome& o) {
    return absl::StrCat("step ", o.results.back().step);
  };
  auto first = TrainOne(*a_, "n", batch.view(), {"req-1", 42}, record, &replay);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(replay.response.has_value());
  // The client's retry lands on the other replica: answered, not applied.
  Replay again;
  auto retry = TrainOne(*b_, "n", batch.view(), {"req-1", 42}, record, &again);
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_TRUE(again.response.has_value());
  EXPECT_EQ(*again.response, "step 1");
  EXPECT_EQ(b_->Get("n")->step, 1);
  Replay other;
  auto reused = TrainOne(*b_, "n", batch.view(), {"req-1", 43}, record, &other);
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ReplicasTest, DeletedOrRecreatedOnAnotherReplica) {
  ASSERT_TRUE(a_->Create("n", SmallSpec()).ok());
  ASSERT_TRUE(Step(*a_, 0).ok());
  auto session = a_->OpenWriter("n", {});
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(b_->Get("n").ok());
  ASSERT_TRUE(b_->Delete("n").ok());
  EXPECT_EQ(a_->Get("n").status().code(), absl::StatusCode::kOk)
      << "a's own writer holds it: a still serves its live copy";
  ASSERT_TRUE((*session)->Close().ok());
  EXPECT_EQ(a_->Get("n").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(b_->Create("n", SmallSpec()).ok());  // a new one, step 0
  auto seen = a_->Get("n");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->step, 0);
  ASSERT_TRUE(Step(*a_, 0).ok());
  EXPECT_EQ(b_->Get("n")->step, 1);
}

}  // namespace
}  // namespace satlab::core
