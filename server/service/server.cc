#include "server/service/server.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/service/decode_interceptor.h"

namespace satlab::service {

absl::StatusOr<std::unique_ptr<Server>> Server::Create(
    const ServerOptions& options) {
  if (options.max_queued_calls < 1 || options.max_networks < 1 ||
      options.max_message_bytes < 1024 || options.compute_threads < 0) {
    return absl::InvalidArgumentError(
        "server options: max_queued_calls and max_networks must be >= 1, "
        "max_message_bytes >= 1024, compute_threads >= 0");
  }
  if (options.service.memory_budget_bytes < 0 ||
      options.service.limits.max_call_scratch_bytes < 1 ||
      options.service.request_ids_per_network < 0) {
    return absl::InvalidArgumentError(
        "server options: memory_budget_bytes must be >= 0 (0 = derived), "
        "max_call_scratch_bytes >= 1, request_ids_per_network >= 0");
  }
  const size_t colon = options.listen_address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address: expected host:port, got \"",
                     options.listen_address, "\""));
  }
  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  server->host_ = options.listen_address.substr(0, colon);
  const int threads = options.compute_threads > 0
                          ? options.compute_threads
                          : std::max(1u, std::thread::hardware_concurrency());
  server->store_ = store::NewInMemoryStore(options.max_networks);
  server->executor_ =
      std::make_unique<Executor>(threads, options.max_queued_calls);
  MetricsHub* hub = options.hub;
  if (hub == nullptr) {
    auto own = MetricsHub::Create(MetricsHubOptions{});
    if (!own.ok()) return own.status();
    server->own_hub_ = *std::move(own);
    hub = server->own_hub_.get();
  }
  ServiceOptions service_options = options.service;
  service_options.max_message_bytes = options.max_message_bytes;
  server->service_ = std::make_unique<TrainingServiceImpl>(
      service_options, server->store_.get(), server->executor_.get(), hub);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // A second server on the same port must fail, not silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
  for (grpc::Service* extra : options.extra_services) {
    builder.RegisterService(extra);
  }
  // The decode interceptor goes first: the others see the status it writes.
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(NewDecodeInterceptorFactory());
  if (options.interceptors) {
    for (auto& creator : options.interceptors()) {
      interceptors.push_back(std::move(creator));
    }
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->executor_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("could not listen on ", options.listen_address,
                     " (address in use or not available)"));
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  health->SetServingStatus(kServiceName, true);
  health->SetServingStatus("", true);
  return server;
}

Server::~Server() { Shutdown(absl::Seconds(5)); }

std::string Server::address() const { return absl::StrCat(host_, ":", port_); }

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    // NOT_SERVING first, so load balancers and health watchers drain us.
    server_->GetHealthCheckService()->Shutdown();
    // WatchMetrics streams end now instead of holding the grace period.
    service_->hub()->Shutdown();
    // Running compute stops when the grace ends, so the calls it serves
    // finish and the process exits within the grace period.
    service_->StopComputeAt(absl::Now() + grace);
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }
  executor_->Shutdown();
}

void Server::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace satlab::service
