#include "server/service/experiments.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/service/convert.h"
#include "server/service/training_service.h"

namespace satlab::service {
namespace {

using Scope = core::TenantScope;

// `experiments/{id}` -> the stored id in the caller's scope (StoredId: an
// admin may name {tenant}.{id}).
absl::StatusOr<std::string> ParseExperimentName(const Scope& who,
                                                absl::string_view name,
                                                absl::string_view field) {
  if (absl::Status s =
          CheckLength(name,
                      kExperimentPrefix.size() + kMaxNetworkIdBytes +
                          (who.names_tenants() ? 33 : 0),
                      field);
      !s.ok()) {
    return s;
  }
  absl::string_view id = name;
  if (!absl::ConsumePrefix(&id, kExperimentPrefix)) {
    return service::ParseExperimentName(name, field);  // its error
  }
  return StoredId(who, id, field);
}

// Experiments read per batch by the startup sweep.
constexpr int kSweepBatch = 100;

}  // namespace

absl::StatusOr<std::string> ParseExperimentName(absl::string_view name,
                                                absl::string_view field) {
  if (absl::Status s = CheckLength(
          name, kExperimentPrefix.size() + kMaxNetworkIdBytes, field);
      !s.ok()) {
    return s;
  }
  if (!absl::StartsWith(name, kExperimentPrefix) ||
      name.size() == kExperimentPrefix.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected experiments/{experiment_id}, got ",
                     QuoteForError(name)));
  }
  std::string id(name.substr(kExperimentPrefix.size()));
  if (absl::Status s = ValidateNetworkId(id); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", s.message()));
  }
  return id;
}

std::string ExperimentName(absl::string_view id) {
  return absl::StrCat(kExperimentPrefix, id);
}

store::ExperimentRecord RecordOf(const v1::Experiment& experiment) {
  store::ExperimentRecord record = ProgressRecordOf(experiment);
  record.spec = experiment.spec().SerializeAsString();
  return record;
}

store::ExperimentRecord ProgressRecordOf(const v1::Experiment& experiment) {
  store::ExperimentRecord record;
  absl::string_view id = experiment.name();
  absl::ConsumePrefix(&id, kExperimentPrefix);
  record.id = std::string(id);
  record.status = experiment.state();
  v1::Experiment body;
  *body.mutable_curves() = experiment.curves();
  body.set_error(experiment.error());
  body.set_curves_truncated(experiment.curves_truncated());
  body.set_epochs_total(experiment.epochs_total());
  record.curves = body.SerializeAsString();
  if (experiment.has_summary()) {
    record.summary = experiment.summary().SerializeAsString();
  }
  record.create_time =
      absl::FromUnixSeconds(experiment.create_time().seconds()) +
      absl::Nanoseconds(experiment.create_time().nanos());
  record.update_time =
      absl::FromUnixSeconds(experiment.update_time().seconds()) +
      absl::Nanoseconds(experiment.update_time().nanos());
  return record;
}

absl::StatusOr<v1::Experiment> ExperimentOf(const store::ExperimentRecord& r,
                                            bool with_curves) {
  v1::Experiment out;
  v1::Experiment body;
  if (!out.mutable_spec()->ParseFromString(r.spec) ||
      !body.ParseFromString(r.curves) ||
      (!r.summary.empty() &&
       !out.mutable_summary()->ParseFromString(r.summary))) {
    return absl::DataLossError(absl::StrCat(
        ExperimentName(r.id), ": the stored record does not parse"));
  }
  out.set_name(ExperimentName(r.id));
  out.set_state(static_cast<v1::ExperimentState>(r.status));
  TimeToProto(r.create_time, out.mutable_create_time());
  TimeToProto(r.update_time, out.mutable_update_time());
  if (with_curves) *out.mutable_curves() = std::move(*body.mutable_curves());
  out.set_error(body.error());
  out.set_curves_truncated(body.curves_truncated());
  out.set_epochs_total(body.epochs_total());
  return out;
}

absl::Status MarkInterruptedExperiments(store::ExperimentStore* store) {
  std::string after;
  while (true) {
    auto batch = store->ListExperiments(after, kSweepBatch);
    if (!batch.ok()) return batch.status();
    for (store::ExperimentRecord& record : *batch) {
      if (record.status != v1::EXPERIMENT_STATE_RUNNING) continue;
      auto experiment = ExperimentOf(record, /*with_curves=*/true);
      if (!experiment.ok()) return experiment.status();
      experiment->set_state(v1::EXPERIMENT_STATE_FAILED);
      experiment->set_error(
          "interrupted: the server stopped while it ran; run it again with "
          "the same experiment_id to start it over");
      TimeToProto(absl::Now(), experiment->mutable_update_time());
      if (absl::Status s =
              store->UpdateExperiment(ProgressRecordOf(*experiment));
          !s.ok()) {
        return s;
      }
    }
    if (static_cast<int>(batch->size()) < kSweepBatch) return absl::OkStatus();
    after = batch->back().id;
  }
}

absl::Status MarkOrphanedExperiments(store::ExperimentStore* store,
                                     absl::Duration ttl) {
  const absl::Time before = absl::Now() - 2 * ttl;
  std::string after;
  while (true) {
    auto batch = store->ListExperiments(after, kSweepBatch);
    if (!batch.ok()) return batch.status();
    for (store::ExperimentRecord& record : *batch) {
      if (record.status != v1::EXPERIMENT_STATE_RUNNING ||
          record.update_time > before) {
        continue;
      }
      auto units = store->ListExperimentUnits(record.id);
      if (!units.ok()) return units.status();
      if (!units->empty()) continue;  // the claims take care of it
      auto experiment = ExperimentOf(record, /*with_curves=*/true);
      if (!experiment.ok()) return experiment.status();
      experiment->set_state(v1::EXPERIMENT_STATE_FAILED);
      experiment->set_error(
          "interrupted: the server stopped while it ran, before experiments "
          "were claimed through the store; run it again with the same "
          "experiment_id to start it over");
      TimeToProto(absl::Now(), experiment->mutable_update_time());
      if (absl::Status s =
              store->UpdateExperiment(ProgressRecordOf(*experiment));
          !s.ok()) {
        return s;
      }
    }
    if (static_cast<int>(batch->size()) < kSweepBatch) return absl::OkStatus();
    after = batch->back().id;
  }
}

// --- The RPC handlers ---

grpc::ServerUnaryReactor* TrainingServiceImpl::GetExperiment(
    grpc::CallbackServerContext* ctx, const pb::GetExperimentRequest* request,
    pb::GetExperimentResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto id = ParseExperimentName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    auto record = experiments_->LoadExperiment(*id);
    if (!record.ok()) return record.status();
    auto experiment = ExperimentOf(*record, /*with_curves=*/true);
    if (!experiment.ok()) return experiment.status();
    experiment->set_name(ExperimentName(who.Shown(record->id)));
    const int64_t bytes = static_cast<int64_t>(experiment->ByteSizeLong());
    if (bytes > options_.max_message_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          request->name(), ": the experiment is ", bytes,
          " bytes, over the server's message limit of ",
          options_.max_message_bytes, " bytes (--max_message_bytes)"));
    }
    *response->mutable_experiment() = *std::move(experiment);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::ListExperiments(
    grpc::CallbackServerContext* ctx, const pb::ListExperimentsRequest* request,
    pb::ListExperimentsResponse* response) {
  return RunUnary(ctx, *request, [this, request, response](const Scope& who) {
    auto page_request =
        PageFromRequest(who, request->page_size(), request->page_token());
    if (!page_request.ok()) return page_request.status();
    const std::string& after = page_request->after;
    const int size = page_request->size;
    // One extra entry tells whether another page follows.
    auto page = experiments_->ListExperiments(after, size + 1);
    if (!page.ok()) return page.status();
    // The caller's experiments are the run of stored ids under its prefix.
    page->erase(std::find_if(page->begin(), page->end(),
                             [&](const store::ExperimentRecord& record) {
                               return !who.Sees(record.id);
                             }),
                page->end());
    const bool more = static_cast<int>(page->size()) > size;
    if (more) page->pop_back();
    for (const store::ExperimentRecord& record : *page) {
      auto experiment = ExperimentOf(record, /*with_curves=*/false);
      if (!experiment.ok()) return experiment.status();
      experiment->set_name(ExperimentName(who.Shown(record.id)));
      *response->add_experiments() = *std::move(experiment);
    }
    if (more) {
      response->set_next_page_token(std::string(who.Shown(page->back().id)));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingServiceImpl::DeleteExperiment(
    grpc::CallbackServerContext* ctx,
    const pb::DeleteExperimentRequest* request,
    pb::DeleteExperimentResponse* response) {
  return RunUnary(ctx, *request, [this, request](const Scope& who) {
    auto id = ParseExperimentName(who, request->name(), "name");
    if (!id.ok()) return id.status();
    absl::MutexLock lock(&experiment_claim_mu_);
    auto record = experiments_->LoadExperiment(*id);
    if (!record.ok()) return record.status();
    if (record->status == pb::EXPERIMENT_STATE_RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat(
          request->name(), " is running; cancel its RunExperiment call first"));
    }
    if (absl::Status s = experiments_->DeleteExperiment(*id); !s.ok()) {
      return s;
    }
    // Units an ended experiment left (a crash between its end and their
    // removal): best effort, the claims also drop them when found.
    (void)experiments_->DeleteExperimentUnits(*id);
    return absl::OkStatus();
  });
}

}  // namespace satlab::service
