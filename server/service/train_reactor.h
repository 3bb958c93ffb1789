// The server side of a Train stream: minibatches in, StepResults out.
//
// A message carries one minibatch (`batch`) or several (`batches`); all of
// a message's steps run in one executor task under the stream's writer
// session (WriterSession::Steps), each exactly as if it came alone, so
// tiny steps are not bound by one message and one hand-off per step.
//
// Flow control: the reactor stops reading while `train_stream_window`
// messages wait to be computed, or that many results wait to be sent, or
// the messages it holds would pass the per-stream byte limit, or the
// server-wide byte budget has no room (StreamRegistry; each read reserves
// the size of the stream's previous minibatch); so a fast writer or a slow
// reader is slowed by gRPC's own flow control instead of growing our
// buffers. While one step computes on the executor, the next minibatch is
// already being received.
//
// The stream holds the network's writer slot (a core::WriterSession, which
// commits to the store every N steps / T ms and when the stream ends) from
// its first message until it ends; steps run one at a time, in order, on
// the executor. A stream
// that sits idle (StreamLimits::idle_timeout) is ended by the registry.
//
// Lifetime: gRPC deletes nothing; OnDone deletes the reactor. OnDone cannot
// come before Finish, and Finish is called only when no step of this stream
// is queued or running, so an executor task never outlives the reactor: a
// task touches the reactor only under mu_, owns its minibatch, and after
// the critical section that may call Finish it touches only the registry.
#ifndef SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_
#define SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"
#include "server/core/network_core.h"
#include "server/service/stream_registry.h"
#include "server/service/tenancy.h"

namespace satlab::service {

class TrainingServiceImpl;

class TrainReactor final
    : public grpc::ServerBidiReactor<v1::TrainRequest, v1::TrainResponse>,
      public StreamRegistry::Stream {
 public:
  TrainReactor(TrainingServiceImpl* service, grpc::CallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  void CheckIdle(absl::Time now, absl::Duration timeout) override;
  void OnBufferRoom() override;
  void OnNetworkDeleted(absl::string_view id) override;

 private:
  // A received minibatch and the bytes it was charged to the budget.
  struct Queued {
    std::unique_ptr<v1::TrainRequest> request;
    int64_t bytes = 0;
    // Its number among the stream's messages that carry minibatches.
    int64_t message = 0;
  };

  // Handles the first message: opens a writer session on the network.
  absl::Status Open(const v1::TrainRequest& first)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the front minibatch to the executor if one is due and none runs.
  void MaybeCompute() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs on the executor: one step on `step` (minibatch number `index` + 1
  // of the stream), unless the stream ended while it was queued.
  // A small message's request goes to spare_ when the step is done.
  void RunStep(Queued& step, int64_t index) ABSL_LOCKS_EXCLUDED(mu_);
  // OnReadDone under mu_: takes the message in. Returns the bytes of the
  // read's reservation to give back to the budget.
  int64_t AcceptRead(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resumes reading if it is paused and there is room.
  void MaybeRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the losses not yet reported (report_losses) into `response`.
  void TakeLosses(v1::TrainResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the stream once nothing is in flight; records `status` if first.
  void FinishWith(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the stream's writer session (its last commit) and finishes the
  // call with `status`, or with the commit's error if `success`.
  void CloseAndFinish(std::unique_ptr<core::WriterSession> session,
                      absl::Status status, bool success);

  TrainingServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  StreamRegistry* const registry_;
  const int window_;
  // The caller (its scope names the network) and its stream quota.
  const absl::StatusOr<StreamAdmission> admission_;
  // Written by the constructor, read by OnDone: false when the open-stream
  // cap refused the stream (it finished at once).
  bool registered_ = false;

  absl::Mutex mu_;
  // The message being read (null between a read and the next).
  std::unique_ptr<v1::TrainRequest> incoming_ ABSL_GUARDED_BY(mu_);
  // The request of an applied message, cleared, to be read into again: a
  // cleared message keeps its submessages and value arrays, so parsing the
  // next message of a stream of tiny steps allocates nothing, and the
  // executor, which runs the steps, frees nothing. One, of a message of at
  // most 32 KiB and 64 minibatches, so what a stream keeps between messages
  // is bounded (~50 KB).
  std::unique_ptr<v1::TrainRequest> spare_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Queued> pending_ ABSL_GUARDED_BY(mu_);
  // Bytes of the minibatches in pending_, of the one computing and of the
  // outstanding read's reservation: charged to the registry's budget,
  // returned as reads complete, as steps finish and in OnDone.
  int64_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t read_reservation_ ABSL_GUARDED_BY(mu_) = 0;
  // Size of the last minibatch received: what the next read reserves.
  int64_t last_message_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool computing_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::TrainResponse> unsent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // When the client last gave a sign of life (a message arrived or a
  // response was taken) or the server last stopped waiting on it.
  absl::Time last_activity_ ABSL_GUARDED_BY(mu_);

  // From the first message on; closed (committed, slot released) when the
  // stream finishes. Used outside mu_ only by the one running step.
  std::unique_ptr<core::WriterSession> session_ ABSL_GUARDED_BY(mu_);
  int report_every_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t batches_received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t batches_applied_ ABSL_GUARDED_BY(mu_) = 0;
  // The last step result not yet sent (report_every > 1).
  std::optional<v1::TrainResponse> unreported_ ABSL_GUARDED_BY(mu_);
  // With report_losses: the losses of the steps since the last response.
  bool report_losses_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<double> unreported_losses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_
