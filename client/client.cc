#include "client/client.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
#include <istream>
#include <ostream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace satlab {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

v1::Tensor MakeTensor(int64_t rows, int64_t cols,
                      const std::vector<double>& values) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  t.mutable_double_values()->Add(values.begin(), values.end());
  return t;
}

v1::Tensor MakeVector(const std::vector<double>& values) {
  v1::Tensor t;
  t.add_shape(static_cast<int64_t>(values.size()));
  t.mutable_double_values()->Add(values.begin(), values.end());
  return t;
}

std::vector<double> TensorValues(const v1::Tensor& tensor) {
  if (tensor.float_values_size() > 0) {
    return {tensor.float_values().begin(), tensor.float_values().end()};
  }
  return {tensor.double_values().begin(), tensor.double_values().end()};
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view option) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": cannot read ", path));
  }
  return text.str();
}

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  const int backoff_ms = static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(options.max_reconnect_backoff), 100, 120000));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, backoff_ms);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(backoff_ms, 100));
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left at its default on purpose: gRPC
  // also uses it as the connect timeout (TCP + HTTP/2 SETTINGS), so a small
  // value fails the first call on a loaded host ("timed out before receiving
  // SETTINGS frame") instead of just retrying sooner.
  // Calls that change nothing are retried by gRPC itself when they fail
  // with UNAVAILABLE: behind a load balancer a call may reach a replica
  // that just died (nginx answers 502, which gRPC reports as UNAVAILABLE),
  // and the next attempt goes to another. Mutations are not retried here:
  // TrainSession resumes streams, request ids make TrainStep and
  // SetParameters safe to retry by the caller.
  args.SetServiceConfigJSON(R"json({"methodConfig": [{
    "name": [
      {"service": "satlab.v1.TrainingService", "method": "GetNetwork"},
      {"service": "satlab.v1.TrainingService", "method": "ListNetworks"},
      {"service": "satlab.v1.TrainingService", "method": "GetParameters"},
      {"service": "satlab.v1.TrainingService", "method": "Forward"},
      {"service": "satlab.v1.TrainingService", "method": "ComputeGradients"},
      {"service": "satlab.v1.TrainingService", "method": "Evaluate"},
      {"service": "satlab.v1.TrainingService", "method": "GetExperiment"},
      {"service": "satlab.v1.TrainingService", "method": "ListExperiments"}
    ],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]})json");
  auto credentials = ChannelCredentialsOf(options);
  return grpc::CreateCustomChannel(
      options.target,
      credentials.ok() ? *credentials
                       : grpc::SslCredentials(grpc::SslCredentialsOptions()),
      args);
}

void SetTimeout(grpc::ClientContext* ctx, absl::Duration timeout) {
  if (timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsOf(
    const ClientOptions& options) {
  if (!options.UsesTls()) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_file and tls_key_file: expected both (mutual TLS) or "
        "neither, got one");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    auto ca = ReadPem(options.tls_ca_file, "tls_ca_file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadPem(options.tls_cert_file, "tls_cert_file");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(options.tls_key_file, "tls_key_file");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

Client::Client(const ClientOptions& options)
    : Client(MakeChannel(options), options) {}

Client::Client(std::shared_ptr<grpc::Channel> channel,
               const ClientOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      stub_(v1::TrainingService::NewStub(channel_)) {}

void Client::Prepare(grpc::ClientContext* ctx, absl::Duration timeout) const {
  SetTimeout(ctx, timeout);
  ctx->set_wait_for_ready(options_.wait_for_ready);
  if (!options_.api_key.empty()) {
    ctx->AddMetadata("authorization",
                     absl::StrCat("Bearer ", options_.api_key));
  }
}

absl::StatusOr<v1::Network> Client::CreateNetwork(
    const v1::NetworkSpec& spec, absl::string_view network_id) {
  v1::CreateNetworkRequest request;
  *request.mutable_network()->mutable_spec() = spec;
  request.set_network_id(std::string(network_id));
  auto response = Unary(&v1::TrainingService::Stub::CreateNetwork, request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_network());
}

absl::StatusOr<v1::Network> Client::GetNetwork(absl::string_view name) {
  v1::GetNetworkRequest request;
  request.set_name(std::string(name));
  auto response = Unary(&v1::TrainingService::Stub::GetNetwork, request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_network());
}

absl::StatusOr<v1::ListNetworksResponse> Client::ListNetworks(
    int page_size, absl::string_view page_token) {
  v1::ListNetworksRequest request;
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  return Unary(&v1::TrainingService::Stub::ListNetworks, request);
}

absl::StatusOr<std::vector<v1::Network>> Client::ListAllNetworks() {
  std::vector<v1::Network> all;
  std::string token;
  do {
    auto page = ListNetworks(1000, token);
    if (!page.ok()) return page.status();
    for (auto& n : *page->mutable_networks()) all.push_back(std::move(n));
    token = page->next_page_token();
  } while (!token.empty());
  return all;
}

absl::Status Client::DeleteNetwork(absl::string_view name) {
  v1::DeleteNetworkRequest request;
  request.set_name(std::string(name));
  return Unary(&v1::TrainingService::Stub::DeleteNetwork, request).status();
}

absl::StatusOr<v1::GetParametersResponse> Client::GetParameters(
    absl::string_view name) {
  v1::GetParametersRequest request;
  request.set_name(std::string(name));
  return Unary(&v1::TrainingService::Stub::GetParameters, request);
}

absl::StatusOr<v1::Network> Client::SetParameters(
    const v1::SetParametersRequest& request) {
  auto response = Unary(&v1::TrainingService::Stub::SetParameters, request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_network());
}

absl::StatusOr<v1::ForwardResponse> Client::Forward(
    const v1::ForwardRequest& request) {
  return Unary(&v1::TrainingService::Stub::Forward, request);
}

absl::StatusOr<v1::ComputeGradientsResponse> Client::ComputeGradients(
    const v1::ComputeGradientsRequest& request) {
  return Unary(&v1::TrainingService::Stub::ComputeGradients, request);
}

absl::StatusOr<v1::StepResult> Client::TrainStep(absl::string_view name,
                                                 const v1::Minibatch& batch,
                                                 absl::string_view request_id) {
  v1::TrainStepRequest request;
  request.set_name(std::string(name));
  *request.mutable_batch() = batch;
  request.set_request_id(std::string(request_id));
  auto response = Unary(&v1::TrainingService::Stub::TrainStep, request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_result());
}

absl::StatusOr<v1::EvaluateResponse> Client::Evaluate(
    absl::string_view name, const v1::Minibatch& data) {
  v1::EvaluateRequest request;
  request.set_name(std::string(name));
  *request.mutable_data() = data;
  return Unary(&v1::TrainingService::Stub::Evaluate, request);
}

absl::StatusOr<std::unique_ptr<TrainStream>> Client::OpenTrainStream(
    absl::string_view name, const TrainOptions& options) {
  v1::TrainRequest first;
  first.set_name(std::string(name));
  first.set_report_every(options.report_every);
  first.set_commit_every_steps(options.commit_every_steps);
  first.set_commit_interval_ms(options.commit_interval_ms);
  return OpenTrainStream(std::move(first), options.timeout);
}

absl::StatusOr<std::unique_ptr<TrainStream>> Client::OpenTrainStream(
    v1::TrainRequest first, absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  Prepare(ctx.get(), timeout);
  auto stream = stub_->Train(ctx.get());
  if (stream == nullptr) {
    return absl::UnavailableError("could not open a Train stream");
  }
  return std::make_unique<TrainStream>(std::move(ctx), std::move(stream),
                                       std::move(first));
}

absl::StatusOr<std::unique_ptr<TrainSession>> Client::StartTraining(
    absl::string_view name, const TrainOptions& options) {
  if (options.max_buffered_batches < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainOptions.max_buffered_batches: expected at least 2, "
                     "got ",
                     options.max_buffered_batches));
  }
  auto network = GetNetwork(name);
  if (!network.ok()) return network.status();
  return std::unique_ptr<TrainSession>(
      new TrainSession(this, std::string(name), options, network->step(),
                       network->durable_step()));
}

absl::StatusOr<v1::StepResult> Client::Train(
    absl::string_view name, const std::vector<v1::Minibatch>& batches,
    const TrainOptions& options,
    const std::function<void(const v1::TrainResponse&)>& on_result) {
  auto session = StartTraining(name, options);
  if (!session.ok()) return session.status();
  TrainSession& s = **session;
  // Writing on its own thread lets results stream back while minibatches
  // are still going out; the session's buffer and flow control pace both.
  std::thread writer([&s, &batches] {
    for (const v1::Minibatch& batch : batches) {
      if (!s.Write(batch)) return;
    }
    s.WritesDone();
  });
  v1::StepResult last;
  v1::TrainResponse response;
  while (s.Read(&response)) {
    last = response.result();
    if (on_result) on_result(response);
  }
  writer.join();
  if (absl::Status status = s.Finish(); !status.ok()) return status;
  return last;
}

absl::StatusOr<v1::ExperimentSummary> Client::RunExperiment(
    const v1::RunExperimentRequest& request,
    const std::function<bool(const v1::RunExperimentResponse&)>& on_message,
    absl::Duration timeout) {
  grpc::ClientContext ctx;
  Prepare(&ctx, timeout);
  auto reader = stub_->RunExperiment(&ctx, request);
  v1::RunExperimentResponse message;
  v1::ExperimentSummary summary;
  bool have_summary = false;
  while (reader->Read(&message)) {
    if (message.has_summary()) {
      summary = message.summary();
      have_summary = true;
    }
    if (on_message && !on_message(message)) {
      ctx.TryCancel();
      break;
    }
  }
  if (absl::Status s = FromGrpc(reader->Finish()); !s.ok()) return s;
  if (!have_summary) {
    return absl::DataLossError("the experiment stream ended without a summary");
  }
  return summary;
}

absl::Status Client::WatchMetrics(
    const v1::WatchMetricsRequest& request,
    const std::function<bool(const v1::WatchMetricsResponse&)>& on_event,
    absl::Duration timeout) {
  grpc::ClientContext ctx;
  Prepare(&ctx, timeout);
  auto reader = stub_->WatchMetrics(&ctx, request);
  v1::WatchMetricsResponse event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped = true;
      ctx.TryCancel();
      break;
    }
  }
  absl::Status status = FromGrpc(reader->Finish());
  if (stopped && absl::IsCancelled(status)) return absl::OkStatus();
  return status;
}

absl::StatusOr<bool> Client::CheckHealth(absl::string_view service) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.timeout);
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  if (absl::Status s = FromGrpc(stub->Check(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

TrainStream::TrainStream(
    std::unique_ptr<grpc::ClientContext> ctx,
    std::unique_ptr<
        grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>
        stream,
    v1::TrainRequest first)
    : ctx_(std::move(ctx)),
      stream_(std::move(stream)),
      first_message_(std::move(first)) {}

TrainStream::~TrainStream() {
  if (!finished_) {
    ctx_->TryCancel();
    stream_->Finish().IgnoreError();
  }
}

v1::TrainRequest& TrainStream::NextMessage() {
  pack_.Clear();
  if (first_) {  // the stream's first message also carries its options
    first_ = false;
    pack_.Swap(&first_message_);
  }
  return pack_;
}

bool TrainStream::Write(const v1::Minibatch& batch) {
  *NextMessage().mutable_batch() = batch;
  return stream_->Write(pack_);
}

bool TrainStream::WriteBatches(absl::Span<const v1::Minibatch* const> batches) {
  if (batches.size() == 1) return Write(*batches[0]);
  NextMessage();
  pack_.mutable_batches()->Reserve(static_cast<int>(batches.size()));
  for (const v1::Minibatch* batch : batches) *pack_.add_batches() = *batch;
  return stream_->Write(pack_);
}

bool TrainStream::Read(v1::TrainResponse* response) {
  return stream_->Read(response);
}

bool TrainStream::WritesDone() {
  if (first_) {  // no minibatch at all: still open the session properly
    first_ = false;
    if (!stream_->Write(first_message_)) return false;
  }
  return stream_->WritesDone();
}

absl::Status TrainStream::Finish() {
  finished_ = true;
  return FromGrpc(stream_->Finish());
}

void TrainStream::Cancel() { ctx_->TryCancel(); }

// What the user's threads and the session's driver thread share.
struct TrainSession::State {
  // At most this many results wait for Read: beyond it the driver stops
  // reading the stream, and gRPC's flow control holds the server back.
  static constexpr size_t kMaxQueuedResults = 256;

  mutable absl::Mutex mu;
  // Minibatches not yet durable, from session index `first_index` on.
  // std::deque keeps references to its other elements valid across
  // push_back and pop_front, so a writer may send one without a copy.
  std::deque<v1::Minibatch> buffer ABSL_GUARDED_BY(mu);
  int64_t first_index ABSL_GUARDED_BY(mu) = 0;
  int64_t written ABSL_GUARDED_BY(mu) = 0;
  bool writes_done ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  // The current stream ended: its writer thread stops.
  bool stream_over ABSL_GUARDED_BY(mu) = false;
  TrainStream* current ABSL_GUARDED_BY(mu) = nullptr;
  std::deque<v1::TrainResponse> results ABSL_GUARDED_BY(mu);
  int64_t delivered_step ABSL_GUARDED_BY(mu) = 0;
  int64_t durable_step ABSL_GUARDED_BY(mu) = 0;
  int resumes ABSL_GUARDED_BY(mu) = 0;
  bool ended ABSL_GUARDED_BY(mu) = false;
  absl::Status final_status ABSL_GUARDED_BY(mu);
  std::thread driver;

  // Drops the minibatches the server has made durable.
  void TrimLocked(int64_t start_step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (!buffer.empty() && start_step + first_index + 1 <= durable_step) {
      buffer.pop_front();
      ++first_index;
    }
  }
};

namespace {

// Codes after which a new stream may succeed: the server restarted or
// went away (UNAVAILABLE), or the network's writer slot (or, with
// replicas, its lease) is still held by the previous stream's server,
// which has not yet seen it end or died holding it (ABORTED). A gRPC proxy
// (nginx) whose upstream replica dies mid-stream can only reset the
// stream, which gRPC reports as INTERNAL "Received RST_STREAM": that too
// is the transport failing, not the server refusing. Resuming is safe
// whatever the cause (the new stream starts at the network's step,
// expected_step), so the only cost of a wrong guess is a bounded number of
// retries. A deleted network answers NOT_FOUND at the next lookup and ends
// it. ABORTED counts only for a stream that resumes after such a failure:
// on the session's first stream it means another writer holds the
// network.
bool Retryable(const absl::Status& status, bool resuming) {
  return status.code() == absl::StatusCode::kUnavailable ||
         (status.code() == absl::StatusCode::kInternal &&
          absl::StrContains(status.message(), "RST_STREAM")) ||
         (resuming && status.code() == absl::StatusCode::kAborted);
}

}  // namespace

TrainSession::TrainSession(Client* client, std::string name,
                           TrainOptions options, int64_t start_step,
                           int64_t durable_step)
    : client_(client),
      name_(std::move(name)),
      options_(std::move(options)),
      start_step_(start_step),
      state_(std::make_unique<State>()) {
  {
    absl::MutexLock lock(&state_->mu);
    state_->delivered_step = start_step;
    state_->durable_step = durable_step;
  }
  state_->driver = std::thread([this] { Run(); });
}

TrainSession::~TrainSession() {
  Cancel();
  state_->driver.join();
}

bool TrainSession::Write(const v1::Minibatch& batch) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  const auto room = [&st, this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
    return st.ended || st.cancelled ||
           static_cast<int64_t>(st.buffer.size()) <
               options_.max_buffered_batches;
  };
  st.mu.Await(absl::Condition(&room));
  if (st.ended || st.cancelled || st.writes_done) return false;
  st.buffer.push_back(batch);
  ++st.written;
  return true;
}

void TrainSession::WritesDone() {
  absl::MutexLock lock(&state_->mu);
  state_->writes_done = true;
}

bool TrainSession::Read(v1::TrainResponse* response) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  const auto ready = [&st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
    return !st.results.empty() || st.ended;
  };
  st.mu.Await(absl::Condition(&ready));
  if (st.results.empty()) return false;
  *response = std::move(st.results.front());
  st.results.pop_front();
  return true;
}

absl::Status TrainSession::Finish() {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  const auto ended = [&st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
    return st.ended;
  };
  st.mu.Await(absl::Condition(&ended));
  return st.final_status;
}

void TrainSession::Cancel() {
  absl::MutexLock lock(&state_->mu);
  state_->cancelled = true;
  if (state_->current != nullptr) state_->current->Cancel();
}

int TrainSession::resumes() const {
  absl::MutexLock lock(&state_->mu);
  return state_->resumes;
}

int64_t TrainSession::durable_step() const {
  absl::MutexLock lock(&state_->mu);
  return state_->durable_step;
}

void TrainSession::Run() {
  State& st = *state_;
  const absl::Time deadline = options_.timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + options_.timeout;
  // The stream asks for commits at least as often as the buffer needs
  // them drained, and reports at least that often too: otherwise a full
  // buffer would wait for a commit that waits for more minibatches.
  const int half_buffer = options_.max_buffered_batches / 2;
  const int commit_every =
      options_.commit_every_steps > 0
          ? std::min(options_.commit_every_steps, half_buffer)
          : half_buffer;
  const int report_every =
      std::clamp(options_.report_every, 1, std::max(1, half_buffer));
  int64_t server_step = start_step_;
  int failures = 0;
  absl::Duration backoff = options_.initial_backoff;
  const auto finish = [&st](absl::Status status) {
    absl::MutexLock lock(&st.mu);
    st.final_status = std::move(status);
    st.ended = true;
    st.current = nullptr;
  };
  for (;;) {
    v1::TrainRequest first;
    first.set_name(name_);
    first.set_report_every(report_every);
    first.set_commit_every_steps(commit_every);
    first.set_commit_interval_ms(options_.commit_interval_ms);
    first.set_expected_step(server_step);
    const int64_t next = server_step - start_step_;
    const bool resuming = failures > 0;
    auto opened = client_->OpenTrainStream(
        std::move(first),
        std::max(deadline - absl::Now(), absl::ZeroDuration()));
    if (!opened.ok()) return finish(opened.status());
    TrainStream& stream = **opened;
    {
      absl::MutexLock lock(&st.mu);
      if (next < st.first_index || next > st.written) {
        st.final_status = absl::DataLossError(absl::StrCat(
            name_, " is at step ", server_step, ", but this session holds ",
            "the minibatches for steps ", start_step_ + st.first_index + 1,
            " to ", start_step_ + st.written,
            ": another writer changed it, or the server lost state it had "
            "reported durable"));
        st.ended = true;
        return;
      }
      st.stream_over = false;
      st.current = &stream;
      if (st.cancelled) stream.Cancel();
    }
    std::thread writer([&st, &stream, next, this] {
      // What is written and not yet sent goes out together, up to
      // batches_per_message: a writer ahead of the stream fills messages,
      // one that trickles sends each minibatch at once.
      const int64_t per_message = std::max(1, options_.batches_per_message);
      std::vector<const v1::Minibatch*> pack;
      for (int64_t i = next;; i += static_cast<int64_t>(pack.size())) {
        pack.clear();
        {
          absl::MutexLock lock(&st.mu);
          const auto can_send = [&st, i]()
                                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
                                      return st.stream_over || st.cancelled ||
                                             i < st.written || st.writes_done;
                                    };
          st.mu.Await(absl::Condition(&can_send));
          if (st.stream_over || st.cancelled) return;
          if (i == st.written) break;  // writes_done: all sent
          for (int64_t j = i; j < std::min(st.written, i + per_message); ++j) {
            pack.push_back(&st.buffer[static_cast<size_t>(j - st.first_index)]);
          }
        }
        // Safe outside the lock: minibatch i leaves the buffer only once it
        // is durable, which needs this write first (std::deque keeps
        // references across push_back).
        if (!stream.WriteBatches(pack)) return;
      }
      stream.WritesDone();
    });
    v1::TrainResponse response;
    while (stream.Read(&response)) {
      absl::MutexLock lock(&st.mu);
      const v1::StepResult& result = response.result();
      server_step = std::max(server_step, result.step());
      st.durable_step = std::max(st.durable_step, result.durable_step());
      st.TrimLocked(start_step_);
      failures = 0;
      backoff = options_.initial_backoff;
      if (result.step() <= st.delivered_step) continue;  // replayed
      st.delivered_step = result.step();
      const auto room = [&st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
        return st.cancelled || st.results.size() < State::kMaxQueuedResults;
      };
      st.mu.Await(absl::Condition(&room));
      st.results.push_back(std::move(response));
    }
    {
      absl::MutexLock lock(&st.mu);
      st.stream_over = true;
    }
    writer.join();
    absl::Status status = stream.Finish();
    bool cancelled;
    {
      absl::MutexLock lock(&st.mu);
      st.current = nullptr;
      cancelled = st.cancelled;
    }
    if (status.ok()) {
      int64_t written;
      {
        absl::MutexLock lock(&st.mu);
        written = st.written;
      }
      // A server that predates `batches` ignores that field and ends OK
      // with the packed minibatches unapplied: never report that as done.
      if (server_step != start_step_ + written) {
        status = absl::FailedPreconditionError(absl::StrCat(
            name_, " is at step ", server_step, " after the stream, expected ",
            start_step_ + written,
            ": the server skipped minibatches (one that predates several "
            "minibatches per message ignores them: set "
            "TrainOptions.batches_per_message to 1)"));
      }
      return finish(status);
    }
    // Wait, then learn where the server is; both retried on failure.
    for (;;) {
      if (cancelled || !Retryable(status, failures > 0 || resuming) ||
          ++failures > options_.max_resumes || absl::Now() >= deadline) {
        return finish(status);
      }
      {
        absl::MutexLock lock(&st.mu);
        const auto stop = [&st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
          return st.cancelled;
        };
        st.mu.AwaitWithTimeout(absl::Condition(&stop), backoff);
        cancelled = st.cancelled;
        if (cancelled) continue;
      }
      backoff = std::min(2 * backoff, options_.max_backoff);
      auto network = client_->GetNetwork(name_);
      if (!network.ok()) {
        status = network.status();
        continue;
      }
      server_step = network->step();
      absl::MutexLock lock(&st.mu);
      st.durable_step = std::max(st.durable_step, network->durable_step());
      st.TrimLocked(start_step_);
      ++st.resumes;
      break;
    }
  }
}

// Bytes per ImportNetworkRequest: the server's export chunk size, well
// under the server's 4 MiB per-message cap.
constexpr int64_t kImportChunkBytes = int64_t{1} << 20;

absl::Status Client::ExportNetwork(absl::string_view name, std::ostream& out,
                                   const TransferProgress& progress,
                                   absl::Duration timeout) {
  grpc::ClientContext ctx;
  Prepare(&ctx, timeout);
  v1::ExportNetworkRequest request;
  request.set_name(std::string(name));
  auto reader = stub_->ExportNetwork(&ctx, request);
  v1::ExportNetworkResponse chunk;
  int64_t done = 0;
  int64_t total = -1;
  absl::Status local;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != done ||
        (total >= 0 && chunk.total_bytes() != total)) {
      local = absl::DataLossError(absl::StrCat(
          "ExportNetwork: chunk at offset ", chunk.offset(), " of ",
          chunk.total_bytes(), " bytes, expected offset ", done));
      ctx.TryCancel();
      break;
    }
    total = chunk.total_bytes();
    out.write(chunk.data().data(),
              static_cast<std::streamsize>(chunk.data().size()));
    if (!out) {
      local =
          absl::UnavailableError("ExportNetwork: writing the output failed");
      ctx.TryCancel();
      break;
    }
    done += static_cast<int64_t>(chunk.data().size());
    if (progress) progress(done, total);
  }
  absl::Status status = FromGrpc(reader->Finish());
  if (!local.ok()) return local;
  if (!status.ok()) return status;
  if (total < 0 || done != total) {
    return absl::DataLossError(
        absl::StrCat("ExportNetwork: the stream ended after ", done, " of ",
                     total, " bytes"));
  }
  out.flush();
  if (!out)
    return absl::UnavailableError("ExportNetwork: writing the output failed");
  return absl::OkStatus();
}

absl::Status Client::ExportNetworkToFile(absl::string_view name,
                                         const std::string& path,
                                         const TransferProgress& progress,
                                         absl::Duration timeout) {
  const std::string tmp = path + ".tmp";
  absl::Status status;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::FailedPreconditionError(absl::StrCat("cannot write ", tmp));
    }
    status = ExportNetwork(name, out, progress, timeout);
    out.close();
    if (status.ok() && !out) {
      status = absl::UnavailableError(absl::StrCat("writing ", tmp, " failed"));
    }
  }
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::FailedPreconditionError(
        absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  if (!status.ok()) std::remove(tmp.c_str());
  return status;
}

absl::StatusOr<v1::Network> Client::ImportNetwork(
    std::istream& in, int64_t total_bytes, absl::string_view network_id,
    const TransferProgress& progress, absl::Duration timeout) {
  grpc::ClientContext ctx;
  Prepare(&ctx, timeout);
  v1::ImportNetworkResponse response;
  auto writer = stub_->ImportNetwork(&ctx, &response);
  v1::ImportNetworkRequest request;
  request.set_network_id(std::string(network_id));
  request.set_total_bytes(total_bytes);
  std::string buffer;
  int64_t done = 0;
  absl::Status local;
  // The first message carries the id and size (and, for tiny files, all
  // the data); the server refuses an oversized or duplicate import there.
  do {
    const int64_t n = std::min(kImportChunkBytes, total_bytes - done);
    buffer.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
    if (n > 0) {
      in.read(buffer.data(), static_cast<std::streamsize>(n));
      if (in.gcount() != n) {
        local = absl::InvalidArgumentError(
            absl::StrCat("ImportNetwork: the input ended after ",
                         done + in.gcount(), " of ", total_bytes, " bytes"));
        ctx.TryCancel();
        break;
      }
    }
    request.set_data(buffer);
    if (!writer->Write(request)) break;  // the server ended the call
    done += n;
    if (progress) progress(done, total_bytes);
    request.Clear();
  } while (done < total_bytes);
  writer->WritesDone();
  absl::Status status = FromGrpc(writer->Finish());
  if (!local.ok()) return local;
  if (!status.ok()) return status;
  return std::move(*response.mutable_network());
}

absl::StatusOr<v1::Network> Client::ImportNetworkFromFile(
    const std::string& path, absl::string_view network_id,
    const TransferProgress& progress, absl::Duration timeout) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const int64_t size = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  return ImportNetwork(in, size, network_id, progress, timeout);
}

absl::StatusOr<v1::Experiment> Client::GetExperiment(absl::string_view name) {
  v1::GetExperimentRequest request;
  request.set_name(std::string(name));
  auto response = Unary(&v1::TrainingService::Stub::GetExperiment, request);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_experiment());
}

absl::StatusOr<v1::ListExperimentsResponse> Client::ListExperiments(
    int page_size, absl::string_view page_token) {
  v1::ListExperimentsRequest request;
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  return Unary(&v1::TrainingService::Stub::ListExperiments, request);
}

absl::StatusOr<v1::TrainStepResponse> Client::TrainSteps(
    absl::string_view name, const std::vector<v1::Minibatch>& batches,
    absl::string_view request_id) {
  v1::TrainStepRequest request;
  request.set_name(std::string(name));
  request.mutable_batches()->Reserve(static_cast<int>(batches.size()));
  for (const v1::Minibatch& batch : batches) *request.add_batches() = batch;
  request.set_request_id(std::string(request_id));
  return Unary(&v1::TrainingService::Stub::TrainStep, request);
}

absl::Status Client::DeleteExperiment(absl::string_view name) {
  v1::DeleteExperimentRequest request;
  request.set_name(std::string(name));
  return Unary(&v1::TrainingService::Stub::DeleteExperiment, request).status();
}

}  // namespace satlab
