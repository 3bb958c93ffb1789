#include "server/http/exposition.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "server/engine/blas_guard.h"
#include "server/engine/kernels.h"
#include "server/engine/native_engine.h"
#include "server/http/process_metrics.h"

namespace satlab::http {
namespace {

using Labels = std::vector<std::pair<absl::string_view, std::string>>;

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest of %.15g and %.17g that reads back exactly (0.0005, not
  // 0.00050000000000000001).
  std::string text = absl::StrFormat("%.15g", value);
  if (std::strtod(text.c_str(), nullptr) != value) {
    text = absl::StrFormat("%.17g", value);
  }
  return text;
}

std::string FormatValue(int64_t value) { return absl::StrCat(value); }

// Label values escape backslash, double quote and newline.
std::string EscapeLabel(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Appends families in exposition order: HELP and TYPE once, then samples.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help) {
    absl::StrAppend(out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
  }

  template <typename T>
  void Sample(absl::string_view name, const Labels& labels, T value) {
    absl::StrAppend(out_, name);
    if (!labels.empty()) {
      out_->push_back('{');
      for (size_t i = 0; i < labels.size(); ++i) {
        absl::StrAppend(out_, i == 0 ? "" : ",", labels[i].first, "=\"",
                        EscapeLabel(labels[i].second), "\"");
      }
      out_->push_back('}');
    }
    absl::StrAppend(out_, " ", FormatValue(value), "\n");
  }

 private:
  std::string* out_;
};

void WriteTraining(const service::MetricsHub& hub, Writer& w) {
  // The networks this replica trains: another replica's (received through
  // the shared store's feed, for WatchMetrics and the dashboard) are that
  // replica's to expose, so a cluster-wide query counts each once.
  std::vector<service::NetworkGauges> networks = hub.Networks();
  networks.erase(
      std::remove_if(networks.begin(), networks.end(),
                     [](const service::NetworkGauges& g) { return g.remote; }),
      networks.end());

  // Per network: (name, type, help, value getter).
  struct NetworkFamily {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const service::NetworkGauges&);
  };
  static const NetworkFamily kNetworkFamilies[] = {
      {"satlab_network_step", "gauge",
       "Optimizer steps the network has taken (its step counter).",
       [](const service::NetworkGauges& g) {
         return static_cast<double>(g.step);
       }},
      {"satlab_network_loss", "gauge",
       "Mean loss of the last training minibatch, before its update.",
       [](const service::NetworkGauges& g) { return g.loss; }},
      {"satlab_network_accuracy_ratio", "gauge",
       "Fraction of the last minibatch's rows classified correctly.",
       [](const service::NetworkGauges& g) { return g.accuracy; }},
      {"satlab_network_output_attenuation_ratio", "gauge",
       "||delta|| / ||a - y|| at the output layer for the last minibatch "
       "(1 under cross-entropy, the f'(z) factor under MSE).",
       [](const service::NetworkGauges& g) { return g.output_attenuation; }},
      {"satlab_network_diverged", "gauge",
       "1 when the last step's loss or gradient was NaN or infinite.",
       [](const service::NetworkGauges& g) { return g.diverged ? 1.0 : 0.0; }},
      {"satlab_network_steps_total", "counter",
       "Optimizer steps applied by this server process.",
       [](const service::NetworkGauges& g) {
         return static_cast<double>(g.steps_total);
       }},
      {"satlab_network_samples_total", "counter",
       "Training rows processed by this server process.",
       [](const service::NetworkGauges& g) {
         return static_cast<double>(g.samples_total);
       }},
      {"satlab_network_diverged_steps_total", "counter",
       "Steps whose loss or gradient was NaN or infinite (update skipped).",
       [](const service::NetworkGauges& g) {
         return static_cast<double>(g.diverged_steps_total);
       }},
  };
  for (const NetworkFamily& family : kNetworkFamilies) {
    w.Family(family.name, family.type, family.help);
    for (const service::NetworkGauges& g : networks) {
      w.Sample(family.name, {{"network", g.id}}, family.value(g));
    }
  }

  struct LayerFamily {
    const char* name;
    const char* help;
    double (*value)(const engine::LayerStats&);
  };
  static const LayerFamily kLayerFamilies[] = {
      {"satlab_layer_saturated_ratio",
       "Fraction of (unit, sample) pairs of the last minibatch with "
       "f'(z) < theta * max f' (saturated units).",
       [](const engine::LayerStats& s) { return s.saturated_fraction; }},
      {"satlab_layer_mean_derivative",
       "Mean of f'(z) over (unit, sample) of the last minibatch.",
       [](const engine::LayerStats& s) { return s.mean_derivative; }},
      {"satlab_layer_weight_gradient_norm",
       "Frobenius norm of dC/dW of the last minibatch.",
       [](const engine::LayerStats& s) { return s.weight_gradient_norm; }},
      {"satlab_layer_bias_gradient_norm",
       "Euclidean norm of dC/db of the last minibatch.",
       [](const engine::LayerStats& s) { return s.bias_gradient_norm; }},
      {"satlab_layer_dead_units",
       "ReLU units with z <= 0 for every row of the last minibatch.",
       [](const engine::LayerStats& s) {
         return static_cast<double>(s.dead_units);
       }},
      {"satlab_layer_mean_activation",
       "Mean activation a over (unit, sample) of the last minibatch.",
       [](const engine::LayerStats& s) { return s.mean_activation; }},
  };
  for (const LayerFamily& family : kLayerFamilies) {
    w.Family(family.name, "gauge", family.help);
    for (const service::NetworkGauges& g : networks) {
      for (size_t i = 0; i < g.layers.size(); ++i) {
        w.Sample(family.name, {{"network", g.id}, {"layer", absl::StrCat(i)}},
                 family.value(g.layers[i]));
      }
    }
  }

  const service::HubCounters c = hub.Counters();
  w.Family("satlab_networks", "gauge",
           "Networks with training metrics (trained since the server "
           "started and not deleted).");
  w.Sample("satlab_networks", {}, static_cast<int64_t>(networks.size()));
  w.Family("satlab_metric_events_total", "counter",
           "Metric events recorded (steps, deletions, experiment progress).");
  w.Sample("satlab_metric_events_total", {}, c.events_total);
  w.Family("satlab_metric_events_dropped_total", "counter",
           "Events dropped from slow subscribers' buffers (WatchMetrics and "
           "dashboard streams).");
  w.Sample("satlab_metric_events_dropped_total", {}, c.dropped_events_total);
  w.Family("satlab_metric_subscribers", "gauge",
           "Open WatchMetrics and dashboard event streams.");
  w.Sample("satlab_metric_subscribers", {}, c.subscribers);
  w.Family("satlab_metric_history_events", "gauge",
           "Events retained for replay.");
  w.Sample("satlab_metric_history_events", {}, c.history_events);
  w.Family("satlab_replica_info", "gauge",
           "This server's replica id (--replica_id, else the host name), to "
           "join on instance. Always 1.");
  w.Sample("satlab_replica_info", {{"replica", hub.replica_id()}}, int64_t{1});
  w.Family("satlab_metric_feed_events_total", "counter",
           "Metric events received from other replicas through the shared "
           "store (PostgreSQL; 0 otherwise).");
  w.Sample("satlab_metric_feed_events_total", {}, c.feed_events_total);
  w.Family("satlab_metric_feed_read_failures_total", "counter",
           "Reads of the shared store's metric feed that failed (retried) "
           "and received events that did not parse (skipped).");
  w.Sample("satlab_metric_feed_read_failures_total", {}, c.feed_read_failures);
  w.Family("satlab_metric_feed_delay_seconds", "gauge",
           "Age of the last event received from another replica when it "
           "arrived: its publisher's flush interval, the commit, the "
           "notification and the read.");
  w.Sample("satlab_metric_feed_delay_seconds", {}, c.feed_last_delay_seconds);
}

const char* CodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "Canceled",
                                       "Unknown",
                                       "InvalidArgument",
                                       "DeadlineExceeded",
                                       "NotFound",
                                       "AlreadyExists",
                                       "PermissionDenied",
                                       "ResourceExhausted",
                                       "FailedPrecondition",
                                       "Aborted",
                                       "OutOfRange",
                                       "Unimplemented",
                                       "Internal",
                                       "Unavailable",
                                       "DataLoss",
                                       "Unauthenticated"};
  return kNames[code];
}

void WriteGrpc(const service::GrpcServerMetrics& metrics, Writer& w) {
  const std::vector<service::GrpcMethodStats> methods = metrics.Snapshot();
  auto labels = [](const service::GrpcMethodStats& m) {
    return Labels{{"grpc_method", m.method},
                  {"grpc_service", m.service},
                  {"grpc_type", m.type}};
  };
  w.Family("grpc_server_started_total", "counter",
           "RPCs started on the server.");
  for (const auto& m : methods) {
    w.Sample("grpc_server_started_total", labels(m), m.started);
  }
  w.Family("grpc_server_handled_total", "counter",
           "RPCs completed on the server, by status code.");
  for (const auto& m : methods) {
    for (size_t code = 0; code < m.handled.size(); ++code) {
      if (m.handled[code] == 0) continue;
      Labels l = labels(m);
      l.insert(l.begin(), {"grpc_code", CodeName(static_cast<int>(code))});
      w.Sample("grpc_server_handled_total", l, m.handled[code]);
    }
  }
  w.Family("grpc_server_msg_received_total", "counter",
           "Stream messages received by the server (1 per unary call).");
  for (const auto& m : methods) {
    w.Sample("grpc_server_msg_received_total", labels(m), m.messages_received);
  }
  w.Family("grpc_server_msg_sent_total", "counter",
           "Stream messages sent by the server (1 per unary call).");
  for (const auto& m : methods) {
    w.Sample("grpc_server_msg_sent_total", labels(m), m.messages_sent);
  }
  w.Family("grpc_server_handling_seconds", "histogram",
           "Time from the arrival of an RPC to its status being sent, in "
           "seconds.");
  for (const auto& m : methods) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < m.buckets.size(); ++i) {
      cumulative += m.buckets[i];
      Labels l = labels(m);
      l.emplace_back("le",
                     i < service::kHandlingSecondsBuckets.size()
                         ? FormatValue(service::kHandlingSecondsBuckets[i])
                         : "+Inf");
      w.Sample("grpc_server_handling_seconds_bucket", l, cumulative);
    }
    w.Sample("grpc_server_handling_seconds_sum", labels(m),
             m.handling_seconds_sum);
    w.Sample("grpc_server_handling_seconds_count", labels(m), cumulative);
  }
}

void WriteProcess(Writer& w) {
  auto stats = ReadProcessStats();
  if (!stats.ok()) return;  // not Linux: the families are simply absent
  w.Family("process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.");
  w.Sample("process_cpu_seconds_total", {}, stats->cpu_seconds);
  w.Family("process_resident_memory_bytes", "gauge",
           "Resident memory size in bytes.");
  w.Sample("process_resident_memory_bytes", {}, stats->resident_memory_bytes);
  w.Family("process_virtual_memory_bytes", "gauge",
           "Virtual memory size in bytes.");
  w.Sample("process_virtual_memory_bytes", {}, stats->virtual_memory_bytes);
  w.Family("process_open_fds", "gauge", "Number of open file descriptors.");
  w.Sample("process_open_fds", {}, stats->open_fds);
  w.Family("process_max_fds", "gauge",
           "Maximum number of open file descriptors.");
  w.Sample("process_max_fds", {}, stats->max_fds);
  w.Family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
  w.Sample("process_start_time_seconds", {}, stats->start_time_seconds);
}

// Which kernels the process computes with (constant after startup).
void WriteKernels(Writer& w) {
  const engine::BlasCoreReport blas = engine::CurrentBlasCoreReport();
  w.Family("satlab_kernels_info", "gauge",
           "The engine's kernel variant (engine) and OpenBLAS's core "
           "(blas_core; blas_detected: the one OpenBLAS chose itself; "
           "blas_forced: the startup guard replaced it), and the network "
           "engine (network_engine: portable, or the native engine's "
           "x86-64 level). Always 1.");
  w.Sample(
      "satlab_kernels_info",
      {{"engine",
        std::string(engine::kernels::IsaName(engine::kernels::ActiveIsa()))},
       {"blas_core", blas.active},
       {"blas_detected", blas.detected},
       {"blas_forced", blas.forced ? "true" : "false"},
       {"network_engine", engine::EngineName()}},
      int64_t{1});
}

void WriteHttp(const HttpConnectionCounters& c, Writer& w) {
  w.Family("satlab_http_connections", "gauge",
           "HTTP connections open on the side port.");
  w.Sample("satlab_http_connections", {}, c.open);
  w.Family("satlab_http_connections_accepted_total", "counter",
           "HTTP connections accepted and served.");
  w.Sample("satlab_http_connections_accepted_total", {}, c.accepted_total);
  w.Family("satlab_http_connections_rejected_total", "counter",
           "HTTP connections over --http_max_connections while every "
           "connection was busy, answered 503.");
  w.Sample("satlab_http_connections_rejected_total", {}, c.rejected_total);
  w.Family("satlab_http_connections_evicted_total", "counter",
           "HTTP connections waiting for a request, closed at "
           "--http_max_connections to make room for a new one.");
  w.Sample("satlab_http_connections_evicted_total", {}, c.evicted_total);
  w.Family("satlab_http_request_timeouts_total", "counter",
           "HTTP connections closed because a request did not arrive within "
           "--http_request_timeout_seconds.");
  w.Sample("satlab_http_request_timeouts_total", {}, c.request_timeouts_total);
  w.Family("satlab_http_oversized_requests_total", "counter",
           "HTTP requests over --http_max_request_bytes (431 or 413).");
  w.Sample("satlab_http_oversized_requests_total", {},
           c.oversized_requests_total);
  w.Family("satlab_http_write_timeouts_total", "counter",
           "HTTP connections closed because a write was not taken within "
           "--http_write_timeout_seconds.");
  w.Sample("satlab_http_write_timeouts_total", {}, c.write_timeouts_total);
  w.Family("satlab_http_tls_handshake_failures_total", "counter",
           "HTTP connections closed because their TLS handshake failed or "
           "did not finish within --http_request_timeout_seconds.");
  w.Sample("satlab_http_tls_handshake_failures_total", {},
           c.tls_handshake_failures_total);
}

}  // namespace

std::string RenderMetrics(const service::MetricsHub& hub,
                          const service::GrpcServerMetrics* grpc_metrics,
                          const HttpConnectionCounters* http) {
  std::string out;
  out.reserve(16 << 10);
  Writer w(&out);
  WriteTraining(hub, w);
  if (grpc_metrics != nullptr) WriteGrpc(*grpc_metrics, w);
  if (http != nullptr) WriteHttp(*http, w);
  WriteKernels(w);
  WriteProcess(w);
  return out;
}

}  // namespace satlab::http
