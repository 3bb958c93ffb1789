// C++ client of satlab.v1.TrainingService. Every RPC is a method returning
// absl::Status(Or); gRPC errors arrive as the same absl code and message.
// Thread-safe: one Client may be shared by many threads.
#ifndef SATLAB_CLIENT_CLIENT_H_
#define SATLAB_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.grpc.pb.h"

namespace satlab {

struct ClientOptions {
  // host:port of satlab-server.
  std::string target = "127.0.0.1:50051";
  // Deadline of each unary call; streams take theirs from their options.
  absl::Duration timeout = absl::Seconds(30);
  // Largest message sent or received (the server's default limit).
  int max_message_bytes = 64 << 20;
  // Wait for the channel to become ready instead of failing fast while
  // the server starts.
  bool wait_for_ready = false;
};

// gRPC status -> absl::Status (the codes coincide).
absl::Status FromGrpc(const grpc::Status& status);

// Builds a [rows, cols] float64 tensor from row-major values.
v1::Tensor MakeTensor(int64_t rows, int64_t cols,
                      const std::vector<double>& values);
// Builds a [n] float64 tensor.
v1::Tensor MakeVector(const std::vector<double>& values);
// Values of a tensor as float64, whatever its precision.
std::vector<double> TensorValues(const v1::Tensor& tensor);

class TrainSession;

struct TrainOptions {
  // Send a StepResult every this many steps (and after the last).
  int report_every = 1;
  // Reconnect and resume after UNAVAILABLE this many times. Resuming reads
  // the network's step count to know how many minibatches were applied,
  // then resends the rest: exact while nobody else trains the network.
  int max_resumes = 3;
  // Deadline of the whole stream; infinite by default.
  absl::Duration timeout = absl::InfiniteDuration();
};

class Client {
 public:
  explicit Client(const ClientOptions& options);
  // Over an existing channel (tests, custom credentials).
  Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  absl::StatusOr<v1::Network> CreateNetwork(const v1::NetworkSpec& spec,
                                            absl::string_view network_id = "");
  absl::StatusOr<v1::Network> GetNetwork(absl::string_view name);
  absl::StatusOr<v1::ListNetworksResponse> ListNetworks(
      int page_size, absl::string_view page_token = "");
  // Every network, following page tokens.
  absl::StatusOr<std::vector<v1::Network>> ListAllNetworks();
  absl::Status DeleteNetwork(absl::string_view name);
  absl::StatusOr<v1::GetParametersResponse> GetParameters(
      absl::string_view name);
  absl::StatusOr<v1::Network> SetParameters(
      const v1::SetParametersRequest& request);
  absl::StatusOr<v1::ForwardResponse> Forward(
      const v1::ForwardRequest& request);
  absl::StatusOr<v1::ComputeGradientsResponse> ComputeGradients(
      const v1::ComputeGradientsRequest& request);
  // One step. With a `request_id` (e.g. a UUID, at most 128 printable
  // characters), calling again with the same id and batch after an error
  // such as DEADLINE_EXCEEDED or UNAVAILABLE is safe: the server applies the
  // step at most once and answers a retry with the first result.
  // (SetParameters takes its request_id in the request.)
  absl::StatusOr<v1::StepResult> TrainStep(absl::string_view name,
                                           const v1::Minibatch& batch,
                                           absl::string_view request_id = "");
  absl::StatusOr<v1::EvaluateResponse> Evaluate(absl::string_view name,
                                                const v1::Minibatch& data);

  // Trains on `batches` in order through one Train stream, calling
  // `on_result` (may be empty) for every result received. Resumes after
  // UNAVAILABLE as TrainOptions says. Returns the last result.
  absl::StatusOr<v1::StepResult> Train(
      absl::string_view name, const std::vector<v1::Minibatch>& batches,
      const TrainOptions& options,
      const std::function<void(const v1::TrainResponse&)>& on_result);

  // Opens a Train stream for manual control.
  absl::StatusOr<std::unique_ptr<TrainSession>> StartTraining(
      absl::string_view name, const TrainOptions& options);

  // Streams an experiment, calling `on_message` for each message; returns
  // the summary. Cancelled when `on_message` returns false.
  absl::StatusOr<v1::ExperimentSummary> RunExperiment(
      const v1::RunExperimentRequest& request,
      const std::function<bool(const v1::RunExperimentResponse&)>& on_message,
      absl::Duration timeout = absl::InfiniteDuration());

  // Streams metric events until `on_event` returns false or the deadline.
  absl::Status WatchMetrics(
      const v1::WatchMetricsRequest& request,
      const std::function<bool(const v1::WatchMetricsResponse&)>& on_event,
      absl::Duration timeout = absl::InfiniteDuration());

  // grpc.health.v1 Check of `service` ("" = the whole server). Returns true
  // when SERVING.
  absl::StatusOr<bool> CheckHealth(absl::string_view service);

  v1::TrainingService::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  // A context with the unary deadline and wait-for-ready set.
  void Prepare(grpc::ClientContext* ctx, absl::Duration timeout) const;

  // One unary call through the stub with the default deadline.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Unary(
      grpc::Status (v1::TrainingService::Stub::*method)(grpc::ClientContext*,
                                                        const Request&,
                                                        Response*),
      const Request& request) {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_.timeout);
    Response response;
    if (absl::Status s =
            FromGrpc((stub_.get()->*method)(&ctx, request, &response));
        !s.ok()) {
      return s;
    }
    return response;
  }

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TrainingService::Stub> stub_;
};

// A Train stream. Write() blocks while gRPC's flow control holds the
// stream back; Read() blocks for the next result. Writes and reads may run
// on two threads. Not copyable.
class TrainSession {
 public:
  TrainSession(std::unique_ptr<grpc::ClientContext> ctx,
               std::unique_ptr<grpc::ClientReaderWriter<v1::TrainRequest,
                                                        v1::TrainResponse>>
                   stream,
               std::string name, int report_every);
  ~TrainSession();

  // Sends one minibatch. False when the stream is broken (see Finish).
  bool Write(const v1::Minibatch& batch);
  // The next result, or false at the end of the stream.
  bool Read(v1::TrainResponse* response);
  // No more minibatches.
  bool WritesDone();
  // Waits for the end of the stream; its final status.
  absl::Status Finish();
  // Cancels the stream.
  void Cancel();

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>
      stream_;
  std::string name_;
  int report_every_;
  bool first_ = true;
  bool finished_ = false;
};

}  // namespace satlab

#endif  // SATLAB_CLIENT_CLIENT_H_
