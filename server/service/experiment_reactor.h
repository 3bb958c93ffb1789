// Server side of RunExperiment.
#ifndef SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_
#define SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"
#include "server/engine/datasets.h"
#include "server/engine/experiment.h"

namespace satlab::service {

class TrainingServiceImpl;

// A reactor that validates `request`, runs the experiment on the service's
// executor and streams its epochs and summary; it deletes itself when done.
grpc::ServerWriteReactor<v1::RunExperimentResponse>* NewExperimentReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::RunExperimentRequest* request);

// An experiment spec converted and validated for the engine (shared by the
// reactor and the replicas that run claimed variants, experiment_claims.h).
struct PreparedExperiment {
  engine::Dataset data;
  engine::ExperimentSpec spec;
  std::vector<std::string> labels;  // per variant
};
// INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming the spec's field.
absl::StatusOr<PreparedExperiment> PrepareExperiment(
    const v1::ExperimentSpec& spec, const engine::Limits& limits);

// One variant's epoch, and its summary, as the API shows them.
void RecordToProto(const engine::EpochRecord& record, absl::string_view label,
                   v1::EpochMetrics* out);
void VariantSummaryToProto(int variant, absl::string_view label,
                           const engine::VariantSummary& s,
                           v1::VariantSummary* out);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_
