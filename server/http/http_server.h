// The HTTP side port: /metrics for Prometheus, the live dashboard at /, and
// the dashboard's data:
//   GET /metrics                 Prometheus text format (exposition.h)
//   GET /                        the dashboard (static/, Chart.js embedded)
//   GET /api/networks            latest gauges of every network, JSON
//   GET /api/events?network=networks/{id}&start_step=N
//                                Server-Sent Events: each `data:` line is a
//                                WatchMetricsResponse in proto JSON (the
//                                same events, replay and dropped_events
//                                semantics as WatchMetrics)
//   GET /healthz                 "ok"
// Connections are bounded (guarded_server.h): a slow, idle or oversized
// client is cut off at the limits below and cannot starve the others.
#ifndef SATLAB_SERVER_HTTP_HTTP_SERVER_H_
#define SATLAB_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/tenant_scope.h"
#include "server/service/grpc_metrics.h"
#include "server/service/metrics_hub.h"
#include "server/tls/http_tls.h"
#include "server/tls/tls_files.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace satlab::http {

class GuardedServer;

// Who may read a part of the HTTP port (docs/security.md).
enum class Access {
  kOff,   // 404
  kOpen,  // anyone who can reach the port
  kKey,   // `Authorization: Bearer <api key>` of the gRPC port's keys (401)
};

// "off" / "open" / "key" -> Access; INVALID_ARGUMENT naming `field`.
absl::StatusOr<Access> ParseAccess(absl::string_view value,
                                   absl::string_view field);

struct HttpServerOptions {
  // Address to bind; 0.0.0.0 for every interface.
  std::string host = "127.0.0.1";
  // Port; 0 picks a free one (see HttpServer::port()).
  int port = 9464;
  // Concurrent /api/events streams; more get 503. Each holds a connection.
  int max_event_streams = 32;
  // A comment line is sent on an idle event stream this often.
  absl::Duration event_stream_keepalive = absl::Seconds(10);
  // A request (line, headers, body) must arrive whole within this, counted
  // from the accept (from its first byte on a kept-alive connection),
  // however slowly it trickles; past it: 408 if anything arrived, and the
  // connection is closed.
  absl::Duration request_timeout = absl::Seconds(10);
  // Each write (a response's headers, its body, an event) must be taken by
  // the kernel within this; past it the connection is closed.
  absl::Duration write_timeout = absl::Seconds(10);
  // An idle kept-alive connection is closed after this.
  absl::Duration keepalive_timeout = absl::Seconds(5);
  // Requests served on one connection; the last says `Connection: close`.
  int max_requests_per_connection = 100;
  // Open connections (each on a thread of its own). At the cap the one that
  // has waited longest for a request makes room (guarded_server.h); when
  // all are busy a new one gets 503 at once. Must exceed max_event_streams.
  int max_connections = 256;
  // Bytes of one request: line + headers (431 beyond) and a body (413).
  int64_t max_request_bytes = 32 * 1024;
  // Bytes of the request target (path and query); longer gets 414. At most
  // 8192 (cpp-httplib's own limit).
  int max_uri_bytes = 8192;
  // Transport security, as the gRPC port's (service::ServerOptions::tls):
  // with cert and key files the port serves HTTPS only (and requires client
  // certificates signed by tls.client_ca_file when set); the files are
  // compared every tls.refresh_interval (and on ReloadTls()) and new
  // connections use changed ones. Without files: plaintext, refused on a
  // non-loopback host unless `plaintext`.
  tls::TlsFiles tls;
  bool plaintext = false;
  // /metrics: with kKey only an admin key may read it (it names every
  // tenant's networks).
  Access metrics_access = Access::kOpen;
  // The dashboard's data (/api/networks, /api/events): with kKey a user key
  // sees its tenant's networks and experiments only, an admin key all. The
  // page itself (/, its script and style) holds no data and is served
  // unless this is kOff.
  Access dashboard_access = Access::kOpen;
  // Checks an Authorization header value (Tenancy::FromAuthorization);
  // required when either access is kKey.
  std::function<absl::StatusOr<core::Identity>(absl::string_view)> authenticate;
};

class HttpServer {
 public:
  // Binds and starts serving on a thread of its own. `hub` (required) and
  // `grpc_metrics` (may be null) must outlive the server. UNAVAILABLE when
  // the address cannot be bound, INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, service::MetricsHub* hub,
      const service::GrpcServerMetrics* grpc_metrics);
  // Stops (as Stop()).
  ~HttpServer();

  int port() const { return port_; }
  // Whether the port serves HTTPS.
  bool tls() const { return tls_ != nullptr; }

  // Compares the TLS files now and loads them if they changed (SIGHUP). OK
  // without TLS, when nothing changed or the new files loaded; otherwise
  // the error, and the previous certificate stays in use.
  absl::Status ReloadTls();

  // Ends the event streams, stops accepting, waits for in-flight requests.
  // Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  void Routes();
  // The scope of a request to a part under `access`, or nullopt having
  // answered it (404 off, 401 no or wrong key, 403 user key on an
  // admin-only part).
  std::optional<core::TenantScope> Allow(Access access, bool admin_only,
                                         const httplib::Request& req,
                                         httplib::Response& res) const;

  HttpServerOptions options_;
  service::MetricsHub* hub_ = nullptr;
  const service::GrpcServerMetrics* grpc_metrics_ = nullptr;
  // Declared before server_, which uses it until it stops.
  std::unique_ptr<tls::ServerTlsContext> tls_;
  std::unique_ptr<GuardedServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<service::MetricsSubscription>> streams_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace satlab::http

#endif  // SATLAB_SERVER_HTTP_HTTP_SERVER_H_
