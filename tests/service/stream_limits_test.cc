// Limits on streams and connections (issue 10, items 4 and 10): the Train
// idle timeout, the server-wide open-stream cap, the buffered-byte budget
// (flow control, not failure), and the per-connection stream limit and
// connection idle limit passed to gRPC.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

class StreamLimitsTest : public ServiceTest {
 protected:
  // Each test sets options_ and then calls Start() itself.
  void SetUp() override {}

  void StartWithStub() {
    Start();
    stub_ = v1::TrainingService::NewStub(NewChannel());
  }

  // A channel on its own connection (no subchannel shared with others).
  std::shared_ptr<grpc::Channel> NewChannel() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(server_->address(),
                                     grpc::InsecureChannelCredentials(), args);
  }

  absl::Status TrainStepWhenFree(const std::string& name,
                                 const v1::Minibatch& batch) {
    absl::Status status;
    for (int i = 0; i < 200; ++i) {
      status = client_->TrainStep(name, batch).status();
      if (status.code() != absl::StatusCode::kAborted) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return status;
  }

  // Polls until the server counts no open stream (OnDone runs a little
  // after the client sees the status).
  int OpenStreamsWhenSettled() {
    int open = -1;
    for (int i = 0; i < 200; ++i) {
      open = server_->service()->streams()->open_streams();
      if (open == 0) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return open;
  }

  // Polls until no buffered byte is counted: a stream returns its last
  // read's unused reservation after its reactor may already be
  // unregistered (train_reactor.cc, OnReadDone), so "no open stream" does
  // not yet mean "every byte returned". A leak still fails: it never
  // reaches zero.
  int64_t BufferedBytesWhenSettled() {
    int64_t bytes = -1;
    for (int i = 0; i < 200; ++i) {
      bytes = server_->service()->streams()->buffered_bytes();
      if (bytes == 0) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return bytes;
  }

  static std::chrono::system_clock::time_point In(int millis) {
    return std::chrono::system_clock::now() + std::chrono::milliseconds(millis);
  }

  std::unique_ptr<v1::TrainingService::Stub> stub_;
};

TEST_F(StreamLimitsTest, IdleTrainStream_DeadlineExceededAndSlotReleased) {
  options_.service.streams.idle_timeout = absl::Milliseconds(400);
  StartWithStub();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "idle").ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(In(20000));
  auto stream = stub_->Train(&ctx);
  v1::TrainRequest open;
  open.set_name("networks/idle");  // only the name: takes the writer slot
  ASSERT_TRUE(stream->Write(open));
  const absl::Time start = absl::Now();
  v1::TrainResponse response;
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status status = stream->Finish();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("--stream_idle_timeout_seconds"));
  EXPECT_THAT(status.error_message(), HasSubstr("networks/idle"));
  EXPECT_GE(took, absl::Milliseconds(350));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_TRUE(TrainStepWhenFree("networks/idle", MakeBatch(1, 1, 1, 0)).ok());
}

// Found by e2e.hostile: DeleteNetwork did not end an open Train stream on
// that network until its next message (or the idle timeout, 120 s), and
// the deleted network's memory stayed charged to the budget meanwhile.
TEST_F(StreamLimitsTest, DeleteNetwork_OpenTrainStreamAbortedAndMemoryFreed) {
  StartWithStub();
  const int64_t empty = server_->service()->memory_budget().used();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "doomed").ok());
  ASSERT_GT(server_->service()->memory_budget().used(), empty);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(20000));
  auto stream = stub_->Train(&ctx);
  v1::TrainRequest first;
  first.set_name("networks/doomed");
  *first.mutable_batch() = MakeBatch(1, 1, 1, 0);
  ASSERT_TRUE(stream->Write(first));
  v1::TrainResponse response;
  ASSERT_TRUE(stream->Read(&response));  // the stream holds the network
  ASSERT_TRUE(client_->DeleteNetwork("networks/doomed").ok());
  const absl::Time start = absl::Now();
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status status = stream->Finish();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("networks/doomed was deleted"));
  EXPECT_EQ(OpenStreamsWhenSettled(), 0);
  EXPECT_EQ(server_->service()->memory_budget().used(), empty);
}

TEST_F(StreamLimitsTest, IdleTimeout_ClockStopsWhileStepComputes) {
  options_.compute_threads = 1;
  options_.service.streams.idle_timeout = absl::Milliseconds(300);
  StartWithStub();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "slow").ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(In(20000));
  auto stream = stub_->Train(&ctx);
  auto gate = BlockExecutor();  // the step waits 1.2 s: not client idleness
  v1::TrainRequest request;
  request.set_name("networks/slow");
  *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
  ASSERT_TRUE(stream->Write(request));
  absl::SleepFor(absl::Milliseconds(1200));
  gate->Notify();
  v1::TrainResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.batches_applied(), 1);
  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_TRUE(stream->Finish().ok());
}

// A client that writes and never reads: once results fill the transport's
// window the server's write stalls, the stream stops reading, and the idle
// timeout ends it (cancelling the call, since a status could not get past
// the unread responses) and frees the writer slot.
TEST_F(StreamLimitsTest, StoppedReader_EndedAfterIdleTimeoutSlotReleased) {
  options_.service.train_stream_window = 1;
  options_.service.streams.idle_timeout = absl::Milliseconds(300);
  StartWithStub();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "unread").ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(In(60000));
  auto stream = stub_->Train(&ctx);
  std::atomic<int> written{0};
  std::thread writer([&] {
    v1::TrainRequest request;
    request.set_name("networks/unread");
    *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
    while (written.load() < 200000 && stream->Write(request)) ++written;
  });
  // The slot is held while the stream runs, then freed by the timeout.
  absl::Status status;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    status =
        client_->TrainStep("networks/unread", MakeBatch(1, 1, 1, 0)).status();
  } while (status.code() == absl::StatusCode::kAborted &&
           absl::Now() < give_up);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_GT(written.load(), 1);
  ctx.TryCancel();  // unblocks a Write the server no longer reads
  writer.join();
  EXPECT_NE(stream->Finish().error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(OpenStreamsWhenSettled(), 0);
}

// Deleting the network of a stream whose client stopped reading: the
// ABORTED status cannot pass the unread responses, so the idle timeout
// cancels the call; the stream never wedges and its memory is returned.
TEST_F(StreamLimitsTest,
       DeleteNetwork_StoppedReaderStreamEndsAfterIdleTimeout) {
  options_.service.train_stream_window = 1;
  options_.service.streams.idle_timeout = absl::Seconds(2);
  StartWithStub();
  const int64_t empty = server_->service()->memory_budget().used();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "unread").ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(In(60000));
  auto stream = stub_->Train(&ctx);
  std::atomic<int> written{0};
  std::thread writer([&] {
    v1::TrainRequest request;
    request.set_name("networks/unread");
    *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
    while (written.load() < 200000 && stream->Write(request)) ++written;
  });
  // Wait until the server's write stalls (it then stops reading, so the
  // client's writes stop too), then delete.
  for (int last = -1; written.load() != last;) {
    last = written.load();
    absl::SleepFor(absl::Milliseconds(300));
  }
  ASSERT_TRUE(client_->DeleteNetwork("networks/unread").ok());
  int open = -1;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(15);
       absl::Now() < give_up; absl::SleepFor(absl::Milliseconds(20))) {
    open = server_->service()->streams()->open_streams();
    if (open == 0) break;
  }
  EXPECT_EQ(open, 0) << "the stream wedged behind its unread responses";
  ctx.TryCancel();  // unblocks a Write the server no longer reads
  writer.join();
  EXPECT_NE(stream->Finish().error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(BufferedBytesWhenSettled(), 0);
  EXPECT_EQ(server_->service()->memory_budget().used(), empty);
}

TEST_F(StreamLimitsTest, OpenStreamCap_TrainWatchExperimentRefused) {
  options_.service.streams.max_open_streams = 2;
  StartWithStub();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "n1").ok());
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "n2").ok());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainResponse>>>
      open;
  for (const char* name : {"networks/n1", "networks/n2"}) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    open.push_back(stub_->Train(contexts.back().get()));
    v1::TrainRequest request;
    request.set_name(name);
    *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
    ASSERT_TRUE(open.back()->Write(request));
    v1::TrainResponse response;
    ASSERT_TRUE(open.back()->Read(&response));  // the stream is open now
  }
  {
    grpc::ClientContext ctx;
    auto third = stub_->Train(&ctx);
    v1::TrainResponse response;
    EXPECT_FALSE(third->Read(&response));
    const grpc::Status status = third->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(), HasSubstr("--max_open_streams=2"));
  }
  {
    grpc::ClientContext ctx;
    v1::WatchMetricsRequest request;
    auto watch = stub_->WatchMetrics(&ctx, request);
    v1::WatchMetricsResponse response;
    EXPECT_FALSE(watch->Read(&response));
    EXPECT_EQ(watch->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {
    grpc::ClientContext ctx;
    v1::RunExperimentRequest request;
    auto experiment = stub_->RunExperiment(&ctx, request);
    v1::RunExperimentResponse response;
    EXPECT_FALSE(experiment->Read(&response));
    EXPECT_EQ(experiment->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  for (auto& stream : open) {
    stream->WritesDone();
    v1::TrainResponse response;
    while (stream->Read(&response)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(OpenStreamsWhenSettled(), 0);
  // Room again.
  auto last = client_->Train("networks/n1", {MakeBatch(1, 1, 1, 0)},
                             TrainOptions{}, nullptr);
  EXPECT_TRUE(last.ok()) << last.status();
}

// Four streams write 8 minibatches of ~100 KB each while the only compute
// thread is blocked: the budget (256 KiB a stream, 512 KiB in all) holds
// them back through flow control; nothing fails, and once the thread is
// free every minibatch is applied.
TEST_F(StreamLimitsTest, BufferedBytes_BoundedByBudgetThenAllApplied) {
  options_.compute_threads = 1;
  options_.service.train_stream_window = 64;  // only the bytes limit binds
  options_.service.streams.max_stream_buffered_bytes = 256 << 10;
  options_.service.streams.max_buffered_bytes = 512 << 10;
  StartWithStub();
  constexpr int kStreams = 4;
  constexpr int kBatches = 8;
  const v1::Minibatch batch = MakeBatch(1000, 12, 1, 0);
  const int64_t message = static_cast<int64_t>(batch.ByteSizeLong());
  for (int s = 0; s < kStreams; ++s) {
    ASSERT_TRUE(client_
                    ->CreateNetwork(SmallSpec(12, 4, 1, v1::LOSS_MSE, 1),
                                    "bytes" + std::to_string(s))
                    .ok());
  }
  auto gate = BlockExecutor();
  std::vector<int64_t> applied(kStreams, -1);
  std::vector<grpc::Status> statuses(kStreams);
  std::vector<std::thread> writers;
  for (int s = 0; s < kStreams; ++s) {
    writers.emplace_back([&, s] {
      grpc::ClientContext ctx;
      ctx.set_deadline(In(60000));
      auto stream = stub_->Train(&ctx);
      for (int b = 0; b < kBatches; ++b) {
        v1::TrainRequest request;
        if (b == 0) request.set_name("networks/bytes" + std::to_string(s));
        *request.mutable_batch() = batch;
        if (!stream->Write(request)) break;
      }
      stream->WritesDone();
      v1::TrainResponse response;
      while (stream->Read(&response)) applied[s] = response.batches_applied();
      statuses[s] = stream->Finish();
    });
  }
  int64_t peak = 0;
  for (int i = 0; i < 50; ++i) {
    peak = std::max(peak, server_->service()->streams()->buffered_bytes());
    absl::SleepFor(absl::Milliseconds(10));
  }
  // Each stream may overshoot by the one message in flight when it stopped.
  EXPECT_GT(peak, 0);
  EXPECT_LE(peak, (512 << 10) + kStreams * message);
  EXPECT_LT(peak, int64_t{kStreams} * kBatches * message / 2);
  gate->Notify();
  for (auto& writer : writers) writer.join();
  for (int s = 0; s < kStreams; ++s) {
    EXPECT_TRUE(statuses[s].ok()) << statuses[s].error_message();
    EXPECT_EQ(applied[s], kBatches);
  }
  EXPECT_EQ(OpenStreamsWhenSettled(), 0);
  EXPECT_EQ(BufferedBytesWhenSettled(), 0);
}

TEST_F(StreamLimitsTest, PerConnectionStreamLimit_SecondCallWaits) {
  options_.max_streams_per_connection = 1;
  StartWithStub();
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "held").ok());
  grpc::ClientContext ctx;
  auto stream = stub_->Train(&ctx);
  v1::TrainRequest request;
  request.set_name("networks/held");
  *request.mutable_batch() = MakeBatch(1, 1, 1, 0);
  ASSERT_TRUE(stream->Write(request));
  v1::TrainResponse response;
  ASSERT_TRUE(stream->Read(&response));
  {
    // Same connection: the call waits for a free stream until its deadline.
    grpc::ClientContext unary;
    unary.set_deadline(In(300));
    v1::GetNetworkRequest get;
    get.set_name("networks/held");
    v1::GetNetworkResponse got;
    EXPECT_EQ(stub_->GetNetwork(&unary, get, &got).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    // Another connection is not affected.
    auto other = v1::TrainingService::NewStub(NewChannel());
    grpc::ClientContext unary;
    unary.set_deadline(In(5000));
    v1::GetNetworkRequest get;
    get.set_name("networks/held");
    v1::GetNetworkResponse got;
    EXPECT_TRUE(other->GetNetwork(&unary, get, &got).ok());
  }
  stream->WritesDone();
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(StreamLimitsTest, IdleConnection_ClosedByServer) {
  options_.max_connection_idle = absl::Milliseconds(300);
  Start();
  auto channel = NewChannel();
  auto stub = v1::TrainingService::NewStub(channel);
  grpc::ClientContext ctx;
  v1::ListNetworksRequest list;
  v1::ListNetworksResponse listed;
  ASSERT_TRUE(stub->ListNetworks(&ctx, list, &listed).ok());
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // After the server's GOAWAY the channel drops back to IDLE.
  grpc_connectivity_state state = GRPC_CHANNEL_READY;
  for (int i = 0; i < 100 && state == GRPC_CHANNEL_READY; ++i) {
    absl::SleepFor(absl::Milliseconds(30));
    state = channel->GetState(false);
  }
  EXPECT_NE(state, GRPC_CHANNEL_READY);
}

TEST(StreamLimitsOptionsTest, BadLimits_InvalidArgument) {
  service::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.service.streams.max_open_streams = 0;
  absl::Status status = service::Server::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("max_open_streams: expected >= 1"));
  options.service.streams.max_open_streams = 1;
  options.keepalive_time = absl::ZeroDuration();
  status = service::Server::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("keepalive_time: expected > 0"));
}

}  // namespace
}  // namespace satlab::testing
