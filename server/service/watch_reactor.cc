// WatchMetrics: a write reactor fed by a MetricsHub subscription. The hub
// calls the subscription's listener on the thread that recorded the event;
// the listener only starts a write when none is outstanding, so a slow
// client never holds up training — its subscription drops the oldest events
// and the next response carries the count in `dropped_events`.
#include "server/service/watch_reactor.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/service/convert.h"
#include "server/service/metrics_hub.h"
#include "server/service/status.h"
#include "server/service/stream_registry.h"
#include "server/service/training_service.h"

namespace satlab::service {
namespace {

class WatchReactor final
    : public grpc::ServerWriteReactor<v1::WatchMetricsResponse>,
      public StreamRegistry::Stream {
 public:
  // Answers `status` at once.
  explicit WatchReactor(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }

  // Counts against the open-stream cap, then subscribes to `hub`.
  WatchReactor(StreamRegistry* registry, MetricsHub* hub, WatchFilter filter,
               StreamAdmission admission)
      : ends_with_deletion_(!filter.network.empty()),
        registry_(registry),
        admission_(std::move(admission)) {
    if (absl::Status s = registry_->Register(this); !s.ok()) {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      Finish(ToGrpcStatus(s));
      return;
    }
    registered_ = true;
    subscription_ = hub->Subscribe(filter);
    // Not under mu_: the listener takes mu_ while the subscription holds its
    // listener lock, so mu_ must never be held while calling into it.
    subscription_->SetListener([this] {
      absl::MutexLock lock(&mu_);
      MaybeWrite();
    });
    absl::MutexLock lock(&mu_);
    MaybeWrite();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED,
                              "the client stopped reading"));
      return;
    }
    if (last_was_deletion_) {
      // The watched network is gone: nothing more will come.
      FinishOnce(grpc::Status::OK);
      return;
    }
    MaybeWrite();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED,
                            "the client cancelled the stream"));
  }

  void OnDone() override {
    // Detaches from the hub at once; Close waits for a running listener.
    if (subscription_ != nullptr) subscription_->Close();
    if (registered_) registry_->Unregister(this);
    delete this;
  }

 private:
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    std::optional<MetricsSubscription::Item> item = subscription_->Pop();
    if (!item.has_value()) {
      if (subscription_->closed()) {
        FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the server is shutting down"));
      }
      return;
    }
    response_.Clear();
    *response_.mutable_event() = *item->event;
    ShowEventNames(admission_->scope, response_.mutable_event());
    response_.set_dropped_events(item->dropped_before);
    last_was_deletion_ =
        ends_with_deletion_ && item->event->has_network_deleted();
    writing_ = true;
    StartWrite(&response_);
  }

  void FinishOnce(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  const bool ends_with_deletion_ = false;
  StreamRegistry* const registry_ = nullptr;
  // The caller and its stream quota (unset for a refused call).
  std::optional<StreamAdmission> admission_;
  // Both set by the constructor before the listener is installed; never
  // changed afterwards.
  bool registered_ = false;
  std::shared_ptr<MetricsSubscription> subscription_;
  absl::Mutex mu_;
  v1::WatchMetricsResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool last_was_deletion_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchMetricsResponse>* NewWatchReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::WatchMetricsRequest* request) {
  MetricsHub* hub = service->hub();
  if (request->start_step() < -1) {
    return new WatchReactor(absl::InvalidArgumentError(
        absl::StrCat("start_step: expected >= -1 (-1 = live only), got ",
                     request->start_step())));
  }
  auto admission = service->AdmitStream(ctx, /*experiment=*/false);
  if (!admission.ok()) return new WatchReactor(admission.status());
  const core::TenantScope& scope = admission->scope;
  WatchFilter filter;
  filter.tenant_prefix = scope.prefix();
  if (!request->name().empty()) {
    // NOT_FOUND for an unknown network, as every RPC naming one (and for
    // another tenant's: the same answer).
    auto id = ParseNetworkName(scope, request->name(), "name");
    if (!id.ok()) return new WatchReactor(id.status());
    if (auto found = service->core()->Get(*id); !found.ok()) {
      return new WatchReactor(scope.Unscoped(found.status()));
    }
    filter.network = NetworkName(*id);
  }
  filter.start_step = request->start_step();
  return new WatchReactor(service->streams(), hub, std::move(filter),
                          *std::move(admission));
}

}  // namespace satlab::service
