// The real satlab-server on the PostgreSQL store (--store=postgresql://...)
// against a throwaway PostgreSQL the test starts (issue 14 item 1): a Train
// stream SIGKILLed mid-way resumes and ends bitwise equal to an
// uninterrupted run; both networks read back bitwise after the server and
// PostgreSQL itself restart; --store wins over --data_dir; PostgreSQL down
// under a running server is UNAVAILABLE naming the store, and the server
// recovers when it comes back. The binary comes from SATLAB_SERVER.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "server/store/postgres_store.h"
#include "tests/e2e/server_process.h"
#include "tests/e2e/training_data.h"
#include "tests/store/throwaway_postgres.h"

namespace satlab::testing {
namespace {

constexpr int kBatches = 400;
constexpr int kRows = 16;
constexpr int kInputs = 6;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

v1::NetworkSpec Spec() { return TwoOutputSpec(kInputs, {12}, 7); }

class PostgresE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = ThrowawayPostgres::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    port_ = FreePort();
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    server_.reset();
    pg_.reset();
  }

  // --data_dir names a directory that must stay uncreated: --store wins.
  std::string unused_data_dir() const {
    return absl::StrCat("/tmp/satlab-pg-e2e-unused-", getpid());
  }

  void Start() {
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        SATLAB_SERVER, "--host=127.0.0.1", absl::StrCat("--port=", port_),
        "--http_port=-1", absl::StrCat("--store=", pg_->Url()),
        absl::StrCat("--data_dir=", unused_data_dir()), "--compute_threads=1",
        "--log_level=warning", "--shutdown_grace_seconds=1"});
    ASSERT_FALSE(server_->address().empty())
        << "satlab-server --store=" << pg_->Url() << " did not start";
  }

  void WaitServing(Client& client) {
    absl::Status status;
    for (int i = 0; i < 100; ++i) {
      status = client.ListNetworks(1).status();
      if (status.code() != absl::StatusCode::kUnavailable) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_TRUE(status.ok()) << status;
  }

  std::unique_ptr<Client> NewClient() {
    ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", port_);
    options.timeout = absl::Seconds(20);
    options.max_reconnect_backoff = absl::Milliseconds(200);
    options.wait_for_ready = true;
    return std::make_unique<Client>(options);
  }

  std::unique_ptr<ThrowawayPostgres> pg_;
  int port_ = -1;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(PostgresE2ETest, KilledTrainResumesAndReadsBackBitwiseAfterRestarts) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const std::vector<v1::Minibatch> batches =
      SeededBatches(rng(), kBatches, kRows, kInputs);
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = NewClient();
  ASSERT_TRUE(client->CreateNetwork(Spec(), "ref").ok());
  ASSERT_TRUE(client->CreateNetwork(Spec(), "crash").ok());
  TrainOptions options;
  options.report_every = 1;
  ASSERT_TRUE(client->Train("networks/ref", batches, options, nullptr).ok());

  options.commit_every_steps = 1 + static_cast<int>(rng() % 7);
  options.max_resumes = 20;
  std::atomic<int64_t> last_step{0};
  absl::Notification done;
  absl::Status trained;
  std::thread trainer([&] {
    auto trainer_client = NewClient();
    auto result =
        trainer_client->Train("networks/crash", batches, options,
                              [&](const v1::TrainResponse& response) {
                                last_step.store(response.result().step());
                              });
    trained = result.status();
    done.Notify();
  });
  // One SIGKILL somewhere in the middle of the stream.
  const int64_t kill_at = kBatches / 3 + static_cast<int64_t>(rng() % 100);
  const absl::Time limit = absl::Now() + absl::Seconds(60);
  while (last_step.load() < kill_at && !done.HasBeenNotified() &&
         absl::Now() < limit) {
    absl::SleepFor(absl::Microseconds(500));
  }
  const bool killed = !done.HasBeenNotified();
  server_->Stop(SIGKILL);
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(120)));
  trainer.join();
  ASSERT_TRUE(trained.ok()) << trained;
  EXPECT_TRUE(killed) << "the stream ended before the kill";
  ASSERT_NO_FATAL_FAILURE(WaitServing(*client));

  const std::string ref_bytes = ParameterBytes(*client, "networks/ref");
  ASSERT_GT(ref_bytes.size(), 100u);
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "after the resumed stream"
                           : "after satlab-server and PostgreSQL restarted");
    auto r = client->GetNetwork("networks/ref");
    auto c = client->GetNetwork("networks/crash");
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(r->step(), kBatches);
    EXPECT_EQ(c->step(), kBatches);
    EXPECT_EQ(c->durable_step(), kBatches);
    EXPECT_EQ(ParameterBytes(*client, "networks/ref"), ref_bytes);
    EXPECT_EQ(ParameterBytes(*client, "networks/crash"), ref_bytes);
    if (pass == 0) {
      server_->Stop(SIGKILL);
      ASSERT_TRUE(pg_->Stop().ok());
      ASSERT_TRUE(pg_->Restart().ok());
      ASSERT_NO_FATAL_FAILURE(Start());
      ASSERT_NO_FATAL_FAILURE(WaitServing(*client));
    }
  }
  // Optimizer state came back too: the next step is the same on both.
  auto rs = client->TrainStep("networks/ref", batches[0]);
  auto cs = client->TrainStep("networks/crash", batches[0]);
  ASSERT_TRUE(rs.ok() && cs.ok());
  EXPECT_EQ(rs->loss(), cs->loss());
  EXPECT_EQ(ParameterBytes(*client, "networks/crash"),
            ParameterBytes(*client, "networks/ref"));
  struct stat st;
  EXPECT_NE(stat(unused_data_dir().c_str(), &st), 0)
      << "--data_dir was created although --store was given";
}

TEST_F(PostgresE2ETest, PostgresDownIsUnavailableNamingTheStoreThenRecovers) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = NewClient();
  ASSERT_TRUE(client->CreateNetwork(Spec(), "before").ok());
  ASSERT_TRUE(pg_->Stop().ok());
  absl::StatusOr<v1::Network> during = client->CreateNetwork(Spec(), "during");
  EXPECT_EQ(during.status().code(), absl::StatusCode::kUnavailable)
      << during.status();
  EXPECT_NE(
      during.status().message().find(absl::StrCat(
          "PostgreSQL store postgresql://127.0.0.1:", pg_->port(), "/satlab")),
      std::string::npos)
      << during.status();
  ASSERT_TRUE(pg_->Restart().ok());
  absl::StatusOr<v1::Network> after = client->CreateNetwork(Spec(), "after");
  EXPECT_TRUE(after.ok()) << after.status();
  auto list = client->ListNetworks(10);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->networks_size(), 2);
  // The server process lived through it.
  EXPECT_EQ(kill(server_->pid(), 0), 0);
}

// Three servers started at the same moment on an empty database (replicas
// rolled out together): the migration lock orders them, all three serve,
// and the schema exists once.
TEST_F(PostgresE2ETest, ServersStartingAtOnceOnAnEmptyDatabaseAllServe) {
  ASSERT_TRUE(pg_->CreateDatabase("fresh").ok());
  constexpr int kServers = 3;
  std::vector<std::unique_ptr<ServerProcess>> servers(kServers);
  // A server dies with the thread that started it (PR_SET_PDEATHSIG
  // follows the forking thread), so each starter lives until the end.
  absl::BlockingCounter started(kServers);
  absl::Notification finished;
  std::vector<std::thread> starters;
  for (int i = 0; i < kServers; ++i) {
    starters.emplace_back([&, i] {
      servers[i] = std::make_unique<ServerProcess>(std::vector<std::string>{
          SATLAB_SERVER, "--host=127.0.0.1", "--port=0", "--http_port=-1",
          absl::StrCat("--store=", pg_->Url("fresh")), "--compute_threads=1",
          "--log_level=warning", "--shutdown_grace_seconds=1"});
      started.DecrementCount();
      finished.WaitForNotification();
      servers[i].reset();
    });
  }
  started.Wait();
  for (int i = 0; i < kServers; ++i) {
    EXPECT_FALSE(servers[i]->address().empty()) << "server " << i;
    if (servers[i]->address().empty()) continue;
    ClientOptions options;
    options.target = servers[i]->address();
    options.timeout = absl::Seconds(20);
    Client client(options);
    auto list = client.ListNetworks(10);
    EXPECT_TRUE(list.ok()) << "server " << i << ": " << list.status();
  }
  finished.Notify();
  for (auto& t : starters) t.join();
  EXPECT_EQ(*pg_->Query("fresh", "SELECT COUNT(*) FROM satlab_schema"), "1");
  EXPECT_EQ(*pg_->Query("fresh", "SELECT version FROM satlab_schema"),
            absl::StrCat(store::kPostgresSchemaVersion));
}

}  // namespace
}  // namespace satlab::testing
