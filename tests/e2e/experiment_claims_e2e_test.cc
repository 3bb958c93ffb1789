// Experiments spread over real satlab-server processes sharing a throwaway
// PostgreSQL (issue 14 item 4): a replica SIGKILLed while it runs a
// variant, or while it coordinates the experiment, has its claims expire
// (the default 10 s ttl) and another replica finishes the work; the results
// equal a one-server (in-memory) run bitwise.
#include <signal.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/server_process.h"
#include "tests/service/claims_test_util.h"
#include "tests/store/throwaway_postgres.h"

namespace satlab::testing {
namespace {

struct Streamed {
  absl::Status status;
  std::vector<v1::EpochMetrics> curves;
  v1::ExperimentSummary summary;
};

class ExperimentClaimsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = ThrowawayPostgres::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
  }

  // A replica on the database (or, with `shared` false, a one-server
  // reference with the in-memory store): one compute thread, one variant
  // at a time, polling every 100 ms.
  std::unique_ptr<ServerProcess> StartServer(bool shared = true) {
    std::vector<std::string> args = {SATLAB_SERVER,
                                     "--host=127.0.0.1",
                                     "--port=0",
                                     "--http_port=-1",
                                     "--compute_threads=1",
                                     "--log_level=warning",
                                     "--shutdown_grace_seconds=1"};
    if (shared) {
      args.push_back(absl::StrCat("--store=", pg_->Url()));
      args.push_back("--experiment_claim_slots=1");
      args.push_back("--experiment_claim_poll_ms=100");
    } else {
      args.push_back("--data_dir=");
    }
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_FALSE(server->address().empty()) << "satlab-server did not start";
    return server;
  }

  static std::unique_ptr<Client> ClientOf(const ServerProcess& server) {
    ClientOptions options;
    options.target = server.address();
    options.timeout = absl::Seconds(30);
    return std::make_unique<Client>(options);
  }

  // `on_epoch(count)` after each streamed epoch.
  static Streamed Stream(Client& client, const v1::RunExperimentRequest& r,
                         const std::function<void(int)>& on_epoch = nullptr) {
    Streamed out;
    auto summary = client.RunExperiment(
        r,
        [&](const v1::RunExperimentResponse& m) {
          if (m.has_epoch()) {
            out.curves.push_back(m.epoch());
            if (on_epoch) on_epoch(static_cast<int>(out.curves.size()));
          }
          return true;
        },
        absl::Seconds(150));
    out.status = summary.status();
    if (summary.ok()) out.summary = *summary;
    return out;
  }

  Streamed Reference(const v1::RunExperimentRequest& request) {
    auto server = StartServer(/*shared=*/false);
    if (server->address().empty())
      return {absl::UnavailableError("no server"), {}, {}};
    return Stream(*ClientOf(*server), request);
  }

  std::unique_ptr<ThrowawayPostgres> pg_;
};

TEST_F(ExperimentClaimsE2ETest, KilledWorkerReplicaVariantFinishesElsewhere) {
  const v1::RunExperimentRequest request = Blobs("e2e-worker", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;
  auto a = StartServer();
  auto b = StartServer();
  ASSERT_FALSE(a->address().empty() || b->address().empty());
  int killed_status = 0;
  const Streamed run = Stream(*ClientOf(*a), request, [&](int n) {
    if (n == 400) killed_status = b->Stop(SIGKILL);
  });
  ASSERT_TRUE(WIFSIGNALED(killed_status)) << killed_status;
  ASSERT_TRUE(run.status.ok()) << run.status;
  ExpectSameResults(run.summary, reference.summary);
  ExpectSameCurves(Sorted(run.curves), Sorted(reference.curves));
}

TEST_F(ExperimentClaimsE2ETest, KilledCoordinatorReplicaExperimentFinishes) {
  const v1::RunExperimentRequest request = Blobs("e2e-coordinator", 2000);
  const Streamed reference = Reference(request);
  ASSERT_TRUE(reference.status.ok()) << reference.status;
  auto a = StartServer();
  auto b = StartServer();
  ASSERT_FALSE(a->address().empty() || b->address().empty());
  int killed_status = 0;
  const Streamed run = Stream(*ClientOf(*a), request, [&](int n) {
    if (n == 200) killed_status = a->Stop(SIGKILL);
  });
  ASSERT_TRUE(WIFSIGNALED(killed_status)) << killed_status;
  EXPECT_FALSE(run.status.ok());
  auto client_b = ClientOf(*b);
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  absl::StatusOr<v1::Experiment> got;
  while (absl::Now() < deadline) {
    got = client_b->GetExperiment("experiments/e2e-coordinator");
    if (got.ok() && got->state() != v1::EXPERIMENT_STATE_RUNNING) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->state(), v1::EXPERIMENT_STATE_SUCCEEDED) << got->error();
  ExpectSameResults(got->summary(), reference.summary);
  ExpectSameCurves({got->curves().begin(), got->curves().end()},
                   Sorted(reference.curves));
}

}  // namespace
}  // namespace satlab::testing
