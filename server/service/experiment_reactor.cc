// The server side of RunExperiment.
//
// The reactor owns an engine::ExperimentSchedule: the experiment as tasks
// (train a variant's next epoch; evaluate a trained epoch on a copy of the
// network). Up to `parallelism` workers (default: one per executor thread)
// run on the service's executor; a worker takes the next task, runs it,
// queues the records it completes for the client, and takes another. So
// the variants, and the evaluation of one variant's epochs, run in
// parallel on every compute thread; messages of different variants may
// interleave (each is tagged with its variant); each variant's own
// messages come in epoch order, and their values do not depend on the
// interleaving or the number of workers. The workers start while Setup
// writes the experiment's record (RUNNING); what they complete waits until
// it commits, so no epoch of an unrecorded experiment reaches the client.
//
// Fairness and flow control: a worker gives its thread back (resubmits
// itself) after ~kSliceTime of work, so other calls queued on the executor
// run in between; it parks while kWindow messages wait to be sent, and
// OnWriteDone wakes it. Cancellation (client cancel, deadline, broken
// stream) sets `cancelled_`, which the engine checks before every step; the
// call finishes once no worker is in flight.
#include "server/service/experiment_reactor.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/engine/datasets.h"
#include "server/engine/experiment.h"
#include "server/service/convert.h"
#include "server/service/experiment_claims.h"
#include "server/service/experiments.h"
#include "server/service/status.h"
#include "server/service/stream_registry.h"
#include "server/service/training_service.h"

namespace satlab::service {
namespace {

// Messages queued for the client before workers pause.
constexpr size_t kWindow = 256;
// Messages queued for the client before the claims thread (several
// replicas) stops handing it epochs until its next poll: larger than
// kWindow because it refills once a poll, not on every write; the
// coordinator holds the curves anyway, so this bounds a copy.
constexpr size_t kSpreadWindow = 16 * kWindow;
// Compute a worker does before giving its executor thread back.
constexpr absl::Duration kSliceTime = absl::Milliseconds(20);

absl::StatusOr<engine::DatasetKind> DatasetKindFromProto(
    pb::DatasetKind kind, absl::string_view field) {
  switch (kind) {
    case pb::DATASET_KIND_SINGLE_SAMPLE:
      return engine::DatasetKind::kSingleSample;
    case pb::DATASET_KIND_XOR:
      return engine::DatasetKind::kXor;
    case pb::DATASET_KIND_CIRCLES:
      return engine::DatasetKind::kCircles;
    case pb::DATASET_KIND_SPIRALS:
      return engine::DatasetKind::kSpirals;
    case pb::DATASET_KIND_GAUSSIAN_BLOBS:
      return engine::DatasetKind::kGaussianBlobs;
    case pb::DATASET_KIND_K_BLOBS:
      return engine::DatasetKind::kKBlobs;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": expected a satlab.v1.DatasetKind, got ",
          static_cast<int>(kind),
          kind == pb::DATASET_KIND_UNSPECIFIED ? " (unspecified)"
                                               : " (unknown value)"));
  }
}

// Matrix of a client-supplied tensor, float64.
absl::StatusOr<engine::RowMatrix<double>> CopyMatrix(const pb::Tensor& tensor,
                                                     absl::string_view field) {
  auto view = MatrixViewOf(tensor, field);
  if (!view.ok()) return view.status();
  if (view->f64 != nullptr) {
    return engine::RowMatrix<double>(
        Eigen::Map<const engine::RowMatrix<double>>(view->f64, view->rows,
                                                    view->cols));
  }
  return Eigen::Map<const engine::RowMatrix<float>>(view->f32, view->rows,
                                                    view->cols)
      .cast<double>();
}

absl::StatusOr<engine::Dataset> DatasetFromProto(
    const pb::Dataset& dataset, const engine::ExperimentLimits& limits,
    std::string* field) {
  switch (dataset.source_case()) {
    case pb::Dataset::kBuiltin: {
      *field = "spec.dataset.builtin";
      const pb::BuiltinDataset& b = dataset.builtin();
      auto kind = DatasetKindFromProto(b.kind(), absl::StrCat(*field, ".kind"));
      if (!kind.ok()) return kind.status();
      engine::DatasetOptions options;
      options.kind = *kind;
      options.samples = b.samples() == 0 ? 200 : b.samples();
      options.noise = b.noise();
      options.classes = b.classes() == 0 ? 3 : b.classes();
      options.seed = b.seed();
      options.single_output = b.single_output();
      return engine::GenerateDataset(options, limits.max_samples, *field);
    }
    case pb::Dataset::kInline: {
      *field = "spec.dataset.inline";
      engine::Dataset data;
      auto inputs = CopyMatrix(dataset.inline_().inputs(),
                               absl::StrCat(*field, ".inputs"));
      if (!inputs.ok()) return inputs.status();
      auto targets = CopyMatrix(dataset.inline_().targets(),
                                absl::StrCat(*field, ".targets"));
      if (!targets.ok()) return targets.status();
      data.inputs = *std::move(inputs);
      data.targets = *std::move(targets);
      return data;
    }
    default:
      return absl::InvalidArgumentError(
          "spec.dataset: expected builtin or inline data, got neither");
  }
}

// The spec with its inline data's float tensors widened to double, as the
// data set is (CopyMatrix): the same values sent either way (the CLI sends
// float32 when every value is exact) are the same experiment. A copy only
// when there is something to widen.
const pb::ExperimentSpec& Widened(const pb::ExperimentSpec& spec,
                                  pb::ExperimentSpec* storage) {
  const auto& data = spec.dataset().inline_();
  if (!spec.dataset().has_inline_() ||
      (data.inputs().float_values_size() == 0 &&
       data.targets().float_values_size() == 0)) {
    return spec;
  }
  *storage = spec;
  auto* widened = storage->mutable_dataset()->mutable_inline_();
  for (pb::Tensor* t :
       {widened->mutable_inputs(), widened->mutable_targets()}) {
    if (t->float_values_size() == 0) continue;
    auto* values = t->mutable_double_values();
    values->Reserve(t->float_values_size());
    for (const float v : t->float_values()) values->AddAlreadyReserved(v);
    t->clear_float_values();
  }
  return *storage;
}

// Whether two specs define the same experiment: parallelism aside, which
// does not change the results, and float data compared as the doubles it
// becomes.
bool SameExperiment(const pb::ExperimentSpec& a, const pb::ExperimentSpec& b) {
  google::protobuf::util::MessageDifferencer differencer;
  differencer.IgnoreField(
      pb::ExperimentSpec::descriptor()->FindFieldByName("parallelism"));
  pb::ExperimentSpec a_storage, b_storage;
  return differencer.Compare(Widened(a, &a_storage), Widened(b, &b_storage));
}

std::string NewExperimentId() {
  static std::atomic<int64_t> counter{0};
  return absl::StrCat("exp-", absl::ToUnixMillis(absl::Now()), "-",
                      counter.fetch_add(1) + 1);
}

class ExperimentReactor final
    : public grpc::ServerWriteReactor<v1::RunExperimentResponse>,
      public StreamRegistry::Stream,
      public ExperimentSink {
 public:
  ExperimentReactor(TrainingServiceImpl* service,
                    grpc::CallbackServerContext* ctx,
                    const v1::RunExperimentRequest* request)
      : service_(service),
        ctx_(ctx),
        request_(request),
        start_(absl::Now()),
        admission_(service->AdmitStream(ctx, /*experiment=*/true)),
        experiment_id_(admission_.ok() ? admission_->scope.Stored(
                                             request->experiment_id().empty()
                                                 ? NewExperimentId()
                                                 : request->experiment_id())
                                       : std::string()),
        experiment_name_(ExperimentName(experiment_id_)),
        shown_name_(admission_.ok() ? ExperimentName(admission_->scope.Shown(
                                          experiment_id_))
                                    : std::string()),
        spec_proto_(&request->spec()) {
    // Not under mu_: the registry's lock comes before a stream's.
    absl::Status registered = admission_.ok()
                                  ? service_->streams()->Register(this)
                                  : admission_.status();
    absl::MutexLock lock(&mu_);
    if (!registered.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(registered));
      return;
    }
    registered_ = true;
    in_flight_ = 1;
    if (!service_->executor()->TrySubmit([this] { Setup(); })) {
      in_flight_ = 0;
      FinishWith(absl::ResourceExhaustedError(
          "the server's compute queue is full or shutting down; retry later"));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    unsent_.pop_front();
    if (!ok) {
      cancelled_.store(true);
      FinishWith(absl::CancelledError("the client stopped reading"));
      return;
    }
    MaybeWrite();
    WakeParked();
    MaybeFinish();
  }

  void OnCancel() override {
    cancelled_.store(true);
    absl::MutexLock lock(&mu_);
    FinishWith(absl::CancelledError(
        "the experiment was cancelled (by the client or its deadline)"));
  }

  void OnDone() override {
    // Finish() may have been called by a worker still holding mu_; wait for
    // it to let go before the memory goes away.
    absl::Status ended;
    bool coordinated;
    {
      absl::MutexLock lock(&mu_);
      coordinated = coordinated_;
      if (final_status_.has_value()) ended = *final_status_;
    }
    // The claims thread stops streaming here (and records a cancelled or
    // failed call's end) before the memory goes away.
    if (coordinated) {
      service_->experiment_claims()->Detach(experiment_id_, ended);
    }
    if (registered_) service_->streams()->Unregister(this);
    delete this;
  }

  // ExperimentSink: the claims thread streams the epochs of the variants
  // every replica runs, read from the store.
  bool Emit(const pb::EpochMetrics& epoch, int64_t epochs_done) override {
    absl::MutexLock lock(&mu_);
    if (final_status_.has_value() || unsent_.size() >= kSpreadWindow) {
      return false;
    }
    v1::RunExperimentResponse& response = unsent_.emplace_back();
    *response.mutable_epoch() = epoch;
    response.set_epochs_done(epochs_done);
    response.set_epochs_total(epochs_total_);
    response.set_experiment(shown_name_);
    epochs_done_ = epochs_done;
    ReportProgress(response);
    MaybeWrite();
    return true;
  }

  void Summary(const pb::ExperimentSummary& summary,
               int64_t epochs_done) override {
    absl::MutexLock lock(&mu_);
    recorded_final_ = true;  // by the coordinator
    if (final_status_.has_value()) return;
    v1::RunExperimentResponse& response = unsent_.emplace_back();
    *response.mutable_summary() = summary;
    response.set_epochs_done(epochs_done);
    response.set_epochs_total(epochs_total_);
    response.set_experiment(shown_name_);
    summary_queued_ = true;
    ReportProgress(response);
    MaybeWrite();
    MaybeFinish();
  }

  void End(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    recorded_final_ = true;  // by the coordinator, or not ours any more
    cancelled_.store(true);
    FinishWith(status);
  }

 private:
  // On the executor: converts and validates the request, draws the shared
  // initial parameters, starts the workers, records the experiment RUNNING.
  void Setup() {
    absl::Status status = Prepare();
    // One replica: the workers start before the record is written (for a
    // data set inline, writing its spec is the longest serial part of the
    // call: 3-9 ms for digits' 0.5 MB, mostly waiting on the disk), and
    // what they complete is held until it commits, so the client sees no
    // epoch of an experiment the store does not have.
    if (status.ok() && !replay_ && service_->experiment_claims() == nullptr) {
      bool started;
      {
        absl::MutexLock lock(&mu_);
        StartWorkers();
        started = !final_status_.has_value();  // e.g. the queue was full
      }
      if (started) status = Claim();
    }
    if (status.ok() && !replay_ && service_->experiment_claims() != nullptr) {
      pb::Experiment record;
      {
        absl::MutexLock lock(&mu_);
        record = record_;
        coordinated_ = true;
      }
      service_->experiment_claims()->Coordinate(
          record, experiment_id_, labels_, data_.inputs.rows(),
          static_cast<int>(data_.inputs.cols()),
          static_cast<int>(data_.targets.cols()), start_, this);
    }
    absl::MutexLock lock(&mu_);
    --in_flight_;
    if (!status.ok()) {
      cancelled_.store(true);  // workers may be running
      FinishWith(status);
      return;
    }
    if (final_status_.has_value()) {
      // Cancelled (or a task failed) while Setup claimed the id: record how
      // it ended.
      RecordEnd(*final_status_);
      MaybeFinish();
      return;
    }
    if (replay_) {
      QueueReplay();
      return;
    }
    if (coordinated_) return;  // the claims thread streams
    holding_ = false;
    for (const engine::EpochRecord& record : held_) Publish(record);
    held_.clear();
    if (schedule_->done() && !summary_queued_) PublishSummary();
    StartWorkers();
  }

  absl::Status Prepare() {
    if (cancelled_.load() || ctx_->IsCancelled()) {
      return absl::CancelledError("the experiment was cancelled");
    }
    if (absl::Status s = Lookup(); !s.ok() || replay_) return s;
    auto prepared = PrepareExperiment(*spec_proto_, service_->options().limits);
    if (!prepared.ok()) return prepared.status();
    data_ = std::move(prepared->data);
    spec_ = std::move(prepared->spec);
    labels_ = std::move(prepared->labels);
    const size_t variants = spec_.variants.size();
    if (service_->experiment_claims() != nullptr) {
      // Several replicas: the variants are claimed through the store
      // (experiment_claims.h); this call coordinates and streams.
      {
        absl::MutexLock lock(&mu_);
        epochs_total_ = static_cast<int64_t>(variants) * (spec_.epochs + 1);
      }
      return ClaimSpread();
    }
    auto initial = engine::SharedInitialParameters(spec_, data_,
                                                   service_->options().limits);
    if (!initial.ok()) return initial.status();
    // Workers: one per compute thread (or as asked), no more than there can
    // be tasks (a variant in training and one evaluation per variant).
    const int threads = service_->executor()->threads();
    const int parallelism =
        spec_proto_->parallelism() == 0 ? threads : spec_proto_->parallelism();
    const int workers =
        std::max(1, std::min<int>(parallelism, 2 * static_cast<int>(variants)));
    // One variant more than workers in flight, so that a worker finds a
    // variant to train while another trains and a third is evaluated; one
    // worker runs the variants one after the other.
    const int active =
        workers == 1 ? 1
                     : std::min<int>(workers + 1, static_cast<int>(variants));
    absl::MutexLock lock(&mu_);
    workers_target_ = workers;
    schedule_.emplace(&spec_, &data_, *std::move(initial),
                      service_->options().limits, active);
    summaries_.resize(variants);
    epochs_total_ = static_cast<int64_t>(variants) * (spec_.epochs + 1);
    return absl::OkStatus();
  }

  // What the store holds under the id: a finished experiment is replayed
  // (replay_), a failed or cancelled one runs again with its stored spec, a
  // running one is refused. Runs before validation, without mu_.
  absl::Status Lookup() {
    if (absl::Status s =
            StoredId(admission_->scope, admission_->scope.Shown(experiment_id_),
                     "experiment_id")
                .status();
        !s.ok()) {
      return s;
    }
    if (request_->experiment_id().empty()) return absl::OkStatus();
    auto found = service_->experiments()->LoadExperiment(experiment_id_);
    if (absl::IsNotFound(found.status())) return absl::OkStatus();
    if (!found.ok()) return found.status();
    auto stored = ExperimentOf(*found, /*with_curves=*/true);
    if (!stored.ok()) return stored.status();
    stored_ = *std::move(stored);
    if (request_->has_spec() &&
        !SameExperiment(request_->spec(), stored_.spec())) {
      return absl::AlreadyExistsError(absl::StrCat(
          experiment_name_,
          " exists with a different spec; choose another experiment_id, or "
          "send the same spec (or none) to re-attach"));
    }
    switch (stored_.state()) {
      case pb::EXPERIMENT_STATE_SUCCEEDED:
        replay_ = true;
        return absl::OkStatus();
      case pb::EXPERIMENT_STATE_RUNNING:
        return absl::AlreadyExistsError(absl::StrCat(
            experiment_name_,
            " is running in another RunExperiment call; GetExperiment "
            "reads its progress"));
      default:  // FAILED or CANCELLED: run it again from the start
        rerun_ = true;
        spec_proto_ = &stored_.spec();
        return absl::OkStatus();
    }
  }

  // Records the experiment RUNNING: a new record, or the failed one reset.
  // The store write is made without mu_, which the workers take between
  // tasks; record_ is not touched meanwhile (nothing is published, and
  // RecordEnd waits for claimed_).
  absl::Status Claim() {
    absl::MutexLock claim(service_->experiment_claim_mu());
    store::ExperimentRecord stored;
    {
      absl::MutexLock lock(&mu_);
      record_.set_name(experiment_name_);
      *record_.mutable_spec() = *spec_proto_;
      record_.set_state(pb::EXPERIMENT_STATE_RUNNING);
      record_.set_epochs_total(epochs_total_);
      const absl::Time now = absl::Now();
      if (rerun_) {
        *record_.mutable_create_time() = stored_.create_time();
      } else {
        TimeToProto(now, record_.mutable_create_time());
      }
      TimeToProto(now, record_.mutable_update_time());
      record_bytes_ = static_cast<int64_t>(record_.ByteSizeLong());
      last_record_ = now;
      stored = rerun_ ? ProgressRecordOf(record_) : RecordOf(record_);
    }
    absl::Status status;
    if (rerun_) {
      // Still not running? Another call may have claimed it meanwhile.
      auto current = service_->experiments()->LoadExperiment(experiment_id_);
      if (!current.ok()) return current.status();
      if (current->status == pb::EXPERIMENT_STATE_RUNNING) {
        return absl::AlreadyExistsError(absl::StrCat(
            experiment_name_, " is running in another RunExperiment call"));
      }
      status = service_->experiments()->UpdateExperiment(stored);
    } else {
      status = service_->experiments()->CreateExperiment(stored);
    }
    absl::MutexLock lock(&mu_);
    if (status.ok()) claimed_ = true;
    return status;
  }

  // Claim() for several replicas: a re-run first takes the coordinator
  // unit (another replica may be re-running it too), then the record is
  // set RUNNING and one unit per variant offered.
  absl::Status ClaimSpread() {
    ExperimentClaims* claims = service_->experiment_claims();
    store::ExperimentStore* store = service_->experiments();
    if (rerun_) {
      auto held =
          store->ClaimExperimentUnit(experiment_id_, store::kCoordinatorUnit,
                                     claims->replica_id(), claims->ttl());
      if (absl::IsAborted(held.status())) {
        return absl::AlreadyExistsError(absl::StrCat(
            experiment_name_, " is running on another replica (",
            held.status().message(), "); GetExperiment reads its progress"));
      }
      if (!held.ok() && !absl::IsNotFound(held.status())) {
        return held.status();
      }
    }
    if (absl::Status s = Claim(); !s.ok()) return s;
    // A failure here leaves the record claimed_: RecordEnd marks it FAILED.
    return store->OfferExperimentUnits(experiment_id_,
                                       static_cast<int>(spec_.variants.size()),
                                       claims->replica_id(), claims->ttl());
  }

  // Streams the stored curves and summary of a finished experiment.
  void QueueReplay() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t total = stored_.epochs_total();
    int64_t done = 0;
    for (const pb::EpochMetrics& epoch : stored_.curves()) {
      v1::RunExperimentResponse& response = unsent_.emplace_back();
      *response.mutable_epoch() = epoch;
      response.set_epochs_done(++done);
      response.set_epochs_total(total);
      response.set_experiment(shown_name_);
    }
    v1::RunExperimentResponse& response = unsent_.emplace_back();
    *response.mutable_summary() = stored_.summary();
    response.set_epochs_done(done);
    response.set_epochs_total(total);
    response.set_experiment(shown_name_);
    summary_queued_ = true;
    MaybeWrite();
    MaybeFinish();
  }

  // Writes record_ to the store (mu_ held: the write is one short
  // transaction, at most every experiment_record_interval while running).
  absl::Status Record() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = absl::Now();
    TimeToProto(now, record_.mutable_update_time());
    last_record_ = now;
    return service_->experiments()->UpdateExperiment(ProgressRecordOf(record_));
  }

  // Keeps an epoch in record_ (while under the size bound) and writes the
  // record when the interval has passed.
  absl::Status RecordEpoch(const pb::EpochMetrics& epoch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t bytes = static_cast<int64_t>(epoch.ByteSizeLong()) + 8;
    if (record_bytes_ + bytes >
        service_->options().max_experiment_record_bytes) {
      record_.set_curves_truncated(true);
    } else if (!record_.curves_truncated()) {
      *record_.add_curves() = epoch;
      record_bytes_ += bytes;
    }
    if (absl::Now() - last_record_ <
        service_->options().experiment_record_interval) {
      return absl::OkStatus();
    }
    return Record();
  }

  // Brings the workers up to workers_target_ (mu_ held). A worker that
  // finds no task ends; one that finishes a task starts more here.
  void StartWorkers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!schedule_.has_value()) return;  // a replay has no workers
    while (workers_ < workers_target_ && !final_status_.has_value() &&
           !schedule_->done()) {
      ++workers_;
      Submit();
    }
  }

  // Queues a worker on the executor (mu_ held; workers_ counts it).
  void Submit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++in_flight_;
    if (!service_->executor()->TrySubmit([this] { Work(); })) {
      --in_flight_;
      --workers_;
      cancelled_.store(true);
      FinishWith(absl::UnavailableError(
          "the server's compute queue is full or shutting down"));
    }
  }

  // A worker leaves (mu_ held).
  void Leave() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    --workers_;
    --in_flight_;
    MaybeFinish();
  }

  // On the executor: runs the schedule's tasks for about kSliceTime, then
  // resubmits itself, parks, or ends when no task is left for it.
  void Work() {
    const absl::Time slice_end = absl::Now() + kSliceTime;
    while (true) {
      std::optional<engine::ExperimentSchedule::Task> task;
      {
        absl::MutexLock lock(&mu_);
        if (final_status_.has_value()) {
          Leave();
          return;
        }
        // The client reads slowly, or the claim is still being written
        // (held_ counts too, so a slow claim bounds what waits): park.
        if (unsent_.size() + held_.size() >= kWindow) {
          ++parked_;
          Leave();
          return;
        }
        if (absl::Now() >= slice_end) {
          --in_flight_;
          Submit();
          return;
        }
        task = schedule_->Next();
        if (!task.has_value()) {
          Leave();
          return;
        }
      }
      const absl::Status status = task->Run(cancelled_);
      absl::MutexLock lock(&mu_);
      if (!status.ok()) {
        cancelled_.store(true);
        FinishWith(status);
        Leave();
        return;
      }
      for (engine::EpochRecord& record : schedule_->Finish(*std::move(task))) {
        if (holding_) {
          held_.push_back(std::move(record));
        } else {
          Publish(record);
        }
      }
      if (!holding_ && schedule_->done() && !summary_queued_) {
        PublishSummary();
      }
      StartWorkers();
    }
  }

  void Publish(const engine::EpochRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    summaries_[record.variant].Add(record);
    ++epochs_done_;
    v1::RunExperimentResponse& response = unsent_.emplace_back();
    RecordToProto(record, labels_[record.variant], response.mutable_epoch());
    response.set_epochs_done(epochs_done_);
    response.set_epochs_total(epochs_total_);
    response.set_experiment(shown_name_);
    ReportProgress(response);
    if (absl::Status s = RecordEpoch(response.epoch()); !s.ok()) {
      cancelled_.store(true);
      FinishWith(s);
      return;
    }
    MaybeWrite();
  }

  void PublishSummary() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (final_status_.has_value()) return;  // recording failed: no summary
    v1::RunExperimentResponse& response = unsent_.emplace_back();
    pb::ExperimentSummary* summary = response.mutable_summary();
    for (size_t v = 0; v < summaries_.size(); ++v) {
      VariantSummaryToProto(static_cast<int>(v), labels_[v],
                            summaries_[v].Result(), summary->add_variants());
    }
    summary->set_elapsed_seconds(absl::ToDoubleSeconds(absl::Now() - start_));
    summary->set_samples(data_.inputs.rows());
    summary->set_input_size(static_cast<int>(data_.inputs.cols()));
    summary->set_output_size(static_cast<int>(data_.targets.cols()));
    response.set_epochs_done(epochs_done_);
    response.set_epochs_total(epochs_total_);
    response.set_experiment(shown_name_);
    // Durable before the client sees the end: a GetExperiment after the
    // stream finished finds it SUCCEEDED.
    *record_.mutable_summary() = *summary;
    record_.set_state(pb::EXPERIMENT_STATE_SUCCEEDED);
    if (absl::Status s = Record(); !s.ok()) {
      unsent_.pop_back();
      record_.set_state(pb::EXPERIMENT_STATE_FAILED);
      FinishWith(s);
      return;
    }
    recorded_final_ = true;
    summary_queued_ = true;
    ReportProgress(response);
    MaybeWrite();
  }

  // The same epoch or summary, as a metrics event for WatchMetrics and the
  // dashboard.
  void ReportProgress(const v1::RunExperimentResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::ExperimentProgress progress;
    progress.set_experiment_id(experiment_id_);
    progress.set_display_name(spec_proto_->display_name());
    if (response.has_summary()) {
      *progress.mutable_summary() = response.summary();
    } else {
      *progress.mutable_epoch() = response.epoch();
    }
    progress.set_epochs_done(response.epochs_done());
    progress.set_epochs_total(response.epochs_total());
    service_->hub()->OnExperimentProgress(progress);
  }

  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_ || unsent_.empty()) return;
    writing_ = true;
    StartWrite(&unsent_.front());
  }

  void WakeParked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (unsent_.size() >= kWindow / 2 || parked_ == 0) return;
    parked_ = 0;
    StartWorkers();
  }

  void FinishWith(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!final_status_.has_value()) {
      final_status_ = std::move(status);
      RecordEnd(*final_status_);
    }
    parked_ = 0;
    MaybeFinish();
  }

  // Marks a claimed experiment CANCELLED or FAILED in the store. Best
  // effort: the call is ending with `status` already, and a record left
  // RUNNING is marked FAILED at the next start.
  void RecordEnd(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // A coordinated experiment's end is written by its coordinator (Detach).
    if (!claimed_ || recorded_final_ || coordinated_) return;
    recorded_final_ = true;
    if (service_->experiment_claims() != nullptr) {
      // Offered units stop the replicas that claimed them.
      (void)service_->experiments()->DeleteExperimentUnits(experiment_id_);
    }
    record_.set_state(absl::IsCancelled(status) ? pb::EXPERIMENT_STATE_CANCELLED
                                                : pb::EXPERIMENT_STATE_FAILED);
    record_.set_error(std::string(status.message()));
    record_.clear_summary();
    (void)Record();
  }

  // Finishes once no worker runs and (on success) everything was sent.
  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || in_flight_ > 0 || writing_) return;
    if (!final_status_.has_value()) {
      if (!summary_queued_ || !unsent_.empty()) return;
    }
    finished_ = true;
    Finish(final_status_.has_value()
               ? ToGrpcStatus(admission_->scope.Unscoped(*final_status_))
               : grpc::Status::OK);
  }

  TrainingServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  const v1::RunExperimentRequest* const request_;
  const absl::Time start_;
  // The caller, its stream and running-experiment quotas.
  const absl::StatusOr<StreamAdmission> admission_;
  const std::string experiment_id_;    // stored (tenant-scoped)
  const std::string experiment_name_;  // experiments/{stored id}
  const std::string shown_name_;       // as the caller knows it
  // The spec being run: the request's, or the stored one on a rerun.
  const pb::ExperimentSpec* spec_proto_;
  // Set by Prepare before any worker starts, then read-only.
  pb::Experiment stored_;  // what the store held under the id, if anything
  bool replay_ = false;    // stored_ SUCCEEDED: stream it, train nothing
  bool rerun_ = false;     // stored_ FAILED/CANCELLED: run it again
  // False when the open-stream cap refused the call (it finished at once).
  bool registered_ = false;
  std::atomic<bool> cancelled_{false};

  // Written by Setup before any worker starts, then read-only.
  engine::Dataset data_;
  engine::ExperimentSpec spec_;
  std::vector<std::string> labels_;

  absl::Mutex mu_;
  std::vector<engine::SummaryAccumulator> summaries_ ABSL_GUARDED_BY(mu_);
  // What the workers run (set by Prepare).
  std::optional<engine::ExperimentSchedule> schedule_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) =
      0;                                  // Setup/Work tasks queued or running
  int workers_ ABSL_GUARDED_BY(mu_) = 0;  // Work tasks queued or running
  int workers_target_ ABSL_GUARDED_BY(mu_) = 1;
  int parked_ ABSL_GUARDED_BY(mu_) = 0;  // workers that left for the window
  int64_t epochs_done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t epochs_total_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::RunExperimentResponse> unsent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool summary_queued_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // The experiment as recorded in the store, and its bookkeeping.
  pb::Experiment record_ ABSL_GUARDED_BY(mu_);
  int64_t record_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_record_ ABSL_GUARDED_BY(mu_);
  bool claimed_ ABSL_GUARDED_BY(mu_) = false;  // ours to update
  // Until Setup has claimed the id: completed epochs wait in held_.
  bool holding_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<engine::EpochRecord> held_ ABSL_GUARDED_BY(mu_);
  // Handed to the claims thread (several replicas): it streams, records.
  bool coordinated_ ABSL_GUARDED_BY(mu_) = false;
  bool recorded_final_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void RecordToProto(const engine::EpochRecord& record, absl::string_view label,
                   pb::EpochMetrics* out) {
  out->set_variant(record.variant);
  out->set_label(std::string(label));
  out->set_epoch(record.epoch);
  out->set_loss(record.loss);
  out->set_accuracy(record.accuracy);
  StatsToProto(record.stats, out->mutable_saturation());
  out->set_step(record.step);
  out->set_diverged(record.diverged);
}

void VariantSummaryToProto(int variant, absl::string_view label,
                           const engine::VariantSummary& s,
                           pb::VariantSummary* out) {
  out->set_variant(variant);
  out->set_label(std::string(label));
  out->set_final_loss(s.final_loss);
  out->set_final_accuracy(s.final_accuracy);
  out->set_initial_loss(s.initial_loss);
  out->set_epochs_to_half_loss(s.epochs_to_half_loss);
  out->set_initial_output_attenuation(s.initial_output_attenuation);
  out->set_mean_output_attenuation(s.mean_output_attenuation);
  out->set_diverged(s.diverged);
}

absl::StatusOr<PreparedExperiment> PrepareExperiment(
    const pb::ExperimentSpec& spec, const engine::Limits& limits) {
  const engine::ExperimentLimits experiment_limits;
  std::string data_field;
  PreparedExperiment out;
  auto data = DatasetFromProto(spec.dataset(), experiment_limits, &data_field);
  if (!data.ok()) return data.status();
  out.data = *std::move(data);
  auto converted = ExperimentFromProto(spec);
  if (!converted.ok()) return converted.status();
  out.spec = *std::move(converted);
  if (absl::Status s = engine::ValidateExperiment(
          out.spec, out.data, data_field, limits, experiment_limits);
      !s.ok()) {
    return s;
  }
  for (const auto& variant : out.spec.variants) {
    out.labels.push_back(engine::VariantLabel(variant));
  }
  return out;
}

grpc::ServerWriteReactor<v1::RunExperimentResponse>* NewExperimentReactor(
    TrainingServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::RunExperimentRequest* request) {
  return new ExperimentReactor(service, ctx, request);
}

}  // namespace satlab::service
