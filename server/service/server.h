// The satlab gRPC server: TrainingService + health + reflection, with its
// executor and store. server/app.cc (App::Start) calls Server::Create with
// the ServerOptions main.cc made from flags; tests do the same in process on
// port 0.
#ifndef SATLAB_SERVER_SERVICE_SERVER_H_
#define SATLAB_SERVER_SERVICE_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "server/core/network_core.h"
#include "server/service/events.h"
#include "server/service/executor.h"
#include "server/service/experiment_claims.h"
#include "server/service/metrics_hub.h"
#include "server/service/reflection_service.h"
#include "server/service/training_service.h"
#include "server/store/experiment_store.h"
#include "server/store/metric_feed.h"
#include "server/store/network_store.h"
#include "server/tls/staged_identity.h"
#include "server/tls/tls_files.h"

namespace satlab::service {

// The name health checks use for the training service.
inline constexpr char kServiceName[] = "satlab.v1.TrainingService";

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see Server::port()).
  std::string listen_address = "127.0.0.1:50051";
  // Compute threads; 0 means one per core.
  int compute_threads = 0;
  // Calls waiting for a compute thread before RESOURCE_EXHAUSTED.
  int max_queued_calls = 1024;
  int64_t max_networks = 10000;
  // Where networks are kept: a directory for the durable SQLite store
  // (<data_dir>/satlab.db, created if missing; one server per directory),
  // or empty for the ephemeral in-memory store, which a restart empties.
  std::string data_dir;
  // The durable store syncs every commit to disk (SQLite synchronous=FULL:
  // an acknowledged change survives a power loss); false syncs less
  // (NORMAL: it survives a crash of the process, not of the machine).
  bool data_sync_full = true;
  // A PostgreSQL connection URI (postgresql://user@host:port/database):
  // the shared store several replicas can use (store/postgres_store.h).
  // When set it is the store, and data_dir / data_sync_full are unused.
  std::string store_url;
  // With a shared store: this replica's name on its writer leases and
  // experiment claims (and in logs); empty picks DefaultReplicaId()
  // ("<hostname>-<pid>-<random>", unique per process).
  std::string replica_id;
  // How long a replica's writer lease on a network lasts unless renewed:
  // how long a network stays unwritable after its writer's replica died.
  absl::Duration lease_ttl = absl::Seconds(5);
  // With store_url: how this replica claims experiments' variants through
  // the shared store (experiment_claims.h; --replica_id, --lease_ttl,
  // --experiment_claim_poll_ms, --experiment_claim_slots).
  ExperimentClaimOptions experiment_claims;
  // Largest request or response message, bytes.
  int max_message_bytes = 64 << 20;
  // Connection policy, as gRPC channel arguments (zero turns the age and
  // idle limits off). The server pings a connection silent for
  // `keepalive_time` and closes it if no answer comes in
  // `keepalive_timeout`: a vanished client stops holding its streams.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // A client may ping at most this often without data; more often counts a
  // strike, and after `max_ping_strikes` the connection is closed
  // (GOAWAY "too_many_pings").
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  int max_ping_strikes = 2;
  // A connection with no call for this long is closed (GOAWAY; clients
  // reconnect when they next call).
  absl::Duration max_connection_idle = absl::Minutes(10);
  // A connection older than this gets GOAWAY; its calls then have
  // `max_connection_age_grace` to finish before they are cancelled.
  absl::Duration max_connection_age = absl::Hours(24);
  absl::Duration max_connection_age_grace = absl::Minutes(10);
  // Calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_
  // STREAMS); further calls wait in the client until one ends.
  int max_streams_per_connection = 100;
  // gRPC's bandwidth-delay-product probe. On, it widens every stream's
  // receive window to the measured BDP, so on a fast link data for Train
  // streams that have stopped reading piles up in the transport, outside
  // the byte budget (16 streams of 4 MiB minibatches: ~+400 MiB instead of
  // ~+170 MiB, docs/reliability/stream.md). Off, a stream's window opens
  // for the message it is reading; loopback throughput is unchanged.
  bool http2_bdp_probe = false;
  // Transport security. With tls.cert_file and tls.key_file the port serves
  // TLS only (mutual TLS with tls.client_ca_file), and gRPC re-reads the
  // files every tls.refresh_interval: new connections get a changed
  // certificate, open ones keep theirs. Without them it serves plaintext,
  // which Create refuses (INVALID_ARGUMENT) on a non-loopback address
  // unless `plaintext` says it was chosen on purpose.
  tls::TlsFiles tls;
  bool plaintext = false;
  // gRPC server reflection (the API's descriptors, for grpcurl and the
  // like): off (UNIMPLEMENTED), open to anyone, or behind the same
  // authentication as TrainingService calls (ReflectionService). main.cc
  // picks key by default when API keys are configured.
  ReflectionAccess reflection = ReflectionAccess::kOpen;
  ServiceOptions service;
  // Receives steps, deletions and experiment progress and serves
  // WatchMetrics (a MetricsHub). Not owned; when null the server makes its
  // own hub with default sizes, so WatchMetrics always works.
  MetricsHub* hub = nullptr;
  // Extra services to register (e.g. a benchmark's echo service); not owned.
  std::vector<grpc::Service*> extra_services;
  // Makes the server interceptors (e.g. GrpcServerMetrics'); may be empty.
  std::function<std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>()>
      interceptors;
};

class Server {
 public:
  // Builds and starts the server. UNAVAILABLE if the address cannot be bound
  // (in use, or not local), INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const ServerOptions& options);
  // Shuts down (as Shutdown with a 5 s grace period) if still running.
  ~Server();

  // The bound port.
  int port() const { return port_; }
  std::string address() const;

  // Graceful stop: health goes NOT_SERVING, new calls are refused, in-flight
  // calls get `grace` to finish before they are cancelled, then the compute
  // threads drain. Idempotent.
  void Shutdown(absl::Duration grace);

  // Blocks until Shutdown has completed.
  void Wait();

  // SIGHUP: compares the TLS certificate and key files now and, if they
  // changed and match, hands them to gRPC's watcher, which loads them within
  // tls.refresh_interval. OK without TLS or when unchanged.
  absl::Status ReloadTls();

  TrainingServiceImpl* service() { return service_.get(); }
  store::NetworkStore* store() { return store_.get(); }
  core::NetworkCore* core() { return core_.get(); }
  // This replica's name on its writer leases (options.replica_id or the
  // one picked at start).
  const std::string& replica_id() const { return replica_id_; }
  Executor* executor() { return executor_.get(); }
  // Null unless the store is shared (store_url).
  ExperimentClaims* experiment_claims() { return experiment_claims_.get(); }

 private:
  Server() = default;

  ServerOptions options_;
  std::string replica_id_;
  std::string host_;
  int port_ = 0;
  std::shared_ptr<store::NetworkStore> store_;
  std::shared_ptr<store::ExperimentStore> experiments_;
  // Null with the in-memory store (the hub's ring is the only history).
  std::shared_ptr<store::MetricHistoryStore> metric_history_;
  // Writer leases across replicas; null unless the store is shared.
  std::shared_ptr<store::WriterLeaseStore> leases_;
  // The replicas' shared metric events: PostgreSQL only, null otherwise.
  std::shared_ptr<store::MetricFeed> metric_feed_;
  std::unique_ptr<core::NetworkCore> core_;  // over store_
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<MetricsHub> own_hub_;  // when options.hub is null
  std::unique_ptr<TrainingServiceImpl> service_;
  // With a shared store; outlives server_ (declared before it), so no
  // RunExperiment call outlives it.
  std::unique_ptr<ExperimentClaims> experiment_claims_;
  std::unique_ptr<ReflectionService> reflection_;  // null when off
  // The checked copy of the TLS key and certificate gRPC reads; outlives
  // server_. Null without TLS.
  std::unique_ptr<tls::StagedIdentity> staged_identity_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_SERVER_H_
