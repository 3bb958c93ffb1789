// C++ client of satlab.v1.TrainingService. Every RPC is a method returning
// absl::Status(Or); gRPC errors arrive as the same absl code and message.
// Thread-safe: one Client may be shared by many threads.
#ifndef SATLAB_CLIENT_CLIENT_H_
#define SATLAB_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
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
  // Longest wait between the channel's attempts to reconnect after the
  // server went away (gRPC's default grows to 120 s): a restarted server
  // is found again within this, so a TrainSession resumes promptly.
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
  // Transport security. `tls` (implied by any tls_* file) connects with TLS
  // and verifies the server's certificate against tls_ca_file (PEM; empty:
  // the system's roots). tls_cert_file + tls_key_file present a client
  // certificate (mutual TLS). tls_server_name replaces the target's host as
  // the name the certificate must carry (e.g. connecting by IP to a
  // certificate issued for "satlab"). Off: plaintext.
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
  // Sent as `authorization: Bearer <api_key>` on every call and stream
  // (TrainSession's reconnects included); empty sends none.
  std::string api_key;

  bool UsesTls() const {
    return tls || !tls_ca_file.empty() || !tls_cert_file.empty() ||
           !tls_key_file.empty();
  }
};

// The channel credentials `options` ask for: plaintext, or TLS with the
// files read now. INVALID_ARGUMENT naming the option when a file cannot be
// read or only one of cert/key is set. (Client(options) falls back to TLS
// with the system roots, never to plaintext, if this fails; call it first
// to report the error.)
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsOf(
    const ClientOptions& options);

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
class TrainStream;

struct TrainOptions {
  // Send a StepResult every this many steps (and after the last).
  int report_every = 1;
  // Commit points the stream asks the server for (0: the server's
  // defaults, --train_commit_every_steps / --train_commit_interval_ms).
  int commit_every_steps = 0;
  int commit_interval_ms = 0;
  // Reconnect and resume after a failure this many times in a row (the
  // count starts again whenever a step is applied). Resuming reads the
  // network's step, resends the minibatches after it from the session's
  // buffer, and asks the server to start exactly there (expected_step).
  int max_resumes = 10;
  // Wait between attempts: doubles from initial_backoff up to max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // Minibatches written and not yet durable on the server that the
  // session keeps for a replay; Write blocks while this many are held.
  // Must be more than the stream's commit interval in steps.
  int max_buffered_batches = 4096;
  // Deadline of the whole session; infinite by default.
  absl::Duration timeout = absl::InfiniteDuration();
  // A TrainSession sends up to this many minibatches per message (as many
  // as are written and not yet sent), so a stream of tiny steps is not
  // bound by one message per step; results, parameters and responses are
  // the same as one per message. 1 sends each alone (`batch`, which
  // servers before `batches` existed understand). The default was the
  // fastest measured for tiny networks (docs/benchmarks.md, "Many small
  // steps per message"). At most the server's --max_batches_per_message.
  // A bad minibatch fails its whole message, so the good ones packed with
  // it (which depends on timing) are not applied either: the network's step
  // says what was.
  int batches_per_message = 32;
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

  // Trains on `batches` in order through a TrainSession, calling
  // `on_result` (may be empty) for every result received; resumes after a
  // failure as TrainOptions says. Returns the last result.
  absl::StatusOr<v1::StepResult> Train(
      absl::string_view name, const std::vector<v1::Minibatch>& batches,
      const TrainOptions& options,
      const std::function<void(const v1::TrainResponse&)>& on_result);

  // Starts a resumable training session on `name` (reads its step first).
  absl::StatusOr<std::unique_ptr<TrainSession>> StartTraining(
      absl::string_view name, const TrainOptions& options);

  // Opens one Train stream for manual control: no resume, no buffering.
  absl::StatusOr<std::unique_ptr<TrainStream>> OpenTrainStream(
      absl::string_view name, const TrainOptions& options);
  // The same with the first message given (name and stream options).
  absl::StatusOr<std::unique_ptr<TrainStream>> OpenTrainStream(
      v1::TrainRequest first, absl::Duration timeout);

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

  // --- Export / import (docs/storage.md, "Export files") ---
  // Called after each chunk with the bytes moved so far and the total.
  using TransferProgress = std::function<void(int64_t done, int64_t total)>;
  // Writes `name`'s export file (a consistent snapshot: spec, parameters,
  // optimizer state, step) to `out` as it arrives, chunk by chunk.
  absl::Status ExportNetwork(absl::string_view name, std::ostream& out,
                             const TransferProgress& progress = {},
                             absl::Duration timeout = absl::InfiniteDuration());
  // The same into the file `path`, written as `path`.tmp and renamed when
  // complete, so a failed export leaves no partial file behind.
  absl::Status ExportNetworkToFile(
      absl::string_view name, const std::string& path,
      const TransferProgress& progress = {},
      absl::Duration timeout = absl::InfiniteDuration());
  // Creates networks/{network_id} (empty: a server-assigned id) from the
  // `total_bytes` bytes of an export file read from `in`, sent in chunks.
  absl::StatusOr<v1::Network> ImportNetwork(
      std::istream& in, int64_t total_bytes, absl::string_view network_id = "",
      const TransferProgress& progress = {},
      absl::Duration timeout = absl::InfiniteDuration());
  // The same from the file `path`.
  absl::StatusOr<v1::Network> ImportNetworkFromFile(
      const std::string& path, absl::string_view network_id = "",
      const TransferProgress& progress = {},
      absl::Duration timeout = absl::InfiniteDuration());

  v1::TrainingService::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

  // --- Experiments as resources (`experiments/{id}`) ---
  // A kept experiment: spec, state, curves and summary.
  absl::StatusOr<v1::Experiment> GetExperiment(absl::string_view name);
  // A page of experiments (without curves), in name order.
  absl::StatusOr<v1::ListExperimentsResponse> ListExperiments(
      int page_size, absl::string_view page_token = "");
  // Deletes a finished experiment.
  absl::Status DeleteExperiment(absl::string_view name);

  // --- Several steps per call (issue 15 item 4) ---
  // One optimizer step per minibatch of `batches`, in order, in one
  // TrainStep call: all applied or none. The response carries the last
  // step's result, the count and every step's loss. `request_id` as in
  // TrainStep (it covers the whole call).
  absl::StatusOr<v1::TrainStepResponse> TrainSteps(
      absl::string_view name, const std::vector<v1::Minibatch>& batches,
      absl::string_view request_id = "");

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

// One Train stream. Write() blocks while gRPC's flow control holds the
// stream back; Read() blocks for the next result. Writes and reads may run
// on two threads. Not copyable. The first message carries the name and
// the stream options (and `expected_step` when set).
class TrainStream {
 public:
  TrainStream(std::unique_ptr<grpc::ClientContext> ctx,
              std::unique_ptr<
                  grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>
                  stream,
              v1::TrainRequest first);
  ~TrainStream();

  // Sends one minibatch. False when the stream is broken (see Finish).
  bool Write(const v1::Minibatch& batch);
  // Sends several minibatches in one message (`batches`; one alone goes as
  // `batch`): the server applies them in order, each one step.
  bool WriteBatches(absl::Span<const v1::Minibatch* const> batches);
  // The next result, or false at the end of the stream.
  bool Read(v1::TrainResponse* response);
  // No more minibatches.
  bool WritesDone();
  // Waits for the end of the stream; its final status.
  absl::Status Finish();
  // Cancels the stream.
  void Cancel();

 private:
  // pack_, cleared, with the first message's options if none was sent.
  v1::TrainRequest& NextMessage();

  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>
      stream_;
  v1::TrainRequest first_message_;
  // The message Write and WriteBatches fill, kept between calls: cleared, it
  // keeps its minibatches' submessages and value arrays, so packing the next
  // message copies values without allocating (it holds about the memory of
  // the largest message this stream sent).
  v1::TrainRequest pack_;
  bool first_ = true;
  bool finished_ = false;
};

// A training session that outlives broken streams and server restarts.
// Minibatch n (from 0) of the session becomes step start_step() + n + 1.
// The session keeps every minibatch until the server reports it durable
// (StepResult.durable_step); when a stream fails with a code a retry may
// cure (UNAVAILABLE, ABORTED while the old stream still holds the network
// or another replica's lease on it runs out, a broken connection, a stream
// a gRPC proxy reset because the replica behind it died), it waits with
// backoff, reads the network's step,
// opens a new stream that must start exactly there (expected_step) and
// resends what the server does not have, so the network ends as an
// uninterrupted run would, bit for bit. Results are delivered in order, at
// most once per step: a result a failure cut off for a step the server had
// already committed is not sent again (the network has that step). Write
// and Read may run on two threads.
class TrainSession {
 public:
  ~TrainSession();
  TrainSession(const TrainSession&) = delete;
  TrainSession& operator=(const TrainSession&) = delete;

  // Queues one minibatch; blocks while max_buffered_batches are held.
  // False when the session has ended (see Finish).
  bool Write(const v1::Minibatch& batch);
  // The next result, or false once the session has ended.
  bool Read(v1::TrainResponse* response);
  // No more minibatches: the session ends when all are applied.
  void WritesDone();
  // Waits for the end of the session; OK when every minibatch was applied
  // and the last stream ended OK (so its final commit was made).
  absl::Status Finish();
  // Cancels the session.
  void Cancel();

  // The network's step before the first minibatch of the session.
  int64_t start_step() const { return start_step_; }
  // Streams reopened after a failure so far.
  int resumes() const;
  // The latest durable step the server reported.
  int64_t durable_step() const;

 private:
  friend class Client;
  struct State;
  TrainSession(Client* client, std::string name, TrainOptions options,
               int64_t start_step, int64_t durable_step);
  void Run();

  Client* const client_;
  const std::string name_;
  const TrainOptions options_;
  const int64_t start_step_;
  const std::unique_ptr<State> state_;
};

}  // namespace satlab

#endif  // SATLAB_CLIENT_CLIENT_H_
