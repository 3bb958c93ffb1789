// The whole satlab-server process but its flags, logging and signals: the
// metrics hub, the gRPC server (with its interceptors) and the HTTP side
// port, built from one AppOptions, started together and shut down in the
// right order. main.cc turns flags into AppOptions, calls App::Start, waits
// for a stop signal and calls Shutdown; tests do the same in process.
//
// It is a library of its own (satlab_app) because it joins two that may not
// depend on each other the other way round: satlab_http uses the service's
// MetricsHub and GrpcServerMetrics, so the service library cannot start the
// HTTP port itself.
#ifndef SATLAB_SERVER_APP_H_
#define SATLAB_SERVER_APP_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/engine/cpu.h"
#include "server/http/http_server.h"
#include "server/service/grpc_metrics.h"
#include "server/service/metrics_hub.h"
#include "server/service/server.h"

namespace satlab::server {

struct AppOptions {
  // The gRPC server, its service, limits and connection policy. `hub` and
  // `interceptors` must be left empty: the app fills them with its own hub
  // and its gRPC metrics interceptor (INVALID_ARGUMENT otherwise).
  service::ServerOptions server;
  // The hub that feeds WatchMetrics, /metrics and the dashboard.
  service::MetricsHubOptions metrics;
  // The HTTP side port (/metrics, dashboard); absent turns it off.
  std::optional<http::HttpServerOptions> http;
  // Cores each large matrix product may use (OpenBLAS's pool, process-wide);
  // 0 chooses, with server.compute_threads (0: choose), so that compute x
  // BLAS threads fit the cores the process may use (engine::PlanThreads).
  int blas_threads = 0;
  // Shutdown(): seconds in-flight calls get to finish before they are
  // cancelled and running compute stops.
  absl::Duration shutdown_grace = absl::Seconds(10);
};

class App {
 public:
  // Checks the options, plans and sets the threads, then starts the hub, the
  // gRPC server and the HTTP port, in that order; on failure what was started
  // is stopped again. INVALID_ARGUMENT naming the option for bad options,
  // UNAVAILABLE when a port cannot be bound.
  static absl::StatusOr<std::unique_ptr<App>> Start(const AppOptions& options);
  // Shuts down (as Shutdown()) if still running.
  ~App();

  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // host:port the gRPC server is bound to (the port chosen when 0 was asked).
  std::string grpc_address() const { return server_->address(); }
  // The HTTP side port's bound port, or -1 when it is off.
  int http_port() const { return http_ != nullptr ? http_->port() : -1; }

  // Graceful stop: watch streams (gRPC and dashboard) end at once with
  // UNAVAILABLE instead of holding the grace; the HTTP port closes; the gRPC
  // server goes NOT_SERVING, refuses new calls and gives in-flight ones
  // `shutdown_grace` before they are cancelled and running compute stops.
  // Returns when everything has stopped. Idempotent.
  void Shutdown();

  // SIGHUP: both ports compare their TLS files now. The HTTP port loads
  // changed ones at once; the gRPC port hands a changed, matching pair to
  // gRPC's watcher, which loads it within --tls_refresh_interval_seconds.
  // The error (the old certificate kept) if the files do not load.
  absl::Status ReloadTls();

  service::Server* server() { return server_.get(); }
  // The cores found at Start and the threads chosen for them.
  const engine::UsableCores& usable_cores() const { return usable_cores_; }
  const engine::ThreadPlan& thread_plan() const { return thread_plan_; }
  service::MetricsHub* hub() { return hub_.get(); }

 private:
  App() = default;

  AppOptions options_;
  engine::UsableCores usable_cores_;
  engine::ThreadPlan thread_plan_;
  // Declared in the order they must outlive each other: the server and the
  // HTTP port read the hub and the gRPC metrics until they stop.
  std::unique_ptr<service::MetricsHub> hub_;
  service::GrpcServerMetrics grpc_metrics_;
  std::unique_ptr<service::Server> server_;
  std::unique_ptr<http::HttpServer> http_;
};

}  // namespace satlab::server

#endif  // SATLAB_SERVER_APP_H_
