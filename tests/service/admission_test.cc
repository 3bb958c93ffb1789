// Admission control over gRPC (issue 10): per-call scratch and response
// size, the server-wide memory budget, stop checks reaching running
// compute, steps that commit all or nothing, and request_id retries.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;

// One hidden layer of `hidden` units (sigmoid) and one output.
v1::NetworkSpec WideSpec(int input, int hidden, v1::DType dtype) {
  v1::NetworkSpec spec;
  spec.set_input_size(input);
  auto* h = spec.add_layers();
  h->set_units(hidden);
  h->set_activation(v1::ACTIVATION_SIGMOID);
  auto* o = spec.add_layers();
  o->set_units(1);
  o->set_activation(v1::ACTIVATION_SIGMOID);
  spec.set_loss(v1::LOSS_MSE);
  spec.mutable_init()->set_scheme(v1::INIT_SCHEME_GLOROT_UNIFORM);
  spec.mutable_init()->set_seed(1);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.1);
  spec.set_dtype(dtype);
  return spec;
}

// A [rows, cols] float32 tensor of small values, built without the
// per-value overhead of MakeTensor.
v1::Tensor FloatTensor(int64_t rows, int64_t cols, float value) {
  v1::Tensor t;
  t.add_shape(rows);
  t.add_shape(cols);
  t.mutable_float_values()->Resize(static_cast<int>(rows * cols), value);
  return t;
}

class AdmissionTest : public ServiceTest {
 protected:
  void SetUp() override {}  // each test sets options_, then Start()

  void StartWith(int64_t memory_budget, int max_message_bytes = 64 << 20) {
    options_.service.memory_budget_bytes = memory_budget;
    options_.max_message_bytes = max_message_bytes;
    Start();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    stub_ = v1::TrainingService::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
  }

  void ExpectServing() {
    auto created = client_->CreateNetwork(NeuronSpec());
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_TRUE(
        client_->TrainStep(created->name(), MakeBatch(2, 1, 1, 0)).ok());
  }

  std::unique_ptr<v1::TrainingService::Stub> stub_;
};

// Found item 2: Forward with 10^6 rows through a 65536-unit layer asked for
// ~1 TB of scratch in one pass and aborted the process (std::bad_alloc on
// an executor thread). Now it runs in bounded chunks, and its deadline
// stops it between chunks.
TEST_F(AdmissionTest, Forward_MillionRowsWideLayer_BoundedAndStopsAtDeadline) {
  // 256 MiB: one 256-row block a chunk, so the stop check comes often
  // even in a sanitizer build.
  options_.service.limits.max_call_scratch_bytes = 256 << 20;
  StartWith(0);
  auto net = client_->CreateNetwork(WideSpec(1, 65536, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();
  v1::ForwardRequest request;
  request.set_name(net->name());
  *request.mutable_inputs() = FloatTensor(1'000'000, 1, 0.5f);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ForwardResponse response;
  const absl::Time start = absl::Now();
  const grpc::Status status = stub_->Forward(&ctx, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  // The server stops computing too: the next call is answered at once.
  ExpectServing();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Found item 2 (c): the per-layer output of that Forward (2 x 262 GB)
// cannot be sent; it is refused before computing, not wrapped.
TEST_F(AdmissionTest, Forward_IncludeLayersOverMessageLimit_RefusedFirst) {
  StartWith(0);
  auto net = client_->CreateNetwork(WideSpec(1, 65536, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();
  v1::ForwardRequest request;
  request.set_name(net->name());
  *request.mutable_inputs() = FloatTensor(1'000'000, 1, 0.5f);
  request.set_include_layers(true);
  auto result = client_->Forward(request);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(result.status().message(), HasSubstr("message limit"));
  EXPECT_THAT(result.status().message(), HasSubstr("include_layers"));
  ExpectServing();
}

// Found item 3: networks had no memory budget (fifteen 4000x10000 networks
// plus a step each exhausted the machine). With a budget, creation beyond
// it is RESOURCE_EXHAUSTED saying what was asked and what is left, and
// deleting a network gives its bytes back.
TEST_F(AdmissionTest, MemoryBudget_NetworksBeyondIt_RefusedUntilOneIsDeleted) {
  // 1000 -> 10000 -> 1 float32, plain SGD: 10,020,001 parameters = 40 MB,
  // charged twice: live, and its copy in the in-memory store.
  StartWith(200'000'000);
  const v1::NetworkSpec spec = WideSpec(1000, 10000, v1::DTYPE_FLOAT32);
  std::vector<std::string> names;
  for (int i = 0; i < 2; ++i) {
    auto net = client_->CreateNetwork(spec);
    ASSERT_TRUE(net.ok()) << net.status();
    names.push_back(net->name());
  }
  auto third = client_->CreateNetwork(spec);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("needs 80160008 bytes"));
  EXPECT_THAT(third.status().message(), HasSubstr("are left"));
  EXPECT_THAT(third.status().message(), HasSubstr("200000000"));
  auto list = client_->ListNetworks(10);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->networks_size(), 2);  // nothing half-created

  ASSERT_TRUE(client_->DeleteNetwork(names[0]).ok());
  EXPECT_TRUE(client_->CreateNetwork(spec).ok());
  EXPECT_LE(server_->service()->memory_budget().used(), 200'000'000);
}

// A Forward whose one-pass scratch exceeds what the budget has left runs in
// smaller chunks (down to one block) instead of being refused, with the
// same outputs.
TEST_F(AdmissionTest, MemoryBudget_TightForward_RunsInSmallerChunks) {
  // 1 -> 8192 -> 1 float32: 4096 rows need 268 MB in one pass, one
  // 256-row block 16.8 MB; the budget is 64 MiB.
  StartWith(64 << 20);
  auto net = client_->CreateNetwork(WideSpec(1, 8192, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();
  v1::ForwardRequest request;
  request.set_name(net->name());
  *request.mutable_inputs() = FloatTensor(4096, 1, 0.25f);
  auto result = client_->Forward(request);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->outputs().float_values_size(), 4096);
  // The first 256-row block comes out bitwise as a 256-row request.
  *request.mutable_inputs() = FloatTensor(256, 1, 0.25f);
  auto first_block = client_->Forward(request);
  ASSERT_TRUE(first_block.ok()) << first_block.status();
  for (int i = 0; i < 256; ++i) {
    ASSERT_EQ(result->outputs().float_values(i),
              first_block->outputs().float_values(i))
        << "row " << i;
  }
  // Only the network stays charged (twice: live and in the in-memory
  // store).
  EXPECT_EQ(server_->service()->memory_budget().used(),
            2 * int64_t{8192 * 3 + 1} * 4);
}

// Found by e2e.hostile: decoded requests waiting for a compute thread were
// counted by number only (--max_queued_calls), so 40 queued 64 MB Forwards
// held 2.5 GB under a 1 GiB budget and a memory-capped server aborted.
// Large requests are now charged from arrival until their call ends.
TEST_F(AdmissionTest, MemoryBudget_LargeRequestOverWhatIsLeft_Refused) {
  StartWith(4 << 20);
  auto net = client_->CreateNetwork(WideSpec(16, 1, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();
  const int64_t network_bytes = server_->service()->memory_budget().used();
  v1::ForwardRequest request;
  request.set_name(net->name());
  *request.mutable_inputs() = FloatTensor(100'000, 16, 0.5f);  // 6.4 MB
  auto refused = client_->Forward(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("ForwardRequest waiting for a compute thread"));
  // Under the charging threshold: never refused for its size.
  *request.mutable_inputs() = FloatTensor(1000, 16, 0.5f);  // 64,000 bytes
  EXPECT_TRUE(client_->Forward(request).ok());
  // 2.4 MB fits; its charge is returned when the call ends.
  *request.mutable_inputs() = FloatTensor(37'500, 16, 0.5f);
  auto fits = client_->Forward(request);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->outputs().float_values_size(), 37'500);
  for (int i = 0; i < 100; ++i) {
    if (server_->service()->memory_budget().used() == network_bytes) break;
    absl::SleepFor(absl::Milliseconds(10));  // Finish precedes the release
  }
  EXPECT_EQ(server_->service()->memory_budget().used(), network_bytes);
}

// A call's scratch is charged while it runs: a step that does not fit in
// what the networks leave is refused, and nothing changes.
TEST_F(AdmissionTest, MemoryBudget_StepScratchOverWhatIsLeft_Refused) {
  StartWith(20'000'000);
  auto net = client_->CreateNetwork(WideSpec(100, 4000, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();  // 1.6 MB
  // 1000 rows x (4 x 4001 + ...) floats = ~66 MB of scratch.
  auto step = client_->TrainStep(net->name(), MakeBatch(1000, 100, 1, 0));
  EXPECT_EQ(step.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(step.status().message(), HasSubstr("TrainStep needs"));
  auto got = client_->GetNetwork(net->name());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->step(), 0);
  EXPECT_TRUE(client_->TrainStep(net->name(), MakeBatch(10, 100, 1, 0)).ok());
}

// Found item 12: a network that could be created but not read. Now the
// parameter limit follows the message limit: a network whose parameters
// cannot fit in one GetParameters response is refused at creation, naming
// both limits, and every network that is created round-trips.
TEST_F(AdmissionTest, Parameters_OverMessageLimit_RefusedAtCreation) {
  StartWith(0, /*max_message_bytes=*/1 << 20);
  // 100 -> 2000 -> 1: 204,001 parameters; 1.6 MB in float64, 0.8 MB in
  // float32.
  auto too_big = client_->CreateNetwork(WideSpec(100, 2000, v1::DTYPE_FLOAT64));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_big.status().message(), HasSubstr("--max_message_bytes"));
  EXPECT_THAT(too_big.status().message(), HasSubstr("--max_parameters"));
  auto fits = client_->CreateNetwork(WideSpec(100, 2000, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(fits.ok()) << fits.status();
  auto params = client_->GetParameters(fits->name());
  ASSERT_TRUE(params.ok()) << params.status();
  v1::SetParametersRequest set;
  set.set_name(fits->name());
  *set.mutable_layers() = params->layers();
  EXPECT_TRUE(client_->SetParameters(set).ok());
}

// ComputeGradients' response (gradients per loss) is checked before
// computing.
TEST_F(AdmissionTest, ComputeGradients_ResponseOverMessageLimit_Refused) {
  StartWith(0, /*max_message_bytes=*/1 << 20);
  auto net = client_->CreateNetwork(WideSpec(100, 2000, v1::DTYPE_FLOAT32));
  ASSERT_TRUE(net.ok()) << net.status();
  v1::ComputeGradientsRequest request;
  request.set_name(net->name());
  *request.mutable_batch() = MakeBatch(4, 100, 1, 0);
  EXPECT_TRUE(client_->ComputeGradients(request).ok());
  request.add_counterfactual_losses(v1::LOSS_BCE);
  auto both = client_->ComputeGradients(request);
  EXPECT_EQ(both.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(both.status().message(), HasSubstr("counterfactual_losses"));
}

// Found item 8: a step whose deadline passed while it ran answered
// DEADLINE_EXCEEDED yet had been applied. Now the step checks right before
// it commits: the step count and parameters stay as they were.
TEST_F(AdmissionTest, TrainStep_DeadlinePassesWhileRunning_NothingApplied) {
  StartWith(0);
  // 500 -> 3000 -> 3000 -> 1 float32, 4096 rows: ~50 GFLOP, about a second
  // a step on two cores with AVX-512 BLAS (512 rows finished inside the
  // deadline there), so the deadline passes while it runs.
  v1::NetworkSpec spec = WideSpec(500, 3000, v1::DTYPE_FLOAT32);
  auto* extra = spec.add_layers();
  *extra = spec.layers(1);
  spec.mutable_layers(1)->set_units(3000);
  auto net = client_->CreateNetwork(spec);
  ASSERT_TRUE(net.ok()) << net.status();
  auto before = client_->GetParameters(net->name());
  ASSERT_TRUE(before.ok());
  v1::TrainStepRequest request;
  request.set_name(net->name());
  *request.mutable_batch() = MakeBatch(4096, 500, 1, 0);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(270));
  v1::TrainStepResponse response;
  const grpc::Status status = stub_->TrainStep(&ctx, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  // The server side stops at its next check; give it time to finish.
  absl::SleepFor(absl::Seconds(2));
  auto got = client_->GetNetwork(net->name());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->step(), 0);
  auto after = client_->GetParameters(net->name());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->SerializeAsString(), before->SerializeAsString());
}

// Item 8: a retried TrainStep with the same request_id is applied once and
// gets the first answer; the same id for another batch is refused.
TEST_F(AdmissionTest, TrainStep_RetryWithRequestId_AppliedOnce) {
  StartWith(0);
  auto net = client_->CreateNetwork(NeuronSpec());
  ASSERT_TRUE(net.ok());
  const v1::Minibatch batch = MakeBatch(2, 1, 1, 0);
  auto first = client_->TrainStep(net->name(), batch, "step-0001");
  ASSERT_TRUE(first.ok()) << first.status();
  auto retry = client_->TrainStep(net->name(), batch, "step-0001");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->SerializeAsString(), first->SerializeAsString());
  auto got = client_->GetNetwork(net->name());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->step(), 1);

  auto reused =
      client_->TrainStep(net->name(), MakeBatch(2, 1, 1, 1), "step-0001");
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reused.status().message(), HasSubstr("request_id"));
  auto next = client_->TrainStep(net->name(), batch, "step-0002");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->step(), 2);

  auto bad = client_->TrainStep(net->name(), batch, std::string(129, 'x'));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("request_id"));
}

TEST_F(AdmissionTest, SetParameters_RetryWithRequestId_AppliedOnce) {
  StartWith(0);
  auto net = client_->CreateNetwork(NeuronSpec());
  ASSERT_TRUE(net.ok());
  auto params = client_->GetParameters(net->name());
  ASSERT_TRUE(params.ok());
  v1::SetParametersRequest set;
  set.set_name(net->name());
  *set.mutable_layers() = params->layers();
  set.set_request_id("set-1");
  auto first = client_->SetParameters(set);
  ASSERT_TRUE(first.ok()) << first.status();
  // A step in between; the retry must not undo it.
  ASSERT_TRUE(client_->TrainStep(net->name(), MakeBatch(2, 1, 1, 0)).ok());
  auto stepped = client_->GetParameters(net->name());
  ASSERT_TRUE(stepped.ok());
  auto retry = client_->SetParameters(set);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->SerializeAsString(), first->SerializeAsString());
  auto now = client_->GetParameters(net->name());
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->SerializeAsString(), stepped->SerializeAsString());
  // Another network, or the same network recreated, does not see the id.
  ASSERT_TRUE(client_->DeleteNetwork(net->name()).ok());
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "recreated").ok());
  set.set_name("networks/recreated");
  auto fresh = client_->SetParameters(set);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
}

// Found item 2: RunExperiment with batch_size 0 trains on the whole
// dataset in one step; one whose step would need more scratch than a call
// may use is refused before it starts, naming the bound.
TEST_F(AdmissionTest, RunExperiment_FullBatchOverScratchBound_Refused) {
  options_.service.limits.max_call_scratch_bytes = 16 << 20;
  StartWith(0);
  v1::RunExperimentRequest request;
  v1::ExperimentSpec& spec = *request.mutable_spec();
  auto* data = spec.mutable_dataset()->mutable_builtin();
  data->set_kind(v1::DATASET_KIND_K_BLOBS);
  data->set_samples(100'000);
  data->set_classes(3);
  auto* layer = spec.add_hidden_layers();
  layer->set_units(2000);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  auto* variant = spec.add_variants();
  variant->set_output_activation(v1::ACTIVATION_SOFTMAX);
  variant->set_loss(v1::LOSS_CCE);
  spec.set_epochs(1);
  spec.set_batch_size(0);  // the whole dataset in one step
  int messages = 0;
  auto summary =
      client_->RunExperiment(request, [&](const v1::RunExperimentResponse&) {
        ++messages;
        return true;
      });
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kResourceExhausted)
      << summary.status();
  EXPECT_THAT(summary.status().message(), HasSubstr("spec.batch_size"));
  EXPECT_THAT(summary.status().message(), HasSubstr("16777216 bytes"));
  EXPECT_EQ(messages, 0);
  ExpectServing();
}

// Found item 6 (in process): shutdown stops running compute when the grace
// ends, instead of waiting for it (the e2e test checks the real binary).
TEST_F(AdmissionTest, Shutdown_LongEvaluate_StopsWithinGrace) {
  StartWith(0);
  auto net = client_->CreateNetwork(WideSpec(200, 4000, v1::DTYPE_FLOAT64));
  ASSERT_TRUE(net.ok()) << net.status();
  v1::EvaluateRequest request;
  request.set_name(net->name());
  *request.mutable_data() = MakeBatch(200'000, 200, 1, 0);
  grpc::ClientContext ctx;
  v1::EvaluateResponse response;
  grpc::Status status;
  bool done = false;
  absl::Mutex mu;
  stub_->async()->Evaluate(&ctx, &request, &response, [&](grpc::Status s) {
    absl::MutexLock lock(&mu);
    status = s;
    done = true;
  });
  absl::SleepFor(absl::Milliseconds(500));  // the Evaluate is running
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Milliseconds(500));
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(3));
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  EXPECT_TRUE(done);
  EXPECT_FALSE(status.ok());
}

}  // namespace
}  // namespace satlab::testing
