#include "client/client.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
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

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  return grpc::CreateCustomChannel(options.target,
                                   grpc::InsecureChannelCredentials(), args);
}

void SetTimeout(grpc::ClientContext* ctx, absl::Duration timeout) {
  if (timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<TrainSession>> Client::StartTraining(
    absl::string_view name, const TrainOptions& options) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  Prepare(ctx.get(), options.timeout);
  auto stream = stub_->Train(ctx.get());
  if (stream == nullptr) {
    return absl::UnavailableError("could not open a Train stream");
  }
  return std::make_unique<TrainSession>(std::move(ctx), std::move(stream),
                                        std::string(name),
                                        options.report_every);
}

absl::StatusOr<v1::StepResult> Client::Train(
    absl::string_view name, const std::vector<v1::Minibatch>& batches,
    const TrainOptions& options,
    const std::function<void(const v1::TrainResponse&)>& on_result) {
  // The network's step count before we start: on resume, the server's step
  // count minus this says how many minibatches were applied.
  auto before = GetNetwork(name);
  if (!before.ok()) return before.status();
  const int64_t start_step = before->step();
  size_t next = 0;
  v1::StepResult last;
  for (int attempt = 0;; ++attempt) {
    auto session = StartTraining(name, options);
    if (!session.ok()) return session.status();
    TrainSession& s = **session;
    const size_t first = next;
    // Writing on its own thread lets results stream back while minibatches
    // are still going out; flow control paces both.
    std::thread writer([&s, &batches, first] {
      for (size_t i = first; i < batches.size(); ++i) {
        if (!s.Write(batches[i])) return;
      }
      s.WritesDone();
    });
    v1::TrainResponse response;
    while (s.Read(&response)) {
      last = response.result();
      if (on_result) on_result(response);
    }
    writer.join();
    absl::Status status = s.Finish();
    if (status.ok()) return last;
    if (status.code() != absl::StatusCode::kUnavailable ||
        attempt >= options.max_resumes) {
      return status;
    }
    auto now = GetNetwork(name);
    if (!now.ok()) return now.status();
    next = static_cast<size_t>(now->step() - start_step);
    if (next > batches.size()) {
      return absl::DataLossError(absl::StrCat(
          name, " advanced by ", next, " steps but only ", batches.size(),
          " minibatches were sent: another writer trained it meanwhile"));
    }
    if (next == batches.size()) return last;
  }
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

TrainSession::TrainSession(
    std::unique_ptr<grpc::ClientContext> ctx,
    std::unique_ptr<
        grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>
        stream,
    std::string name, int report_every)
    : ctx_(std::move(ctx)),
      stream_(std::move(stream)),
      name_(std::move(name)),
      report_every_(report_every) {}

TrainSession::~TrainSession() {
  if (!finished_) {
    ctx_->TryCancel();
    stream_->Finish().IgnoreError();
  }
}

bool TrainSession::Write(const v1::Minibatch& batch) {
  v1::TrainRequest request;
  if (first_) {
    request.set_name(name_);
    request.set_report_every(report_every_);
    first_ = false;
  }
  *request.mutable_batch() = batch;
  return stream_->Write(request);
}

bool TrainSession::Read(v1::TrainResponse* response) {
  return stream_->Read(response);
}

bool TrainSession::WritesDone() {
  if (first_) {  // no minibatch at all: still open the session properly
    v1::TrainRequest request;
    request.set_name(name_);
    request.set_report_every(report_every_);
    first_ = false;
    if (!stream_->Write(request)) return false;
  }
  return stream_->WritesDone();
}

absl::Status TrainSession::Finish() {
  finished_ = true;
  return FromGrpc(stream_->Finish());
}

void TrainSession::Cancel() { ctx_->TryCancel(); }

}  // namespace satlab
