// Server side of WatchMetrics.
#ifndef SATLAB_SERVER_SERVICE_WATCH_REACTOR_H_
#define SATLAB_SERVER_SERVICE_WATCH_REACTOR_H_

#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"

namespace satlab::service {

class TrainingServiceImpl;

// A reactor that replays retained events matching `request`, then streams
// live ones; it deletes itself when done.
grpc::ServerWriteReactor<v1::WatchMetricsResponse>* NewWatchReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::WatchMetricsRequest* request);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_WATCH_REACTOR_H_
