// Shared by the experiment-claims tests (in-process and e2e): the
// experiment they run and the bitwise comparisons with a one-server run.
#ifndef SATLAB_TESTS_SERVICE_CLAIMS_TEST_UTIL_H_
#define SATLAB_TESTS_SERVICE_CLAIMS_TEST_UTIL_H_

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "satlab/v1/training_service.pb.h"

namespace satlab::testing {

// Four variants on k-blobs; at 2000 epochs a variant takes ~1 s here, so
// replicas polling every 50 ms share them.
inline v1::RunExperimentRequest Blobs(absl::string_view id, int epochs) {
  v1::RunExperimentRequest request;
  request.set_experiment_id(std::string(id));
  v1::ExperimentSpec& spec = *request.mutable_spec();
  spec.set_display_name("blobs");
  auto* data = spec.mutable_dataset()->mutable_builtin();
  data->set_kind(v1::DATASET_KIND_K_BLOBS);
  data->set_samples(400);
  data->set_seed(1);
  spec.mutable_init()->set_seed(3);
  auto* layer = spec.add_hidden_layers();
  layer->set_units(32);
  layer->set_activation(v1::ACTIVATION_SIGMOID);
  const std::pair<v1::Activation, v1::Loss> variants[] = {
      {v1::ACTIVATION_SOFTMAX, v1::LOSS_CCE},
      {v1::ACTIVATION_SIGMOID, v1::LOSS_MSE},
      {v1::ACTIVATION_SIGMOID, v1::LOSS_BCE},
      {v1::ACTIVATION_SOFTMAX, v1::LOSS_MSE}};
  for (const auto& [activation, loss] : variants) {
    auto* v = spec.add_variants();
    v->set_output_activation(activation);
    v->set_loss(loss);
  }
  spec.set_epochs(epochs);
  spec.set_batch_size(50);
  spec.mutable_optimizer()->mutable_sgd()->set_learning_rate(0.1);
  return request;
}

// Epochs in (variant, epoch) order, as the record keeps them.
inline std::vector<v1::EpochMetrics> Sorted(
    std::vector<v1::EpochMetrics> curves) {
  std::stable_sort(curves.begin(), curves.end(),
                   [](const v1::EpochMetrics& a, const v1::EpochMetrics& b) {
                     return std::make_pair(a.variant(), a.epoch()) <
                            std::make_pair(b.variant(), b.epoch());
                   });
  return curves;
}

// Every value bitwise equal (protobuf compares doubles exactly), but the
// wall time.
inline void ExpectSameResults(const v1::ExperimentSummary& a,
                              const v1::ExperimentSummary& b) {
  v1::ExperimentSummary x = a, y = b;
  x.clear_elapsed_seconds();
  y.clear_elapsed_seconds();
  EXPECT_TRUE(::google::protobuf::util::MessageDifferencer::Equals(x, y))
      << x.ShortDebugString() << "\nvs\n"
      << y.ShortDebugString();
}
inline void ExpectSameCurves(const std::vector<v1::EpochMetrics>& a,
                             const std::vector<v1::EpochMetrics>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(
        ::google::protobuf::util::MessageDifferencer::Equals(a[i], b[i]))
        << i << ": " << a[i].ShortDebugString() << " vs "
        << b[i].ShortDebugString();
  }
}

}  // namespace satlab::testing

#endif  // SATLAB_TESTS_SERVICE_CLAIMS_TEST_UTIL_H_
