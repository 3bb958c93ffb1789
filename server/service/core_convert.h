// Conversions between the wire (satlab.v1 messages) and the core's types
// (server/core/network_core.h). Engine-level conversions live in convert.h.
#ifndef SATLAB_SERVER_SERVICE_CORE_CONVERT_H_
#define SATLAB_SERVER_SERVICE_CORE_CONVERT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "satlab/v1/training_service.pb.h"
#include "server/core/network_core.h"

namespace satlab::service {

// Views of a minibatch's inputs and targets (`field`.inputs/.targets); the
// core checks shapes and values against the network. The views point into
// `batch`, which must outlive them.
absl::StatusOr<core::Batch> BatchOf(const v1::Minibatch& batch,
                                    absl::string_view field);

// The request id of a mutation (request_id: empty, or 1-128 printable
// ASCII characters; INVALID_ARGUMENT otherwise) and a fingerprint of the
// whole request, stable across processes (FNV-1a of its serialization) so
// that a retry after a restart is recognised. Points into `request_id`.
absl::StatusOr<core::RequestKey> RequestKeyOf(
    const std::string& request_id, const google::protobuf::Message& request);

// A network's resource fields (Get/List/Create/SetParameters).
void InfoToProto(const core::NetworkInfo& info, v1::Network* out);
// A step's result and the durable step after it (StepResult.durable_step).
void OutcomeToProto(const core::StepOutcome& outcome, v1::StepResult* out);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_CORE_CONVERT_H_
