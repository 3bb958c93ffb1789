// The Train stream's reactor when a stream ends (bad message, switched
// network name, cancel, deadline) while one of its steps waits in the
// executor's queue (issue 10, item 1: the queued step used to read a deque
// the ending stream had just cleared, and the server crashed).
//
// The executor is held busy by a task that waits for a notification, so a
// stream's step is queued for as long as the test wants, without timing.
#include <chrono>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;

class TrainReactorTest : public ServiceTest {
 protected:
  void SetUp() override {
    options_.compute_threads = 1;
    Start();
    stub_ = v1::TrainingService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
    ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "a").ok());
    ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "b").ok());
  }

  // The step of network `id` (GetNetwork runs on the executor too, so only
  // call this with the executor free).
  int64_t StepOf(const std::string& id) {
    auto network = client_->GetNetwork("networks/" + id);
    EXPECT_TRUE(network.ok()) << network.status();
    return network.ok() ? network->step() : -1;
  }

  // Polls until a TrainStep on `id` is accepted: the stream that held the
  // writer slot has released it.
  absl::Status TrainStepWhenFree(const std::string& id) {
    absl::Status status;
    for (int i = 0; i < 100; ++i) {
      status =
          client_->TrainStep("networks/" + id, MakeBatch(1, 1, 1, 0)).status();
      if (status.code() != absl::StatusCode::kAborted) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return status;
  }

  static v1::TrainRequest Named(const std::string& id) {
    v1::TrainRequest request;
    request.set_name("networks/" + id);
    *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
    return request;
  }

  std::unique_ptr<v1::TrainingService::Stub> stub_;
};

TEST_F(TrainReactorTest, SwitchedNameWhileStepQueued_InvalidArgumentNoCrash) {
  auto gate = BlockExecutor();
  grpc::ClientContext ctx;
  auto stream = stub_->Train(&ctx);
  ASSERT_TRUE(stream->Write(Named("a")));  // its step queues behind the gate
  ASSERT_TRUE(stream->Write(Named("b")));  // ends the stream
  stream->WritesDone();
  // Give the server time to read both messages while the step is queued.
  absl::SleepFor(absl::Milliseconds(200));
  gate->Notify();
  v1::TrainResponse response;
  while (stream->Read(&response)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("name:"));
  // The queued step of a stream that failed is not applied.
  EXPECT_EQ(StepOf("a"), 0);
  EXPECT_EQ(StepOf("b"), 0);
  EXPECT_TRUE(TrainStepWhenFree("a").ok());
}

TEST_F(TrainReactorTest, CancelWhileStepQueued_SlotReleasedNoCrash) {
  auto gate = BlockExecutor();
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Train(&ctx);
    ASSERT_TRUE(stream->Write(Named("b")));
    absl::SleepFor(absl::Milliseconds(200));
    ctx.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  absl::SleepFor(absl::Milliseconds(100));
  gate->Notify();
  EXPECT_TRUE(TrainStepWhenFree("b").ok());
  EXPECT_EQ(StepOf("b"), 1);  // only the TrainStep above
}

TEST_F(TrainReactorTest, DeadlineWhileStepQueued_SlotReleasedNoCrash) {
  auto gate = BlockExecutor();
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(200));
    auto stream = stub_->Train(&ctx);
    ASSERT_TRUE(stream->Write(Named("b")));
    EXPECT_EQ(stream->Finish().error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  absl::SleepFor(absl::Milliseconds(100));
  gate->Notify();
  EXPECT_TRUE(TrainStepWhenFree("b").ok());
  EXPECT_EQ(StepOf("b"), 1);
}

TEST_F(TrainReactorTest, StoppedReaderCancelledWhileStepsQueued_NoCrash) {
  auto gate = BlockExecutor();
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Train(&ctx);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->Write(Named("b")));
    absl::SleepFor(absl::Milliseconds(200));
    ctx.TryCancel();  // never read a result
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  absl::SleepFor(absl::Milliseconds(100));
  gate->Notify();
  EXPECT_TRUE(TrainStepWhenFree("b").ok());
}

// The burst of issue 10 as a client sends it, many times: no executor gate,
// the two messages race the first step.
TEST_F(TrainReactorTest, SwitchedNameBurst_Repeated_AlwaysInvalidArgument) {
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext ctx;
    auto stream = stub_->Train(&ctx);
    grpc::WriteOptions corked;
    corked.set_buffer_hint();
    stream->Write(Named("a"), corked);
    stream->Write(Named("b"));
    stream->WritesDone();
    v1::TrainResponse response;
    while (stream->Read(&response)) {
    }
    ASSERT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "iteration " << i;
  }
  EXPECT_TRUE(TrainStepWhenFree("a").ok());
}

}  // namespace
}  // namespace satlab::testing
