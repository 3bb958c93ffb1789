#include "server/service/training_service.h"

#include <chrono>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
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

constexpr size_t kMaxRequestIdBytes = 128;

// request_id: empty, or 1-128 printable ASCII characters (a UUID fits).
absl::Status ValidateRequestId(absl::string_view id) {
  if (id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: expected at most ", kMaxRequestIdBytes,
                     " characters, got ", id.size()));
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request_id: expected printable ASCII without spaces (e.g. a "
          "UUID), got other bytes");
    }
  }
  return absl::OkStatus();
}

uint64_t Fingerprint(const google::protobuf::Message& request) {
  return absl::Hash<std::string>()(request.SerializeAsString());
}

}  // namespace

TrainingServiceImpl::TrainingServiceImpl(const ServiceOptions& options,
                                         store::NetworkStore* store,
                                         Executor* executor, MetricsHub* hub)
    : options_(options),
      store_(store),
      executor_(executor),
      hub_(hub),
      budget_(MemoryBudget::Create(options.memory_budget_bytes > 0
                                       ? options.memory_budget_bytes
                                       : MemoryBudget::DefaultLimit())),
      streams_(std::make_unique<StreamRegistry>(options.streams)) {}

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

absl::StatusOr<MemoryBudget::Charge> TrainingServiceImpl::ChargeCall(
    int64_t bytes, absl::string_view what) const {
  return budget_->TryCharge(bytes, what);
}

absl::StatusOr<bool> TrainingServiceImpl::FindRequest(
    const store::NetworkEntry& entry, absl::string_view request_id,
    uint64_t fingerprint, google::protobuf::Message* response) const {
  absl::MutexLock lock(&requests_mu_);
  auto it = requests_.find(entry.id);
  if (it == requests_.end() || it->second.create_time != entry.create_time) {
    return false;
  }
  for (const RecentRequest& recent : it->second.recent) {
    if (recent.request_id != request_id) continue;
    if (recent.fingerprint != fingerprint) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request_id: \"", request_id, "\" was already used on networks/",
          entry.id,
          " for a different request; use a new id for a new request"));
    }
    return response->ParseFromString(recent.response);
  }
  return false;
}

void TrainingServiceImpl::RememberRequest(
    const store::NetworkEntry& entry, absl::string_view request_id,
    uint64_t fingerprint, const google::protobuf::Message& response) {
  absl::MutexLock lock(&requests_mu_);
  NetworkRequests& network = requests_[entry.id];
  if (network.create_time != entry.create_time) {
    network.create_time = entry.create_time;
    network.recent.clear();
  }
  network.recent.push_back(
      {std::string(request_id), fingerprint, response.SerializeAsString()});
  while (static_cast<int>(network.recent.size()) >
         options_.request_ids_per_network) {
    network.recent.pop_front();
  }
}

absl::Status TrainingServiceImpl::BusyError(absl::string_view id) {
  return absl::AbortedError(absl::StrCat(
      "networks/", id,
      " is being written by another caller (TrainStep, SetParameters or an "
      "open Train stream); retry when it finishes"));
}

grpc::ServerUnaryReactor* TrainingServiceImpl::RunUnary(
    grpc::CallbackServerContext* ctx, const google::protobuf::Message& request,
    absl::AnyInvocable<absl::Status() &&> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  MemoryBudget::Charge request_charge;
  if (const int64_t bytes = static_cast<int64_t>(request.ByteSizeLong());
      bytes >= kChargedRequestBytes) {
    auto charge = budget_->TryCharge(
        bytes, absl::StrCat("this ", request.GetDescriptor()->name(),
                            " waiting for a compute thread"));
    if (!charge.ok()) {
      reactor->Finish(ToGrpcStatus(charge.status()));
      return reactor;
    }
    request_charge = *std::move(charge);
  }
  const bool queued = executor_->TrySubmit(
      [ctx, reactor, work = std::move(work),
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
          status = std::move(work)();
        } catch (const std::bad_alloc&) {
          status = absl::ResourceExhaustedError(
              "the server ran out of memory for this call; nothing changed, "
              "retry later or with less data");
        }
        reactor->Finish(ToGrpcStatus(status));
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
  return RunUnary(ctx, *request, [this, request, response]() -> absl::Status {
    std::string id = request->network_id();
    if (id.empty()) {
      id = NewNetworkId();
    } else if (absl::Status s = ValidateNetworkId(id); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("network_id: ", s.message()));
    }
    auto spec = SpecFromProto(request->network().spec(), "network.spec");
    if (!spec.ok()) return spec.status();
    if (absl::Status s =
            engine::ValidateSpec(*spec, options_.limits, "network.spec");
        !s.ok()) {
      return s;
    }
    // Every network that can be created can be read and written whole:
    // its parameters must fit in one message.
    const int64_t message_bytes = ParametersMessageBytes(*spec);
    if (message_bytes > options_.max_message_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "network.spec: its ", engine::ParameterCount(*spec),
          " parameters take ", message_bytes,
          " bytes as a GetParameters/SetParameters message, over the "
          "server's message limit of ",
          options_.max_message_bytes,
          " bytes (--max_message_bytes; --max_parameters allows ",
          options_.limits.max_parameters, "); use fewer units or float32"));
    }
    auto charge = ChargeCall(
        engine::StateBytes(*spec),
        absl::StrCat("networks/", id, ": parameters and optimizer state"));
    if (!charge.ok()) return charge.status();
    auto network =
        engine::Network::Create(*spec, options_.limits, "network.spec");
    if (!network.ok()) return network.status();
    // The charge lasts as long as the entry: released when the last
    // reference (the store's, or a call still using it) goes.
    auto held = std::make_shared<MemoryBudget::Charge>(*std::move(charge));
    std::shared_ptr<store::NetworkEntry> entry(
        new store::NetworkEntry(id, *std::move(network), absl::Now()),
        [held](store::NetworkEntry* e) {
          delete e;
          held->Release();
        });
    if (absl::Status s = store_->Insert(entry); !s.ok()) return s;
    absl::ReaderMutexLock lock(&entry->mu);
    NetworkToProto(*entry, response->mutable_network());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetNetwork(
    grpc::CallbackServerContext* ctx, const pb::GetNetworkRequest* request,
    pb::GetNetworkResponse* response) {
  return RunUnary(ctx, *request, [this, request, response]() -> absl::Status {
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
  return RunUnary(ctx, *request, [this, request, response]() -> absl::Status {
    if (request->page_size() < 0 || request->page_size() > kMaxPageSize) {
      return absl::InvalidArgumentError(absl::StrCat("page_size: expected 0..",
                                                     kMaxPageSize, ", got ",
                                                     request->page_size()));
    }
    // The page token is the last id of the previous page.
    const std::string& after = request->page_token();
    if (absl::Status s = CheckLength(after, kMaxNetworkIdBytes, "page_token");
        !s.ok()) {
      return s;
    }
    if (!after.empty() && !ValidateNetworkId(after).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_token: not a token from a previous page: ",
                       QuoteForError(after)));
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
  return RunUnary(ctx, *request, [this, request]() -> absl::Status {
    auto id = ParseNetworkName(request->name(), "name");
    if (!id.ok()) return id.status();
    if (absl::Status s = store_->Erase(*id); !s.ok()) return s;
    {
      absl::MutexLock lock(&requests_mu_);
      requests_.erase(*id);
    }
    hub_->OnNetworkDeleted(request->name());
    // Open Train streams on it end now and drop their reference, so its
    // memory returns to the budget without waiting for their next message.
    streams_->NetworkDeleted(*id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::GetParameters(
    grpc::CallbackServerContext* ctx, const pb::GetParametersRequest* request,
    pb::GetParametersResponse* response) {
  return RunUnary(ctx, *request, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    absl::ReaderMutexLock lock(&(*entry)->mu);
    const engine::Network& net = *(*entry)->network;
    // A copy per layer, then the response.
    auto charge =
        ChargeCall(2 * ParametersMessageBytes(net.spec()), "GetParameters");
    if (!charge.ok()) return charge.status();
    for (int i = 0; i < net.num_layers(); ++i) {
      pb::LayerParameters* layer = response->add_layers();
      if (absl::Status s = ToProto(net.weights(i), /*as_vector=*/false,
                                   layer->mutable_weights());
          !s.ok()) {
        return s;
      }
      if (absl::Status s = ToProto(net.biases(i), /*as_vector=*/true,
                                   layer->mutable_biases());
          !s.ok()) {
        return s;
      }
    }
    response->set_step(net.step());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::SetParameters(
    grpc::CallbackServerContext* ctx, const pb::SetParametersRequest* request,
    pb::SetParametersResponse* response) {
  return RunUnary(ctx, *request, [this, request, response]() -> absl::Status {
    auto entry = FindNetwork(request->name(), "name");
    if (!entry.ok()) return entry.status();
    if (absl::Status s = ValidateRequestId(request->request_id()); !s.ok()) {
      return s;
    }
    store::NetworkEntry& e = **entry;
    if (!e.TryAcquireWriter()) return BusyError(e.id);
    const uint64_t fingerprint =
        request->request_id().empty() ? 0 : Fingerprint(*request);
    absl::Status status = [&]() -> absl::Status {
      if (!request->request_id().empty()) {
        auto found =
            FindRequest(e, request->request_id(), fingerprint, response);
        if (!found.ok() || *found) return found.status();
      }
      absl::MutexLock lock(&e.mu);
      auto params = ParamsFromProto(request->layers(), "layers");
      if (!params.ok()) return params.status();
      if (absl::Status s = e.network->SetParameters(
              *params, request->reset_optimizer_state());
          !s.ok()) {
        return s;
      }
      e.update_time = absl::Now();
      NetworkToProto(e, response->mutable_network());
      if (!request->request_id().empty()) {
        RememberRequest(e, request->request_id(), fingerprint, *response);
      }
      return absl::OkStatus();
    }();
    e.ReleaseWriter();
    return status;
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::Forward(
    grpc::CallbackServerContext* ctx, const pb::ForwardRequest* request,
    pb::ForwardResponse* response) {
  return RunUnary(
      ctx, *request, [this, ctx, request, response]() -> absl::Status {
        auto entry = FindNetwork(request->name(), "name");
        if (!entry.ok()) return entry.status();
        auto inputs = MatrixViewOf(request->inputs(), "inputs");
        if (!inputs.ok()) return inputs.status();
        absl::ReaderMutexLock lock(&(*entry)->mu);
        const engine::Network& net = *(*entry)->network;
        if (absl::Status s =
                net.ValidateBatch(*inputs, nullptr, net.spec().loss, "",
                                  options_.limits.max_batch_rows);
            !s.ok()) {
          return s;
        }
        // The response, before computing: outputs, and with include_layers z
        // and a of every layer.
        const engine::NetworkSpec& spec = net.spec();
        const int64_t rows = inputs->rows;
        int64_t bytes =
            TensorBytes(rows * net.output_size(), ScalarBytes(spec));
        if (request->include_layers()) {
          for (const engine::LayerSpec& layer : spec.layers) {
            bytes += 2 * TensorBytes(rows * layer.units, ScalarBytes(spec));
          }
        }
        if (absl::Status s = CheckResponseSize(
                "Forward's response", bytes, options_.max_message_bytes,
                request->include_layers()
                    ? "send fewer rows or omit include_layers"
                    : "send fewer rows");
            !s.ok()) {
          return s;
        }
        engine::CallOptions call = CallOptionsFor(ctx);
        int64_t scratch = std::min(
            engine::CallScratchBytes(spec, engine::CallKind::kForward, rows),
            call.max_scratch_bytes);
        // When the budget has less room than that, Forward runs in smaller
        // chunks, down to one block; with less room than one block it is
        // refused, saying what that least amount is.
        const int64_t room = budget_->available() - 2 * bytes;
        const int64_t block_scratch =
            engine::CallScratchBytes(spec, engine::CallKind::kForward,
                                     std::min(rows, engine::BlockRows(spec)));
        if (room < scratch) {
          scratch = std::max(room, std::min(scratch, block_scratch));
        }
        call.max_scratch_bytes = scratch;
        // The result, its copy in the response, and the scratch.
        auto charge = ChargeCall(2 * bytes + scratch, "Forward");
        if (!charge.ok()) return charge.status();
        auto result = net.Forward(*inputs, request->include_layers(), call);
        if (!result.ok()) return result.status();
        if (absl::Status s =
                ToProto(result->outputs, false, response->mutable_outputs());
            !s.ok()) {
          return s;
        }
        for (size_t i = 0; i < result->z.size(); ++i) {
          pb::LayerActivations* layer = response->add_layers();
          if (absl::Status s = ToProto(result->z[i], false, layer->mutable_z());
              !s.ok()) {
            return s;
          }
          if (absl::Status s = ToProto(result->a[i], false, layer->mutable_a());
              !s.ok()) {
            return s;
          }
        }
        response->set_step(net.step());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ComputeGradients(
    grpc::CallbackServerContext* ctx,
    const pb::ComputeGradientsRequest* request,
    pb::ComputeGradientsResponse* response) {
  return RunUnary(
      ctx, *request, [this, ctx, request, response]() -> absl::Status {
        auto entry = FindNetwork(request->name(), "name");
        if (!entry.ok()) return entry.status();
        absl::ReaderMutexLock lock(&(*entry)->mu);
        const engine::Network& net = *(*entry)->network;
        const engine::Activation output = net.spec().layers.back().activation;
        // Every loss is checked before any is computed: all or nothing.
        if (request->counterfactual_losses_size() > kMaxCounterfactualLosses) {
          return absl::InvalidArgumentError(
              absl::StrCat("counterfactual_losses: expected at most ",
                           kMaxCounterfactualLosses, " entries, got ",
                           request->counterfactual_losses_size()));
        }
        std::vector<engine::Loss> losses = {net.spec().loss};
        for (int i = 0; i < request->counterfactual_losses_size(); ++i) {
          const std::string field =
              absl::StrCat("counterfactual_losses[", i, "]");
          auto loss = LossFromProto(request->counterfactual_losses(i), field);
          if (!loss.ok()) return loss.status();
          if (absl::Status s =
                  engine::CheckLossActivation(*loss, output, field);
              !s.ok()) {
            return s;
          }
          losses.push_back(*loss);
        }
        // Targets must suit every requested loss (bce/cce need [0, 1]).
        BatchViews views;
        for (engine::Loss loss : losses) {
          auto checked = CheckedBatch(net, request->batch(), loss, "batch",
                                      options_.limits);
          if (!checked.ok()) return checked.status();
          views = *checked;
        }
        // The response, before computing: per loss, every gradient (the size of
        // the parameters) and the output delta [rows, outputs].
        const engine::NetworkSpec& spec = net.spec();
        const int64_t per_loss =
            ParametersMessageBytes(spec) +
            TensorBytes(views.inputs.rows * net.output_size(),
                        ScalarBytes(spec)) +
            1024;
        const int64_t bytes = per_loss * static_cast<int64_t>(losses.size());
        if (absl::Status s = CheckResponseSize(
                "ComputeGradients' response (gradients and output delta per "
                "loss)",
                bytes, options_.max_message_bytes,
                "send fewer rows or fewer counterfactual_losses");
            !s.ok()) {
          return s;
        }
        const engine::CallOptions call = CallOptionsFor(ctx);
        auto charge = ChargeCall(
            2 * bytes + engine::CallScratchBytes(
                            spec, engine::CallKind::kComputeGradients,
                            views.inputs.rows),
            "ComputeGradients");
        if (!charge.ok()) return charge.status();
        for (size_t i = 0; i < losses.size(); ++i) {
          auto computed = net.ComputeGradients(views.inputs, views.targets,
                                               losses[i], call);
          if (!computed.ok()) return computed.status();
          const engine::GradientResult& g = *computed;
          pb::Gradients* out = i == 0 ? response->mutable_gradients()
                                      : response->add_counterfactuals();
          out->set_loss(LossToProto(g.loss));
          out->set_loss_value(g.loss_value);
          for (size_t l = 0; l < g.weight_grads.size(); ++l) {
            pb::LayerGradients* layer = out->add_layers();
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
                  ToProto(g.output_delta, false, out->mutable_output_delta());
              !s.ok()) {
            return s;
          }
          StatsToProto(g.stats, out->mutable_saturation());
        }
        response->set_step(net.step());
        return absl::OkStatus();
      });
}

absl::StatusOr<engine::StepResult> TrainingServiceImpl::StepLocked(
    store::NetworkEntry& entry, const pb::Minibatch& batch,
    absl::string_view field, const engine::CallOptions& call) {
  if (entry.deleted.load()) {
    return absl::AbortedError(
        absl::StrCat("networks/", entry.id, " was deleted"));
  }
  engine::Network& net = *entry.network;
  auto views =
      CheckedBatch(net, batch, net.spec().loss, field, options_.limits);
  if (!views.ok()) return views.status();
  auto charge = ChargeCall(
      engine::CallScratchBytes(net.spec(), engine::CallKind::kTrainStep,
                               views->inputs.rows),
      "TrainStep");
  if (!charge.ok()) return charge.status();
  auto result = net.TrainStep(views->inputs, views->targets, call);
  if (result.ok()) entry.update_time = absl::Now();
  return result;
}

absl::StatusOr<engine::StepResult> TrainingServiceImpl::ApplyStep(
    store::NetworkEntry& entry, const pb::Minibatch& batch,
    absl::string_view field, grpc::CallbackServerContext* ctx) {
  const engine::CallOptions call = CallOptionsFor(ctx);
  absl::StatusOr<engine::StepResult> result;
  {
    absl::MutexLock lock(&entry.mu);
    try {
      result = StepLocked(entry, batch, field, call);
    } catch (const std::bad_alloc&) {
      result = absl::ResourceExhaustedError(
          "the server ran out of memory for this step; nothing changed");
    }
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
  // No call context here: a tiny step takes microseconds.
  absl::StatusOr<engine::StepResult> result;
  try {
    result = StepLocked(entry, batch, field, CallOptionsFor(nullptr));
  } catch (const std::bad_alloc&) {
    result = absl::ResourceExhaustedError(
        "the server ran out of memory for this step; nothing changed");
  }
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
  // A step with a request_id goes to the executor, which keeps the ids.
  if (found.ok() && request->request_id().empty() &&
      (*found)->TryAcquireWriter()) {
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
      ctx, *request,
      [this, ctx, request, response,
       found = std::move(found)]() -> absl::Status {
        if (!found.ok()) return found.status();
        if (absl::Status s = ValidateRequestId(request->request_id());
            !s.ok()) {
          return s;
        }
        store::NetworkEntry& e = **found;
        if (!e.TryAcquireWriter()) return BusyError(e.id);
        const std::string& request_id = request->request_id();
        const uint64_t fingerprint =
            request_id.empty() ? 0 : Fingerprint(*request);
        absl::Status status = [&]() -> absl::Status {
          if (!request_id.empty()) {
            // A retry of an applied step: its first answer, not a second step.
            auto found_id = FindRequest(e, request_id, fingerprint, response);
            if (!found_id.ok() || *found_id) return found_id.status();
          }
          auto result = ApplyStep(e, request->batch(), "batch", ctx);
          if (!result.ok()) return result.status();
          StepResultToProto(*result, response->mutable_result());
          if (!request_id.empty()) {
            RememberRequest(e, request_id, fingerprint, *response);
          }
          return absl::OkStatus();
        }();
        e.ReleaseWriter();
        return status;
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
      ctx, *request, [this, ctx, request, response]() -> absl::Status {
        auto entry = FindNetwork(request->name(), "name");
        if (!entry.ok()) return entry.status();
        absl::ReaderMutexLock lock(&(*entry)->mu);
        const engine::Network& net = *(*entry)->network;
        auto views = CheckedBatch(net, request->data(), net.spec().loss, "data",
                                  options_.limits);
        if (!views.ok()) return views.status();
        auto charge = ChargeCall(
            engine::CallScratchBytes(net.spec(), engine::CallKind::kEvaluate,
                                     views->inputs.rows),
            "Evaluate");
        if (!charge.ok()) return charge.status();
        auto evaluated =
            net.Evaluate(views->inputs, views->targets, CallOptionsFor(ctx));
        if (!evaluated.ok()) return evaluated.status();
        const engine::EvalResult& result = *evaluated;
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
