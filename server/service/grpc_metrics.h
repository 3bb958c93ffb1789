// gRPC server metrics in the usual Prometheus shape (as go-grpc-prometheus
// and grpc-java's exporters name them): calls started and handled per
// service, method, type and code, and a handling-time histogram. Collected
// by a server interceptor, which sees unary and streaming calls of the
// callback API alike.
#ifndef SATLAB_SERVER_SERVICE_GRPC_METRICS_H_
#define SATLAB_SERVER_SERVICE_GRPC_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_interceptor.h"

namespace satlab::service {

// Upper bounds of the handling-time histogram, in seconds.
inline constexpr std::array<double, 16> kHandlingSecondsBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,   1,      2.5,   5,    10,    30,   60};

// Figures of one method.
struct GrpcMethodStats {
  std::string service;  // e.g. "satlab.v1.TrainingService"
  std::string method;   // e.g. "CreateNetwork"
  std::string type;     // unary, client_stream, server_stream, bidi_stream
  int64_t started = 0;
  int64_t messages_received = 0;
  int64_t messages_sent = 0;
  // Handled calls per status code (index = grpc::StatusCode, 0-16).
  std::array<int64_t, 17> handled{};
  // Non-cumulative bucket counts; the last entry is +Inf.
  std::array<int64_t, kHandlingSecondsBuckets.size() + 1> buckets{};
  double handling_seconds_sum = 0;
};

// The counters. Thread-safe; owned by whoever builds the server
// (server/app.cc), which also hands NewInterceptorFactory() to
// ServerOptions.interceptors.
class GrpcServerMetrics {
 public:
  // A factory for ServerBuilder::experimental().SetInterceptorCreators;
  // `this` must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  NewInterceptorFactory();

  // Every method seen so far, ordered by service and method.
  std::vector<GrpcMethodStats> Snapshot() const;

  // Called by the interceptor. `full_method` is "/package.Service/Method".
  void RecordStarted(const char* full_method,
                     grpc::experimental::ServerRpcInfo::Type type);
  void RecordMessage(const char* full_method, bool received);
  void RecordHandled(const char* full_method, int code, double seconds);

 private:
  GrpcMethodStats& StatsFor(const char* full_method)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // Keyed by the full method name; the set of methods is the server's.
  std::map<std::string, GrpcMethodStats, std::less<>> methods_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_GRPC_METRICS_H_
