// Server side of ExportNetwork and ImportNetwork: a network's state moved as
// the codec's portable encoding (docs/storage.md, "Export files"), streamed
// in chunks so no message is larger than kExportChunkBytes.
#ifndef SATLAB_SERVER_SERVICE_EXPORT_REACTOR_H_
#define SATLAB_SERVER_SERVICE_EXPORT_REACTOR_H_

#include <cstdint>

#include "grpcpp/grpcpp.h"
#include "satlab/v1/training_service.pb.h"

namespace satlab::service {

class TrainingServiceImpl;
struct ServiceOptions;

// Bytes of file data per ExportNetworkResponse.
inline constexpr int64_t kExportChunkBytes = int64_t{1} << 20;
// Largest `data` an ImportNetworkRequest may carry.
inline constexpr int64_t kMaxImportChunkBytes = int64_t{4} << 20;

// The largest export file an ImportNetwork accepts: the state of the
// largest network the server would create (its parameters within
// --max_parameters and within one --max_message_bytes message), with Adam's
// two moment slots, plus room for the frame, spec and tensor headers.
int64_t MaxImportBytes(const ServiceOptions& options);

// Each reactor deletes itself when done.
grpc::ServerWriteReactor<v1::ExportNetworkResponse>* NewExportReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::ExportNetworkRequest* request);
grpc::ServerReadReactor<v1::ImportNetworkRequest>* NewImportReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    v1::ImportNetworkResponse* response);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EXPORT_REACTOR_H_
