// Experiments spread over replicas (issue 14 item 4): in-process servers
// sharing one throwaway PostgreSQL claim an experiment's variants through
// the database; the results equal a one-server run bitwise, progress shows
// on every replica, and a replica that dies (its claims left to expire) has
// its variants, or its coordination, taken over by another.
#include "server/service/experiment_claims.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/service/claims_test_util.h"
#include "tests/service/service_test_util.h"
#include "tests/store/throwaway_postgres.h"

namespace satlab::testing {
namespace {

// One PostgreSQL for the tests of this process, a database per test.
absl::StatusOr<std::string> NewDatabase() {
  static auto* pg = new absl::StatusOr<std::unique_ptr<ThrowawayPostgres>>(
      ThrowawayPostgres::Start());
  static int databases = 0;
  if (!pg->ok()) return pg->status();
  const std::string name = absl::StrCat("claims_", ++databases);
  if (absl::Status s = (**pg)->CreateDatabase(name); !s.ok()) return s;
  return (**pg)->Url(name);
}

std::unique_ptr<Client> ClientOf(const service::Server& server) {
  ClientOptions options;
  options.target = server.address();
  options.timeout = absl::Seconds(60);
  return std::make_unique<Client>(options);
}

struct Streamed {
  absl::Status status;
  std::vector<v1::EpochMetrics> curves;  // in stream order
  v1::ExperimentSummary summary;
};

// `on_epoch(count)` after each streamed epoch.
Streamed Stream(Client& client, const v1::RunExperimentRequest& request,
                const std::function<void(int)>& on_epoch = nullptr,
                absl::Duration deadline = absl::Seconds(300)) {
  Streamed out;
  auto summary = client.RunExperiment(
      request,
      [&](const v1::RunExperimentResponse& m) {
        if (m.has_epoch()) {
          out.curves.push_back(m.epoch());
          if (on_epoch) on_epoch(static_cast<int>(out.curves.size()));
        }
        return true;
      },
      deadline);
  out.status = summary.status();
  if (summary.ok()) out.summary = *summary;
  return out;
}

class ExperimentClaimsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url = NewDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }
  void TearDown() override {
    for (auto& s : replicas_) s->Shutdown(absl::Seconds(2));
  }

  // A replica on the shared database: one compute thread, one variant at
  // a time, polling every 50 ms, claims lasting `ttl`.
  service::Server& AddReplica(absl::Duration ttl = absl::Seconds(5)) {
    service::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.compute_threads = 1;
    options.store_url = url_;
    options.experiment_claims.replica_id =
        absl::StrCat("replica-", replicas_.size());
    options.experiment_claims.ttl = ttl;
    options.experiment_claims.poll = absl::Milliseconds(50);
    options.experiment_claims.slots = 1;
    options.service.experiment_record_interval = absl::Milliseconds(100);
    auto server = service::Server::Create(options);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) std::abort();
    replicas_.push_back(*std::move(server));
    return *replicas_.back();
  }

  // The same experiment on one server with the in-memory store (the
  // single-replica path: no claims).
  static Streamed Reference(const v1::RunExperimentRequest& request) {
    service::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.compute_threads = 1;
    auto server = service::Server::Create(options);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return Streamed{server.status(), {}, {}};
    Streamed run = Stream(*ClientOf(**server), request);
    (*server)->Shutdown(absl::Seconds(2));
    return run;
  }

  std::string url_;
  std::vector<std::unique_ptr<service::Server>> replicas_;
};

TEST_F(ExperimentClaimsTest, TwoReplicasShareTheVariantsBitwiseAsOne) {
  const v1::RunExperimentRequest request = Blobs("shared", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;

  service::Server& a = AddReplica();
  service::Server& b = AddReplica();
  auto client_a = ClientOf(a);
  auto client_b = ClientOf(b);
  // Progress read on B (which does not stream it) while A streams.
  std::atomic<bool> streaming{true};
  int running_seen_on_b = 0;
  int most_curves_on_b = 0;
  std::thread reader([&] {
    while (streaming.load()) {
      auto got = client_b->GetExperiment("experiments/shared");
      if (got.ok() && got->state() == v1::EXPERIMENT_STATE_RUNNING) {
        ++running_seen_on_b;
        most_curves_on_b = std::max(most_curves_on_b, got->curves_size());
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  const Streamed run = Stream(*client_a, request);
  streaming.store(false);
  reader.join();
  ASSERT_TRUE(run.status.ok()) << run.status;

  // Both replicas ran variants; together all four, once each.
  const int64_t on_a = a.experiment_claims()->variants_finished();
  const int64_t on_b = b.experiment_claims()->variants_finished();
  EXPECT_GE(on_a, 1);
  EXPECT_GE(on_b, 1);
  EXPECT_EQ(on_a + on_b, 4);

  ExpectSameResults(run.summary, reference.summary);
  ExpectSameCurves(Sorted(run.curves), Sorted(reference.curves));
  EXPECT_GT(running_seen_on_b, 0);
  EXPECT_GT(most_curves_on_b, 0);

  // The record, from either replica, holds every epoch and the summary.
  for (Client* client : {client_a.get(), client_b.get()}) {
    auto got = client->GetExperiment("experiments/shared");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED);
    ExpectSameResults(got->summary(), reference.summary);
    ExpectSameCurves({got->curves().begin(), got->curves().end()},
                     Sorted(reference.curves));
  }
  auto listed = client_b->ListExperiments(10, "");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->experiments_size(), 1);
  EXPECT_EQ(listed->experiments(0).state(), v1::EXPERIMENT_STATE_SUCCEEDED);
}

TEST_F(ExperimentClaimsTest, DeadWorkerVariantIsRunAgainElsewhereBitwise) {
  const v1::RunExperimentRequest request = Blobs("worker-dies", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;

  service::Server& a = AddReplica(absl::Seconds(1));
  service::Server& b = AddReplica(absl::Seconds(1));
  auto client_a = ClientOf(a);
  // B dies (its claims left to expire) once a few epochs have streamed:
  // by then it holds a variant.
  bool killed = false;
  const Streamed run = Stream(*client_a, request, [&](int n) {
    if (!killed && n >= 400) {
      killed = true;
      b.experiment_claims()->StopWithoutRelease();
    }
  });
  ASSERT_TRUE(killed);
  ASSERT_TRUE(run.status.ok()) << run.status;
  EXPECT_EQ(a.experiment_claims()->variants_finished() +
                b.experiment_claims()->variants_finished(),
            4);
  EXPECT_GE(a.experiment_claims()->variants_finished(), 3);
  ExpectSameResults(run.summary, reference.summary);
  ExpectSameCurves(Sorted(run.curves), Sorted(reference.curves));
}

TEST_F(ExperimentClaimsTest, ShutdownReplicaGivesItsVariantBackAtOnce) {
  const v1::RunExperimentRequest request = Blobs("handed-back", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;
  // Claims that would last 300 s: were B's claim not given back, A could
  // run B's variant only after it expired, 300 s after the shutdown. The
  // bound is the claim's life, not a guess at how fast the rest computes
  // (under ASan on a slow machine the rest took 36 s).
  const absl::Duration claim_life = absl::Seconds(300);
  service::Server& a = AddReplica(claim_life);
  service::Server& b = AddReplica(claim_life);
  auto client_a = ClientOf(a);
  absl::Time stopped = absl::InfiniteFuture();
  const Streamed run = Stream(
      *client_a, request,
      [&](int n) {
        if (n == 400) {
          b.Shutdown(absl::Seconds(1));
          stopped = absl::Now();
        }
      },
      claim_life + absl::Seconds(60));
  ASSERT_TRUE(run.status.ok()) << run.status;
  EXPECT_LT(absl::Now() - stopped, claim_life);
  // B was stopped mid-variant (400 of 4 x 2000 epochs): A ran all four.
  EXPECT_EQ(b.experiment_claims()->variants_finished(), 0);
  EXPECT_EQ(a.experiment_claims()->variants_finished(), 4);
  ExpectSameResults(run.summary, reference.summary);
  ExpectSameCurves(Sorted(run.curves), Sorted(reference.curves));
}

TEST_F(ExperimentClaimsTest, DeadCoordinatorIsTakenOverAndFinished) {
  const v1::RunExperimentRequest request = Blobs("coordinator-dies", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;

  service::Server& a = AddReplica(absl::Seconds(1));
  service::Server& b = AddReplica(absl::Seconds(1));
  auto client_a = ClientOf(a);
  auto client_b = ClientOf(b);
  bool killed = false;
  const Streamed run = Stream(*client_a, request, [&](int n) {
    if (!killed && n >= 200) {
      killed = true;
      a.experiment_claims()->StopWithoutRelease();
    }
  });
  ASSERT_TRUE(killed);
  // A's stream ends UNAVAILABLE; B takes the experiment over, runs what A
  // held and records it SUCCEEDED.
  EXPECT_EQ(run.status.code(), absl::StatusCode::kUnavailable) << run.status;
  // Waits while the record moves: a stall of 60 s fails, however long the
  // rest takes to compute (minutes under ASan on a loaded machine).
  absl::Time stalled_at = absl::Now() + absl::Seconds(60);
  int curves = -1;
  absl::StatusOr<v1::Experiment> got;
  while (absl::Now() < stalled_at) {
    got = client_b->GetExperiment("experiments/coordinator-dies");
    if (got.ok() && got->state() != v1::EXPERIMENT_STATE_RUNNING) break;
    if (got.ok() && got->curves_size() > curves) {
      curves = got->curves_size();
      stalled_at = absl::Now() + absl::Seconds(60);
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED) << got->error();
  ExpectSameResults(got->summary(), reference.summary);
  ExpectSameCurves({got->curves().begin(), got->curves().end()},
                   Sorted(reference.curves));
  // Asked again by id, it is replayed from the record.
  v1::RunExperimentRequest again;
  again.set_experiment_id("coordinator-dies");
  const Streamed replay = Stream(*client_b, again);
  ASSERT_TRUE(replay.status.ok()) << replay.status;
  ExpectSameResults(replay.summary, reference.summary);
}

TEST_F(ExperimentClaimsTest, BadClaimOptionsAreInvalidArgumentNamingTheFlag) {
  service::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_url = url_;
  options.experiment_claims.poll = absl::ZeroDuration();
  auto server = service::Server::Create(options);
  ASSERT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
      << server.status();
  EXPECT_NE(server.status().message().find("--experiment_claim_poll_ms"),
            std::string::npos)
      << server.status();
  EXPECT_NE(server.status().message().find("poll 0"), std::string::npos)
      << server.status();
}

TEST_F(ExperimentClaimsTest, CancelledOnOneReplicaStopsEveryReplica) {
  service::Server& a = AddReplica();
  service::Server& b = AddReplica();
  auto client_a = ClientOf(a);
  auto client_b = ClientOf(b);
  // Long enough that no variant ends; the client cancels after 40 epochs.
  int seen = 0;
  auto cut = client_a->RunExperiment(
      Blobs("cancelled", 20000),
      [&](const v1::RunExperimentResponse& m) {
        return !m.has_epoch() || ++seen < 40;
      },
      absl::Seconds(120));
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kCancelled) << cut.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  absl::StatusOr<v1::Experiment> got;
  while (absl::Now() < deadline) {
    got = client_b->GetExperiment("experiments/cancelled");
    if (got.ok() && got->state() != v1::EXPERIMENT_STATE_RUNNING) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::EXPERIMENT_STATE_CANCELLED);
  // The units are gone, so the replicas running variants stop within a
  // poll; none finishes one.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(a.experiment_claims()->variants_finished(), 0);
  EXPECT_EQ(b.experiment_claims()->variants_finished(), 0);
  EXPECT_TRUE(client_b->DeleteExperiment("experiments/cancelled").ok());
}

}  // namespace
}  // namespace satlab::testing
