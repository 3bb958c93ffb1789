#include "server/service/grpc_metrics.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/string_view.h"

namespace satlab::service {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;
using grpc::experimental::ServerRpcInfo;

const char* TypeName(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

// One per call: created when the call arrives, destroyed when it ends.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics* metrics, ServerRpcInfo* info)
      : metrics_(metrics),
        method_(info->method()),
        start_(std::chrono::steady_clock::now()) {
    metrics_->RecordStarted(method_, info->type());
  }

  ~MetricsInterceptor() override {
    // A call that ended without a status sent (the client went away first).
    if (!handled_) Handled(static_cast<int>(grpc::StatusCode::CANCELLED));
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      metrics_->RecordMessage(method_, /*received=*/true);
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      metrics_->RecordMessage(method_, /*received=*/false);
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        !handled_) {
      Handled(static_cast<int>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  void Handled(int code) {
    handled_ = true;
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    metrics_->RecordHandled(method_, code, elapsed.count());
  }

  GrpcServerMetrics* const metrics_;
  const char* const method_;  // owned by the server's method table
  const std::chrono::steady_clock::time_point start_;
  bool handled_ = false;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcServerMetrics* metrics)
      : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    // Unregistered methods (UNIMPLEMENTED) arrive with no method name.
    if (info->method() == nullptr) return nullptr;
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  GrpcServerMetrics* const metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcServerMetrics::NewInterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

GrpcMethodStats& GrpcServerMetrics::StatsFor(const char* full_method) {
  auto it = methods_.find(absl::string_view(full_method));
  if (it != methods_.end()) return it->second;
  GrpcMethodStats stats;
  absl::string_view name(full_method);
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const size_t slash = name.find('/');
  stats.service = std::string(name.substr(0, slash));
  stats.method = slash == absl::string_view::npos
                     ? ""
                     : std::string(name.substr(slash + 1));
  stats.type = "unknown";
  return methods_.emplace(full_method, std::move(stats)).first->second;
}

void GrpcServerMetrics::RecordStarted(const char* full_method,
                                      ServerRpcInfo::Type type) {
  absl::MutexLock lock(&mu_);
  GrpcMethodStats& stats = StatsFor(full_method);
  stats.type = TypeName(type);
  ++stats.started;
}

void GrpcServerMetrics::RecordMessage(const char* full_method, bool received) {
  absl::MutexLock lock(&mu_);
  GrpcMethodStats& stats = StatsFor(full_method);
  ++(received ? stats.messages_received : stats.messages_sent);
}

void GrpcServerMetrics::RecordHandled(const char* full_method, int code,
                                      double seconds) {
  absl::MutexLock lock(&mu_);
  GrpcMethodStats& stats = StatsFor(full_method);
  if (code < 0 || code >= static_cast<int>(stats.handled.size())) {
    code = static_cast<int>(grpc::StatusCode::UNKNOWN);
  }
  ++stats.handled[code];
  const auto bucket = std::lower_bound(kHandlingSecondsBuckets.begin(),
                                       kHandlingSecondsBuckets.end(), seconds) -
                      kHandlingSecondsBuckets.begin();
  ++stats.buckets[bucket];
  stats.handling_seconds_sum += seconds;
}

std::vector<GrpcMethodStats> GrpcServerMetrics::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<GrpcMethodStats> out;
  out.reserve(methods_.size());
  for (const auto& [name, stats] : methods_) out.push_back(stats);
  return out;
}

}  // namespace satlab::service
