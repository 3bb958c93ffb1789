#include "server/service/experiment_reactor.h"

namespace satlab::service {
namespace {

// Answers UNIMPLEMENTED until the real reactor lands.
class Unimplemented final : public grpc::ServerWriteReactor<v1::RunExperimentResponse> {
 public:
  Unimplemented() {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not built yet"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::RunExperimentResponse>* NewExperimentReactor(
    TrainingServiceImpl*, grpc::CallbackServerContext*,
    const v1::RunExperimentRequest*) {
  return new Unimplemented();
}

}  // namespace satlab::service
