// Several minibatches per TrainStep and per Train message (issue 15 item 4):
// a packed message is applied as consecutive steps, bitwise as if each
// minibatch came alone; a bad minibatch anywhere applies none of its
// message; the count and total rows are bounded; request ids still make a
// retry apply once.
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;

// 3-5-2 softmax/cce, tanh hidden, with optimizer state (SGD momentum or
// Adam), in `dtype`.
v1::NetworkSpec StatefulSpec(v1::DType dtype, bool adam) {
  v1::NetworkSpec spec = SmallSpec(3, 5, 2, v1::LOSS_CCE, 7, dtype);
  if (adam) {
    spec.mutable_optimizer()->mutable_adam()->set_learning_rate(0.01);
  }
  return spec;
}

// Minibatches of varying sizes (1 to 6 rows).
std::vector<v1::Minibatch> Batches(int n) {
  std::vector<v1::Minibatch> out;
  for (int i = 0; i < n; ++i) out.push_back(MakeBatch(1 + i % 6, 3, 2, i));
  return out;
}

// Every layer's weights and biases, serialized: equal strings are equal
// bits.
std::string ParamsOf(Client& client, const std::string& name) {
  auto params = client.GetParameters(name);
  EXPECT_TRUE(params.ok()) << params.status();
  return params.ok() ? params->SerializeAsString() : "";
}

struct Case {
  v1::DType dtype;
  bool adam;
};

class PackedStepsTest : public ServiceTest,
                        public ::testing::WithParamInterface<Case> {
 protected:
  void SetUp() override {
    Start();
    stub_ = v1::TrainingService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  std::string Create(const std::string& id) {
    auto net = client_->CreateNetwork(
        StatefulSpec(GetParam().dtype, GetParam().adam), id);
    EXPECT_TRUE(net.ok()) << net.status();
    return "networks/" + id;
  }

  // Runs `batches` through one Train stream, `sizes[k]` minibatches in the
  // k-th message (cycled), one response per step unless `report_every`;
  // returns the responses and the stream's status.
  grpc::Status Stream(const std::string& name,
                      const std::vector<v1::Minibatch>& batches,
                      const std::vector<int>& sizes, int report_every,
                      bool report_losses,
                      std::vector<v1::TrainResponse>* responses) {
    grpc::ClientContext ctx;
    auto stream = stub_->Train(&ctx);
    size_t next = 0;
    for (size_t k = 0; next < batches.size(); ++k) {
      v1::TrainRequest request;
      if (k == 0) {
        request.set_name(name);
        request.set_report_every(report_every);
        request.set_report_losses(report_losses);
        // Commits by step count only, the same in both runs.
        request.set_commit_interval_ms(1 << 30);
        request.set_commit_every_steps(5);
      }
      const size_t n = static_cast<size_t>(sizes[k % sizes.size()]);
      if (n == 0) {
        *request.mutable_batch() = batches[next++];
      } else {
        for (size_t i = 0; i < n && next < batches.size(); ++i) {
          *request.add_batches() = batches[next++];
        }
      }
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
    v1::TrainResponse response;
    while (stream->Read(&response)) responses->push_back(response);
    return stream->Finish();
  }

  std::unique_ptr<v1::TrainingService::Stub> stub_;
};

TEST_P(PackedStepsTest, Stream_PackedEqualsOnePerMessage_Bitwise) {
  const std::vector<v1::Minibatch> batches = Batches(40);
  const std::string alone = Create("alone");
  const std::string packed = Create("packed");
  const std::string mixed = Create("mixed");
  std::vector<v1::TrainResponse> one, many, both;
  ASSERT_TRUE(Stream(alone, batches, {0}, 1, false, &one).ok());
  // Packs of 1 (as `batches`), 3, 7 and 13: boundaries fall everywhere,
  // commits (every 5 steps) inside messages too.
  ASSERT_TRUE(Stream(packed, batches, {1, 3, 7, 13}, 1, false, &many).ok());
  // `batch` and packs in turn, large after small and back: the server
  // reads each message into a request that held an earlier one (cleared),
  // so anything left over would show as a step on wrong data or as both
  // fields set.
  ASSERT_TRUE(
      Stream(mixed, batches, {13, 0, 1, 0, 7, 3}, 1, false, &both).ok());
  ASSERT_EQ(one.size(), batches.size());
  ASSERT_EQ(many.size(), one.size());
  ASSERT_EQ(both.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].SerializeAsString(), many[i].SerializeAsString())
        << "response " << i << ":\n"
        << one[i].DebugString() << "\nvs\n"
        << many[i].DebugString();
    EXPECT_EQ(one[i].SerializeAsString(), both[i].SerializeAsString())
        << "response " << i << ":\n"
        << one[i].DebugString() << "\nvs\n"
        << both[i].DebugString();
  }
  EXPECT_EQ(ParamsOf(*client_, alone), ParamsOf(*client_, packed));
  EXPECT_EQ(ParamsOf(*client_, alone), ParamsOf(*client_, mixed));
}

TEST_P(PackedStepsTest, TrainStep_PackedEqualsOneCallEach_Bitwise) {
  const std::vector<v1::Minibatch> batches = Batches(12);
  const std::string alone = Create("alone");
  const std::string packed = Create("packed");
  std::vector<v1::StepResult> results;
  for (const v1::Minibatch& batch : batches) {
    auto r = client_->TrainStep(alone, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*r);
  }
  auto response = client_->TrainSteps(packed, batches);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->steps_applied(), 12);
  EXPECT_EQ(response->result().SerializeAsString(),
            results.back().SerializeAsString());
  ASSERT_EQ(response->losses_size(), 12);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(response->losses(i), results[static_cast<size_t>(i)].loss())
        << "step " << i;
  }
  EXPECT_EQ(ParamsOf(*client_, alone), ParamsOf(*client_, packed));
}

// A client that waits for each message's result before it sends the next
// gets it (nothing the server holds back waits for a message that will not
// come), and one that writes ahead gets every result, in order.
TEST_P(PackedStepsTest, Stream_LockStepAndWriteAhead_EveryResultInOrder) {
  const std::vector<v1::Minibatch> batches = Batches(24);
  const std::string name = Create("lockstep");
  grpc::ClientContext ctx;
  // A result held back for good would end the test here, not hang it.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub_->Train(&ctx);
  v1::TrainResponse response;
  for (int k = 0; k < 4; ++k) {  // lock step: 3 minibatches, then the result
    v1::TrainRequest request;
    if (k == 0) {
      request.set_name(name);
      request.set_report_every(3);  // one result per message
    }
    for (int i = 0; i < 3; ++i) *request.add_batches() = batches[3 * k + i];
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response)) << "message " << k;
    EXPECT_EQ(response.batches_applied(), 3 * (k + 1));
  }
  for (int k = 4; k < 8; ++k) {  // ahead: four messages, then the results
    v1::TrainRequest request;
    for (int i = 0; i < 3; ++i) *request.add_batches() = batches[3 * k + i];
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  for (int k = 4; k < 8; ++k) {
    ASSERT_TRUE(stream->Read(&response)) << "message " << k;
    EXPECT_EQ(response.batches_applied(), 3 * (k + 1));
    EXPECT_EQ(response.result().step(), 3 * (k + 1));
  }
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_TRUE(stream->Finish().ok());
}

std::string CaseName(const ::testing::TestParamInfo<Case>& param) {
  return std::string(param.param.dtype == v1::DTYPE_FLOAT32 ? "f32" : "f64") +
         (param.param.adam ? "_adam" : "_momentum");
}

INSTANTIATE_TEST_SUITE_P(DtypesAndOptimizers, PackedStepsTest,
                         ::testing::Values(Case{v1::DTYPE_FLOAT32, false},
                                           Case{v1::DTYPE_FLOAT64, false},
                                           Case{v1::DTYPE_FLOAT32, true},
                                           Case{v1::DTYPE_FLOAT64, true}),
                         CaseName);

class PackedLimitsTest : public PackedStepsTest {
 protected:
  void SetUp() override {
    options_.service.max_batches_per_message = 4;
    options_.service.limits.max_batch_rows = 10;
    PackedStepsTest::SetUp();
  }
};

// The mid-message failures, on a network that has stepped twice: each
// case's request must fail with `code` naming `expected` and leave it there.
TEST_P(PackedLimitsTest, TrainStep_BadOrOverLimitMessage_NothingApplied) {
  const std::string name = Create("n");
  ASSERT_TRUE(client_->TrainSteps(name, Batches(2)).ok());
  const std::string before = ParamsOf(*client_, name);
  std::vector<v1::Minibatch> wrong_columns = Batches(3);
  wrong_columns[1] = MakeBatch(2, 4, 2, 0);  // 4 inputs, the network has 3
  std::vector<v1::Minibatch> non_finite = Batches(3);
  non_finite[2].mutable_inputs()->set_double_values(0, std::nan(""));
  // A tensor whose values disagree with its shape: rejected by the
  // service's own check before the core sees it.
  std::vector<v1::Minibatch> malformed = Batches(3);
  malformed[1].mutable_targets()->add_double_values(0.5);
  struct Bad {
    std::vector<v1::Minibatch> batches;
    absl::StatusCode code;
    std::string expected;
  };
  const std::vector<Bad> cases = {
      {wrong_columns, absl::StatusCode::kInvalidArgument, "batches[1].inputs"},
      {non_finite, absl::StatusCode::kInvalidArgument, "batches[2].inputs"},
      {malformed, absl::StatusCode::kInvalidArgument, "batches[1].targets"},
      {Batches(5), absl::StatusCode::kResourceExhausted,
       "--max_batches_per_message"},
      // 4 + 5 + 6 = 15 rows > 10, each one alone within the limit.
      {{MakeBatch(4, 3, 2, 0), MakeBatch(5, 3, 2, 1), MakeBatch(6, 3, 2, 2)},
       absl::StatusCode::kResourceExhausted,
       "rows in all the minibatches"},
  };
  for (const Bad& bad : cases) {
    auto r = client_->TrainSteps(name, bad.batches);
    EXPECT_EQ(r.status().code(), bad.code) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(bad.expected));
    auto net = client_->GetNetwork(name);
    ASSERT_TRUE(net.ok());
    EXPECT_EQ(net->step(), 2) << bad.expected;
    EXPECT_EQ(ParamsOf(*client_, name), before) << bad.expected;
  }
  // Both forms at once.
  v1::TrainStepRequest both;
  both.set_name(name);
  *both.mutable_batch() = MakeBatch(1, 3, 2, 0);
  *both.add_batches() = MakeBatch(1, 3, 2, 1);
  v1::TrainStepResponse response;
  grpc::ClientContext ctx;
  const grpc::Status status = stub_->TrainStep(&ctx, both, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("batch, batches"));
  EXPECT_EQ(ParamsOf(*client_, name), before);
}

TEST_P(PackedLimitsTest, Stream_BadMinibatchMidMessage_EarlierMessagesOnly) {
  const std::string name = Create("n");
  std::vector<v1::Minibatch> batches = Batches(9);
  // Message 1: batches 0-2; message 2: 3-5 with 4 broken; message 3: 6-8.
  batches[4] = MakeBatch(2, 4, 2, 0);
  std::vector<v1::TrainResponse> responses;
  const grpc::Status status = Stream(name, batches, {3}, 1, false, &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("message 2 of this stream (its minibatches 4 to 6, "
                        "none applied)"));
  EXPECT_THAT(status.error_message(), HasSubstr("batches[1].inputs"));
  EXPECT_EQ(responses.size(), 3u);
  auto net = client_->GetNetwork(name);
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->step(), 3);
}

TEST_P(PackedLimitsTest, Stream_OverLimitMessage_ResourceExhausted) {
  const std::string name = Create("n");
  std::vector<v1::TrainResponse> responses;
  const grpc::Status status =
      Stream(name, Batches(5), {5}, 1, false, &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("--max_batches_per_message"));
  auto net = client_->GetNetwork(name);
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->step(), 0);
}

INSTANTIATE_TEST_SUITE_P(F64, PackedLimitsTest,
                         ::testing::Values(Case{v1::DTYPE_FLOAT64, true}));

class PackedRequestIdTest : public PackedStepsTest {};

TEST_P(PackedRequestIdTest, TrainStep_RetriedId_AppliedOnceSameResponse) {
  const std::string name = Create("n");
  const std::vector<v1::Minibatch> batches = Batches(5);
  auto first = client_->TrainSteps(name, batches, "retry-1");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string params = ParamsOf(*client_, name);
  auto again = client_->TrainSteps(name, batches, "retry-1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  EXPECT_EQ(ParamsOf(*client_, name), params);
  auto net = client_->GetNetwork(name);
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->step(), 5);
  // The id covers the whole request: other minibatches are another request.
  auto other = client_->TrainSteps(name, Batches(4), "retry-1");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("request_id"));
}

TEST_P(PackedRequestIdTest, Stream_ReportLosses_EveryStepsLossOnce) {
  const std::vector<v1::Minibatch> batches = Batches(18);
  const std::string alone = Create("alone");
  const std::string packed = Create("packed");
  std::vector<v1::TrainResponse> one, few;
  ASSERT_TRUE(Stream(alone, batches, {0}, 1, false, &one).ok());
  // Responses every 4 steps (and after the last, step 18), 8 per message.
  ASSERT_TRUE(Stream(packed, batches, {8}, 4, true, &few).ok());
  ASSERT_EQ(few.size(), 5u);
  std::vector<double> losses;
  for (const v1::TrainResponse& r : few) {
    ASSERT_GT(r.losses_size(), 0);
    EXPECT_EQ(r.losses(r.losses_size() - 1), r.result().loss());
    EXPECT_EQ(r.result().SerializeAsString(),
              one[static_cast<size_t>(r.batches_applied() - 1)]
                  .result()
                  .SerializeAsString());
    losses.insert(losses.end(), r.losses().begin(), r.losses().end());
  }
  ASSERT_EQ(losses.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(losses[i], one[i].result().loss()) << "step " << i;
  }
}

TEST_P(PackedRequestIdTest, Session_PackedEqualsOnePerMessage) {
  const std::vector<v1::Minibatch> batches = Batches(100);
  const std::string alone = Create("alone");
  const std::string packed = Create("packed");
  TrainOptions one;
  one.batches_per_message = 1;
  TrainOptions many;
  many.batches_per_message = 16;
  // Small buffer and commits: the session trims and packs at once.
  many.max_buffered_batches = 24;
  std::vector<int64_t> steps;
  auto a = client_->Train(alone, batches, one, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = client_->Train(packed, batches, many,
                          [&steps](const v1::TrainResponse& r) {
                            steps.push_back(r.result().step());
                          });
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->step(), 100);
  EXPECT_EQ(a->loss(), b->loss());
  // report_every 1: every step's result, in order, once.
  ASSERT_EQ(steps.size(), 100u);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i], static_cast<int64_t>(i) + 1);
  }
  EXPECT_EQ(ParamsOf(*client_, alone), ParamsOf(*client_, packed));
}

INSTANTIATE_TEST_SUITE_P(F32, PackedRequestIdTest,
                         ::testing::Values(Case{v1::DTYPE_FLOAT32, true}));

}  // namespace
}  // namespace satlab::testing
