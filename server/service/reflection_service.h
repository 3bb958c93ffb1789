// gRPC server reflection (grpc.reflection.v1alpha.ServerReflection), our
// own implementation so that it can ask for a key like the rest of the API
// (issue 13; docs/security.md). gRPC's plugin answers anyone, so reflection
// used to be only on or off.
//
// Answers from protobuf's generated pool: list_services (the services the
// server registered), file_by_filename and file_containing_symbol (the file
// and its transitive dependencies, as gRPC's implementation sends them),
// file_containing_extension and all_extension_numbers_of_type; anything else
// gets an error_response. Each stream counts against the server's open
// stream limit and ends after StreamLimits::idle_timeout without a request.
#ifndef SATLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_
#define SATLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/service/stream_registry.h"
#include "server/service/tenancy.h"

namespace satlab::service {

// Who may use reflection (--reflection).
enum class ReflectionAccess {
  kOff,   // not registered: UNIMPLEMENTED
  kOpen,  // anyone
  kKey,   // the caller passes Tenancy::Admit like TrainingService calls
};

class ReflectionService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `services`: the full names list_services reports. `tenancy` (kKey only)
  // and `streams` must outlive the service.
  ReflectionService(std::vector<std::string> services, ReflectionAccess access,
                    Tenancy* tenancy, StreamRegistry* streams);

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* ctx) override;

  // The answer to one request (public for the reactor).
  grpc::reflection::v1alpha::ServerReflectionResponse Answer(
      const grpc::reflection::v1alpha::ServerReflectionRequest& request) const;

 private:
  const std::vector<std::string> services_;
  const ReflectionAccess access_;
  Tenancy* const tenancy_;
  StreamRegistry* const streams_;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_REFLECTION_SERVICE_H_
