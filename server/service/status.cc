#include "server/service/status.h"

#include <string>

namespace satlab::service {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  constexpr size_t kMaxMessage = 4096;
  std::string message(status.message());
  if (message.size() > kMaxMessage) {
    message.resize(kMaxMessage);
    message += "... (truncated)";
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

}  // namespace satlab::service
