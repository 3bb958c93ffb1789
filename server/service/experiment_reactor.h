// Server side of RunExperiment.
#ifndef SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_
#define SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_

#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"

namespace satlab::service {

class TrainingServiceImpl;

// A reactor that validates `request`, runs the experiment on the service's
// executor and streams its epochs and summary; it deletes itself when done.
grpc::ServerWriteReactor<v1::RunExperimentResponse>* NewExperimentReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::RunExperimentRequest* request);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXPERIMENT_REACTOR_H_
