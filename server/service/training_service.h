// satlab.v1.TrainingService over the callback API. Handlers are thin: they
// convert the request (convert.h), run the engine on the executor, convert
// the result, and map the status in one place (status.h).
#ifndef SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_
#define SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "server/engine/network.h"
#include "server/service/events.h"
#include "server/service/executor.h"
#include "server/service/memory_budget.h"
#include "server/service/metrics_hub.h"
#include "server/service/stream_registry.h"
#include "server/store/network_store.h"

namespace satlab::service {

namespace pb = ::satlab::v1;

struct ServiceOptions {
  engine::Limits limits;
  // Steps a Train stream may have queued or unsent before it stops reading
  // (flow control towards a client that writes faster than we compute, or
  // reads slower than we answer).
  int train_stream_window = 4;
  // Largest message the server sends or receives (ServerOptions sets it):
  // networks whose parameters would not fit in one GetParameters response
  // are refused at creation, and Forward / ComputeGradients responses that
  // would not fit are refused before computing.
  int64_t max_message_bytes = 64 << 20;
  // Bytes of network state and running calls' scratch the server holds at
  // most (MemoryBudget); 0 means MemoryBudget::DefaultLimit().
  int64_t memory_budget_bytes = 0;
  // Recent request_ids remembered per network (TrainStep, SetParameters).
  int request_ids_per_network = 32;
  // Open-stream cap, Train idle timeout, buffered-byte limits.
  StreamLimits streams;
};

class TrainingServiceImpl final : public pb::TrainingService::CallbackService {
 public:
  // `store`, `executor` and `hub` must outlive the service.
  TrainingServiceImpl(const ServiceOptions& options, store::NetworkStore* store,
                      Executor* executor, MetricsHub* hub);

  grpc::ServerUnaryReactor* CreateNetwork(
      grpc::CallbackServerContext* ctx, const pb::CreateNetworkRequest* request,
      pb::CreateNetworkResponse* response) override;
  grpc::ServerUnaryReactor* GetNetwork(
      grpc::CallbackServerContext* ctx, const pb::GetNetworkRequest* request,
      pb::GetNetworkResponse* response) override;
  grpc::ServerUnaryReactor* ListNetworks(
      grpc::CallbackServerContext* ctx, const pb::ListNetworksRequest* request,
      pb::ListNetworksResponse* response) override;
  grpc::ServerUnaryReactor* DeleteNetwork(
      grpc::CallbackServerContext* ctx, const pb::DeleteNetworkRequest* request,
      pb::DeleteNetworkResponse* response) override;
  grpc::ServerUnaryReactor* GetParameters(
      grpc::CallbackServerContext* ctx, const pb::GetParametersRequest* request,
      pb::GetParametersResponse* response) override;
  grpc::ServerUnaryReactor* SetParameters(
      grpc::CallbackServerContext* ctx, const pb::SetParametersRequest* request,
      pb::SetParametersResponse* response) override;
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* ctx,
                                    const pb::ForwardRequest* request,
                                    pb::ForwardResponse* response) override;
  grpc::ServerUnaryReactor* ComputeGradients(
      grpc::CallbackServerContext* ctx,
      const pb::ComputeGradientsRequest* request,
      pb::ComputeGradientsResponse* response) override;
  grpc::ServerUnaryReactor* TrainStep(grpc::CallbackServerContext* ctx,
                                      const pb::TrainStepRequest* request,
                                      pb::TrainStepResponse* response) override;
  grpc::ServerBidiReactor<pb::TrainRequest, pb::TrainResponse>* Train(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* ctx,
                                     const pb::EvaluateRequest* request,
                                     pb::EvaluateResponse* response) override;
  grpc::ServerWriteReactor<pb::WatchMetricsResponse>* WatchMetrics(
      grpc::CallbackServerContext* ctx,
      const pb::WatchMetricsRequest* request) override;
  grpc::ServerWriteReactor<pb::RunExperimentResponse>* RunExperiment(
      grpc::CallbackServerContext* ctx,
      const pb::RunExperimentRequest* request) override;

  // --- Shared by the unary handlers and the streaming reactors. ---

  // The network named `name` (`networks/{id}`), reading `field` for errors.
  // The single lookup every RPC uses (a caller identity will join here).
  absl::StatusOr<std::shared_ptr<store::NetworkEntry>> FindNetwork(
      absl::string_view name, absl::string_view field) const;

  // One optimizer step on `entry`, whose writer slot the caller holds.
  // Validates the batch first (`field` prefixes messages); on error nothing
  // changes. Reports the step to the event sink. `ctx` (may be null) is
  // the call whose cancellation and deadline stop the step.
  absl::StatusOr<engine::StepResult> ApplyStep(
      store::NetworkEntry& entry, const pb::Minibatch& batch,
      absl::string_view field, grpc::CallbackServerContext* ctx = nullptr);

  // Multiply-adds (batch rows x parameters) up to which a TrainStep runs on
  // the callback thread: a few tens of microseconds at most, less than the
  // executor hand-off it saves for the tiny networks.
  static constexpr int64_t kInlineStepWork = int64_t{1} << 16;

  // ApplyStep for a gRPC callback thread, which must never wait: runs the
  // step only if it is tiny (batch rows x parameters <= kInlineStepWork)
  // and the network's lock is free right now. Otherwise changes nothing and
  // returns nullopt, and the caller hands the call to the executor.
  std::optional<absl::StatusOr<engine::StepResult>> TryApplyTinyStep(
      store::NetworkEntry& entry, const pb::Minibatch& batch,
      absl::string_view field);

  Executor* executor() const { return executor_; }
  // The server's metrics hub (never null): WatchMetrics and the dashboard
  // read it, every step and experiment epoch is reported to it.
  MetricsHub* hub() const { return hub_; }
  // Every open stream; Train, WatchMetrics and RunExperiment register here.
  StreamRegistry* streams() const { return streams_.get(); }
  const ServiceOptions& options() const { return options_; }

  // ABORTED status for a busy network.
  static absl::Status BusyError(absl::string_view id);

  // Engine call options for a call: the per-call scratch bound, and a stop
  // check that fires (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE) when the
  // call is cancelled, its deadline passes or the server's compute stop
  // time (StopComputeAt) passes. `ctx` may be null (no call to follow).
  engine::CallOptions CallOptionsFor(grpc::CallbackServerContext* ctx) const;

  // Shutdown: running compute stops at its next check after `at`, so the
  // grace period bounds how long the process takes to exit.
  void StopComputeAt(absl::Time at);

  MemoryBudget& memory_budget() const { return *budget_; }

 private:
  // Requests of at least this many bytes are charged to the memory budget
  // from arrival until their call finishes: gRPC has already decoded them,
  // and a queue of --max_queued_calls 64 MiB requests would otherwise hold
  // gigabytes nobody counts. Smaller ones (bounded together by
  // max_queued_calls x this) are not, so a full budget never refuses a
  // GetNetwork.
  static constexpr int64_t kChargedRequestBytes = int64_t{64} << 10;

  // Runs `work` on the executor and finishes the call with its status;
  // RESOURCE_EXHAUSTED when the executor queue is full, or when `request`
  // (>= kChargedRequestBytes) does not fit in the memory budget. Cancelled
  // or expired calls are answered without running `work`.
  grpc::ServerUnaryReactor* RunUnary(
      grpc::CallbackServerContext* ctx,
      const google::protobuf::Message& request,
      absl::AnyInvocable<absl::Status() &&> work);

  void NetworkToProto(const store::NetworkEntry& entry, pb::Network* out) const;

  // The step of ApplyStep, under entry.mu: checks, validates, charges the
  // memory budget, trains.
  absl::StatusOr<engine::StepResult> StepLocked(store::NetworkEntry& entry,
                                                const pb::Minibatch& batch,
                                                absl::string_view field,
                                                const engine::CallOptions& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu);

  // Charges a call's memory to the budget for as long as the result lives.
  absl::StatusOr<MemoryBudget::Charge> ChargeCall(int64_t bytes,
                                                  absl::string_view what) const;

  // The recent request_ids of one network (create_time tells a network
  // from a later one of the same id): id -> fingerprint of the request and
  // the serialized response, oldest first.
  struct RecentRequest {
    std::string request_id;
    uint64_t fingerprint = 0;
    std::string response;
  };
  struct NetworkRequests {
    absl::Time create_time;
    std::deque<RecentRequest> recent;
  };
  // The cached response of `request_id` on `entry` into *response: true
  // if found; INVALID_ARGUMENT if the id was used for a different request.
  absl::StatusOr<bool> FindRequest(const store::NetworkEntry& entry,
                                   absl::string_view request_id,
                                   uint64_t fingerprint,
                                   google::protobuf::Message* response) const;
  void RememberRequest(const store::NetworkEntry& entry,
                       absl::string_view request_id, uint64_t fingerprint,
                       const google::protobuf::Message& response);

  const ServiceOptions options_;
  store::NetworkStore* const store_;
  Executor* const executor_;
  MetricsHub* const hub_;
  const std::shared_ptr<MemoryBudget> budget_;
  // absl::ToUnixNanos of the compute stop time; INT64_MAX until shutdown.
  std::atomic<int64_t> stop_compute_at_nanos_{INT64_MAX};
  mutable absl::Mutex requests_mu_;
  absl::flat_hash_map<std::string, NetworkRequests> requests_
      ABSL_GUARDED_BY(requests_mu_);
  const std::unique_ptr<StreamRegistry> streams_;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_
