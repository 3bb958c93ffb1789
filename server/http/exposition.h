// Prometheus text exposition (format 0.0.4) of everything /metrics serves:
// training gauges from the MetricsHub, gRPC server metrics, process
// metrics. Metric names and labels are listed in docs/metrics.md.
#ifndef SATLAB_SERVER_HTTP_EXPOSITION_H_
#define SATLAB_SERVER_HTTP_EXPOSITION_H_

#include <string>

#include "server/http/connection_counters.h"
#include "server/service/grpc_metrics.h"
#include "server/service/metrics_hub.h"

namespace satlab::http {

inline constexpr char kExpositionContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// The whole exposition. `grpc_metrics` and `http` may be null (their
// families are then omitted).
std::string RenderMetrics(const service::MetricsHub& hub,
                          const service::GrpcServerMetrics* grpc_metrics,
                          const HttpConnectionCounters* http = nullptr);

}  // namespace satlab::http

#endif  // SATLAB_SERVER_HTTP_EXPOSITION_H_
