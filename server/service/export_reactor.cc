// The server side of ExportNetwork and ImportNetwork.
//
// Export: on the executor, the core's consistent snapshot of the network
// (NetworkCore::ExportState, under the network's shared lock) is encoded by
// the codec into the file's bytes and the snapshot dropped; the reactor then
// writes the bytes kExportChunkBytes at a time, one write in flight, so gRPC
// holds at most one chunk beyond the encoded file. The file stays charged
// to the memory budget until the stream ends; a client that takes no chunk
// for --stream_idle_timeout_seconds is cancelled.
//
// Import: the first message's total_bytes is checked against
// MaxImportBytes and charged to the memory budget before any data is
// accepted; chunks are appended into one buffer reserved to that size. At
// half-close, on the executor: decode (checks the frame's CRC), free the
// buffer, check the spec against the server's limits, NetworkCore::Import
// (Network::FromState validates, the store commits). Nothing is created
// unless everything passes.
#include "server/service/export_reactor.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/core/capacity.h"
#include "server/core/network_core.h"
#include "server/engine/spec.h"
#include "server/service/convert.h"
#include "server/service/core_convert.h"
#include "server/service/status.h"
#include "server/service/stream_registry.h"
#include "server/service/training_service.h"
#include "server/store/codec.h"

namespace satlab::service {

int64_t MaxImportBytes(const ServiceOptions& options) {
  // Parameter bytes of the largest creatable network, in float64 (the
  // larger dtype): within --max_parameters and within one message.
  const int64_t parameter_bytes = std::min(
      options.limits.max_parameters * int64_t{8}, options.max_message_bytes);
  // Parameters plus Adam's two moments; frame, spec and per-tensor headers
  // (a few dozen bytes per layer) fit well within 1 MiB.
  return 3 * parameter_bytes + (int64_t{1} << 20);
}

namespace {

class ExportReactor final
    : public grpc::ServerWriteReactor<v1::ExportNetworkResponse>,
      public StreamRegistry::Stream {
 public:
  ExportReactor(TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
                const v1::ExportNetworkRequest* request)
      : service_(service),
        ctx_(ctx),
        admission_(service->AdmitStream(ctx, /*experiment=*/false)) {
    auto id = admission_.ok()
                  ? ParseNetworkName(admission_->scope, request->name(), "name")
                  : absl::StatusOr<std::string>(admission_.status());
    absl::Status registered =
        id.ok() ? service_->streams()->Register(this) : id.status();
    absl::MutexLock lock(&mu_);
    if (!registered.ok()) {
      FinishLocked(registered);
      return;
    }
    registered_ = true;
    if (!service_->executor()->TrySubmit(
            [this, id = *std::move(id)] { Snapshot(id); })) {
      FinishLocked(service_->SubmitRefused("ExportNetwork"));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(absl::CancelledError("the client stopped reading"));
      return;
    }
    offset_ += static_cast<int64_t>(response_.data().size());
    WriteNextLocked();
  }

  // A client that stops reading would hold the file in memory for good:
  // after the idle timeout without a chunk taken, the call is cancelled
  // (the pending write then fails and the stream finishes).
  void CheckIdle(absl::Time now, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || !writing_ || timeout <= absl::ZeroDuration() ||
        now - last_progress_ < timeout) {
      return;
    }
    ctx_->TryCancel();
  }

  void OnDone() override {
    // Finish() may have been called by the executor task still holding
    // mu_; wait for it to let go before the memory goes away.
    { absl::MutexLock lock(&mu_); }
    if (registered_) service_->streams()->Unregister(this);
    delete this;
  }

 private:
  // On the executor: the snapshot, encoded; then the first write.
  void Snapshot(const std::string& id) {
    absl::Status status = Encode(id);
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      FinishLocked(status);
      return;
    }
    WriteNextLocked();
  }

  absl::Status Encode(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_) {
    if (ctx_->IsCancelled()) {
      return absl::CancelledError("the export was cancelled");
    }
    auto snapshot = service_->core()->ExportState(id);
    if (!snapshot.ok()) return snapshot.status();
    // The file is about the state's size; both are held while encoding.
    auto charge = service_->memory_budget().TryCharge(
        engine::StateBytes(snapshot->state.spec) + (int64_t{1} << 16),
        absl::StrCat("the export file of networks/", id));
    if (!charge.ok()) return charge.status();
    std::string file = store::EncodeNetworkState(snapshot->state);
    snapshot = core::NetworkCore::StateSnapshot();  // frees the copy now
    absl::MutexLock lock(&mu_);
    file_ = std::move(file);
    file_charge_ = *std::move(charge);
    return absl::OkStatus();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t total = static_cast<int64_t>(file_.size());
    if (offset_ >= total) {
      FinishLocked(absl::OkStatus());
      return;
    }
    const int64_t n = std::min(kExportChunkBytes, total - offset_);
    response_.set_total_bytes(total);
    response_.set_offset(offset_);
    response_.set_data(file_.data() + offset_, static_cast<size_t>(n));
    writing_ = true;
    last_progress_ = absl::Now();
    StartWrite(&response_);
  }

  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    file_ = std::string();
    response_.Clear();
    file_charge_.Release();
    Finish(ToGrpcStatus(admission_.ok() ? admission_->scope.Unscoped(status)
                                        : status));
  }

  TrainingServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  const absl::StatusOr<StreamAdmission> admission_;
  bool registered_ = false;  // set in the constructor only
  absl::Mutex mu_;
  std::string file_ ABSL_GUARDED_BY(mu_);
  core::MemoryBudget::Charge file_charge_ ABSL_GUARDED_BY(mu_);
  int64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  v1::ExportNetworkResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class ImportReactor final
    : public grpc::ServerReadReactor<v1::ImportNetworkRequest>,
      public StreamRegistry::Stream {
 public:
  ImportReactor(TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
                v1::ImportNetworkResponse* response)
      : service_(service),
        ctx_(ctx),
        response_(response),
        admission_(service->AdmitStream(ctx, /*experiment=*/false)) {
    absl::Status registered = admission_.ok()
                                  ? service_->streams()->Register(this)
                                  : admission_.status();
    absl::MutexLock lock(&mu_);
    if (!registered.ok()) {
      FinishLocked(registered);
      return;
    }
    registered_ = true;
    last_activity_ = absl::Now();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    last_activity_ = absl::Now();
    if (!ok) {
      OnHalfCloseLocked();
      return;
    }
    if (!opened_) {
      absl::Status s = OpenLocked();
      if (!s.ok()) {
        FinishLocked(s);
        return;
      }
    } else if (!request_.network_id().empty() || request_.total_bytes() != 0) {
      FinishLocked(absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_ + 1,
          " of this stream: network_id and total_bytes belong in the first "
          "message only")));
      return;
    }
    ++messages_;
    const std::string& data = request_.data();
    if (static_cast<int64_t>(data.size()) > kMaxImportChunkBytes) {
      FinishLocked(absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_, " of this stream: data: expected at most ",
          kMaxImportChunkBytes, " bytes, got ", data.size())));
      return;
    }
    if (static_cast<int64_t>(buffer_.size() + data.size()) > total_bytes_) {
      FinishLocked(absl::InvalidArgumentError(absl::StrCat(
          "the stream carries more than total_bytes = ", total_bytes_,
          " bytes (", buffer_.size() + data.size(), " by message ", messages_,
          "); nothing was created")));
      return;
    }
    buffer_.append(data);
    request_.Clear();
    if (messages_ == 1) {
      // Before more data: is the id free? (On the executor: the check may
      // read the store.)
      importing_ = true;
      if (!service_->executor()->TrySubmit([this] { CheckIdFree(); })) {
        FinishLocked(service_->SubmitRefused("ImportNetwork"));
      }
      return;
    }
    StartRead(&request_);
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    // A read in flight then ends with ok=false; free the buffer now.
    cancelled_ = true;
  }

  // An import that stops sending for the idle timeout gives its memory back.
  void CheckIdle(absl::Time now, absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || importing_ || timeout <= absl::ZeroDuration() ||
        now - last_activity_ < timeout) {
      return;
    }
    FinishLocked(absl::DeadlineExceededError(absl::StrCat(
        "ImportNetwork: no message for ", absl::FormatDuration(timeout),
        " (--stream_idle_timeout_seconds); nothing was created")));
  }

  void OnDone() override {
    { absl::MutexLock lock(&mu_); }
    if (registered_) service_->streams()->Unregister(this);
    delete this;
  }

 private:
  // The first message: the id and the size, checked before any data.
  absl::Status OpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    opened_ = true;
    id_ = request_.network_id();
    if (id_.empty()) id_ = TrainingServiceImpl::NewId();
    auto stored = StoredId(admission_->scope, id_, "network_id");
    if (!stored.ok()) return stored.status();
    id_ = *std::move(stored);
    total_bytes_ = request_.total_bytes();
    const int64_t max = MaxImportBytes(service_->options());
    if (total_bytes_ <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "total_bytes: expected the size of the export file in the first "
          "message (1..",
          max, "), got ", total_bytes_));
    }
    if (total_bytes_ > max) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "total_bytes: the file has ", total_bytes_,
          " bytes, over the largest network state this server accepts (", max,
          " bytes: --max_parameters and --max_message_bytes); nothing was "
          "created"));
    }
    // The buffer now, the decoded state after it (the same size).
    auto charge = service_->memory_budget().TryCharge(
        total_bytes_,
        absl::StrCat("importing ", total_bytes_, " bytes into networks/", id_));
    if (!charge.ok()) return charge.status();
    charge_ = *std::move(charge);
    buffer_.reserve(static_cast<size_t>(total_bytes_));
    return absl::OkStatus();
  }

  void OnHalfCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cancelled_ || ctx_->IsCancelled()) {
      FinishLocked(absl::CancelledError("the import was cancelled"));
      return;
    }
    if (!opened_) {
      FinishLocked(absl::InvalidArgumentError(
          "the stream ended before its first message (network_id, "
          "total_bytes); nothing was created"));
      return;
    }
    if (static_cast<int64_t>(buffer_.size()) != total_bytes_) {
      FinishLocked(absl::InvalidArgumentError(
          absl::StrCat("the file is truncated: total_bytes = ", total_bytes_,
                       ", got ", buffer_.size(),
                       " bytes before the stream ended; nothing was "
                       "created")));
      return;
    }
    importing_ = true;
    if (!service_->executor()->TrySubmit([this] { Import(); })) {
      FinishLocked(service_->SubmitRefused("ImportNetwork"));
    }
  }

  // On the executor, after the first message: ALREADY_EXISTS now rather
  // than after the whole file was sent (the store's Create checks again).
  void CheckIdFree() {
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      id = id_;
    }
    absl::StatusOr<core::NetworkInfo> existing = service_->core()->Get(id);
    absl::MutexLock lock(&mu_);
    importing_ = false;
    last_activity_ = absl::Now();
    if (existing.ok()) {
      FinishLocked(absl::AlreadyExistsError(absl::StrCat(
          "networks/", id, " already exists; nothing was created")));
    } else if (!absl::IsNotFound(existing.status())) {
      FinishLocked(existing.status());
    } else if (!finished_) {
      StartRead(&request_);
    }
  }

  // On the executor, once every byte arrived.
  void Import() {
    std::string file;
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      file.swap(buffer_);
      id = id_;
    }
    const core::TenantScope& scope = admission_->scope;
    absl::StatusOr<core::NetworkInfo> info = Decode(id, std::move(file));
    absl::MutexLock lock(&mu_);
    if (info.ok()) {
      info->id = std::string(scope.Shown(info->id));
      InfoToProto(*info, response_->mutable_network());
    }
    FinishLocked(info.status());
  }

  absl::StatusOr<core::NetworkInfo> Decode(const std::string& id,
                                           std::string file)
      ABSL_LOCKS_EXCLUDED(mu_) {
    auto state = store::DecodeNetworkState(file);
    file = std::string();  // the buffer's memory back before building
    if (!state.ok()) {
      return absl::Status(
          state.status().code(),
          absl::StrCat("file: not a valid satlab export file: ",
                       state.status().message(), "; nothing was created"));
    }
    // The spec against the server's limits before anything is built (an
    // explicit init's parameters are the state's own, so it is checked as
    // zeros, as Network::FromState does), then the one-message rule.
    engine::NetworkSpec spec = state->spec;
    if (spec.init.scheme == engine::InitScheme::kExplicit) {
      spec.init.scheme = engine::InitScheme::kZeros;
    }
    if (absl::Status s =
            engine::ValidateSpec(spec, service_->options().limits, "file.spec");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = service_->CheckFitsMessage(state->spec, "file.spec");
        !s.ok()) {
      return s;
    }
    absl::StatusOr<core::NetworkInfo> info;
    if (absl::Status s = service_->tenancy()->CreateWithinQuota(
            admission_->scope, engine::ParameterCount(state->spec),
            [&] {
              info = service_->core()->Import(id, *std::move(state), "file");
              return info.status();
            });
        !s.ok()) {
      return s;
    }
    return info;
  }

  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    buffer_ = std::string();
    charge_.Release();
    Finish(ToGrpcStatus(admission_.ok() ? admission_->scope.Unscoped(status)
                                        : status));
  }

  TrainingServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  v1::ImportNetworkResponse* const response_;
  const absl::StatusOr<StreamAdmission> admission_;
  bool registered_ = false;  // set in the constructor only
  absl::Mutex mu_;
  v1::ImportNetworkRequest request_ ABSL_GUARDED_BY(mu_);
  bool opened_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool importing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int64_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  std::string id_ ABSL_GUARDED_BY(mu_);
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  core::MemoryBudget::Charge charge_ ABSL_GUARDED_BY(mu_);
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::ExportNetworkResponse>* NewExportReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::ExportNetworkRequest* request) {
  return new ExportReactor(service, ctx, request);
}

grpc::ServerReadReactor<v1::ImportNetworkRequest>* NewImportReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    v1::ImportNetworkResponse* response) {
  return new ImportReactor(service, ctx, response);
}

}  // namespace satlab::service
