// The one place where absl::Status becomes grpc::Status.
#ifndef SATLAB_SERVER_SERVICE_STATUS_H_
#define SATLAB_SERVER_SERVICE_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace satlab::service {

// absl and gRPC codes coincide numerically; messages longer than 4 KiB are
// truncated so a huge validation message cannot blow up a trailer.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_STATUS_H_
