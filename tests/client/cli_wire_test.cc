// The CLI against a crafted server (an in-process gRPC service on port 0
// that answers with malformed responses): every index taken from the wire
// is checked, so each command exits 1 with DATA_LOSS naming the field
// instead of reading out of bounds.
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "client/cli/app.h"
#include "client/cli/experiment_run.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace satlab::cli {
namespace {

using ::testing::HasSubstr;

// Answers every call it implements with a response whose shapes or indexes
// do not match the request.
class CraftedService final : public v1::TrainingService::Service {
 public:
  grpc::Status Forward(grpc::ServerContext*, const v1::ForwardRequest*,
                       v1::ForwardResponse* response) override {
    // Claims 3 x 2 outputs but carries one value.
    *response->mutable_outputs() = MakeTensor(3, 2, {0.5});
    return grpc::Status::OK;
  }

  grpc::Status ComputeGradients(
      grpc::ServerContext*, const v1::ComputeGradientsRequest*,
      v1::ComputeGradientsResponse* response) override {
    // Two layers for the own loss, none for the counterfactual.
    for (int l = 0; l < 2; ++l) {
      v1::LayerGradients* layer = response->mutable_gradients()->add_layers();
      *layer->mutable_weights() = MakeTensor(1, 1, {1});
      *layer->mutable_biases() = MakeVector({1});
    }
    *response->mutable_gradients()->mutable_output_delta() = MakeVector({1});
    *response->add_counterfactuals()->mutable_output_delta() = MakeVector({1});
    return grpc::Status::OK;
  }

  grpc::Status GetParameters(grpc::ServerContext*,
                             const v1::GetParametersRequest*,
                             v1::GetParametersResponse* response) override {
    v1::LayerParameters* layer = response->add_layers();
    *layer->mutable_weights() = MakeTensor(4, 4, {1, 2});
    *layer->mutable_biases() = MakeVector({1});
    return grpc::Status::OK;
  }

  grpc::Status RunExperiment(
      grpc::ServerContext*, const v1::RunExperimentRequest* request,
      grpc::ServerWriter<v1::RunExperimentResponse>* writer) override {
    // An epoch of a variant the spec does not have.
    v1::RunExperimentResponse message;
    message.mutable_epoch()->set_variant(request->spec().variants_size() + 5);
    message.mutable_epoch()->set_label("ghost");
    writer->Write(message);
    v1::RunExperimentResponse summary;
    summary.mutable_summary()->add_variants()->set_variant(0);
    writer->Write(summary);
    return grpc::Status::OK;
  }
};

class CliWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = "127.0.0.1:" + std::to_string(port);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // Runs `satlab --server ADDRESS --timeout 10 args...`; returns the exit
  // code and stderr.
  std::pair<int, std::string> Satlab(std::vector<std::string> args) {
    args.insert(args.begin(),
                {"satlab", "--server", address_, "--timeout", "10", "--quiet"});
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    const int code =
        RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
    return {code, err.str()};
  }

  CraftedService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(CliWireTest, ForwardOutputsShorterThanTheirShape_DataLoss) {
  const auto [code, err] = Satlab({"forward", "n", "--inputs", "1"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, HasSubstr("DATA_LOSS: outputs: shape [3, 2] does not "
                             "match its 1 values"));
}

TEST_F(CliWireTest, CounterfactualWithFewerLayers_DataLoss) {
  const auto [code, err] =
      Satlab({"grad", "n", "--inputs", "1", "--targets", "0"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, HasSubstr("DATA_LOSS: counterfactuals[0].layers: "
                             "expected 2 layers like gradients.layers, got 0"));
}

TEST_F(CliWireTest, ParametersShorterThanTheirShape_DataLoss) {
  const auto [code, err] = Satlab({"params", "get", "n"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, HasSubstr("DATA_LOSS: layers[0].weights: shape [4, 4] "
                             "does not match its 2 values"));
}

TEST_F(CliWireTest, ExperimentVariantOutOfRange_DataLossNotACrash) {
  Plan plan;
  plan.name = "crafted";
  cli::Run run;
  run.spec.add_variants()->set_label("mse");
  run.spec.add_variants()->set_label("bce");
  run.spec.set_epochs(1);
  plan.runs.push_back(run);
  ClientOptions options;
  options.target = address_;
  Client client(options);
  Context ctx{&client, /*json=*/false, /*progress=*/false};
  const auto result = RunPlan(ctx, plan, absl::Seconds(10), 0);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(result.status().message(),
              HasSubstr("epoch.variant: expected a variant in 0..1 (the spec "
                        "has 2), got 7"));
}

}  // namespace
}  // namespace satlab::cli
