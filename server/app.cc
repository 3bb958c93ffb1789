#include "server/app.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/engine/cpu.h"
#include "server/engine/gemm.h"

namespace satlab::server {

using service::Tenancy;

absl::StatusOr<std::unique_ptr<App>> App::Start(const AppOptions& options) {
  if (options.blas_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("server options: blas_threads: expected >= 0, got ",
                     options.blas_threads));
  }
  if (options.server.compute_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("server options: compute_threads: expected >= 0, got ",
                     options.server.compute_threads));
  }
  if (options.shutdown_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("server options: shutdown_grace: expected >= 0, got ",
                     absl::FormatDuration(options.shutdown_grace)));
  }
  if (options.server.hub != nullptr || options.server.interceptors) {
    return absl::InvalidArgumentError(
        "server options: hub and interceptors: expected unset (the app "
        "supplies its own), got set");
  }
  // Compute threads x BLAS threads within the cores this process may use
  // (affinity and cgroup quota); 0 in either option means "choose".
  const engine::UsableCores usable = engine::DetectUsableCores();
  const engine::ThreadPlan plan = engine::PlanThreads(
      usable.cores, options.server.compute_threads, options.blas_threads);
  engine::SetBlasThreads(plan.blas_threads);

  std::unique_ptr<App> app(new App());
  app->options_ = options;
  app->usable_cores_ = usable;
  app->thread_plan_ = plan;
  // Live metrics: one hub feeds WatchMetrics, /metrics and the dashboard.
  auto hub = service::MetricsHub::Create(options.metrics);
  if (!hub.ok()) return hub.status();
  app->hub_ = *std::move(hub);

  service::ServerOptions server_options = options.server;
  server_options.compute_threads = plan.compute_threads;
  server_options.hub = app->hub_.get();
  service::GrpcServerMetrics* grpc_metrics = &app->grpc_metrics_;
  server_options.interceptors = [grpc_metrics] {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        creators;
    creators.push_back(grpc_metrics->NewInterceptorFactory());
    return creators;
  };
  auto server = service::Server::Create(server_options);
  if (!server.ok()) return server.status();
  app->server_ = *std::move(server);

  if (options.http.has_value()) {
    http::HttpServerOptions http_options = *options.http;
    // The HTTP port checks the gRPC port's keys (the tenancy outlives it:
    // Shutdown stops the HTTP port first).
    if (Tenancy* tenancy = app->server_->service()->tenancy();
        tenancy->enabled()) {
      http_options.authenticate = [tenancy](absl::string_view header) {
        return tenancy->FromAuthorization(header);
      };
    }
    auto http = http::HttpServer::Start(http_options, app->hub_.get(),
                                        &app->grpc_metrics_);
    // `app` going out of scope shuts the gRPC server down again.
    if (!http.ok()) return http.status();
    app->http_ = *std::move(http);
  }
  return app;
}

App::~App() { Shutdown(); }

absl::Status App::ReloadTls() {
  absl::Status grpc =
      server_ != nullptr ? server_->ReloadTls() : absl::OkStatus();
  absl::Status http = http_ != nullptr ? http_->ReloadTls() : absl::OkStatus();
  return grpc.ok() ? http : grpc;
}

void App::Shutdown() {
  // Each step is idempotent, so a second call (the destructor's) only waits.
  // Watch streams end at once (UNAVAILABLE) instead of holding the grace.
  if (hub_ != nullptr) hub_->Shutdown();
  if (http_ != nullptr) http_->Stop();
  if (server_ != nullptr) server_->Shutdown(options_.shutdown_grace);
}

}  // namespace satlab::server
