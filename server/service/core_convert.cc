#include "server/service/core_convert.h"

#include "absl/strings/str_cat.h"
#include "server/service/convert.h"

namespace satlab::service {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;

absl::Status ValidateRequestId(absl::string_view id) {
  if (id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: expected at most ", kMaxRequestIdBytes,
                     " characters, got ", id.size()));
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "request_id: expected printable ASCII without spaces (e.g. a "
          "UUID), got other bytes");
    }
  }
  return absl::OkStatus();
}

// FNV-1a, 64 bits: the same in every process (absl::Hash is seeded per
// process, and request records outlive processes in a durable store).
uint64_t Fingerprint(const google::protobuf::Message& request) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : request.SerializeAsString()) {
    hash = (hash ^ c) * 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

absl::StatusOr<core::Batch> BatchOf(const v1::Minibatch& batch,
                                    const engine::FieldPath& field) {
  auto inputs = MatrixViewOf(batch.inputs(), "inputs");
  auto targets = MatrixViewOf(batch.targets(), "targets");
  if (inputs.ok() && targets.ok()) return core::Batch{*inputs, *targets};
  // Checked again under the full name, built only now, for the message.
  if (!inputs.ok()) {
    return MatrixViewOf(batch.inputs(), field.Join("inputs")).status();
  }
  return MatrixViewOf(batch.targets(), field.Join("targets")).status();
}

absl::StatusOr<Batches> BatchesOf(
    bool has_batch, const v1::Minibatch& batch,
    const google::protobuf::RepeatedPtrField<v1::Minibatch>& batches,
    core::BatchFields* fields) {
  Batches out;
  if (batches.empty()) {
    *fields = core::BatchFields{"batch", false};
    auto one = BatchOf(batch, "batch");
    if (!one.ok()) return one.status();
    out.push_back(*one);
    return out;
  }
  *fields = core::BatchFields{"batches", true};
  if (has_batch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch, batches: expected one of them, got both (a minibatch in "
        "batch and ",
        batches.size(), " in batches)"));
  }
  out.reserve(static_cast<size_t>(batches.size()));
  for (int i = 0; i < batches.size(); ++i) {
    auto one = BatchOf(batches[i], fields->At(static_cast<size_t>(i)));
    if (!one.ok()) return one.status();
    out.push_back(*one);
  }
  return out;
}

absl::StatusOr<core::RequestKey> RequestKeyOf(
    const std::string& request_id, const google::protobuf::Message& request) {
  if (absl::Status s = ValidateRequestId(request_id); !s.ok()) return s;
  if (request_id.empty()) return core::RequestKey{};
  return core::RequestKey{request_id, Fingerprint(request)};
}

void InfoToProto(const core::NetworkInfo& info, v1::Network* out) {
  out->set_name(NetworkName(info.id));
  SpecToProto(info.spec, out->mutable_spec());
  TimeToProto(info.create_time, out->mutable_create_time());
  TimeToProto(info.update_time, out->mutable_update_time());
  out->set_step(info.step);
  out->set_samples_seen(info.samples_seen);
  out->set_parameter_count(info.parameter_count);
  out->set_durable_step(info.durable_step);
}

void OutcomeToProto(const core::StepOutcome& outcome, v1::StepResult* out) {
  StepResultToProto(outcome.result, out);
  out->set_durable_step(outcome.durable_step);
}

void StepsToProto(const core::StepsOutcome& outcome,
                  v1::TrainStepResponse* out) {
  // The core never returns an applied call without results.
  OutcomeToProto(
      core::StepOutcome{outcome.results.back(), outcome.durable_step},
      out->mutable_result());
  out->set_steps_applied(static_cast<int64_t>(outcome.results.size()));
  // Replaces what an earlier call wrote (the recorder of a request id
  // fills the same response first).
  out->clear_losses();
  out->mutable_losses()->Reserve(static_cast<int>(outcome.results.size()));
  for (const engine::StepResult& result : outcome.results) {
    out->add_losses(result.loss);
  }
}

}  // namespace satlab::service
