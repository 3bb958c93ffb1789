// Conversions between satlab.v1 messages and engine types. The only place
// that knows both; every handler (unary and streaming) goes through it.
#ifndef SATLAB_SERVER_SERVICE_CONVERT_H_
#define SATLAB_SERVER_SERVICE_CONVERT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "satlab/v1/experiment.pb.h"
#include "satlab/v1/network.pb.h"
#include "satlab/v1/tensor.pb.h"
#include "server/core/tenant_scope.h"
#include "server/engine/experiment.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"

namespace satlab::service {

namespace pb = ::satlab::v1;

// Longest strings a client may send, in bytes (proto3 strings are UTF-8,
// which gRPC checks while decoding). Part of the API: the proto states each
// bound. Everything a request carries is copied at least once, and
// experiment strings into every retained metric event, so none is
// unbounded.
inline constexpr size_t kMaxNetworkIdBytes = 63;
// "networks/" and an id.
inline constexpr size_t kMaxNetworkNameBytes = 9 + kMaxNetworkIdBytes;
inline constexpr size_t kMaxDisplayNameBytes = 256;
inline constexpr size_t kMaxLabelBytes = 128;
// Entries of ComputeGradientsRequest.counterfactual_losses (one per loss).
inline constexpr int kMaxCounterfactualLosses = 3;

// INVALID_ARGUMENT "<field>: expected at most <max> bytes, got <size>" when
// `value` is longer than `max` bytes.
absl::Status CheckLength(absl::string_view value, size_t max,
                         absl::string_view field);

// A client string as error messages quote it: in quotes, non-printable
// bytes escaped, and cut after 64 bytes (then followed by its length).
std::string QuoteForError(absl::string_view value);

// `networks/{id}` -> id. INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<std::string> ParseNetworkName(absl::string_view name,
                                             absl::string_view field);
std::string NetworkName(absl::string_view id);

// Checks a client-chosen id: 1-63 of [a-z0-9-], starting with a letter.
absl::Status ValidateNetworkId(absl::string_view id);

// The caller's id (a network's or an experiment's), checked as
// ValidateNetworkId does, -> the stored id in the caller's scope
// (core::TenantScope). A configured admin may also name another tenant's
// resource as {tenant}.{id}. INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<std::string> StoredId(const core::TenantScope& scope,
                                     absl::string_view id,
                                     absl::string_view field);
// `networks/{id}` -> the stored id in the caller's scope (StoredId).
absl::StatusOr<std::string> ParseNetworkName(const core::TenantScope& scope,
                                             absl::string_view name,
                                             absl::string_view field);

// A List request's page (AIP-158): page_size 0..1000 (0: 50) and the page
// token, which is the last id of the previous page (a valid id, or empty).
// INVALID_ARGUMENT naming page_size or page_token otherwise.
struct PageRequest {
  std::string after;
  int size = 0;
};
absl::StatusOr<PageRequest> PageFromRequest(int32_t page_size,
                                            const std::string& page_token);
// The same page in the caller's scope: `after` is a stored id, and an empty
// token starts at the caller's first id.
absl::StatusOr<PageRequest> PageFromRequest(const core::TenantScope& scope,
                                            int32_t page_size,
                                            const std::string& page_token);

// Borrowed view over a rank-2 tensor's packed data (no copy). Checks rank,
// dims >= 1, exactly one of float/double values set, and that the count
// matches the shape; INVALID_ARGUMENT naming `field` otherwise. The view
// points into `tensor`, which must outlive it.
absl::StatusOr<engine::MatrixView> MatrixViewOf(const pb::Tensor& tensor,
                                                absl::string_view field);

// Copies a matrix into `out` with one bulk copy per tensor. With
// `as_vector`, the shape is [cols] (for biases, whose matrix is one row).
// RESOURCE_EXHAUSTED (and `out` empty) over 2^31 - 1 values, the most a
// repeated field holds.
absl::Status ToProto(const engine::AnyMatrix& matrix, bool as_vector,
                     pb::Tensor* out);

// Explicit parameters (SetParameters, INIT_SCHEME_EXPLICIT) into float64
// matrices: weights [fan_in, units], biases [units] or [1, units], each
// tensor's values matching its shape; fields named `field[i].weights`. The
// layer count, the shapes against the network and the values (finite,
// within float32) are checked by the engine, which receives them next
// (Network::SetParameters, ValidateSpec).
absl::StatusOr<std::vector<engine::LayerParams>> ParamsFromProto(
    const google::protobuf::RepeatedPtrField<pb::LayerParameters>& layers,
    absl::string_view field);

// Spec conversion with defaults (unset dtype -> float64, unset init ->
// uniform_fan_in, unset optimizer -> SGD lr 0.1, theta 0 -> 0.1). Unknown
// or UNSPECIFIED enums where one is required -> INVALID_ARGUMENT naming the
// field (`field` is the prefix, e.g. "network.spec").
absl::StatusOr<engine::NetworkSpec> SpecFromProto(const pb::NetworkSpec& spec,
                                                  absl::string_view field);
void SpecToProto(const engine::NetworkSpec& spec, pb::NetworkSpec* out);

// RunExperiment's spec with the same defaults, fields named "spec.*". The
// rules (shapes, pairs, ranges) are engine::ValidateExperiment's; this only
// converts (and bounds the strings every metric event carries).
absl::StatusOr<engine::ExperimentSpec> ExperimentFromProto(
    const pb::ExperimentSpec& spec);

absl::StatusOr<engine::Activation> ActivationFromProto(pb::Activation a,
                                                       absl::string_view field);
absl::StatusOr<engine::Loss> LossFromProto(pb::Loss l, absl::string_view field);
pb::Activation ActivationToProto(engine::Activation a);
pb::Loss LossToProto(engine::Loss l);
absl::StatusOr<engine::OptimizerSpec> OptimizerFromProto(
    const pb::Optimizer& optimizer, absl::string_view field);
absl::StatusOr<engine::DType> DTypeFromProto(pb::DType d,
                                             absl::string_view field);

void StatsToProto(const engine::SaturationStats& stats,
                  pb::SaturationStats* out);
void StepResultToProto(const engine::StepResult& result, pb::StepResult* out);

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_CONVERT_H_
