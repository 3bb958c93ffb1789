#include "server/service/train_reactor.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/service/convert.h"
#include "server/service/core_convert.h"
#include "server/service/status.h"
#include "server/service/training_service.h"

namespace satlab::service {
namespace {

// The largest message whose request a stream keeps for reuse
// (TrainReactor::spare_). A cleared request holds the memory of the
// messages parsed into it: their values and ~300 bytes per minibatch, so
// both are bounded; at these bounds it is at most ~50 KB per open stream.
// 32 minibatches of 2-16-16-1 at batch 32 in float64 are 24.6 KB: below
// this size allocation is a visible share of a step.
constexpr int64_t kSpareMessageBytes = 32 << 10;
constexpr int kSpareMessageBatches = 64;

}  // namespace

TrainReactor::TrainReactor(TrainingServiceImpl* service,
                           grpc::CallbackServerContext* ctx)
    : service_(service),
      ctx_(ctx),
      registry_(service->streams()),
      window_(std::max(1, service->options().train_stream_window)),
      admission_(service->AdmitStream(ctx, /*experiment=*/false)),
      last_activity_(absl::Now()) {
  // Not under mu_: the registry's lock comes before a stream's.
  absl::Status registered =
      admission_.ok() ? registry_->Register(this) : admission_.status();
  absl::MutexLock lock(&mu_);
  if (!registered.ok()) {
    finished_ = true;
    Finish(ToGrpcStatus(registered));
    return;
  }
  registered_ = true;
  MaybeRead();
}

absl::Status TrainReactor::Open(const v1::TrainRequest& first) {
  auto id = ParseNetworkName(admission_->scope, first.name(), "name");
  if (!id.ok()) return id.status();
  if (first.report_every() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "report_every: expected >= 0, got ", first.report_every()));
  }
  if (first.commit_every_steps() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "commit_every_steps: expected >= 0, got ", first.commit_every_steps()));
  }
  if (first.commit_interval_ms() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "commit_interval_ms: expected >= 0, got ", first.commit_interval_ms()));
  }
  if (first.has_expected_step() && first.expected_step() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected_step: expected >= 0, got ", first.expected_step()));
  }
  core::NetworkCore::SessionOptions options;
  options.commit_every_steps = first.commit_every_steps();
  options.commit_interval = absl::Milliseconds(first.commit_interval_ms());
  if (first.has_expected_step()) options.expected_step = first.expected_step();
  auto session = service_->core()->OpenWriter(*id, options);
  if (!session.ok()) return session.status();
  session_ = *std::move(session);
  report_every_ = first.report_every() == 0 ? 1 : first.report_every();
  report_losses_ = first.report_losses();
  return absl::OkStatus();
}

void TrainReactor::TakeLosses(v1::TrainResponse& response) {
  if (unreported_losses_.empty()) return;
  response.mutable_losses()->Add(unreported_losses_.begin(),
                                 unreported_losses_.end());
  unreported_losses_.clear();
}

void TrainReactor::OnReadDone(bool ok) {
  // Bytes of the read's reservation the message did not use; returned to
  // the budget after mu_ is released (StreamRegistry's lock order). The
  // reactor may be gone by then: only this local and registry_'s copy are
  // used.
  int64_t unused = 0;
  StreamRegistry* const registry = registry_;
  {
    absl::MutexLock lock(&mu_);
    unused = AcceptRead(ok);
  }
  registry->Release(unused);
}

int64_t TrainReactor::AcceptRead(bool ok) {
  reading_ = false;
  last_activity_ = absl::Now();
  const int64_t reserved = read_reservation_;
  read_reservation_ = 0;
  held_bytes_ -= reserved;
  if (!ok) {  // the client half-closed (or the call broke)
    read_closed_ = true;
    MaybeFinish();
    return reserved;
  }
  if (final_status_.has_value()) return reserved;
  if (session_ == nullptr) {
    if (absl::Status s = Open(*incoming_); !s.ok()) {
      FinishWith(s);
      return reserved;
    }
  } else if (!incoming_->name().empty() &&
             ParseNetworkName(admission_->scope, incoming_->name(), "name")
                     .value_or("") != session_->id()) {
    FinishWith(absl::InvalidArgumentError(absl::StrCat(
        "name: this stream trains networks/",
        admission_->scope.Shown(session_->id()), ", message ",
        batches_received_ + 1, " names \"", incoming_->name(), "\"")));
    return reserved;
  }
  int64_t unused = reserved;
  if (incoming_->has_batch() || incoming_->batches_size() > 0) {
    ++batches_received_;
    const int64_t bytes = static_cast<int64_t>(incoming_->ByteSizeLong());
    // The next message is expected to be about as large as this one.
    last_message_bytes_ = bytes;
    if (bytes > reserved) registry_->Charge(bytes - reserved);
    unused = std::max<int64_t>(0, reserved - bytes);
    held_bytes_ += bytes;
    pending_.push_back(Queued{std::move(incoming_), bytes, batches_received_});
  } else {
    incoming_->Clear();
  }
  MaybeCompute();
  MaybeRead();
  return unused;
}

void TrainReactor::MaybeRead() {
  if (reading_ || read_closed_ || final_status_.has_value() || finished_) {
    return;
  }
  // Resumed when a step completes or a write drains.
  if (static_cast<int>(pending_.size()) >= window_ ||
      static_cast<int>(unsent_.size()) >= window_) {
    return;
  }
  // The next message is reserved before it is read, at the size of the
  // last one, so streams that wait for budget do not receive meanwhile.
  const int64_t expected = last_message_bytes_;
  if (held_bytes_ > 0 &&
      held_bytes_ + expected > registry_->limits().max_stream_buffered_bytes) {
    return;
  }
  if (!registry_->TryReserve(expected, this)) return;  // see OnBufferRoom
  read_reservation_ = expected;
  held_bytes_ += expected;
  reading_ = true;
  if (incoming_ == nullptr) {
    incoming_ = spare_ != nullptr ? std::move(spare_)
                                  : std::make_unique<v1::TrainRequest>();
  }
  StartRead(incoming_.get());
}

void TrainReactor::OnBufferRoom() {
  absl::MutexLock lock(&mu_);
  MaybeRead();
}

void TrainReactor::MaybeCompute() {
  if (computing_ || pending_.empty() || final_status_.has_value()) return;
  if (static_cast<int>(unsent_.size()) >= window_) return;  // reader is slow
  computing_ = true;
  StreamRegistry* const registry = registry_;
  // The task owns its minibatch: nothing the reactor drops while the task
  // waits in the queue (pending_, on an error or cancel) is reachable
  // from it.
  const bool queued = service_->executor()->TrySubmit(
      [this, registry, step = std::move(pending_.front()),
       index = batches_applied_]() mutable {
        RunStep(step, index);
        // The reactor may be gone now (RunStep's last critical section may
        // have finished the call); only the task's own state is touched.
        step.request.reset();
        registry->Release(step.bytes);
      });
  pending_.pop_front();
  if (!queued) {
    // The dropped task freed its minibatch; its bytes stay in held_bytes_
    // and go back to the budget in OnDone.
    computing_ = false;
    FinishWith(service_->SubmitRefused(absl::StrCat(
        "minibatch ", batches_applied_ + 1,
        " of this stream (resume the stream from batches_applied)")));
  }
}

void TrainReactor::RunStep(Queued& step, int64_t index) {
  core::WriterSession* session;
  {
    absl::MutexLock lock(&mu_);
    if (final_status_.has_value()) {
      // The stream ended (bad message, cancel, deadline, idle) while this
      // step waited: the client will not see its result, so it is not
      // applied.
      computing_ = false;
      held_bytes_ -= step.bytes;
      MaybeFinish();
      return;
    }
    // Stays open while computing_ (MaybeFinish waits for it).
    session = session_.get();
  }
  // A message's minibatches are applied as consecutive steps, each exactly
  // as if it came alone (WriterSession::Steps): the same commits, the same
  // responses.
  std::vector<core::StepOutcome> applied;
  core::BatchFields fields;
  absl::Status status = [&] {
    auto batches = BatchesOf(*step.request, &fields);
    if (!batches.ok()) return batches.status();
    applied.reserve(batches->size());
    return session->Steps(*batches, fields, service_->CallOptionsFor(ctx_),
                          &applied);
  }();
  service_->hub()->OnSteps(NetworkName(session->id()), applied.size(),
                           [&applied](size_t i) -> const engine::StepResult& {
                             return applied[i].result;
                           });
  if (!status.ok()) {
    const int64_t done = static_cast<int64_t>(applied.size());
    status = absl::Status(
        status.code(),
        fields.indexed
            ? absl::StrCat("message ", step.message,
                           " of this stream (its minibatches ", index + 1,
                           " to ", index + step.request->batches_size(), ", ",
                           done == 0 ? "none" : absl::StrCat(done),
                           " applied): ", status.message())
            : absl::StrCat("minibatch ", index + done + 1,
                           " of this stream: ", status.message()));
  }

  // Cleared here, outside mu_; kept below if no other is.
  const bool keep = step.bytes <= kSpareMessageBytes &&
                    step.request->batches_size() <= kSpareMessageBatches;
  if (keep) step.request->Clear();

  absl::MutexLock lock(&mu_);
  computing_ = false;
  held_bytes_ -= step.bytes;
  last_activity_ = absl::Now();
  if (keep && spare_ == nullptr) spare_ = std::move(step.request);
  for (size_t i = 0; i < applied.size(); ++i) {
    ++batches_applied_;
    if (report_losses_) unreported_losses_.push_back(applied[i].result.loss);
    const bool report = batches_applied_ % report_every_ == 0;
    // Only a reported step, or the message's last (reported at the end if
    // nothing follows), needs its response built.
    if (!report && i + 1 < applied.size()) continue;
    v1::TrainResponse response;
    OutcomeToProto(applied[i], response.mutable_result());
    response.set_batches_applied(batches_applied_);
    if (report) {
      TakeLosses(response);
      unsent_.push_back(std::move(response));
      unreported_.reset();
    } else {
      unreported_ = std::move(response);
    }
  }
  if (!status.ok()) {
    FinishWith(status);
    return;
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
  last_activity_ = absl::Now();
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

void TrainReactor::CheckIdle(absl::Time now, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (final_status_.has_value()) {
    // Ending, but the status waits behind a response the client does not
    // take: cancel the call so the write fails and the stream can finish.
    if (writing_ && now - last_activity_ >= timeout) ctx_->TryCancel();
    return;
  }
  // Idle means the server waits on the client alone: for its next message
  // (nothing queued) or for it to take a response. Paused by flow control
  // on our side, or computing, the clock does not run.
  const bool waiting_on_client =
      !computing_ && (writing_ || (reading_ && pending_.empty()));
  if (!waiting_on_client) {
    last_activity_ = now;
    return;
  }
  if (now - last_activity_ < timeout) return;
  const std::string network =
      session_ == nullptr ? "no network yet" : NetworkName(session_->id());
  FinishWith(absl::DeadlineExceededError(absl::StrCat(
      "stream idle: no message from the client and no response taken for ",
      absl::FormatDuration(timeout), " (--stream_idle_timeout_seconds) after ",
      batches_applied_, " minibatches applied; the writer slot of ", network,
      " is released, open a new stream to continue")));
  // A response the client does not read blocks the status behind it:
  // cancel the call so the pending write fails and the stream can finish.
  if (writing_) ctx_->TryCancel();
}

void TrainReactor::OnNetworkDeleted(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (finished_ || final_status_.has_value() || session_ == nullptr ||
      session_->id() != id) {
    return;
  }
  // A step already running finishes first (it holds the network), then the
  // stream ends; minibatches still queued are not applied.
  FinishWith(absl::AbortedError(
      absl::StrCat(NetworkName(session_->id()),
                   " was deleted while this stream trained it; ",
                   batches_applied_, " minibatches were applied before")));
  // A write in flight is usually one the client is about to take; it
  // completes and ABORTED follows. A client that stopped reading is left to
  // CheckIdle, whose clock starts now.
  if (writing_) last_activity_ = absl::Now();
}

void TrainReactor::FinishWith(absl::Status status) {
  // Minibatches still in pending_ stay until OnDone, which returns their
  // bytes to the budget outside mu_ (StreamRegistry's lock order).
  if (!final_status_.has_value()) final_status_ = std::move(status);
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
      TakeLosses(*unreported_);
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
  absl::Status status = success ? absl::OkStatus() : *final_status_;
  if (session_ == nullptr) {
    // (CloseAndFinish does this on the other path: once per status.)
    if (admission_.ok()) status = admission_->scope.Unscoped(status);
    Finish(ToGrpcStatus(status));
    return;
  }
  // The session's last commit. A durable store may wait on the disk, which
  // a callback thread must not: then it runs on the executor (inline only
  // if the executor refuses). Later callbacks see finished_ and return.
  core::WriterSession* session = session_.release();
  if (service_->core()->durable() &&
      service_->executor()->TrySubmit([this, session, status, success] {
        CloseAndFinish(std::unique_ptr<core::WriterSession>(session), status,
                       success);
      })) {
    return;
  }
  CloseAndFinish(std::unique_ptr<core::WriterSession>(session), status,
                 success);
}

void TrainReactor::CloseAndFinish(std::unique_ptr<core::WriterSession> session,
                                  absl::Status status, bool success) {
  // A stream whose steps cannot be committed has failed.
  if (absl::Status closed = session->Close(); !closed.ok() && success) {
    status = absl::Status(
        closed.code(),
        absl::StrCat("committing the stream's last steps: ", closed.message(),
                     "; resume from durable step ", session->durable_step()));
  }
  session.reset();
  if (admission_.ok()) status = admission_->scope.Unscoped(status);
  // Nothing of the reactor is touched after this: OnDone may follow.
  Finish(ToGrpcStatus(status));
}

void TrainReactor::OnDone() {
  // After Unregister the registry never calls this stream again.
  if (registered_) registry_->Unregister(this);
  int64_t held;
  {
    // Also waits for a thread that called Finish() under mu_ to let go
    // before the mutex is destroyed with the reactor.
    absl::MutexLock lock(&mu_);
    pending_.clear();
    held = held_bytes_;
  }
  registry_->Release(held);
  delete this;
}

}  // namespace satlab::service
