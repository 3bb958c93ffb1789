// Conversions between the wire (satlab.v1 messages) and the core's types
// (server/core/network_core.h). Engine-level conversions live in convert.h.
#ifndef SATLAB_SERVER_SERVICE_CORE_CONVERT_H_
#define SATLAB_SERVER_SERVICE_CORE_CONVERT_H_

#include <cstdint>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "satlab/v1/training_service.pb.h"
#include "server/core/network_core.h"

namespace satlab::service {

// Views of a minibatch's inputs and targets (`field`.inputs/.targets, the
// names built only for an error); the core checks shapes and values against
// the network. The views point into `batch`, which must outlive them.
absl::StatusOr<core::Batch> BatchOf(const v1::Minibatch& batch,
                                    const engine::FieldPath& field);

// The minibatches of a request that carries one (`batch`, field "batch")
// or several (`batches`, fields "batches[i]"); views into the request.
// INVALID_ARGUMENT when both are set. A request with neither gives the
// (empty) `batch`, which the core rejects naming its fields. Sets
// `fields` to how errors name them.
using Batches = absl::InlinedVector<core::Batch, 1>;
absl::StatusOr<Batches> BatchesOf(
    bool has_batch, const v1::Minibatch& batch,
    const google::protobuf::RepeatedPtrField<v1::Minibatch>& batches,
    core::BatchFields* fields);
// The same for a TrainStepRequest or TrainRequest.
template <typename Request>
absl::StatusOr<Batches> BatchesOf(const Request& request,
                                  core::BatchFields* fields) {
  return BatchesOf(request.has_batch(), request.batch(), request.batches(),
                   fields);
}

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
// A TrainStep's response: the last step's result, the count and the
// losses of all.
void StepsToProto(const core::StepsOutcome& outcome,
                  v1::TrainStepResponse* out);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_CORE_CONVERT_H_
