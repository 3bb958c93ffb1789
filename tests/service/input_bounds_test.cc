// Bounds on what a client sends (issue 10, items 9 and 13): strings that end
// up retained (experiment display names and labels) have a maximum length,
// long strings are not echoed back whole in errors, counterfactual losses
// are bounded, and errors name each field once.
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"

namespace satlab::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class InputBoundsTest : public ServiceTest {
 protected:
  v1::RunExperimentRequest Experiment(const std::string& display_name,
                                      const std::string& label) {
    v1::RunExperimentRequest request;
    v1::ExperimentSpec* spec = request.mutable_spec();
    spec->set_display_name(display_name);
    auto* data = spec->mutable_dataset()->mutable_builtin();
    data->set_kind(v1::DATASET_KIND_XOR);
    data->set_samples(4);
    data->set_single_output(true);
    v1::ExperimentVariant* variant = spec->add_variants();
    variant->set_label(label);
    variant->set_output_activation(v1::ACTIVATION_SIGMOID);
    variant->set_loss(v1::LOSS_BCE);
    spec->set_epochs(2);
    return request;
  }

  // Every experiment event retained for WatchMetrics replay.
  std::vector<v1::ExperimentProgress> RetainedExperimentEvents() {
    std::vector<v1::ExperimentProgress> events;
    v1::WatchMetricsRequest request;  // every network and experiment
    absl::Status status = client_->WatchMetrics(
        request,
        [&](const v1::WatchMetricsResponse& r) {
          if (r.event().has_experiment()) {
            events.push_back(r.event().experiment());
          }
          return !r.event().experiment().has_summary();
        },
        absl::Seconds(10));
    EXPECT_TRUE(status.ok() || absl::IsCancelled(status)) << status;
    return events;
  }
};

TEST_F(InputBoundsTest, Experiment_DisplayNameAndLabelAtLimit_Accepted) {
  const std::string name(256, 'n');
  const std::string label(128, 'l');
  std::vector<std::string> labels;
  auto summary = client_->RunExperiment(
      Experiment(name, label),
      [&](const v1::RunExperimentResponse& r) {
        if (r.has_epoch()) labels.push_back(r.epoch().label());
        return true;
      },
      absl::Seconds(30));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->variants(0).label(), label);
  ASSERT_FALSE(labels.empty());
  EXPECT_EQ(labels.front(), label);
  const auto events = RetainedExperimentEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().display_name(), name);
}

// Item 9: 1 MiB names were copied into every retained metric event.
TEST_F(InputBoundsTest, Experiment_DisplayNameOrLabelOverLimit_Rejected) {
  auto status = client_
                    ->RunExperiment(
                        Experiment(std::string(1 << 20, 'n'), "ok"),
                        [](const v1::RunExperimentResponse&) { return true; },
                        absl::Seconds(30))
                    .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("spec.display_name: expected at most 256 bytes, got "
                        "1048576"));
  status = client_
               ->RunExperiment(
                   Experiment("ok", std::string(129, 'l')),
                   [](const v1::RunExperimentResponse&) { return true; },
                   absl::Seconds(30))
               .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("spec.variants[0].label: expected at most 128 bytes, "
                        "got 129"));
  // Nothing of either run was published.
  v1::WatchMetricsRequest request;
  request.set_start_step(0);
  int events = 0;
  EXPECT_EQ(client_
                ->WatchMetrics(
                    request,
                    [&](const v1::WatchMetricsResponse&) {
                      ++events;
                      return true;
                    },
                    absl::Milliseconds(300))
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(events, 0);
}

TEST_F(InputBoundsTest, LongNamesAndTokens_QuotedShortInErrors) {
  const std::string huge(1 << 20, 'x');
  auto network = client_->GetNetwork("networks/" + huge);
  EXPECT_EQ(network.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(network.status().message(),
              HasSubstr("name: expected at most 72 bytes, got 1048585"));
  auto page = client_->ListNetworks(10, huge);
  EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(page.status().message(),
              HasSubstr("page_token: expected at most 63 bytes, got 1048576"));
  auto created = client_->CreateNetwork(NeuronSpec(), std::string(64, 'a'));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(),
              HasSubstr("network_id: expected an id of 1-63 characters"));
  EXPECT_THAT(created.status().message(), HasSubstr("got 64 characters"));
  // Within the bound, a malformed name is quoted, cut after 64 bytes.
  network = client_->GetNetwork(std::string(70, 'x'));
  EXPECT_EQ(network.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(network.status().message(),
              HasSubstr("\"" + std::string(64, 'x') + "...\" (70 bytes)"));
  // Control bytes are escaped, not passed through.
  network = client_->GetNetwork("bad\n\x01name");
  EXPECT_THAT(network.status().message(), HasSubstr("bad\\n\\x01name"));
}

TEST_F(InputBoundsTest, ComputeGradients_CounterfactualLosses_AtMostThree) {
  ASSERT_TRUE(client_->CreateNetwork(NeuronSpec(), "neuron").ok());
  v1::ComputeGradientsRequest request;
  request.set_name("networks/neuron");
  request.mutable_batch()->CopyFrom(MakeBatch(2, 1, 1, 0));
  for (int i = 0; i < 3; ++i) request.add_counterfactual_losses(v1::LOSS_BCE);
  auto response = client_->ComputeGradients(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->counterfactuals_size(), 3);
  request.add_counterfactual_losses(v1::LOSS_MSE);
  response = client_->ComputeGradients(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(),
              HasSubstr("counterfactual_losses: expected at most 3 entries, "
                        "got 4"));
}

// Item 13: Forward named the field twice ("inputs.inputs").
TEST_F(InputBoundsTest, Forward_BadInputs_FieldNamedOnce) {
  ASSERT_TRUE(
      client_->CreateNetwork(SmallSpec(2, 3, 1, v1::LOSS_MSE, 1), "net").ok());
  for (const v1::Tensor& inputs :
       {MakeTensor(1, 3, {0, 0, 0}),
        MakeTensor(1, 2, {0, std::numeric_limits<double>::quiet_NaN()})}) {
    v1::ForwardRequest request;
    request.set_name("networks/net");
    *request.mutable_inputs() = inputs;
    auto response = client_->Forward(request);
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(response.status().message(), HasSubstr("inputs: "));
    EXPECT_THAT(response.status().message(), Not(HasSubstr("inputs.inputs")));
  }
}

}  // namespace
}  // namespace satlab::testing
