#include "server/service/training_service.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/capacity.h"
#include "server/service/convert.h"
#include "server/service/core_convert.h"
#include "server/service/experiment_reactor.h"
#include "server/service/export_reactor.h"
#include "server/service/status.h"
#include "server/service/train_reactor.h"
#include "server/service/watch_reactor.h"

namespace satlab::service {
namespace {

using Scope = core::TenantScope;

// A fresh server-assigned id: "net-" and 12 hex digits.
std::string NewNetworkId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng ABSL_GUARDED_BY(mu) = nullptr;
  absl::MutexLock lock(&mu);
  if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());
  return absl::StrCat(
      "net-", absl::Hex((*rng)() & 0xffffffffffffULL, absl::kZeroPad12));
}

// Bytes of a tensor of `values` scalars of `scalar_bytes` on the wire,
// with room for its tags, lengths and shape.
int64_t TensorBytes(int64_t values, int64_t scalar_bytes) {
  return values * scalar_bytes + 32;
}

int64_t ScalarBytes(const engine::NetworkSpec& spec) {
  return spec.dtype == engine::DType::kFloat32 ? 4 : 8;
}

// A GetParameters response (or SetParameters request in the network's
// dtype): every layer's weights and biases.
int64_t ParametersMessageBytes(const engine::NetworkSpec& spec) {
  return engine::ParameterCount(spec) * ScalarBytes(spec) +
         64 * static_cast<int64_t>(spec.layers.size()) + 64;
}

// RESOURCE_EXHAUSTED when a response of `bytes` cannot be sent.
absl::Status CheckResponseSize(absl::string_view what, int64_t bytes,
                               int64_t max_message_bytes,
                               absl::string_view advice) {
  if (bytes <= max_message_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " would take about ", bytes,
      " bytes, over the server's message limit of ", max_message_bytes,
      " bytes (--max_message_bytes); ", advice));
}

// `info` as the caller knows it: its id in the caller's scope.
core::NetworkInfo Shown(const core::TenantScope& scope,
                        core::NetworkInfo info) {
  info.id = std::string(scope.Shown(info.id));
  return info;
}

// A response replayed for a retried request id.
absl::Status ParseReplay(const core::Replay& replay,
                         google::protobuf::Message* response) {
  if (response->ParseFromString(*replay.response)) return absl::OkStatus();
  return absl::InternalError(
      "request_id: the recorded response of this request cannot be read");
}

// A TrainStep's steps, to the metrics hub in one call.
void RecordSteps(MetricsHub* hub, absl::string_view id,
                 const std::vector<engine::StepResult>& results) {
  hub->OnSteps(
      NetworkName(id), results.size(),
      [&results](size_t i) -> const engine::StepResult& { return results[i]; });
}

}  // namespace

core::CoreOptions CoreOptionsOf(const ServiceOptions& options) {
  core::CoreOptions core;
  core.limits = options.limits;
  core.memory_budget_bytes = options.memory_budget_bytes;
  core.request_ids_per_network = options.request_ids_per_network;
  core.max_batches_per_message = options.max_batches_per_message;
  core.commit_every_steps = options.train_commit_every_steps;
  core.commit_interval = options.train_commit_interval;
  return core;
}

TrainingServiceImpl::TrainingServiceImpl(const ServiceOptions& options,
                                         core::NetworkCore* core,
                                         Executor* executor, MetricsHub* hub,
                                         store::ExperimentStore* experiments)
    : options_(options),
      core_(core),
      executor_(executor),
      hub_(hub),
      experiments_(experiments),
      streams_(std::make_unique<StreamRegistry>(options.streams)),
      tenancy_(std::make_unique<Tenancy>(options.auth, core)) {}

engine::CallOptions TrainingServiceImpl::CallOptionsFor(
    grpc::CallbackServerContext* ctx) const {
  engine::CallOptions call;
  call.max_scratch_bytes = options_.limits.max_call_scratch_bytes;
  const auto deadline = ctx != nullptr
                            ? ctx->deadline()
                            : std::chrono::system_clock::time_point::max();
  call.stop = [this, ctx, deadline]() -> absl::Status {
    if (ctx != nullptr && ctx->IsCancelled()) {
      return absl::CancelledError("the call was cancelled; nothing changed");
    }
    const auto now = std::chrono::system_clock::now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          "the call's deadline passed before it finished; nothing changed");
    }
    if (absl::ToUnixNanos(absl::FromChrono(now)) >=
        stop_compute_at_nanos_.load(std::memory_order_relaxed)) {
      return absl::UnavailableError(
          "the server is shutting down; nothing changed, retry elsewhere or "
          "later");
    }
    return absl::OkStatus();
  };
  return call;
}

void TrainingServiceImpl::StopComputeAt(absl::Time at) {
  stop_compute_at_nanos_.store(absl::ToUnixNanos(at));
}

absl::StatusOr<StreamAdmission> TrainingServiceImpl::AdmitStream(
    grpc::CallbackServerContext* ctx, bool experiment) {
  auto who = tenancy_->Admit(*ctx);
  if (!who.ok()) return who.status();
  auto stream = tenancy_->OpenStream(*who);
  if (!stream.ok()) return stream.status();
  Tenancy::Lease running;
  if (experiment) {
    auto started = tenancy_->StartExperiment(*who);
    if (!started.ok()) return started.status();
    running = *std::move(started);
  }
  return StreamAdmission{core::TenantScope(*std::move(who)), *std::move(stream),
                         std::move(running)};
}

absl::Status TrainingServiceImpl::SubmitRefused(absl::string_view what) const {
  if (executor_->stopping()) return core::ShuttingDown(what);
  return core::NoCapacity(what, "the server's compute queue is full",
                          "max_queued_calls");
}

grpc::ServerUnaryReactor* TrainingServiceImpl::RunUnary(
    grpc::CallbackServerContext* ctx, const google::protobuf::Message& request,
    ScopedWork work) {
  auto who = tenancy_->Admit(*ctx);
  if (!who.ok()) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  return RunAdmitted(ctx, core::TenantScope(*std::move(who)), request,
                     std::move(work));
}

grpc::ServerUnaryReactor* TrainingServiceImpl::RunAdmitted(
    grpc::CallbackServerContext* ctx, const core::TenantScope& scope,
    const google::protobuf::Message& request, ScopedWork work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  core::MemoryBudget::Charge request_charge;
  if (const int64_t bytes = static_cast<int64_t>(request.ByteSizeLong());
      bytes >= kChargedRequestBytes) {
    auto charge = memory_budget().TryCharge(
        bytes, absl::StrCat("this ", request.GetDescriptor()->name(),
                            " waiting for a compute thread"));
    if (!charge.ok()) {
      reactor->Finish(ToGrpcStatus(charge.status()));
      return reactor;
    }
    request_charge = *std::move(charge);
  }
  const bool queued = executor_->TrySubmit(
      [ctx, reactor, scope, work = std::move(work),
       request_charge = std::move(request_charge)]() mutable {
        if (ctx->IsCancelled()) {
          reactor->Finish(grpc::Status::CANCELLED);
          return;
        }
        if (ctx->deadline() < std::chrono::system_clock::now()) {
          reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                       "deadline passed before the call ran"));
          return;
        }
        absl::Status status;
        try {
          status = scope.Unscoped(std::move(work)(scope));
        } catch (const std::bad_alloc&) {
          status = absl::ResourceExhaustedError(
              "the server ran out of memory for this call; nothing changed, "
              "retry later or with less data");
        }
        reactor->Finish(ToGrpcStatus(status));
      });
  if (!queued) {
    reactor->Finish(
        ToGrpcStatus(SubmitRefused(request.GetDescriptor()->name())));
  }
  return reactor;
}

absl::Status TrainingServiceImpl::CheckFitsMessage(
    const engine::NetworkSpec& spec, absl::string_view field) const {
  // Every network that can be created can be read and written whole: its
  // parameters must fit in one message.
  const int64_t message_bytes = ParametersMessageBytes(spec);
  if (message_bytes <= options_.max_message_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      field, ": its ", engine::ParameterCount(spec), " parameters take ",
      message_bytes,
      " bytes as a GetParameters/SetParameters message, over the server's "
      "message limit of ",
      options_.max_message_bytes,
      " bytes (--max_message_bytes; --max_parameters allows ",
      options_.limits.max_parameters, "); use fewer units or float32"));
}

std::string TrainingServiceImpl::NewId() { return NewNetworkId(); }

grpc::ServerUnaryReactor* TrainingServiceImpl::CreateNetwork(
    grpc::CallbackServerContext* ctx, const pb::CreateNetworkRequest* request,
    pb::CreateNetworkResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    std::string id = request->network_id();
    if (id.empty()) {
      id = NewNetworkId();
    }
    auto stored = StoredId(who, id, "network_id");
    if (!stored.ok()) return stored.status();
    auto spec = SpecFromProto(request->network().spec(), "network.spec");
    if (!spec.ok()) return spec.status();
    if (absl::Status s =
            engine::ValidateSpec(*spec, options_.limits, "network.spec");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckFitsMessage(*spec, "network.spec"); !s.ok()) {
      return s;
    }
    absl::StatusOr<core::NetworkInfo> info;
    if (absl::Status s = tenancy_->CreateWithinQuota(
            who, engine::ParameterCount(*spec),
            [&] {
              info = core_->Create(*stored, *spec, "network.spec");
              return info.status();
            });
        !s.ok()) {
      return s;
    }
    InfoToProto(Shown(who, *std::move(info)), response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetNetwork(
    grpc::CallbackServerContext* ctx, const pb::GetNetworkRequest* request,
    pb::GetNetworkResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto id = ParseNetworkName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    auto info = core_->Get(*id);
    if (!info.ok()) return info.status();
    InfoToProto(Shown(who, *std::move(info)), response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ListNetworks(
    grpc::CallbackServerContext* ctx, const pb::ListNetworksRequest* request,
    pb::ListNetworksResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto page_request =
        PageFromRequest(who, request->page_size(), request->page_token());
    if (!page_request.ok()) return page_request.status();
    const std::string& after = page_request->after;
    const int size = page_request->size;
    // One extra entry tells whether another page follows.
    auto page = core_->List(after, size + 1);
    if (!page.ok()) return page.status();
    // The caller's networks are the run of stored ids under its prefix.
    const auto mine = std::find_if(
        page->begin(), page->end(),
        [&](const core::NetworkInfo& info) { return !who.Sees(info.id); });
    page->erase(mine, page->end());
    const bool more = static_cast<int>(page->size()) > size;
    if (more) page->pop_back();
    if (more) {
      response->set_next_page_token(std::string(who.Shown(page->back().id)));
    }
    for (core::NetworkInfo& info : *page) {
      InfoToProto(Shown(who, std::move(info)), response->add_networks());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::DeleteNetwork(
    grpc::CallbackServerContext* ctx, const pb::DeleteNetworkRequest* request,
    pb::DeleteNetworkResponse* response) {
  return RunUnary(ctx, *request, [this, request](const Scope& who) {
    auto id = ParseNetworkName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    if (absl::Status s = core_->Delete(*id); !s.ok()) return s;
    hub_->OnNetworkDeleted(NetworkName(*id));
    // Open Train streams on it end now and drop their reference, so its
    // memory returns to the budget without waiting for their next message.
    streams_->NetworkDeleted(*id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetParameters(
    grpc::CallbackServerContext* ctx, const pb::GetParametersRequest* request,
    pb::GetParametersResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto id = ParseNetworkName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    auto params = core_->GetParameters(*id,
                                       [](const engine::NetworkSpec& spec,
                                          int64_t) -> absl::StatusOr<int64_t> {
                                         return ParametersMessageBytes(spec);
                                       });
    if (!params.ok()) return params.status();
    for (size_t l = 0; l < params->weights.size(); ++l) {
      pb::LayerParameters* layer = response->add_layers();
      if (absl::Status s = ToProto(params->weights[l], /*as_vector=*/false,
                                   layer->mutable_weights());
          !s.ok()) {
        return s;
      }
      if (absl::Status s = ToProto(params->biases[l], /*as_vector=*/true,
                                   layer->mutable_biases());
          !s.ok()) {
        return s;
      }
    }
    response->set_step(params->step);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::SetParameters(
    grpc::CallbackServerContext* ctx, const pb::SetParametersRequest* request,
    pb::SetParametersResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto id = ParseNetworkName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    auto key = RequestKeyOf(request->request_id(), *request);
    if (!key.ok()) return key.status();
    core::Replay replay;
    auto updated = core_->SetParameters(
        *id,
        [request](const engine::NetworkSpec&) {
          return ParamsFromProto(request->layers(), "layers");
        },
        request->reset_optimizer_state(), *key,
        [&who, response](const core::NetworkInfo& applied) {
          InfoToProto(Shown(who, applied), response->mutable_network());
          return response->SerializeAsString();
        },
        &replay);
    if (!updated.ok()) return updated.status();
    if (replay.response.has_value()) return ParseReplay(replay, response);
    InfoToProto(Shown(who, *std::move(updated)), response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::Forward(
    grpc::CallbackServerContext* ctx, const pb::ForwardRequest* request,
    pb::ForwardResponse* response) {
  return RunUnary(
      ctx, *request, [this, ctx, request, response](const Scope& who) {
        auto id = ParseNetworkName(who, request->name(), "name");
        if (!id.ok()) return id.status();
        auto inputs = MatrixViewOf(request->inputs(), "inputs");
        if (!inputs.ok()) return inputs.status();
        const bool layers = request->include_layers();
        // The response: outputs, and with include_layers z and a of every
        // layer.
        auto response_bytes = [this, layers](
                                  const engine::NetworkSpec& spec,
                                  int64_t rows) -> absl::StatusOr<int64_t> {
          int64_t bytes =
              TensorBytes(rows * spec.layers.back().units, ScalarBytes(spec));
          if (layers) {
            for (const engine::LayerSpec& layer : spec.layers) {
              bytes += 2 * TensorBytes(rows * layer.units, ScalarBytes(spec));
            }
          }
          if (absl::Status s = CheckResponseSize(
                  "Forward's response", bytes, options_.max_message_bytes,
                  layers ? "send fewer rows or omit include_layers"
                         : "send fewer rows");
              !s.ok()) {
            return s;
          }
          return bytes;
        };
        auto out = core_->Forward(*id, *inputs, layers, CallOptionsFor(ctx),
                                  response_bytes);
        if (!out.ok()) return out.status();
        const engine::ForwardResult& result = out->result;
        if (absl::Status s =
                ToProto(result.outputs, false, response->mutable_outputs());
            !s.ok()) {
          return s;
        }
        for (size_t i = 0; i < result.z.size(); ++i) {
          pb::LayerActivations* layer = response->add_layers();
          if (absl::Status s = ToProto(result.z[i], false, layer->mutable_z());
              !s.ok()) {
            return s;
          }
          if (absl::Status s = ToProto(result.a[i], false, layer->mutable_a());
              !s.ok()) {
            return s;
          }
        }
        response->set_step(out->step);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ComputeGradients(
    grpc::CallbackServerContext* ctx,
    const pb::ComputeGradientsRequest* request,
    pb::ComputeGradientsResponse* response) {
  return RunUnary(
      ctx, *request, [this, ctx, request, response](const Scope& who) {
        auto id = ParseNetworkName(who, request->name(), "name");
        if (!id.ok()) return id.status();
        if (request->counterfactual_losses_size() > kMaxCounterfactualLosses) {
          return absl::InvalidArgumentError(
              absl::StrCat("counterfactual_losses: expected at most ",
                           kMaxCounterfactualLosses, " entries, got ",
                           request->counterfactual_losses_size()));
        }
        std::vector<engine::Loss> counterfactuals;
        for (int i = 0; i < request->counterfactual_losses_size(); ++i) {
          auto loss =
              LossFromProto(request->counterfactual_losses(i),
                            absl::StrCat("counterfactual_losses[", i, "]"));
          if (!loss.ok()) return loss.status();
          counterfactuals.push_back(*loss);
        }
        auto batch = BatchOf(request->batch(), "batch");
        if (!batch.ok()) return batch.status();
        // Per loss, every gradient (the size of the parameters) and the
        // output delta [rows, outputs].
        const int64_t losses = 1 + static_cast<int64_t>(counterfactuals.size());
        auto response_bytes = [this, losses](
                                  const engine::NetworkSpec& spec,
                                  int64_t rows) -> absl::StatusOr<int64_t> {
          const int64_t per_loss =
              ParametersMessageBytes(spec) +
              TensorBytes(rows * spec.layers.back().units, ScalarBytes(spec)) +
              1024;
          const int64_t bytes = per_loss * losses;
          if (absl::Status s = CheckResponseSize(
                  "ComputeGradients' response (gradients and output delta per "
                  "loss)",
                  bytes, options_.max_message_bytes,
                  "send fewer rows or fewer counterfactual_losses");
              !s.ok()) {
            return s;
          }
          return bytes;
        };
        auto out =
            core_->ComputeGradients(*id, *batch, "batch", counterfactuals,
                                    CallOptionsFor(ctx), response_bytes);
        if (!out.ok()) return out.status();
        for (size_t i = 0; i < out->results.size(); ++i) {
          const engine::GradientResult& g = out->results[i];
          pb::Gradients* grads = i == 0 ? response->mutable_gradients()
                                        : response->add_counterfactuals();
          grads->set_loss(LossToProto(g.loss));
          grads->set_loss_value(g.loss_value);
          for (size_t l = 0; l < g.weight_grads.size(); ++l) {
            pb::LayerGradients* layer = grads->add_layers();
            if (absl::Status s =
                    ToProto(g.weight_grads[l], false, layer->mutable_weights());
                !s.ok()) {
              return s;
            }
            if (absl::Status s =
                    ToProto(g.bias_grads[l], true, layer->mutable_biases());
                !s.ok()) {
              return s;
            }
          }
          if (absl::Status s =
                  ToProto(g.output_delta, false, grads->mutable_output_delta());
              !s.ok()) {
            return s;
          }
          StatsToProto(g.stats, grads->mutable_saturation());
        }
        response->set_step(out->step);
        return absl::OkStatus();
      });
}

absl::Status TrainingServiceImpl::TrainStepWork(
    grpc::CallbackServerContext* ctx, const core::TenantScope& scope,
    const pb::TrainStepRequest& request, pb::TrainStepResponse* response) {
  auto id = ParseNetworkName(scope, request.name(), "name");
  if (!id.ok()) return id.status();
  auto key = RequestKeyOf(request.request_id(), request);
  if (!key.ok()) return key.status();
  core::BatchFields fields;
  auto batches = BatchesOf(request, &fields);
  if (!batches.ok()) return batches.status();
  core::Replay replay;
  auto out = core_->TrainStep(
      *id, *batches, fields, CallOptionsFor(ctx), *key,
      [response](const core::StepsOutcome& applied) {
        StepsToProto(applied, response);
        return response->SerializeAsString();
      },
      &replay);
  if (!out.ok()) return out.status();
  if (replay.response.has_value()) return ParseReplay(replay, response);
  StepsToProto(*out, response);
  RecordSteps(hub_, *id, out->results);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* TrainingServiceImpl::TrainStep(
    grpc::CallbackServerContext* ctx, const pb::TrainStepRequest* request,
    pb::TrainStepResponse* response) {
  // A tiny step runs here, on the callback thread, when the core says it
  // may (NetworkCore::TryStepInline): the hand-off to the executor costs
  // two thread wake-ups, tens of microseconds on a loaded machine and more
  // than the step itself (bench/notes.md). Everything else, and every
  // error, goes through the executor.
  auto who = tenancy_->Admit(*ctx);
  if (!who.ok()) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  const core::TenantScope scope(*std::move(who));
  if (auto id = ParseNetworkName(scope, request->name(), "name"); id.ok()) {
    core::BatchFields fields;
    if (auto batches = BatchesOf(*request, &fields); batches.ok()) {
      const core::RequestKey key{request->request_id(), 0};
      if (auto done = core_->TryStepInline(*id, *batches, fields, key)) {
        grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
        if (done->ok()) {
          StepsToProto(**done, response);
          RecordSteps(hub_, *id, (*done)->results);
        }
        reactor->Finish(ToGrpcStatus(scope.Unscoped(done->status())));
        return reactor;
      }
    }
  }
  return RunAdmitted(
      ctx, scope, *request,
      [this, ctx, request, response](const core::TenantScope& caller) {
        return TrainStepWork(ctx, caller, *request, response);
      });
}

grpc::ServerBidiReactor<pb::TrainRequest, pb::TrainResponse>*
TrainingServiceImpl::Train(grpc::CallbackServerContext* ctx) {
  return new TrainReactor(this, ctx);
}

grpc::ServerUnaryReactor* TrainingServiceImpl::Evaluate(
    grpc::CallbackServerContext* ctx, const pb::EvaluateRequest* request,
    pb::EvaluateResponse* response) {
  return RunUnary(
      ctx, *request, [this, ctx, request, response](const Scope& who) {
        auto id = ParseNetworkName(who, request->name(), "name");
        if (!id.ok()) return id.status();
        auto batch = BatchOf(request->data(), "data");
        if (!batch.ok()) return batch.status();
        auto out = core_->Evaluate(*id, *batch, "data", CallOptionsFor(ctx));
        if (!out.ok()) return out.status();
        const engine::EvalResult& result = out->result;
        response->set_loss(result.loss);
        response->set_accuracy(result.accuracy);
        response->set_samples(result.samples);
        StatsToProto(result.stats, response->mutable_saturation());
        response->set_step(out->step);
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<pb::WatchMetricsResponse>*
TrainingServiceImpl::WatchMetrics(grpc::CallbackServerContext* ctx,
                                  const pb::WatchMetricsRequest* request) {
  return NewWatchReactor(this, ctx, request);
}

grpc::ServerWriteReactor<pb::RunExperimentResponse>*
TrainingServiceImpl::RunExperiment(grpc::CallbackServerContext* ctx,
                                   const pb::RunExperimentRequest* request) {
  return NewExperimentReactor(this, ctx, request);
}

grpc::ServerWriteReactor<pb::ExportNetworkResponse>*
TrainingServiceImpl::ExportNetwork(grpc::CallbackServerContext* ctx,
                                   const pb::ExportNetworkRequest* request) {
  return NewExportReactor(this, ctx, request);
}

grpc::ServerReadReactor<pb::ImportNetworkRequest>*
TrainingServiceImpl::ImportNetwork(grpc::CallbackServerContext* ctx,
                                   pb::ImportNetworkResponse* response) {
  return NewImportReactor(this, ctx, response);
}

}  // namespace satlab::service
