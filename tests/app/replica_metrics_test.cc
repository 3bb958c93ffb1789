// Issue 14 item 5: live metrics across replicas. Two in-process apps (hub,
// gRPC server, HTTP port) share one throwaway PostgreSQL database; what a
// client trains on replica B reaches WatchMetrics, the dashboard's JSON and
// SSE on replica A through the store's metric feed (LISTEN/NOTIFY + the
// numbered metric_history rows), in order, each step once, tenants apart,
// also when A's LISTEN connection is killed again and again.
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/app.h"
#include "tests/service/service_test_util.h"
#include "tests/store/throwaway_postgres.h"

// After Eigen (through the server headers): it brings <resolv.h>, whose
// _res macro breaks Eigen's headers.
#include <httplib.h>  // NOLINT(build/include_order)

namespace satlab::server {
namespace {

using satlab::testing::ThrowawayPostgres;

constexpr char kAlphaKey[] = "alpha-key-0123456789abcdef0123456789";
constexpr char kBetaKey[] = "beta-key-0123456789abcdef01234567890";
constexpr char kAdminKey[] = "admin-key-0123456789abcdef0123456789";

// One PostgreSQL for the tests of this process, stopped when it exits.
ThrowawayPostgres* Shared() {
  static auto* started = new absl::StatusOr<std::unique_ptr<ThrowawayPostgres>>(
      ThrowawayPostgres::Start());
  static std::unique_ptr<ThrowawayPostgres> owner;
  if (!started->ok()) return nullptr;
  if (owner == nullptr) owner = std::move(**started);
  return owner.get();
}

// A database of its own for each test.
std::string FreshDatabase() {
  static std::atomic<int> next{0};
  ThrowawayPostgres* pg = Shared();
  if (pg == nullptr) {
    ADD_FAILURE() << "PostgreSQL did not start (scripts/pg_throwaway.sh)";
    return "";
  }
  const std::string name = absl::StrCat("watch_", next++);
  absl::Status s = pg->CreateDatabase(name);
  EXPECT_TRUE(s.ok()) << s;
  return pg->Url(name);
}

// How often a replica publishes what its hub recorded (the flush).
constexpr absl::Duration kFlush = absl::Milliseconds(100);

std::unique_ptr<App> StartReplica(const std::string& url,
                                  const std::string& replica,
                                  bool with_keys = false,
                                  absl::Duration flush = kFlush) {
  AppOptions options;
  options.server.listen_address = "127.0.0.1:0";
  options.server.compute_threads = 1;
  options.server.store_url = url;
  options.shutdown_grace = absl::Seconds(2);
  options.metrics.replica_id = replica;
  options.metrics.history_flush_interval = flush;
  options.metrics.feed_poll_interval = absl::Milliseconds(500);
  options.http.emplace();
  options.http->host = "127.0.0.1";
  options.http->port = 0;
  if (with_keys) {
    absl::Status s = options.server.service.auth.keys.AddPlaintext(
        absl::StrCat("alpha:user:", kAlphaKey, ",beta:user:", kBetaKey,
                     ",ops:admin:", kAdminKey));
    EXPECT_TRUE(s.ok()) << s;
    options.http->dashboard_access = http::Access::kKey;
    options.http->metrics_access = http::Access::kKey;
  }
  auto app = App::Start(options);
  EXPECT_TRUE(app.ok()) << app.status();
  return app.ok() ? *std::move(app) : nullptr;
}

std::unique_ptr<Client> ClientOf(const App& app, const std::string& key = "") {
  ClientOptions options;
  options.target = app.grpc_address();
  options.timeout = absl::Seconds(20);
  options.api_key = key;
  return std::make_unique<Client>(options);
}

// The minibatch of step `i` (1-based) of the one-neuron network.
v1::Minibatch Batch(int i) { return testing::MakeBatch(4, 1, 1, i); }

// What a watcher received, with when.
struct Seen {
  std::string network;
  int64_t step = 0;  // 0 for a deletion
  double loss = 0;
  absl::Duration delay;  // arrival - the event's time
};

// A WatchMetrics stream on a thread, collecting until `until` says done.
class Watcher {
 public:
  Watcher(Client* client, const std::string& name, int64_t start_step,
          std::function<bool(const std::vector<Seen>&)> until)
      : thread_([this, client, name, start_step, until] {
          v1::WatchMetricsRequest request;
          request.set_name(name);
          request.set_start_step(start_step);
          status_ = client->WatchMetrics(
              request,
              [&](const v1::WatchMetricsResponse& r) {
                Seen s;
                s.network = r.event().network();
                if (r.event().has_step()) {
                  s.step = r.event().step().step();
                  s.loss = r.event().step().loss();
                }
                s.delay = absl::Now() -
                          (absl::FromUnixSeconds(r.event().time().seconds()) +
                           absl::Nanoseconds(r.event().time().nanos()));
                dropped_ += r.dropped_events();
                absl::MutexLock lock(&mu_);
                seen_.push_back(s);
                return !until(seen_);
              },
              absl::Seconds(60));
        }) {}
  ~Watcher() { Join(); }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Seen> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  // Waits (bounded) until at least `n` events arrived.
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (seen().size() >= n) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }
  const absl::Status& status() const { return status_; }
  int64_t dropped() const { return dropped_; }

 private:
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  absl::Status status_;
  std::atomic<int64_t> dropped_{0};
  std::thread thread_;
};

std::function<bool(const std::vector<Seen>&)> UntilStep(int64_t last) {
  return [last](const std::vector<Seen>& seen) {
    return !seen.empty() && seen.back().step >= last;
  };
}

std::vector<int64_t> Steps(const std::vector<Seen>& seen) {
  std::vector<int64_t> steps;
  for (const Seen& s : seen) steps.push_back(s.step);
  return steps;
}

std::vector<int64_t> Range(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t i = from; i <= to; ++i) out.push_back(i);
  return out;
}

// GET `path` on the app's HTTP port (with `key` as bearer when set).
std::string HttpGet(const App& app, const std::string& path,
                    const std::string& key = "") {
  httplib::Client web("127.0.0.1", app.http_port());
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
  auto res = web.Get(path, headers);
  if (!res || res->status != 200) {
    ADD_FAILURE() << path << ": "
                  << (res ? absl::StrCat(res->status) : "no answer");
    return "";
  }
  return res->body;
}

// Polls /api/networks until `network` shows step `step` (bounded).
bool DashboardShows(const App& app, const std::string& network, int64_t step,
                    const std::string& key = "") {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    auto json = nlohmann::json::parse(HttpGet(app, "/api/networks", key),
                                      nullptr, /*allow_exceptions=*/false);
    if (json.is_object()) {
      for (const auto& n : json["networks"]) {
        if (n["name"] == network && n["step"] == step) return true;
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

absl::Duration Percentile(std::vector<absl::Duration> d, double p) {
  if (d.empty()) return absl::ZeroDuration();
  std::sort(d.begin(), d.end());
  return d[std::min(d.size() - 1, static_cast<size_t>(p * d.size()))];
}

TEST(ReplicaMetricsTest, WatchOnAReceivesEveryStepTrainedOnBInOrderOnce) {
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a");
  auto b = StartReplica(url, "b");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto on_a = ClientOf(*a);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());

  constexpr int kSteps = 200;
  Watcher watch_a(on_a.get(), "networks/x", -1, UntilStep(kSteps));
  Watcher watch_b(on_b.get(), "networks/x", -1, UntilStep(kSteps));
  // Both streams are open (their subscriptions exist) before training.
  absl::SleepFor(absl::Milliseconds(300));

  std::vector<v1::Minibatch> batches;
  for (int i = 1; i <= kSteps; ++i) batches.push_back(Batch(i));
  TrainOptions train;
  train.timeout = absl::Seconds(60);
  auto last = on_b->Train("networks/x", batches, train, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->step(), kSteps);

  watch_a.Join();
  watch_b.Join();
  const std::vector<Seen> seen_a = watch_a.seen();
  const std::vector<Seen> seen_b = watch_b.seen();
  EXPECT_EQ(Steps(seen_a), Range(1, kSteps));
  EXPECT_EQ(Steps(seen_b), Range(1, kSteps));
  EXPECT_EQ(watch_a.dropped(), 0);
  ASSERT_EQ(seen_a.size(), seen_b.size());
  std::vector<absl::Duration> delays;
  for (size_t i = 0; i < seen_a.size(); ++i) {
    EXPECT_EQ(seen_a[i].network, "networks/x");
    // The same event: bitwise the same loss.
    EXPECT_EQ(seen_a[i].loss, seen_b[i].loss) << "step " << seen_a[i].step;
    delays.push_back(seen_a[i].delay);
  }
  std::printf(
      "cross-replica delay (flush %s): p50 %s, p90 %s, max %s over %zu "
      "events; same replica p50 %s\n",
      absl::FormatDuration(kFlush).c_str(),
      absl::FormatDuration(Percentile(delays, 0.5)).c_str(),
      absl::FormatDuration(Percentile(delays, 0.9)).c_str(),
      absl::FormatDuration(Percentile(delays, 1.0)).c_str(), delays.size(),
      absl::FormatDuration(Percentile(
                               [&] {
                                 std::vector<absl::Duration> d;
                                 for (const Seen& s : seen_b)
                                   d.push_back(s.delay);
                                 return d;
                               }(),
                               0.5))
          .c_str());
  // Bounded by the flush, the commit, the notification and the read.
  EXPECT_LT(Percentile(delays, 0.5), absl::Seconds(2));

  // A deletion on B ends A's watch of the network, as on one replica.
  Watcher until_deleted(on_a.get(), "networks/x", -1,
                        [](const std::vector<Seen>&) { return false; });
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(on_b->DeleteNetwork("networks/x").ok());
  until_deleted.Join();
  EXPECT_TRUE(until_deleted.status().ok()) << until_deleted.status();
  ASSERT_EQ(until_deleted.seen().size(), 1u);
  EXPECT_EQ(until_deleted.seen()[0].step, 0);  // the deletion

  // /metrics: each replica names itself; B exposes x's series, A (which
  // only watched it) does not, so a cluster-wide sum counts them once.
  const std::string metrics_a = HttpGet(*a, "/metrics");
  EXPECT_TRUE(
      absl::StrContains(metrics_a, "satlab_replica_info{replica=\"a\"} 1"))
      << metrics_a;
  EXPECT_TRUE(absl::StrContains(HttpGet(*b, "/metrics"),
                                "satlab_replica_info{replica=\"b\"} 1"));
  EXPECT_FALSE(
      absl::StrContains(metrics_a, "satlab_metric_feed_events_total 0\n"))
      << metrics_a;
}

TEST(ReplicaMetricsTest, LateWatcherOnAGetsTheHistoryThenLiveAndDashboardToo) {
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a");
  auto b = StartReplica(url, "b");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto on_a = ClientOf(*a);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
  }
  // The dashboard on A lists x, trained on B, and says by whom.
  ASSERT_TRUE(DashboardShows(*a, "networks/x", 20));
  auto json = nlohmann::json::parse(HttpGet(*a, "/api/networks"));
  EXPECT_EQ(json["replica"], "a");
  ASSERT_EQ(json["networks"].size(), 1u);
  EXPECT_EQ(json["networks"][0]["replica"], "b");
  EXPECT_EQ(json["networks"][0]["remote"], true);
  // Not in A's /metrics families: B's to expose.
  EXPECT_FALSE(absl::StrContains(HttpGet(*a, "/metrics"),
                                 "satlab_network_step{network=\"x\"}"));
  EXPECT_TRUE(absl::StrContains(HttpGet(*b, "/metrics"),
                                "satlab_network_step{network=\"x\"} 20"));

  // A watcher on A from step 1: the 20 retained, then what B trains next.
  Watcher late(on_a.get(), "networks/x", 1, UntilStep(30));
  ASSERT_TRUE(late.WaitFor(20));
  // The dashboard's event stream on A: the same, as SSE.
  std::vector<int64_t> sse_steps;
  std::thread sse([&] {
    httplib::Client web("127.0.0.1", a->http_port());
    web.set_read_timeout(30, 0);
    std::string buffer;
    web.Get("/api/events?network=networks/x&start_step=1", [&](const char* data,
                                                               size_t size) {
      buffer.append(data, size);
      size_t end;
      while ((end = buffer.find("\n\n")) != std::string::npos) {
        const std::string message = buffer.substr(0, end);
        buffer.erase(0, end + 2);
        for (absl::string_view line : absl::StrSplit(message, '\n')) {
          if (!absl::ConsumePrefix(&line, "data: ")) continue;
          auto event = nlohmann::json::parse(line, nullptr, false);
          // int64 fields are strings in proto JSON.
          int64_t step = 0;
          if (!absl::SimpleAtoi(
                  event["event"]["step"]["step"].get<std::string>(), &step)) {
            ADD_FAILURE() << line;
            return false;
          }
          sse_steps.push_back(step);
        }
      }
      return sse_steps.empty() || sse_steps.back() < 30;
    });
  });
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 21; i <= 30; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
  }
  late.Join();
  sse.join();
  EXPECT_EQ(Steps(late.seen()), Range(1, 30));
  EXPECT_EQ(sse_steps, Range(1, 30));
}

// Steady training (a step every 20 ms) with the default flush interval:
// how late B's events reach a watcher on A (printed for docs/notes/watch.md).
TEST(ReplicaMetricsTest, SteadyTrainingReachesAWithinAboutOneFlush) {
  const absl::Duration flush =
      service::MetricsHubOptions{}.history_flush_interval;
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a", false, flush);
  auto b = StartReplica(url, "b", false, flush);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto on_a = ClientOf(*a);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  constexpr int kSteps = 100;
  Watcher watch_a(on_a.get(), "networks/x", -1, UntilStep(kSteps));
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 1; i <= kSteps; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
    absl::SleepFor(absl::Milliseconds(20));
  }
  watch_a.Join();
  ASSERT_EQ(Steps(watch_a.seen()), Range(1, kSteps));
  std::vector<absl::Duration> delays;
  for (const Seen& s : watch_a.seen()) delays.push_back(s.delay);
  std::printf(
      "steady cross-replica delay (flush %s): p50 %s, p90 %s, max %s over "
      "%zu events\n",
      absl::FormatDuration(flush).c_str(),
      absl::FormatDuration(Percentile(delays, 0.5)).c_str(),
      absl::FormatDuration(Percentile(delays, 0.9)).c_str(),
      absl::FormatDuration(Percentile(delays, 1.0)).c_str(), delays.size());
  // At most a flush interval, the commit and a read (loaded machine: slack).
  EXPECT_LT(Percentile(delays, 0.5), flush + absl::Seconds(1));
}

// A replica that starts after B trained: the history up to the feed's
// position is loaded, the rest read from the feed, each step once.
TEST(ReplicaMetricsTest, ReplicaStartedLaterLoadsTheHistoryOnceThenLive) {
  const std::string url = FreshDatabase();
  auto b = StartReplica(url, "b");
  ASSERT_TRUE(b != nullptr);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  // Steps published before C starts, and steps trained while it starts
  // (published after its position was read, or before: either way once).
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
  }
  absl::SleepFor(kFlush * 3);
  std::thread trainer([&] {
    for (int i = 11; i <= 25; ++i) {
      EXPECT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  auto c = StartReplica(url, "c");
  trainer.join();
  ASSERT_TRUE(c != nullptr);
  auto on_c = ClientOf(*c);
  Watcher late(on_c.get(), "networks/x", 0, UntilStep(30));
  ASSERT_TRUE(late.WaitFor(25));
  for (int i = 26; i <= 30; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
  }
  late.Join();
  EXPECT_EQ(Steps(late.seen()), Range(1, 30));
}

TEST(ReplicaMetricsTest, TenantsStayApartAcrossReplicas) {
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a", /*with_keys=*/true);
  auto b = StartReplica(url, "b", /*with_keys=*/true);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto alpha_b = ClientOf(*b, kAlphaKey);
  auto beta_b = ClientOf(*b, kBetaKey);
  auto alpha_a = ClientOf(*a, kAlphaKey);
  auto admin_a = ClientOf(*a, kAdminKey);
  // Both tenants name their network x (stored alpha.x and beta.x).
  ASSERT_TRUE(alpha_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  ASSERT_TRUE(beta_b->CreateNetwork(testing::NeuronSpec(), "x").ok());

  // alpha watches everything it may see on A; the admin everything.
  Watcher alpha_all(alpha_a.get(), "", -1, UntilStep(5));
  Watcher admin_all(admin_a.get(), "", -1, [](const std::vector<Seen>& seen) {
    return seen.size() >= 8;
  });
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(beta_b->TrainStep("networks/x", Batch(i)).ok());
  }
  ASSERT_TRUE(admin_all.WaitFor(3));  // beta's steps reached A first
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(alpha_b->TrainStep("networks/x", Batch(i)).ok());
  }
  alpha_all.Join();
  admin_all.Join();
  EXPECT_EQ(Steps(alpha_all.seen()), Range(1, 5));
  for (const Seen& s : alpha_all.seen()) EXPECT_EQ(s.network, "networks/x");
  std::set<std::string> admin_names;
  for (const Seen& s : admin_all.seen()) admin_names.insert(s.network);
  EXPECT_EQ(admin_names,
            (std::set<std::string>{"networks/alpha.x", "networks/beta.x"}));

  // The dashboard on A: alpha sees its x only, beta its own.
  ASSERT_TRUE(DashboardShows(*a, "networks/x", 5, kAlphaKey));
  auto alpha_json =
      nlohmann::json::parse(HttpGet(*a, "/api/networks", kAlphaKey));
  ASSERT_EQ(alpha_json["networks"].size(), 1u) << alpha_json.dump();
  EXPECT_EQ(alpha_json["networks"][0]["step"], 5);
  auto beta_json =
      nlohmann::json::parse(HttpGet(*a, "/api/networks", kBetaKey));
  ASSERT_EQ(beta_json["networks"].size(), 1u) << beta_json.dump();
  EXPECT_EQ(beta_json["networks"][0]["name"], "networks/x");
  EXPECT_EQ(beta_json["networks"][0]["step"], 3);
}

TEST(ReplicaMetricsTest, KilledListenConnectionsLoseNothing) {
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a");
  auto b = StartReplica(url, "b");
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto on_a = ClientOf(*a);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  constexpr int kSteps = 60;
  Watcher watch_a(on_a.get(), "networks/x", -1, UntilStep(kSteps));
  absl::SleepFor(absl::Milliseconds(300));

  // The feed's LISTEN connections (both replicas') are terminated every
  // 40 ms while B trains: notifications are lost, A must catch up from
  // the rows.
  const std::string database = url.substr(url.rfind('/') + 1);
  std::atomic<bool> stop{false};
  std::atomic<int> killed{0};
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } killer{
      stop, std::thread([&] {
        while (!stop) {
          auto n = Shared()->Query(
              database,
              "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
              "WHERE application_name = 'satlab-metric-feed'");
          int64_t count = 0;
          if (n.ok() && absl::SimpleAtoi(*n, &count)) killed += count;
          absl::SleepFor(absl::Milliseconds(40));
        }
      })};
  for (int i = 1; i <= kSteps; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
    absl::SleepFor(absl::Milliseconds(5));
  }
  stop = true;
  killer.thread.join();
  EXPECT_GT(killed.load(), 2);
  watch_a.Join();
  EXPECT_EQ(Steps(watch_a.seen()), Range(1, kSteps));
}

// PostgreSQL stopped before B's flush: the flush fails, B keeps the batch
// and publishes it once the database is back; A's reader reconnects and
// gets every step once.
TEST(ReplicaMetricsTest, EventsPendingDuringADatabaseOutageArriveAfterIt) {
  const std::string url = FreshDatabase();
  auto a = StartReplica(url, "a");
  auto b = StartReplica(url, "b", false, absl::Seconds(3));
  ASSERT_TRUE(a != nullptr && b != nullptr);
  auto on_a = ClientOf(*a);
  auto on_b = ClientOf(*b);
  ASSERT_TRUE(on_b->CreateNetwork(testing::NeuronSpec(), "x").ok());
  Watcher watch_a(on_a.get(), "networks/x", -1, UntilStep(10));
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(on_b->TrainStep("networks/x", Batch(i)).ok());
  }
  ASSERT_TRUE(Shared()->Stop().ok());
  // Longer than B's flush interval: at least one publish fails.
  absl::SleepFor(absl::Seconds(4));
  ASSERT_TRUE(Shared()->Restart().ok());
  watch_a.Join();
  EXPECT_EQ(Steps(watch_a.seen()), Range(1, 10));
  EXPECT_EQ(b->hub()->Counters().history_write_failures, 0);
}

}  // namespace
}  // namespace satlab::server
