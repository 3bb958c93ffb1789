// The server side of a Train stream: minibatches in, StepResults out.
//
// Flow control: at most `train_stream_window` minibatches wait to be
// computed and at most that many results wait to be sent; beyond either,
// the reactor stops reading, so a fast writer or a slow reader is slowed by
// gRPC's own flow control instead of growing our buffers. While one step
// computes on the executor, the next minibatch is already being received.
//
// The stream holds the network's writer slot from its first message until
// it ends; steps run one at a time, in order, on the executor.
#ifndef SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_
#define SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_

#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"
#include "server/store/network_store.h"

namespace satlab::service {

class TrainingServiceImpl;

class TrainReactor final
    : public grpc::ServerBidiReactor<v1::TrainRequest, v1::TrainResponse> {
 public:
  TrainReactor(TrainingServiceImpl* service, grpc::CallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Handles the first message: resolves the network, takes its writer slot.
  absl::Status Open(const v1::TrainRequest& first)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the next step on the executor if one is due and none runs.
  void MaybeCompute() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs on the executor: one step on the front minibatch.
  void ComputeOne();
  // Resumes reading if it is paused and there is room.
  void MaybeRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the stream once nothing is in flight; records `status` if first.
  void FinishWith(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TrainingServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  const int window_;

  absl::Mutex mu_;
  v1::TrainRequest incoming_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::TrainRequest> pending_ ABSL_GUARDED_BY(mu_);
  bool computing_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::TrainResponse> unsent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;

  std::shared_ptr<store::NetworkEntry> entry_ ABSL_GUARDED_BY(mu_);
  bool holds_writer_ ABSL_GUARDED_BY(mu_) = false;
  int report_every_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t batches_received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t batches_applied_ ABSL_GUARDED_BY(mu_) = 0;
  // The last step result not yet sent (report_every > 1).
  std::optional<v1::TrainResponse> unreported_ ABSL_GUARDED_BY(mu_);
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_TRAIN_REACTOR_H_
