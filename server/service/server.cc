#include "server/service/server.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "server/service/decode_interceptor.h"
#include "server/service/experiments.h"
#include "server/store/postgres_store.h"
#include "server/store/sqlite_store.h"

namespace satlab::service {
namespace {

// A duration as a gRPC channel argument: whole milliseconds, saturated to
// the int range the arguments take.
int ChannelMillis(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0,
                                              std::numeric_limits<int>::max()));
}

// The stream and connection limits; names the first one out of range.
absl::Status CheckStreamAndConnectionLimits(const ServerOptions& options) {
  const StreamLimits& streams = options.service.streams;
  const std::pair<const char*, int64_t> at_least_one[] = {
      {"max_streams_per_connection", options.max_streams_per_connection},
      {"max_open_streams", streams.max_open_streams},
      {"max_stream_buffered_bytes", streams.max_stream_buffered_bytes},
      {"max_buffered_bytes", streams.max_buffered_bytes}};
  for (const auto& [name, value] : at_least_one) {
    if (value < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server options: ", name, ": expected >= 1, got ", value));
    }
  }
  const std::pair<const char*, int64_t> at_least_zero[] = {
      {"max_ping_strikes", options.max_ping_strikes},
      {"trim_after_bytes", streams.trim_after_bytes}};
  for (const auto& [name, value] : at_least_zero) {
    if (value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server options: ", name, ": expected >= 0, got ", value));
    }
  }
  const std::pair<const char*, absl::Duration> positive[] = {
      {"keepalive_time", options.keepalive_time},
      {"keepalive_timeout", options.keepalive_timeout}};
  for (const auto& [name, value] : positive) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server options: ", name, ": expected > 0, got ",
                       absl::FormatDuration(value)));
    }
  }
  const std::pair<const char*, absl::Duration> non_negative[] = {
      {"min_client_ping_interval", options.min_client_ping_interval},
      {"max_connection_idle", options.max_connection_idle},
      {"max_connection_age", options.max_connection_age},
      {"max_connection_age_grace", options.max_connection_age_grace},
      {"stream idle_timeout", streams.idle_timeout}};
  for (const auto& [name, value] : non_negative) {
    if (value < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server options: ", name, ": expected >= 0 (0 = off), got ",
          absl::FormatDuration(value)));
    }
  }
  return absl::OkStatus();
}

// Plaintext without `identity`; otherwise TLS whose key and certificate
// (both in the one staged file, see tls::StagedIdentity) and client CA
// gRPC's file watcher re-reads every refresh interval (a changed pair is
// used for new handshakes; open connections keep theirs).
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsOf(
    const tls::TlsFiles& files, const tls::StagedIdentity* identity) {
  if (identity == nullptr) return grpc::InsecureServerCredentials();
  const auto refresh = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(
                               files.refresh_interval, absl::Seconds(1)))));
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (files.client_ca_file.empty()) {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            identity->path(), identity->path(), refresh);
  } else {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            identity->path(), identity->path(), files.client_ca_file, refresh);
  }
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (files.client_ca_file.empty()) {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls_options.watch_root_certs();
    tls_options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls_options);
}

}  // namespace

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
      options.service.request_ids_per_network < 0 ||
      options.service.train_commit_every_steps < 0 ||
      options.service.train_commit_interval < absl::ZeroDuration() ||
      options.service.max_experiment_record_bytes < 1 ||
      options.service.experiment_record_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "server options: memory_budget_bytes must be >= 0 (0 = derived), "
        "max_call_scratch_bytes >= 1, request_ids_per_network >= 0, "
        "train_commit_every_steps >= 0, train_commit_interval >= 0, "
        "max_experiment_record_bytes >= 1, experiment_record_interval >= 0");
  }
  if (absl::Status s = CheckStreamAndConnectionLimits(options); !s.ok()) {
    return s;
  }
  if (options.lease_ttl < absl::Milliseconds(100) ||
      options.lease_ttl > absl::Hours(1) || options.replica_id.size() > 200) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server options: lease_ttl must be in [100ms, 1h], got ",
        absl::FormatDuration(options.lease_ttl),
        "; replica_id at most 200 bytes, got ", options.replica_id.size()));
  }
  const size_t colon = options.listen_address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address: expected host:port, got \"",
                     options.listen_address, "\""));
  }
  if (absl::Status s =
          tls::CheckTransport("grpc", options.listen_address, options.tls,
                              options.plaintext, "--tls_");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<Server> server(new Server());
  if (options.tls.enabled()) {
    auto staged = tls::StagedIdentity::Start(options.tls);
    if (!staged.ok()) return staged.status();
    server->staged_identity_ = *std::move(staged);
  }
  const std::shared_ptr<grpc::ServerCredentials> credentials =
      ServerCredentialsOf(options.tls, server->staged_identity_.get());
  server->options_ = options;
  server->host_ = options.listen_address.substr(0, colon);
  const int threads = options.compute_threads > 0
                          ? options.compute_threads
                          : std::max(1u, std::thread::hardware_concurrency());
  if (!options.store_url.empty()) {
    // --store wins over --data_dir (docs/configuration.md).
    store::PostgresStoreOptions store_options;
    store_options.url = options.store_url;
    store_options.max_networks = options.max_networks;
    auto stores = store::OpenPostgresStores(store_options);
    if (!stores.ok()) return stores.status();
    server->store_ = std::move(stores->networks);
    server->experiments_ = std::move(stores->experiments);
    server->metric_history_ = std::move(stores->metrics);
    server->leases_ = std::move(stores->leases);
    server->metric_feed_ = std::move(stores->feed);
  } else if (options.data_dir.empty()) {
    server->store_ = store::NewInMemoryStore(options.max_networks);
    server->experiments_ = store::NewInMemoryExperimentStore();
  } else {
    store::SqliteStoreOptions store_options;
    store_options.data_dir = options.data_dir;
    store_options.max_networks = options.max_networks;
    store_options.synchronous_full = options.data_sync_full;
    auto stores = store::OpenSqliteStores(store_options);
    if (!stores.ok()) return stores.status();
    server->store_ = std::move(stores->networks);
    server->experiments_ = std::move(stores->experiments);
    server->metric_history_ = std::move(stores->metrics);
  }
  if (!options.store_url.empty()) {
    // Replicas share the store: a RUNNING experiment may be another
    // replica's live run, and a dead replica's is taken over through its
    // claims (experiment_claims.h); only runs from before the claims are
    // marked interrupted.
    const ExperimentClaimOptions& claims = options.experiment_claims;
    if (claims.ttl <= absl::ZeroDuration() ||
        claims.poll <= absl::ZeroDuration() || claims.slots < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server options: experiment_claims: expected ttl > 0 (--lease_ttl), "
          "poll > 0 (--experiment_claim_poll_ms) and slots >= 0 "
          "(--experiment_claim_slots), got ttl ",
          absl::FormatDuration(claims.ttl), ", poll ",
          absl::FormatDuration(claims.poll), ", slots ", claims.slots));
    }
    if (absl::Status s = MarkOrphanedExperiments(server->experiments_.get(),
                                                 options.experiment_claims.ttl);
        !s.ok()) {
      return s;
    }
  } else if (server->metric_history_ != nullptr) {
    // Runs the previous process left RUNNING will never finish (one server
    // per data directory).
    if (absl::Status s = MarkInterruptedExperiments(server->experiments_.get());
        !s.ok()) {
      return s;
    }
  }
  server->executor_ =
      std::make_unique<Executor>(threads, options.max_queued_calls);
  MetricsHub* hub = options.hub;
  if (hub == nullptr) {
    auto own = MetricsHub::Create(MetricsHubOptions{});
    if (!own.ok()) return own.status();
    server->own_hub_ = *std::move(own);
    hub = server->own_hub_.get();
  }
  if (server->metric_history_ != nullptr) {
    // WatchMetrics replay and the dashboard pick up where the last run of
    // the server stopped.
    std::vector<std::string> ids;
    std::string after;
    while (true) {
      auto page = server->store_->List(after, 1000);
      if (!page.ok()) return page.status();
      for (const store::NetworkSummary& n : *page) ids.push_back(n.id);
      if (page->size() < 1000) break;
      after = page->back().id;
    }
    // With a shared store, also every other replica's live events
    // (issue 14 item 5).
    if (absl::Status s = hub->AttachHistory(server->metric_history_.get(), ids,
                                            server->metric_feed_.get());
        !s.ok()) {
      return s;
    }
  }
  ServiceOptions service_options = options.service;
  service_options.max_message_bytes = options.max_message_bytes;
  server->replica_id_ =
      options.replica_id.empty() ? DefaultReplicaId() : options.replica_id;
  core::CoreOptions core_options = CoreOptionsOf(service_options);
  core_options.replica_id = server->replica_id_;
  core_options.lease_ttl = options.lease_ttl;
  server->core_ = std::make_unique<core::NetworkCore>(
      core_options, server->store_.get(), server->leases_.get());
  server->service_ = std::make_unique<TrainingServiceImpl>(
      service_options, server->core_.get(), server->executor_.get(), hub,
      server->experiments_.get());
  if (!options.store_url.empty()) {
    // One name per replica for its writer leases and its claims.
    ExperimentClaimOptions claims = options.experiment_claims;
    if (claims.replica_id.empty()) claims.replica_id = server->replica_id_;
    server->experiment_claims_ = std::make_unique<ExperimentClaims>(
        claims, server->experiments_.get(), service_options.limits,
        service_options.max_experiment_record_bytes,
        service_options.experiment_record_interval, threads);
    server->service_->set_experiment_claims(server->experiment_claims_.get());
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // A second server on the same port must fail, not silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             ChannelMillis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             ChannelMillis(options.keepalive_timeout));
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      ChannelMillis(options.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                             options.max_ping_strikes);
  if (options.max_connection_idle > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               ChannelMillis(options.max_connection_idle));
  }
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               ChannelMillis(options.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ChannelMillis(options.max_connection_age_grace));
  }
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE,
                             options.http2_bdp_probe ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_streams_per_connection);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  if (options.reflection != ReflectionAccess::kOff) {
    server->reflection_ = std::make_unique<ReflectionService>(
        std::vector<std::string>{
            satlab::v1::TrainingService::service_full_name(),
            "grpc.health.v1.Health",
            grpc::reflection::v1alpha::ServerReflection::service_full_name()},
        options.reflection, server->service_->tenancy(),
        server->service_->streams());
    builder.RegisterService(server->reflection_.get());
  }
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
  if (server->experiment_claims_ != nullptr) {
    server->experiment_claims_->Start();
  }
  return server;
}

Server::~Server() { Shutdown(absl::Seconds(5)); }

std::string Server::address() const { return absl::StrCat(host_, ":", port_); }

absl::Status Server::ReloadTls() {
  return staged_identity_ != nullptr ? staged_identity_->Refresh()
                                     : absl::OkStatus();
}

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
    // Experiments this replica coordinates or runs go to other replicas
    // now (their claims given back) instead of when the grace ends.
    if (experiment_claims_ != nullptr) experiment_claims_->Shutdown();
    // Running compute stops when the grace ends, so the calls it serves
    // finish and the process exits within the grace period.
    service_->StopComputeAt(absl::Now() + grace);
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }
  // Null when Create failed before making it (e.g. the store did not open).
  if (executor_ != nullptr) executor_->Shutdown();
  // No step runs any more: write the last metric events.
  if (service_ != nullptr) service_->hub()->DetachHistory();
}

void Server::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace satlab::service
