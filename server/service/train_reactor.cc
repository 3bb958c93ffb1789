#include "server/service/train_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/service/convert.h"
#include "server/service/status.h"
#include "server/service/training_service.h"

namespace satlab::service {

TrainReactor::TrainReactor(TrainingServiceImpl* service,
                           grpc::CallbackServerContext* ctx)
    : service_(service),
      ctx_(ctx),
      window_(std::max(1, service->options().train_stream_window)) {
  absl::MutexLock lock(&mu_);
  reading_ = true;
  StartRead(&incoming_);
}

absl::Status TrainReactor::Open(const v1::TrainRequest& first) {
  auto entry = service_->FindNetwork(first.name(), "name");
  if (!entry.ok()) return entry.status();
  if (first.report_every() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "report_every: expected >= 0, got ", first.report_every()));
  }
  if (!(*entry)->TryAcquireWriter()) {
    return TrainingServiceImpl::BusyError((*entry)->id);
  }
  entry_ = *std::move(entry);
  holds_writer_ = true;
  report_every_ = first.report_every() == 0 ? 1 : first.report_every();
  return absl::OkStatus();
}

void TrainReactor::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  reading_ = false;
  if (!ok) {  // the client half-closed (or the call broke)
    read_closed_ = true;
    MaybeFinish();
    return;
  }
  if (final_status_.has_value()) return;
  if (entry_ == nullptr) {
    if (absl::Status s = Open(incoming_); !s.ok()) {
      FinishWith(s);
      return;
    }
  } else if (!incoming_.name().empty() &&
             incoming_.name() != NetworkName(entry_->id)) {
    FinishWith(absl::InvalidArgumentError(absl::StrCat(
        "name: this stream trains networks/", entry_->id, ", message ",
        batches_received_ + 1, " names \"", incoming_.name(), "\"")));
    return;
  }
  if (incoming_.has_batch()) {
    ++batches_received_;
    pending_.push_back(std::move(incoming_));
  }
  incoming_.Clear();
  MaybeCompute();
  MaybeRead();
}

void TrainReactor::MaybeRead() {
  if (reading_ || read_closed_ || final_status_.has_value()) return;
  if (static_cast<int>(pending_.size()) >= window_ ||
      static_cast<int>(unsent_.size()) >= window_) {
    return;  // resumed when a step completes or a write drains
  }
  reading_ = true;
  StartRead(&incoming_);
}

void TrainReactor::MaybeCompute() {
  if (computing_ || pending_.empty() || final_status_.has_value()) return;
  if (static_cast<int>(unsent_.size()) >= window_) return;  // reader is slow
  computing_ = true;
  if (!service_->executor()->TrySubmit([this] { ComputeOne(); })) {
    computing_ = false;
    FinishWith(absl::UnavailableError(
        "the server's compute queue is full or shutting down; resume the "
        "stream from batches_applied"));
  }
}

void TrainReactor::ComputeOne() {
  v1::TrainRequest request;
  std::shared_ptr<store::NetworkEntry> entry;
  int64_t index;
  {
    absl::MutexLock lock(&mu_);
    request = std::move(pending_.front());
    pending_.pop_front();
    entry = entry_;
    index = batches_applied_;
  }
  absl::StatusOr<engine::StepResult> result;
  if (ctx_->IsCancelled()) {
    result = absl::CancelledError("the client cancelled the stream");
  } else {
    result = service_->ApplyStep(*entry, request.batch(), "batch");
    if (!result.ok()) {
      result = absl::Status(
          result.status().code(),
          absl::StrCat("minibatch ", index + 1,
                       " of this stream: ", result.status().message()));
    }
  }

  absl::MutexLock lock(&mu_);
  computing_ = false;
  if (!result.ok()) {
    FinishWith(result.status());
    return;
  }
  ++batches_applied_;
  v1::TrainResponse response;
  StepResultToProto(*result, response.mutable_result());
  response.set_batches_applied(batches_applied_);
  if (batches_applied_ % report_every_ == 0) {
    unsent_.push_back(std::move(response));
    unreported_.reset();
  } else {
    unreported_ = std::move(response);
  }
  MaybeWrite();
  MaybeCompute();
  MaybeRead();
  MaybeFinish();
}

void TrainReactor::MaybeWrite() {
  if (finished_ || writing_ || unsent_.empty()) return;
  writing_ = true;
  StartWrite(&unsent_.front());
}

void TrainReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  unsent_.pop_front();
  if (!ok) {
    unsent_.clear();
    FinishWith(absl::CancelledError("the client stopped reading"));
    return;
  }
  MaybeWrite();
  MaybeCompute();
  MaybeRead();
  MaybeFinish();
}

void TrainReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishWith(absl::CancelledError("the client cancelled the stream"));
}

void TrainReactor::FinishWith(absl::Status status) {
  if (!final_status_.has_value()) final_status_ = std::move(status);
  pending_.clear();
  MaybeFinish();
}

void TrainReactor::MaybeFinish() {
  if (finished_ || computing_) return;
  const bool success = !final_status_.has_value();
  if (success) {
    if (!read_closed_ || !pending_.empty()) return;
    // The client half-closed and every minibatch was applied: report the
    // last step if report_every skipped it, and send what is queued.
    if (unreported_.has_value()) {
      unsent_.push_back(*std::move(unreported_));
      unreported_.reset();
      MaybeWrite();
    }
    if (writing_ || !unsent_.empty()) return;
  } else {
    // Results of steps already applied still reach the client before the
    // error; an outstanding write must complete before Finish.
    MaybeWrite();
    if (writing_) return;
  }
  // An outstanding read is fine: it completes with ok=false after Finish.
  finished_ = true;
  if (holds_writer_) {
    entry_->ReleaseWriter();
    holds_writer_ = false;
  }
  Finish(success ? grpc::Status::OK : ToGrpcStatus(*final_status_));
}

void TrainReactor::OnDone() {
  // Finish() may have been called by a thread that still holds mu_; wait
  // for it to let go before the mutex is destroyed with the reactor.
  { absl::MutexLock lock(&mu_); }
  delete this;
}

}  // namespace satlab::service
