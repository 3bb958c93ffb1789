#include "server/http/http_server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "satlab/v1/training_service.pb.h"
#include "server/http/assets.h"
#include "server/http/exposition.h"
#include "server/http/guarded_server.h"

namespace satlab::http {
namespace {

// cpp-httplib answers 414 itself beyond this request-line length.
constexpr int kHttplibMaxUriBytes = CPPHTTPLIB_REQUEST_URI_MAX_LENGTH;

// One SSE message: `id` = the event's sequence, `data` = the
// WatchMetricsResponse as proto JSON (field names as in the .proto).
std::string SseMessage(const core::TenantScope& scope,
                       const service::MetricsSubscription::Item& item) {
  v1::WatchMetricsResponse response;
  *response.mutable_event() = *item.event;
  service::ShowEventNames(scope, response.mutable_event());
  response.set_dropped_events(item.dropped_before);
  google::protobuf::util::JsonPrintOptions json;
  json.preserve_proto_field_names = true;
  json.always_print_primitive_fields = true;
  std::string data;
  (void)google::protobuf::util::MessageToJsonString(response, &data, json);
  return absl::StrCat("id: ", item.event->sequence(), "\ndata: ", data, "\n\n");
}

nlohmann::json NetworksJson(const core::TenantScope& scope,
                            const service::MetricsHub& hub) {
  nlohmann::json networks = nlohmann::json::array();
  for (const service::NetworkGauges& g : hub.Networks()) {
    if (!scope.Sees(g.id)) continue;
    nlohmann::json layers = nlohmann::json::array();
    for (const engine::LayerStats& s : g.layers) {
      layers.push_back({{"mean_derivative", s.mean_derivative},
                        {"saturated_fraction", s.saturated_fraction},
                        {"dead_units", s.dead_units},
                        {"weight_gradient_norm", s.weight_gradient_norm},
                        {"bias_gradient_norm", s.bias_gradient_norm},
                        {"mean_activation", s.mean_activation}});
    }
    networks.push_back({{"name", absl::StrCat("networks/", scope.Shown(g.id))},
                        {"step", g.step},
                        {"loss", g.loss},
                        {"accuracy", g.accuracy},
                        {"output_attenuation", g.output_attenuation},
                        {"diverged", g.diverged},
                        {"steps_total", g.steps_total},
                        {"samples_total", g.samples_total},
                        {"replica", g.replica},
                        {"remote", g.remote},
                        {"layers", std::move(layers)}});
  }
  // The hub's counters are server-wide: an admin's (or an open
  // dashboard's) only.
  if (!scope.admin()) {
    return {{"networks", std::move(networks)}, {"replica", hub.replica_id()}};
  }
  const service::HubCounters c = hub.Counters();
  return {{"networks", std::move(networks)},
          {"replica", hub.replica_id()},
          {"feed_events_total", c.feed_events_total},
          {"events_total", c.events_total},
          {"dropped_events_total", c.dropped_events_total},
          {"subscribers", c.subscribers},
          {"history_events", c.history_events},
          {"history_size", hub.options().history_size}};
}

absl::Status ValidateOptions(const HttpServerOptions& o) {
  if ((o.metrics_access == Access::kKey ||
       o.dashboard_access == Access::kKey) &&
      !o.authenticate) {
    return absl::InvalidArgumentError(
        "http options: metrics_access or dashboard_access is key, but no "
        "API keys are configured (--api_keys_file, SATLAB_API_KEYS)");
  }
  const auto positive = [](absl::Duration d) {
    return d > absl::ZeroDuration();
  };
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("http port: expected 0..65535, got ", o.port));
  }
  if (o.max_event_streams < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "http max_event_streams: expected >= 1, got ", o.max_event_streams));
  }
  if (o.max_connections <= o.max_event_streams) {
    return absl::InvalidArgumentError(absl::StrCat(
        "http max_connections: expected more than max_event_streams (",
        o.max_event_streams, "), got ", o.max_connections));
  }
  if (!positive(o.request_timeout) || !positive(o.write_timeout) ||
      !positive(o.event_stream_keepalive) ||
      o.keepalive_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "http timeouts: expected request, write and event stream keepalive "
        "> 0 and keepalive >= 0, got request ",
        absl::FormatDuration(o.request_timeout), ", write ",
        absl::FormatDuration(o.write_timeout), ", event stream keepalive ",
        absl::FormatDuration(o.event_stream_keepalive), ", keepalive ",
        absl::FormatDuration(o.keepalive_timeout)));
  }
  if (o.max_requests_per_connection < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("http max_requests_per_connection: expected >= 1, got ",
                     o.max_requests_per_connection));
  }
  if (o.max_request_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "http max_request_bytes: expected >= 1024, got ", o.max_request_bytes));
  }
  if (o.max_uri_bytes < 1 || o.max_uri_bytes > kHttplibMaxUriBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("http max_uri_bytes: expected 1..", kHttplibMaxUriBytes,
                     ", got ", o.max_uri_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, service::MetricsHub* hub,
    const service::GrpcServerMetrics* grpc_metrics) {
  if (hub == nullptr) return absl::InvalidArgumentError("http: hub is null");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (absl::Status s = tls::CheckTransport(
          "http", absl::StrCat(options.host, ":", options.port), options.tls,
          options.plaintext, "--tls_");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  if (options.tls.enabled()) {
    auto tls = tls::ServerTlsContext::Create(options.tls);
    if (!tls.ok()) return tls.status();
    server->tls_ = *std::move(tls);
    // OpenSSL writes to the socket with write(), which raises SIGPIPE when
    // the peer has gone; the default action would end the process.
    struct sigaction current = {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 &&
        current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  }
  server->options_ = options;
  server->hub_ = hub;
  server->grpc_metrics_ = grpc_metrics;
  ConnectionLimits limits;
  limits.request_timeout = options.request_timeout;
  limits.write_timeout = options.write_timeout;
  limits.keepalive_timeout = options.keepalive_timeout;
  limits.max_requests_per_connection = options.max_requests_per_connection;
  limits.max_connections = options.max_connections;
  limits.max_request_bytes = options.max_request_bytes;
  limits.max_uri_bytes = options.max_uri_bytes;
  server->server_ = std::make_unique<GuardedServer>(limits);
  if (!server->server_->is_valid()) {
    return absl::UnavailableError("http: could not create the stop eventfd");
  }
  server->server_->set_tls(server->tls_.get());
  server->Routes();
  // cpp-httplib's default socket options set SO_REUSEPORT, with which a
  // second server on the same port starts silently and takes part of the
  // traffic. SO_REUSEADDR alone still lets a restarted server rebind at
  // once, but a port in use fails the bind.
  server->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (options.port == 0) {
    server->port_ = server->server_->bind_to_any_port(options.host);
  } else if (server->server_->bind_to_port(options.host, options.port)) {
    server->port_ = options.port;
  }
  if (server->port_ <= 0 || !server->server_->RaiseBacklog(SOMAXCONN)) {
    return absl::UnavailableError(
        absl::StrCat("http: could not listen on ", options.host, ":",
                     options.port, " (address in use or not available)"));
  }
  GuardedServer* raw = server->server_.get();
  server->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  // httplib's stop() does nothing until the listener runs: wait for it, so
  // that an early Stop() cannot leave the thread listening forever.
  while (!raw->is_running()) absl::SleepFor(absl::Milliseconds(1));
  return server;
}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::ReloadTls() {
  return tls_ != nullptr ? tls_->Reload() : absl::OkStatus();
}

void HttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  std::vector<std::shared_ptr<service::MetricsSubscription>> streams;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& weak : streams_) {
      if (auto sub = weak.lock()) streams.push_back(std::move(sub));
    }
    streams_.clear();
  }
  for (const auto& sub : streams) sub->Close();
  server_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

std::optional<core::TenantScope> HttpServer::Allow(
    Access access, bool admin_only, const httplib::Request& req,
    httplib::Response& res) const {
  constexpr char kText[] = "text/plain; charset=utf-8";
  switch (access) {
    case Access::kOff:
      res.status = 404;
      res.set_content("not found\n", kText);
      return std::nullopt;
    case Access::kOpen:
      return core::TenantScope(core::ImplicitAdmin());
    case Access::kKey:
      break;
  }
  absl::StatusOr<core::Identity> who =
      absl::UnauthenticatedError("authorization: missing");
  if (req.has_header("Authorization")) {
    who = options_.authenticate(req.get_header_value("Authorization"));
  }
  if (!who.ok()) {
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(
        "send Authorization: Bearer <api key> (one of the gRPC port's keys)\n",
        kText);
    return std::nullopt;
  }
  if (admin_only && who->role != core::Role::kAdmin) {
    res.status = 403;
    res.set_content("this page needs an admin key\n", kText);
    return std::nullopt;
  }
  return core::TenantScope(*std::move(who));
}

absl::StatusOr<Access> ParseAccess(absl::string_view value,
                                   absl::string_view field) {
  if (value == "off") return Access::kOff;
  if (value == "open") return Access::kOpen;
  if (value == "key") return Access::kKey;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected off, open or key, got \"", value, "\""));
}

void HttpServer::Routes() {
  httplib::Server& s = *server_;

  s.Get("/metrics",
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!Allow(options_.metrics_access, /*admin_only=*/true, req, res))
            return;
          const HttpConnectionCounters connections = server_->Counters();
          res.set_content(RenderMetrics(*hub_, grpc_metrics_, &connections),
                          kExpositionContentType);
        });

  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });

  s.Get("/api/networks", [this](const httplib::Request& req,
                                httplib::Response& res) {
    auto scope = Allow(options_.dashboard_access, false, req, res);
    if (!scope.has_value()) return;
    res.set_header("Cache-Control", "no-store");
    res.set_content(NetworksJson(*scope, *hub_).dump(), "application/json");
  });

  s.Get("/api/events", [this](const httplib::Request& req,
                              httplib::Response& res) {
    auto scope = Allow(options_.dashboard_access, false, req, res);
    if (!scope.has_value()) return;
    service::WatchFilter filter;
    filter.tenant_prefix = scope->prefix();
    if (req.has_param("network")) {
      // get_param_value returns a copy: keep it alive while viewed.
      const std::string param = req.get_param_value("network");
      absl::string_view network = param;
      // The caller's names -> stored ones (a name outside its scope matches
      // nothing, like an absent one).
      filter.network = absl::ConsumePrefix(&network, "networks/")
                           ? absl::StrCat("networks/", scope->Stored(network))
                           : std::string(network);
    }
    if (req.has_param("start_step") &&
        (!absl::SimpleAtoi(req.get_param_value("start_step"),
                           &filter.start_step) ||
         filter.start_step < -1)) {
      res.status = 400;
      res.set_content("start_step: expected an integer >= -1\n",
                      "text/plain; charset=utf-8");
      return;
    }
    std::shared_ptr<service::MetricsSubscription> sub;
    {
      absl::MutexLock lock(&mu_);
      size_t open = 0;
      for (const auto& weak : streams_) {
        auto live = weak.lock();
        if (live != nullptr && !live->closed()) streams_[open++] = weak;
      }
      streams_.resize(open);
      if (stopping_ || static_cast<int>(open) >= options_.max_event_streams) {
        res.status = 503;
        res.set_content("too many event streams\n",
                        "text/plain; charset=utf-8");
        return;
      }
      sub = hub_->Subscribe(filter);
      streams_.push_back(sub);
    }
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");
    const absl::Duration keepalive = options_.event_stream_keepalive;
    res.set_chunked_content_provider(
        "text/event-stream",
        [sub, keepalive, scope = *scope](size_t, httplib::DataSink& sink) {
          if (!sub->WaitForEvent(keepalive)) {
            if (sub->closed()) {
              sink.done();
              return true;
            }
            const char kComment[] = ": keepalive\n\n";
            return sink.write(kComment, sizeof(kComment) - 1);
          }
          // Send what is waiting in one write (bounded per round).
          std::string batch;
          for (int i = 0; i < 256; ++i) {
            auto item = sub->Pop();
            if (!item.has_value()) break;
            batch += SseMessage(scope, *item);
          }
          return sink.write(batch.data(), batch.size());
        },
        [sub](bool) { sub->Close(); });
  });

  s.Get(R"(/(|dashboard\.js|dashboard\.css|vendor/chart\.min\.js))",
        [this](const httplib::Request& req, httplib::Response& res) {
          if (options_.dashboard_access == Access::kOff) {
            res.status = 404;
            return;
          }
          const Asset* asset = FindAsset(req.path);
          if (asset == nullptr) {
            res.status = 404;
            return;
          }
          res.set_header("Cache-Control", "no-cache");
          res.set_content(asset->body.data(), asset->body.size(),
                          std::string(asset->content_type));
        });
}

}  // namespace satlab::http
