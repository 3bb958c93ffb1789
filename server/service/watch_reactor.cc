#include "server/service/watch_reactor.h"

namespace satlab::service {
namespace {

// Answers UNIMPLEMENTED until the real reactor lands.
class Unimplemented final : public grpc::ServerWriteReactor<v1::WatchMetricsResponse> {
 public:
  Unimplemented() {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not built yet"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchMetricsResponse>* NewWatchReactor(
    TrainingServiceImpl*, grpc::CallbackServerContext*,
    const v1::WatchMetricsRequest*) {
  return new Unimplemented();
}

}  // namespace satlab::service
