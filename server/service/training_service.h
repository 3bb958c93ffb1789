// satlab.v1.TrainingService over the callback API. Handlers are
// translation only: they convert the request (convert.h), call the core
// (server/core: lookup, writer slot, step, commit) on the executor, convert
// the result, and map the status in one place (status.h).
#ifndef SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_
#define SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "server/core/network_core.h"
#include "server/engine/network.h"
#include "server/service/events.h"
#include "server/service/executor.h"
#include "server/service/metrics_hub.h"
#include "server/service/stream_registry.h"
#include "server/service/tenancy.h"
#include "server/store/experiment_store.h"

namespace satlab::service {

namespace pb = ::satlab::v1;

class ExperimentClaims;

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
  // Minibatches one TrainStep or one Train message may carry at most
  // (`batches`; their rows together at most limits.max_batch_rows).
  int64_t max_batches_per_message = 1024;
  // A Train stream commits its network to the store after this many steps
  // (0: not by count) and after this long (zero: not by time) since its
  // last commit, and when it ends (core::CoreOptions).
  int64_t train_commit_every_steps = 10000;
  absl::Duration train_commit_interval = absl::Seconds(1);
  // Open-stream cap, Train idle timeout, buffered-byte limits.
  StreamLimits streams;
  // Bytes of one experiment's stored record (spec and curves) at most: a
  // RunExperiment stops recording curves beyond it (curves_truncated), so
  // GetExperiment stays under the message limit.
  int64_t max_experiment_record_bytes = 32 << 20;
  // A running experiment writes its curves to the store at most this often
  // (and when it ends), so a durable store does not sync every epoch.
  absl::Duration experiment_record_interval = absl::Seconds(1);
  // API keys, certificate identities and per-tenant quotas (tenancy.h);
  // none configured turns authentication off.
  AuthOptions auth;
};

// The core's options from the service's.
core::CoreOptions CoreOptionsOf(const ServiceOptions& options);

class TrainingServiceImpl final : public pb::TrainingService::CallbackService {
 public:
  // `core`, `executor`, `hub` and `experiments` must outlive the service.
  TrainingServiceImpl(const ServiceOptions& options, core::NetworkCore* core,
                      Executor* executor, MetricsHub* hub,
                      store::ExperimentStore* experiments);

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
  grpc::ServerWriteReactor<pb::ExportNetworkResponse>* ExportNetwork(
      grpc::CallbackServerContext* ctx,
      const pb::ExportNetworkRequest* request) override;
  grpc::ServerReadReactor<pb::ImportNetworkRequest>* ImportNetwork(
      grpc::CallbackServerContext* ctx,
      pb::ImportNetworkResponse* response) override;
  grpc::ServerUnaryReactor* GetExperiment(
      grpc::CallbackServerContext* ctx, const pb::GetExperimentRequest* request,
      pb::GetExperimentResponse* response) override;
  grpc::ServerUnaryReactor* ListExperiments(
      grpc::CallbackServerContext* ctx,
      const pb::ListExperimentsRequest* request,
      pb::ListExperimentsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteExperiment(
      grpc::CallbackServerContext* ctx,
      const pb::DeleteExperimentRequest* request,
      pb::DeleteExperimentResponse* response) override;

  // --- Shared by the unary handlers and the streaming reactors. ---

  // The core: every network's live state, its writer slot and commits.
  core::NetworkCore* core() const { return core_; }
  Executor* executor() const { return executor_; }
  // The server's metrics hub (never null): WatchMetrics and the dashboard
  // read it, every step and experiment epoch is reported to it.
  MetricsHub* hub() const { return hub_; }
  // Every open stream; Train, WatchMetrics and RunExperiment register here.
  StreamRegistry* streams() const { return streams_.get(); }
  const ServiceOptions& options() const { return options_; }
  // Who each call is, and its tenant's quotas.
  Tenancy* tenancy() const { return tenancy_.get(); }
  // Admits a streaming call (UNAUTHENTICATED, RESOURCE_EXHAUSTED naming the
  // request rate, streams or experiments quota).
  absl::StatusOr<StreamAdmission> AdmitStream(grpc::CallbackServerContext* ctx,
                                              bool experiment);
  // Every experiment (`experiments/{id}`), kept by RunExperiment.
  store::ExperimentStore* experiments() const { return experiments_; }
  // Held while an experiment id is claimed (created, or a finished one set
  // RUNNING again) or deleted, so that a check and its write are atomic.
  absl::Mutex* experiment_claim_mu() { return &experiment_claim_mu_; }
  // With a store several replicas share: the experiments' variants are
  // claimed through it (experiment_claims.h). Null otherwise (this server
  // runs its experiments itself).
  ExperimentClaims* experiment_claims() const { return experiment_claims_; }
  // Set once by Server::Create before the server starts; must outlive the
  // service's calls.
  void set_experiment_claims(ExperimentClaims* claims) {
    experiment_claims_ = claims;
  }

  // Engine call options for a call: the per-call scratch bound, and a stop
  // check that fires (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE) when the
  // call is cancelled, its deadline passes or the server's compute stop
  // time (StopComputeAt) passes. `ctx` may be null (no call to follow).
  engine::CallOptions CallOptionsFor(grpc::CallbackServerContext* ctx) const;

  // Shutdown: running compute stops at its next check after `at`, so the
  // grace period bounds how long the process takes to exit.
  void StopComputeAt(absl::Time at);

  core::MemoryBudget& memory_budget() const { return core_->memory_budget(); }

  // RESOURCE_EXHAUSTED (naming `field`) when `spec`'s parameters would not
  // fit in one GetParameters/SetParameters message: such a network can be
  // neither created nor imported.
  absl::Status CheckFitsMessage(const engine::NetworkSpec& spec,
                                absl::string_view field) const;
  // A fresh server-assigned network id.
  static std::string NewId();

  // The status of a refused executor submission (core/capacity.h): queue
  // full, or shutting down. `what` names the refused work.
  absl::Status SubmitRefused(absl::string_view what) const;

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
  // Admits the caller first (Tenancy::Admit: UNAUTHENTICATED, or
  // RESOURCE_EXHAUSTED over its request rate); `work` gets the caller's
  // scope, and its status is shown in the caller's names.
  using ScopedWork =
      absl::AnyInvocable<absl::Status(const core::TenantScope& scope) &&>;
  grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx,
                                     const google::protobuf::Message& request,
                                     ScopedWork work);
  // RunUnary for a caller already admitted.
  grpc::ServerUnaryReactor* RunAdmitted(
      grpc::CallbackServerContext* ctx, const core::TenantScope& scope,
      const google::protobuf::Message& request, ScopedWork work);

  // TrainStep's work: the core's step, its result into `response`.
  absl::Status TrainStepWork(grpc::CallbackServerContext* ctx,
                             const core::TenantScope& scope,
                             const pb::TrainStepRequest& request,
                             pb::TrainStepResponse* response);

  const ServiceOptions options_;
  core::NetworkCore* const core_;
  Executor* const executor_;
  MetricsHub* const hub_;
  store::ExperimentStore* const experiments_;
  absl::Mutex experiment_claim_mu_;
  ExperimentClaims* experiment_claims_ = nullptr;
  // absl::ToUnixNanos of the compute stop time; INT64_MAX until shutdown.
  std::atomic<int64_t> stop_compute_at_nanos_{INT64_MAX};
  const std::unique_ptr<StreamRegistry> streams_;
  const std::unique_ptr<Tenancy> tenancy_;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_TRAINING_SERVICE_H_
