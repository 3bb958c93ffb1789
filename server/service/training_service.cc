#include "server/service/training_service.h"

#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/service/convert.h"
#include "server/service/experiment_reactor.h"
#include "server/service/status.h"
#include "server/service/train_reactor.h"
#include "server/service/watch_reactor.h"

namespace satlab::service {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

// A fresh server-assigned id: "net-" and 12 hex digits.
std::string NewNetworkId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng ABSL_GUARDED_BY(mu) = nullptr;
  absl::MutexLock lock(&mu);
  if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());
  return absl::StrCat(
      "net-", absl::Hex((*rng)() & 0xffffffffffffULL, absl::kZeroPad12));
}

// Views of a minibatch's inputs and targets, validated against `network`.
struct BatchViews {
  engine::MatrixView inputs;
  engine::MatrixView targets;
};

absl::StatusOr<BatchViews> CheckedBatch(const engine::Network& network,
                                        const pb::Minibatch& batch,
                                        engine::Loss loss,
                                        absl::string_view field,
                                        const engine::Limits& limits) {
  auto inputs = MatrixViewOf(batch.inputs(), absl::StrCat(field, ".inputs"));
  if (!inputs.ok()) return inputs.status();
  auto targets = MatrixViewOf(batch.targets(), absl::StrCat(field, ".targets"));
  if (!targets.ok()) return targets.status();
  if (absl::Status s = network.ValidateBatch(*inputs, &*targets, loss, field,
                                             limits.max_batch_rows);
      !s.ok()) {
    return s;
  }
  return BatchViews{*inputs, *targets};
}

}  // namespace

TrainingServiceImpl::TrainingServiceImpl(const ServiceOptions& options,
                                         store::NetworkStore* store,
                                         Executor* executor, MetricsHub* hub)
    : options_(options),
      store_(store),
      executor_(executor),
      hub_(hub),
      streams_(std::make_unique<StreamRegistry>(options.streams)) {}

absl::Status TrainingServiceImpl::BusyError(absl::string_view id) {
  return absl::AbortedError(absl::StrCat(
      "networks/", id,
      " is being written by another caller (TrainStep, SetParameters or an "
      "open Train stream); retry when it finishes"));
}

grpc::ServerUnaryReactor* TrainingServiceImpl::RunUnary(
    grpc::CallbackServerContext* ctx,
    absl::AnyInvocable<absl::Status() &&> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const bool queued =
      executor_->TrySubmit([ctx, reactor, work = std::move(work)]() mutable {
        if (ctx->IsCancelled()) {
          reactor->Finish(grpc::Status::CANCELLED);
          return;
        }
        if (ctx->deadline() < std::chrono::system_clock::now()) {
          reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                       "deadline passed before the call ran"));
          return;
        }
        reactor->Finish(ToGrpcStatus(std::move(work)()));
      });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "the server's compute queue is full "
                                 "(--max_queued_calls); retry later"));
  }
  return reactor;
}

absl::StatusOr<std::shared_ptr<store::NetworkEntry>>
TrainingServiceImpl::FindNetwork(absl::string_view name,
                                 absl::string_view field) const {
  auto id = ParseNetworkName(name, field);
  if (!id.ok()) return id.status();
  return store_->Find(*id);
}

void TrainingServiceImpl::NetworkToProto(const store::NetworkEntry& entry,
                                         pb::Network* out) const
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold entry.mu
  const engine::Network& net = *entry.network;
  out->set_name(NetworkName(entry.id));
  SpecToProto(net.spec(), out->mutable_spec());
  TimeToProto(entry.create_time, out->mutable_create_time());
  TimeToProto(entry.update_time, out->mutable_update_time());
  out->set_step(net.step());
  out->set_samples_seen(net.samples_seen());
  out->set_parameter_count(net.parameter_count());
}

grpc::ServerUnaryReactor* TrainingServiceImpl::CreateNetwork(
    grpc::CallbackServerContext* ctx, const pb::CreateNetworkRequest* request,
    pb::CreateNetworkResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    std::string id = request->network_id();
    if (id.empty()) {
      id = NewNetworkId();
    } else if (absl::Status s = ValidateNetworkId(id); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("network_id: ", s.message()));
    }
    auto spec = SpecFromProto(request->network().spec(), "network.spec");
    if (!spec.ok()) return spec.status();
    auto network = engine::Network::Create(*spec, options_.limits);
    if (!network.ok()) return network.status();
    auto entry = std::make_shared<store::NetworkEntry>(id, *std::move(network),
                                                       absl::Now());
    if (absl::Status s = store_->Insert(entry); !s.ok()) return s;
    absl::ReaderMutexLock lock(&entry->mu);
    NetworkToProto(*entry, response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetNetwork(
    grpc::CallbackServerContext* ctx, const pb::GetNetworkRequest* request,
    pb::GetNetworkResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    NetworkToProto(**entry, response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ListNetworks(
    grpc::CallbackServerContext* ctx, const pb::ListNetworksRequest* request,
    pb::ListNetworksResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    if (request->page_size() < 0 || request->page_size() > kMaxPageSize) {
      return absl::InvalidArgumentError(absl::StrCat("page_size: expected 0..",
                                                     kMaxPageSize, ", got ",
                                                     request->page_size()));
    }
    // The page token is the last id of the previous page.
    const std::string& after = request->page_token();
    if (!after.empty() && !ValidateNetworkId(after).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "page_token: not a token from a previous page: \"", after, "\""));
    }
    const int size =
        request->page_size() == 0 ? kDefaultPageSize : request->page_size();
    // One extra entry tells whether another page follows.
    auto page = store_->List(after, size + 1);
    const bool more = static_cast<int>(page.size()) > size;
    if (more) page.pop_back();
    for (const auto& entry : page) {
      absl::ReaderMutexLock lock(&entry->mu);
      NetworkToProto(*entry, response->add_networks());
    }
    if (more) response->set_next_page_token(page.back()->id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::DeleteNetwork(
    grpc::CallbackServerContext* ctx, const pb::DeleteNetworkRequest* request,
    pb::DeleteNetworkResponse* response) {
  return RunUnary(ctx, [this, request]() -> absl::Status {
    auto id = ParseNetworkName(request->name(), "name");
    if (!id.ok()) return id.status();
    if (absl::Status s = store_->Erase(*id); !s.ok()) return s;
    hub_->OnNetworkDeleted(request->name());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetParameters(
    grpc::CallbackServerContext* ctx, const pb::GetParametersRequest* request,
    pb::GetParametersResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    const engine::Network& net = *(*entry)->network;
    for (int i = 0; i < net.num_layers(); ++i) {
      pb::LayerParameters* layer = response->add_layers();
      ToProto(net.weights(i), /*as_vector=*/false, layer->mutable_weights());
      ToProto(net.biases(i), /*as_vector=*/true, layer->mutable_biases());
    }
    response->set_step(net.step());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::SetParameters(
    grpc::CallbackServerContext* ctx, const pb::SetParametersRequest* request,
    pb::SetParametersResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    store::NetworkEntry& e = **entry;
    if (!e.TryAcquireWriter()) return BusyError(e.id);
    absl::Status status = [&]() -> absl::Status {
      absl::MutexLock lock(&e.mu);
      std::vector<std::pair<int, int>> shapes;
      int fan_in = e.network->input_size();
      for (const auto& layer : e.network->spec().layers) {
        shapes.emplace_back(fan_in, layer.units);
        fan_in = layer.units;
      }
      auto params = ParamsFromProto(request->layers(), shapes, "layers");
      if (!params.ok()) return params.status();
      if (absl::Status s = e.network->SetParameters(
              *params, request->reset_optimizer_state());
          !s.ok()) {
        return s;
      }
      e.update_time = absl::Now();
      NetworkToProto(e, response->mutable_network());
      return absl::OkStatus();
    }();
    e.ReleaseWriter();
    return status;
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::Forward(
    grpc::CallbackServerContext* ctx, const pb::ForwardRequest* request,
    pb::ForwardResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    auto inputs = MatrixViewOf(request->inputs(), "inputs");
    if (!inputs.ok()) return inputs.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    const engine::Network& net = *(*entry)->network;
    if (absl::Status s =
            net.ValidateBatch(*inputs, nullptr, net.spec().loss, "inputs",
                              options_.limits.max_batch_rows);
        !s.ok()) {
      return s;
    }
    engine::ForwardResult result =
        net.Forward(*inputs, request->include_layers());
    ToProto(result.outputs, false, response->mutable_outputs());
    for (size_t i = 0; i < result.z.size(); ++i) {
      pb::LayerActivations* layer = response->add_layers();
      ToProto(result.z[i], false, layer->mutable_z());
      ToProto(result.a[i], false, layer->mutable_a());
    }
    response->set_step(net.step());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ComputeGradients(
    grpc::CallbackServerContext* ctx,
    const pb::ComputeGradientsRequest* request,
    pb::ComputeGradientsResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    const engine::Network& net = *(*entry)->network;
    const engine::Activation output = net.spec().layers.back().activation;
    // Every loss is checked before any is computed: all or nothing.
    std::vector<engine::Loss> losses = {net.spec().loss};
    for (int i = 0; i < request->counterfactual_losses_size(); ++i) {
      const std::string field = absl::StrCat("counterfactual_losses[", i, "]");
      auto loss = LossFromProto(request->counterfactual_losses(i), field);
      if (!loss.ok()) return loss.status();
      if (absl::Status s = engine::CheckLossActivation(*loss, output, field);
          !s.ok()) {
        return s;
      }
      losses.push_back(*loss);
    }
    // Targets must suit every requested loss (bce/cce need [0, 1]).
    BatchViews views;
    for (engine::Loss loss : losses) {
      auto checked =
          CheckedBatch(net, request->batch(), loss, "batch", options_.limits);
      if (!checked.ok()) return checked.status();
      views = *checked;
    }
    for (size_t i = 0; i < losses.size(); ++i) {
      engine::GradientResult g =
          net.ComputeGradients(views.inputs, views.targets, losses[i]);
      pb::Gradients* out = i == 0 ? response->mutable_gradients()
                                  : response->add_counterfactuals();
      out->set_loss(LossToProto(g.loss));
      out->set_loss_value(g.loss_value);
      for (size_t l = 0; l < g.weight_grads.size(); ++l) {
        pb::LayerGradients* layer = out->add_layers();
        ToProto(g.weight_grads[l], false, layer->mutable_weights());
        ToProto(g.bias_grads[l], true, layer->mutable_biases());
      }
      ToProto(g.output_delta, false, out->mutable_output_delta());
      StatsToProto(g.stats, out->mutable_saturation());
    }
    response->set_step(net.step());
    return absl::OkStatus();
  });
}

absl::StatusOr<engine::StepResult> TrainingServiceImpl::StepLocked(
    store::NetworkEntry& entry, const pb::Minibatch& batch,
    absl::string_view field) {
  if (entry.deleted.load()) {
    return absl::AbortedError(
        absl::StrCat("networks/", entry.id, " was deleted"));
  }
  engine::Network& net = *entry.network;
  auto views =
      CheckedBatch(net, batch, net.spec().loss, field, options_.limits);
  if (!views.ok()) return views.status();
  engine::StepResult result = net.TrainStep(views->inputs, views->targets);
  entry.update_time = absl::Now();
  return result;
}

absl::StatusOr<engine::StepResult> TrainingServiceImpl::ApplyStep(
    store::NetworkEntry& entry, const pb::Minibatch& batch,
    absl::string_view field) {
  absl::StatusOr<engine::StepResult> result;
  {
    absl::MutexLock lock(&entry.mu);
    result = StepLocked(entry, batch, field);
  }
  if (result.ok()) hub_->OnStep(NetworkName(entry.id), *result);
  return result;
}

std::optional<absl::StatusOr<engine::StepResult>>
TrainingServiceImpl::TryApplyTinyStep(store::NetworkEntry& entry,
                                      const pb::Minibatch& batch,
                                      absl::string_view field) {
  const int64_t rows =
      batch.inputs().shape_size() > 0 ? batch.inputs().shape(0) : 0;
  if (rows <= 0 || !entry.mu.TryLock()) return std::nullopt;
  if (rows > kInlineStepWork / entry.network->parameter_count()) {
    entry.mu.Unlock();
    return std::nullopt;
  }
  absl::StatusOr<engine::StepResult> result = StepLocked(entry, batch, field);
  entry.mu.Unlock();
  if (result.ok()) hub_->OnStep(NetworkName(entry.id), *result);
  return result;
}

grpc::ServerUnaryReactor* TrainingServiceImpl::TrainStep(
    grpc::CallbackServerContext* ctx, const pb::TrainStepRequest* request,
    pb::TrainStepResponse* response) {
  // A tiny step runs here, on the callback thread: the hand-off to the
  // executor costs two thread wake-ups, tens of microseconds on a loaded
  // machine and more than the step itself (bench/notes.md). Anything
  // larger, or anything that would have to wait, goes to the executor with
  // the lookup already done, and the executor reports every error.
  auto found = FindNetwork(request->name(), "name");
  if (found.ok() && (*found)->TryAcquireWriter()) {
    auto done = TryApplyTinyStep(**found, request->batch(), "batch");
    (*found)->ReleaseWriter();
    if (done.has_value()) {
      grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
      if (done->ok()) StepResultToProto(**done, response->mutable_result());
      reactor->Finish(ToGrpcStatus(done->status()));
      return reactor;
    }
  }
  return RunUnary(
      ctx,
      [this, request, response, found = std::move(found)]() -> absl::Status {
        if (!found.ok()) return found.status();
        store::NetworkEntry& e = **found;
        if (!e.TryAcquireWriter()) return BusyError(e.id);
        auto result = ApplyStep(e, request->batch(), "batch");
        e.ReleaseWriter();
        if (!result.ok()) return result.status();
        StepResultToProto(*result, response->mutable_result());
        return absl::OkStatus();
      });
}

grpc::ServerBidiReactor<pb::TrainRequest, pb::TrainResponse>*
TrainingServiceImpl::Train(grpc::CallbackServerContext* ctx) {
  return new TrainReactor(this, ctx);
}

grpc::ServerUnaryReactor* TrainingServiceImpl::Evaluate(
    grpc::CallbackServerContext* ctx, const pb::EvaluateRequest* request,
    pb::EvaluateResponse* response) {
  return RunUnary(ctx, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    const engine::Network& net = *(*entry)->network;
    auto views = CheckedBatch(net, request->data(), net.spec().loss, "data",
                              options_.limits);
    if (!views.ok()) return views.status();
    engine::EvalResult result = net.Evaluate(views->inputs, views->targets);
    response->set_loss(result.loss);
    response->set_accuracy(result.accuracy);
    response->set_samples(result.samples);
    StatsToProto(result.stats, response->mutable_saturation());
    response->set_step(net.step());
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

}  // namespace satlab::service
