// server/app: the process's parts composed from one AppOptions, started and
// shut down together, in process on 127.0.0.1 ports the OS picks.
#include "server/app.h"

#include <httplib.h>  // NOLINT(build/include_order)

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"

namespace satlab::server {
namespace {

AppOptions LocalOptions(bool with_http) {
  AppOptions options;
  options.server.listen_address = "127.0.0.1:0";
  options.server.compute_threads = 1;
  options.shutdown_grace = absl::Seconds(2);
  if (with_http) {
    options.http.emplace();
    options.http->host = "127.0.0.1";
    options.http->port = 0;
  }
  return options;
}

std::unique_ptr<Client> ClientFor(const App& app) {
  ClientOptions options;
  options.target = app.grpc_address();
  options.timeout = absl::Seconds(20);
  return std::make_unique<Client>(options);
}

TEST(AppTest, Start_GrpcAndHttp_ServeAndShareOneHubAndMetrics) {
  auto app = App::Start(LocalOptions(/*with_http=*/true));
  ASSERT_TRUE(app.ok()) << app.status();
  ASSERT_GT((*app)->http_port(), 0);
  auto client = ClientFor(**app);
  EXPECT_TRUE(client->CheckHealth(service::kServiceName).value_or(false));
  auto network = client->CreateNetwork(testing::NeuronSpec(), "n");
  ASSERT_TRUE(network.ok()) << network.status();
  auto step = client->TrainStep("networks/n", testing::MakeBatch(1, 1, 1, 0));
  ASSERT_TRUE(step.ok()) << step.status();

  // The HTTP port reads the gRPC interceptor's counters and the hub the
  // service publishes steps to: both wired by the app.
  httplib::Client web("127.0.0.1", (*app)->http_port());
  auto metrics = web.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(
      metrics->body,
      "grpc_server_started_total{grpc_method=\"TrainStep\","
      "grpc_service=\"satlab.v1.TrainingService\",grpc_type=\"unary\"} 1"))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body,
                                "satlab_network_steps_total{network=\"n\"} 1"))
      << metrics->body;
}

TEST(AppTest, Start_HttpOff_HttpPortIsMinusOneAndGrpcServes) {
  auto app = App::Start(LocalOptions(/*with_http=*/false));
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ((*app)->http_port(), -1);
  EXPECT_TRUE(ClientFor(**app)->CheckHealth("").value_or(false));
}

TEST(AppTest, Start_BadOption_InvalidArgumentNamingIt) {
  struct Case {
    const char* name;
    void (*apply)(AppOptions*);
    const char* expected;
  };
  const Case cases[] = {
      {"negative blas_threads", [](AppOptions* o) { o->blas_threads = -1; },
       "blas_threads: expected >= 0, got -1"},
      {"negative shutdown_grace",
       [](AppOptions* o) { o->shutdown_grace = absl::Seconds(-1); },
       "shutdown_grace: expected >= 0"},
      {"hub supplied",
       [](AppOptions* o) {
         static auto hub = service::MetricsHub::Create({});
         o->server.hub = hub->get();
       },
       "hub and interceptors: expected unset"},
      {"zero metrics history",
       [](AppOptions* o) { o->metrics.history_size = 0; }, "history"},
      {"zero max_open_streams",
       [](AppOptions* o) { o->server.service.streams.max_open_streams = 0; },
       "max_open_streams: expected >= 1, got 0"},
      {"http connections not above event streams",
       [](AppOptions* o) {
         o->http->max_connections = 4;
         o->http->max_event_streams = 4;
       },
       "max_connections"},
  };
  for (const Case& c : cases) {
    AppOptions options = LocalOptions(/*with_http=*/true);
    c.apply(&options);
    auto app = App::Start(options);
    EXPECT_EQ(app.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name << ": " << app.status();
    EXPECT_TRUE(absl::StrContains(app.status().message(), c.expected))
        << c.name << ": " << app.status();
  }
}

// A second server on an HTTP port in use fails to start instead of sharing
// the port (cpp-httplib's default SO_REUSEPORT is turned off).
TEST(AppTest, Start_HttpPortInUse_Unavailable) {
  auto holder = App::Start(LocalOptions(/*with_http=*/true));
  ASSERT_TRUE(holder.ok()) << holder.status();
  AppOptions clash = LocalOptions(/*with_http=*/true);
  clash.http->port = (*holder)->http_port();
  auto failed = App::Start(clash);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();
  EXPECT_TRUE(absl::StrContains(
      failed.status().message(),
      absl::StrCat("could not listen on 127.0.0.1:", clash.http->port)))
      << failed.status();
}

// When the HTTP port fails to start, the gRPC server started before it is
// stopped again: its port is free for the next server (SO_REUSEPORT is off,
// so a leftover listener would make that bind fail).
TEST(AppTest, Start_HttpFails_GrpcPortReleased) {
  std::string grpc_address;
  {
    auto probe = App::Start(LocalOptions(/*with_http=*/false));
    ASSERT_TRUE(probe.ok()) << probe.status();
    grpc_address = (*probe)->grpc_address();
  }
  AppOptions bad_http = LocalOptions(/*with_http=*/true);
  bad_http.server.listen_address = grpc_address;
  bad_http.http->max_event_streams = bad_http.http->max_connections;
  auto failed = App::Start(bad_http);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument)
      << failed.status();

  AppOptions again = LocalOptions(/*with_http=*/false);
  again.server.listen_address = grpc_address;
  auto app = App::Start(again);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_TRUE(ClientFor(**app)->CheckHealth("").value_or(false));
}

// Shutdown ends a WatchMetrics stream at once (not after the grace), stops
// the HTTP port and the gRPC server, and may be called again.
TEST(AppTest, Shutdown_EndsWatchStreamsAndStopsBothPorts) {
  AppOptions options = LocalOptions(/*with_http=*/true);
  options.shutdown_grace = absl::Seconds(30);
  auto app = App::Start(options);
  ASSERT_TRUE(app.ok()) << app.status();
  const int http_port = (*app)->http_port();
  auto client = ClientFor(**app);

  absl::Status watch_status;
  std::thread watcher([&] {
    v1::WatchMetricsRequest request;
    watch_status = client->WatchMetrics(
        request, [](const v1::WatchMetricsResponse&) { return true; },
        absl::Seconds(60));
  });
  // Wait for the subscription: the hub counts it.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((*app)->hub()->Counters().subscribers < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ((*app)->hub()->Counters().subscribers, 1);

  const absl::Time start = absl::Now();
  (*app)->Shutdown();
  watcher.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(watch_status.code(), absl::StatusCode::kUnavailable)
      << watch_status;
  EXPECT_FALSE(client->CheckHealth("").ok());
  httplib::Client web("127.0.0.1", http_port);
  web.set_connection_timeout(2);
  EXPECT_FALSE(web.Get("/metrics"));
  (*app)->Shutdown();  // idempotent: returns at once
}

}  // namespace
}  // namespace satlab::server
