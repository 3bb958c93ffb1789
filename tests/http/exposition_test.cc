// The HTTP side port in process: a real gRPC server with the metrics
// interceptor and a MetricsHub, the HTTP server on 127.0.0.1:0, read with
// an HTTP client. Checks /metrics content and shape (and lints it with
// Debian's promtool), the dashboard's files and its SSE stream.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_server.h"
#include "server/service/grpc_metrics.h"
#include "server/service/metrics_hub.h"
#include "tests/service/service_test_util.h"

// Last: it pulls in <resolv.h>, whose `_res` macro breaks Eigen headers.
#include <httplib.h>  // NOLINT(build/include_order)

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HttpTest : public ServiceTest {
 protected:
  void SetUp() override {
    auto hub = service::MetricsHub::Create({});
    ASSERT_TRUE(hub.ok());
    hub_ = *std::move(hub);
    options_.hub = hub_.get();
    options_.interceptors = [this] {
      std::vector<std::unique_ptr<
          grpc::experimental::ServerInterceptorFactoryInterface>>
          creators;
      creators.push_back(grpc_metrics_.NewInterceptorFactory());
      return creators;
    };
    Start();
    http::HttpServerOptions http_options;
    http_options.port = 0;
    auto http =
        http::HttpServer::Start(http_options, hub_.get(), &grpc_metrics_);
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
    web_ = std::make_unique<httplib::Client>("127.0.0.1", http_->port());
    web_->set_read_timeout(10, 0);
  }
  void TearDown() override {
    hub_->Shutdown();
    http_->Stop();
    ServiceTest::TearDown();
  }

  std::string Get(const std::string& path) {
    auto res = web_->Get(path.c_str());
    EXPECT_TRUE(res) << path;
    if (!res) return "";
    EXPECT_EQ(res->status, 200) << path;
    return res->body;
  }

  // A network trained through the Train stream and TrainStep, plus a
  // failed call, so that every gRPC call type shows up.
  std::string TrainSomething() {
    auto network =
        client_->CreateNetwork(SmallSpec(3, 4, 2, v1::LOSS_MSE, 3), "watched");
    EXPECT_TRUE(network.ok()) << network.status();
    std::vector<v1::Minibatch> batches;
    for (int i = 0; i < 5; ++i) batches.push_back(MakeBatch(4, 3, 2, i));
    EXPECT_TRUE(client_->Train(network->name(), batches, {}, nullptr).ok());
    EXPECT_TRUE(
        client_->TrainStep(network->name(), MakeBatch(4, 3, 2, 9)).ok());
    EXPECT_FALSE(client_->GetNetwork("networks/absent").ok());
    return network->name();
  }

  std::unique_ptr<service::MetricsHub> hub_;
  service::GrpcServerMetrics grpc_metrics_;
  std::unique_ptr<http::HttpServer> http_;
  std::unique_ptr<httplib::Client> web_;
};

TEST_F(HttpTest, Metrics_TrainingSeriesPerNetworkAndLayer) {
  TrainSomething();
  const std::string text = Get("/metrics");
  EXPECT_THAT(text, HasSubstr("# TYPE satlab_network_loss gauge"));
  EXPECT_THAT(text, HasSubstr("satlab_network_step{network=\"watched\"} 6\n"));
  EXPECT_THAT(
      text,
      HasSubstr("satlab_network_samples_total{network=\"watched\"} 24\n"));
  EXPECT_THAT(text, HasSubstr("satlab_network_output_attenuation_ratio{"
                              "network=\"watched\"} "));
  for (const char* family :
       {"satlab_layer_saturated_ratio", "satlab_layer_weight_gradient_norm",
        "satlab_layer_mean_derivative"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat(
                          family, "{network=\"watched\",layer=\"0\"} ")));
    EXPECT_THAT(text, HasSubstr(absl::StrCat(
                          family, "{network=\"watched\",layer=\"1\"} ")));
  }
}

TEST_F(HttpTest, Metrics_DeletedNetworkSeriesDisappear) {
  const std::string name = TrainSomething();
  ASSERT_THAT(Get("/metrics"), HasSubstr("network=\"watched\""));
  ASSERT_TRUE(client_->DeleteNetwork(name).ok());
  EXPECT_THAT(Get("/metrics"), Not(HasSubstr("network=\"watched\"")));
}

TEST_F(HttpTest, Metrics_GrpcCallsOfEveryTypeCounted) {
  TrainSomething();
  // A server stream, ended by the client.
  v1::WatchMetricsRequest watch;
  ASSERT_TRUE(client_
                  ->WatchMetrics(
                      watch,
                      [](const v1::WatchMetricsResponse&) { return false; },
                      absl::Seconds(10))
                  .ok());
  const std::string text = Get("/metrics");
  const std::string service = "grpc_service=\"satlab.v1.TrainingService\"";
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "grpc_server_started_total{grpc_method=\"TrainStep\",",
                        service, ",grpc_type=\"unary\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "grpc_server_handled_total{grpc_code=\"OK\","
                        "grpc_method=\"Train\",",
                        service, ",grpc_type=\"bidi_stream\"} 1\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "grpc_server_msg_sent_total{grpc_method=\"Train\",",
                        service, ",grpc_type=\"bidi_stream\"} 5\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "grpc_server_handled_total{grpc_code=\"NotFound\","
                        "grpc_method=\"GetNetwork\",",
                        service, ",grpc_type=\"unary\"} 1\n")));
  EXPECT_THAT(text, HasSubstr("grpc_method=\"WatchMetrics\""));
  EXPECT_THAT(text, HasSubstr("grpc_type=\"server_stream\""));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "grpc_server_handling_seconds_bucket{grpc_method="
                        "\"TrainStep\",",
                        service, ",grpc_type=\"unary\",le=\"+Inf\"} 1\n")));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(text, HasSubstr("process_cpu_seconds_total "));
  EXPECT_THAT(text, HasSubstr("process_open_fds "));
}

TEST_F(HttpTest, Metrics_HttpConnectionCounters) {
  const std::string text = Get("/metrics");
  // The connection asking is the one open.
  EXPECT_THAT(text, HasSubstr("\nsatlab_http_connections 1\n"));
  EXPECT_THAT(text, HasSubstr("\nsatlab_http_connections_accepted_total "));
  EXPECT_THAT(text, HasSubstr("\nsatlab_http_connections_rejected_total 0\n"));
  EXPECT_THAT(text, HasSubstr("\nsatlab_http_request_timeouts_total 0\n"));
}

TEST_F(HttpTest, Metrics_PromtoolFindsNothing) {
  TrainSomething();
  const std::string path = ::testing::TempDir() + "/satlab_metrics.txt";
  {
    std::ofstream out(path);
    out << Get("/metrics");
  }
  FILE* pipe =
      popen(absl::StrCat("promtool check metrics < ", path, " 2>&1; echo rc=$?")
                .c_str(),
            "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  pclose(pipe);
  // Fails loudly when promtool is missing (rc=127).
  EXPECT_EQ(output, "rc=0\n") << "promtool check metrics said:\n" << output;
}

TEST_F(HttpTest, Dashboard_ServesPageScriptsAndChartJs) {
  EXPECT_THAT(Get("/"), HasSubstr("/vendor/chart.min.js"));
  EXPECT_THAT(Get("/dashboard.js"), HasSubstr("/api/events"));
  EXPECT_THAT(Get("/vendor/chart.min.js"), HasSubstr("Chart"));
  auto missing = web_->Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HttpTest, Events_ReplayAsSseInProtoJson) {
  TrainSomething();
  std::string body;
  httplib::Client sse("127.0.0.1", http_->port());
  sse.set_read_timeout(10, 0);
  // Reads until six step events arrived, then aborts the stream.
  auto res =
      sse.Get("/api/events?network=networks/watched&start_step=0",
              [&](const char* data, size_t size) {
                body.append(data, size);
                return absl::StrContains(body, "\"step\":\"6\"") == false;
              });
  EXPECT_THAT(body, HasSubstr("id: 1\ndata: {\"event\":{\"sequence\":\"1\""));
  EXPECT_THAT(body, HasSubstr("\"network\":\"networks/watched\""));
  EXPECT_THAT(body, HasSubstr("\"dropped_events\":\"0\""));
  EXPECT_THAT(body, HasSubstr("\"step\":\"6\""));
  EXPECT_THAT(Get("/api/networks"), HasSubstr("\"name\":\"networks/watched\""));
}

TEST_F(HttpTest, Events_ExperimentProgressReachesAllNetworksStream) {
  v1::ExperimentProgress progress;
  progress.set_experiment_id("exp-1");
  progress.set_display_name("mse vs bce");
  progress.mutable_epoch()->set_label("sigmoid+mse");
  progress.set_epochs_done(1);
  progress.set_epochs_total(4);
  hub_->OnExperimentProgress(progress);  // as RunExperiment reports it
  std::string body;
  httplib::Client sse("127.0.0.1", http_->port());
  sse.set_read_timeout(10, 0);
  sse.Get("/api/events?start_step=0", [&](const char* data, size_t size) {
    body.append(data, size);
    return !absl::StrContains(body, "\n\n");
  });
  EXPECT_THAT(body, HasSubstr("\"experiment\":{\"experiment_id\":\"exp-1\""));
  EXPECT_THAT(body, HasSubstr("\"label\":\"sigmoid+mse\""));
  EXPECT_THAT(body, HasSubstr("\"epochs_total\":\"4\""));
}

TEST_F(HttpTest, Stop_EndsOpenEventStreams) {
  std::atomic<bool> ended{false};
  std::thread reader([&] {
    httplib::Client sse("127.0.0.1", http_->port());
    sse.Get("/api/events?start_step=-1",
            [](const char*, size_t) { return true; });
    ended = true;
  });
  for (int i = 0; i < 500 && hub_->Counters().subscribers == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(hub_->Counters().subscribers, 1);
  const absl::Time start = absl::Now();
  http_->Stop();
  reader.join();
  EXPECT_TRUE(ended);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(HttpTest, Stop_ClosesConnectionsMidRequestAtOnce) {
  // Half a request: the server waits for the rest (up to the 10 s request
  // timeout) until Stop wakes it.
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(http_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const char kPartial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(send(sock, kPartial, sizeof(kPartial) - 1, 0),
            static_cast<ssize_t>(sizeof(kPartial) - 1));
  absl::SleepFor(absl::Milliseconds(100));
  const absl::Time start = absl::Now();
  http_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  char byte;
  EXPECT_EQ(recv(sock, &byte, 1, 0), 0);  // closed, nothing answered
  close(sock);
}

TEST(HttpServerOptionsTest, Start_RejectsContradictoryLimits) {
  auto hub = service::MetricsHub::Create({});
  ASSERT_TRUE(hub.ok());
  struct Case {
    const char* field;
    std::function<void(http::HttpServerOptions&)> change;
  };
  const Case cases[] = {
      {"max_connections",
       [](http::HttpServerOptions& o) { o.max_connections = 32; }},
      {"max_event_streams",
       [](http::HttpServerOptions& o) { o.max_event_streams = 0; }},
      {"timeouts",
       [](http::HttpServerOptions& o) {
         o.request_timeout = absl::ZeroDuration();
       }},
      {"timeouts",
       [](http::HttpServerOptions& o) { o.write_timeout = absl::Seconds(-1); }},
      {"max_requests_per_connection",
       [](http::HttpServerOptions& o) { o.max_requests_per_connection = 0; }},
      {"max_request_bytes",
       [](http::HttpServerOptions& o) { o.max_request_bytes = 100; }},
      {"max_uri_bytes",
       [](http::HttpServerOptions& o) { o.max_uri_bytes = 8193; }},
  };
  for (const Case& c : cases) {
    http::HttpServerOptions options;
    options.port = 0;
    c.change(options);
    auto started = http::HttpServer::Start(options, hub->get(), nullptr);
    ASSERT_FALSE(started.ok()) << c.field;
    EXPECT_EQ(started.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(started.status().message()), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace satlab::testing
