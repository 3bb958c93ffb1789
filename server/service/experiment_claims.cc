#include "server/service/experiment_claims.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/engine/experiment.h"
#include "server/service/convert.h"
#include "server/service/experiment_reactor.h"
#include "server/service/experiments.h"

namespace satlab::service {
namespace {

namespace pb = ::satlab::v1;

// A unit's progress (the store's opaque bytes): a pb::Experiment holding
// the variant's epochs so far in `curves`, its summary (one VariantSummary)
// once done, or the error that ended it as "<status code> <message>".
std::string ProgressBytes(const std::vector<pb::EpochMetrics>& curves,
                          const pb::VariantSummary* summary,
                          const absl::Status& error) {
  pb::Experiment progress;
  for (const pb::EpochMetrics& epoch : curves) *progress.add_curves() = epoch;
  if (summary != nullptr)
    *progress.mutable_summary()->add_variants() = *summary;
  if (!error.ok()) {
    progress.set_error(
        absl::StrCat(static_cast<int>(error.code()), " ", error.message()));
  }
  return progress.SerializeAsString();
}

// The status a unit's error string carries.
absl::Status UnitError(const std::string& error) {
  const size_t space = error.find(' ');
  int code = 0;
  if (space == std::string::npos ||
      !absl::SimpleAtoi(error.substr(0, space), &code) || code <= 0 ||
      code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError(error);
  }
  return absl::Status(static_cast<absl::StatusCode>(code),
                      error.substr(space + 1));
}

}  // namespace

std::string DefaultReplicaId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "host");
  }
  std::random_device random;
  return absl::StrCat(host, "-", getpid(), "-",
                      absl::Hex(random(), absl::kZeroPad8));
}

// Runs one claimed variant from its start on a thread of its own and
// writes its epochs to the unit's progress.
class ExperimentClaims::VariantWorker {
 public:
  VariantWorker(ExperimentClaims* owner, std::string id, int variant)
      : owner_(owner), id_(std::move(id)), variant_(variant) {
    thread_ = std::thread([this] { Run(); });
  }
  ~VariantWorker() {
    cancelled_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  const std::string& id() const { return id_; }
  int variant() const { return variant_; }
  bool finished() const { return finished_.load(); }
  void Cancel() { cancelled_.store(true); }

 private:
  void Run() {
    Work();
    finished_.store(true);
  }

  void Work() {
    store::ExperimentStore* store = owner_->store_;
    auto record = store->LoadExperiment(id_);
    if (absl::IsNotFound(record.status()) ||
        (record.ok() && record->status != pb::EXPERIMENT_STATE_RUNNING)) {
      // Left over from an experiment that ended: nothing to run.
      (void)store->DeleteExperimentUnits(id_);
      return;
    }
    if (!record.ok()) {
      (void)store->ReleaseExperimentUnit(id_, variant_, owner_->replica_id_);
      return;
    }
    absl::Status status = RunVariant(*record);
    if (cancelled_.load()) return;  // lost the claim or shutting down
    if (!status.ok()) {
      (void)Report(ProgressBytes(curves_, nullptr, status), true);
    }
  }

  absl::Status RunVariant(const store::ExperimentRecord& record) {
    auto experiment = ExperimentOf(record, /*with_curves=*/false);
    if (!experiment.ok()) return experiment.status();
    auto prepared = PrepareExperiment(experiment->spec(), owner_->limits_);
    if (!prepared.ok()) return prepared.status();
    if (variant_ >= static_cast<int>(prepared->spec.variants.size())) {
      return absl::InternalError(
          absl::StrCat(ExperimentName(id_), " has no variant ", variant_));
    }
    auto initial = engine::SharedInitialParameters(
        prepared->spec, prepared->data, owner_->limits_);
    if (!initial.ok()) return initial.status();
    auto run = engine::VariantRun::Create(prepared->spec, &prepared->data,
                                          variant_, *initial, owner_->limits_);
    if (!run.ok()) return run.status();
    const std::string& label = prepared->labels[variant_];
    engine::SummaryAccumulator summary;
    auto keep = [&](const engine::EpochRecord& r) {
      summary.Add(r);
      RecordToProto(r, label, &curves_.emplace_back());
    };
    auto first = (*run)->Evaluate();
    if (!first.ok()) return first.status();
    keep(*first);
    absl::Time last_report = absl::InfinitePast();
    while (!(*run)->done()) {
      if (absl::Now() - last_report >= owner_->options_.poll) {
        last_report = absl::Now();
        if (!Report(ProgressBytes(curves_, nullptr, absl::OkStatus()), false)) {
          return absl::OkStatus();
        }
      }
      auto next = (*run)->NextEpoch(cancelled_);
      if (!next.ok()) return next.status();
      keep(*next);
    }
    pb::VariantSummary out;
    VariantSummaryToProto(variant_, label, summary.Result(), &out);
    if (Report(ProgressBytes(curves_, &out, absl::OkStatus()), true)) {
      owner_->variants_finished_.fetch_add(1);
    }
    return absl::OkStatus();
  }

  // Writes the progress; false (and cancelled) when the claim is lost. A
  // store that does not answer is retried at the next report; the claim
  // may lapse meanwhile, and the poll thread then cancels the run.
  bool Report(const std::string& progress, bool done) {
    absl::Status s = owner_->store_->ReportExperimentUnit(
        id_, variant_, owner_->replica_id_, owner_->options_.ttl, progress,
        done);
    if (absl::IsAborted(s) || absl::IsNotFound(s)) {
      cancelled_.store(true);
      return false;
    }
    return true;
  }

  ExperimentClaims* const owner_;
  const std::string id_;
  const int variant_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> finished_{false};
  std::vector<pb::EpochMetrics> curves_;  // the worker thread's
  std::thread thread_;
};

// Follows one experiment's units: streams new epochs to the sink (if any),
// keeps the record's curves current, writes the summary when every
// variant is done. Touched only under ExperimentClaims::mu_.
class ExperimentClaims::Coordinator {
 public:
  Coordinator(ExperimentClaims* owner, std::string id, pb::Experiment record,
              std::vector<std::string> labels, int64_t rows, int input_size,
              int output_size, absl::Time start, ExperimentSink* sink)
      : owner_(owner),
        id_(std::move(id)),
        record_(std::move(record)),
        labels_(std::move(labels)),
        rows_(rows),
        input_size_(input_size),
        output_size_(output_size),
        start_(start),
        sink_(sink),
        curves_(labels_.size()),
        summaries_(labels_.size()),
        sent_(labels_.size(), 0),
        last_record_(absl::Now()) {}

  void set_sink(ExperimentSink* sink) { sink_ = sink; }

  // One poll; true when the experiment is over here (finished, failed, or
  // taken by another replica).
  bool Tick() {
    store::ExperimentStore* store = owner_->store_;
    auto held = store->ClaimExperimentUnit(id_, store::kCoordinatorUnit,
                                           owner_->replica_id_, owner_->ttl());
    if (absl::IsAborted(held.status()) || absl::IsNotFound(held.status())) {
      if (sink_ != nullptr) {
        sink_->End(absl::AbortedError(absl::StrCat(
            ExperimentName(id_), " is no longer coordinated by this replica (",
            held.status().message(), "); GetExperiment follows it")));
      }
      return true;
    }
    if (!held.ok()) return false;  // the store is away: try at the next poll
    auto units = store->ListExperimentUnits(id_);
    if (!units.ok()) return false;
    for (const store::ExperimentUnit& unit : *units) {
      if (unit.unit < 0 || unit.unit >= static_cast<int>(curves_.size()) ||
          unit.progress.empty()) {
        continue;
      }
      pb::Experiment progress;
      if (!progress.ParseFromString(unit.progress)) {
        return Fail(absl::DataLossError(
            absl::StrCat(ExperimentName(id_), " variant ", unit.unit,
                         ": the stored progress does not parse")));
      }
      if (!progress.error().empty()) return Fail(UnitError(progress.error()));
      // A variant run again from its start (its replica died) repeats the
      // same epochs: keep the longest run seen.
      auto& curve = curves_[unit.unit];
      if (progress.curves_size() > static_cast<int>(curve.size())) {
        curve.assign(progress.curves().begin(), progress.curves().end());
      }
      if (unit.done && progress.summary().variants_size() == 1) {
        summaries_[unit.unit] = progress.summary().variants(0);
      }
    }
    bool all_sent = true;
    for (size_t v = 0; v < curves_.size(); ++v) {
      while (sink_ != nullptr && sent_[v] < curves_[v].size()) {
        if (!sink_->Emit(curves_[v][sent_[v]], epochs_sent_ + 1)) break;
        ++sent_[v];
        ++epochs_sent_;
      }
      if (sink_ != nullptr && sent_[v] < curves_[v].size()) all_sent = false;
    }
    const bool all_done =
        std::all_of(summaries_.begin(), summaries_.end(),
                    [](const auto& s) { return s.has_value(); });
    if (all_done && all_sent) return Succeed();
    if (absl::Now() - last_record_ >= owner_->record_interval_) {
      FillCurves();
      (void)Write();
    }
    return false;
  }

  // The sink's call ended with `status` before the experiment did.
  void Abandon(const absl::Status& status) {
    sink_ = nullptr;
    FillCurves();
    record_.set_state(absl::IsCancelled(status) ? pb::EXPERIMENT_STATE_CANCELLED
                                                : pb::EXPERIMENT_STATE_FAILED);
    record_.set_error(std::string(status.message()));
    (void)Write();
    (void)owner_->store_->DeleteExperimentUnits(id_);
  }

  // Shutdown: the sink is told, the claim given back (or left to expire).
  void Leave(bool release) {
    if (sink_ != nullptr) {
      sink_->End(absl::UnavailableError(absl::StrCat(
          "the server is shutting down; ", ExperimentName(id_),
          " goes on on another replica (GetExperiment follows it)")));
    }
    if (release) {
      (void)owner_->store_->ReleaseExperimentUnit(id_, store::kCoordinatorUnit,
                                                  owner_->replica_id_);
    }
  }

 private:
  bool Fail(const absl::Status& status) {
    FillCurves();
    record_.set_state(pb::EXPERIMENT_STATE_FAILED);
    record_.set_error(std::string(status.message()));
    (void)Write();
    (void)owner_->store_->DeleteExperimentUnits(id_);
    if (sink_ != nullptr) sink_->End(status);
    return true;
  }

  bool Succeed() {
    pb::ExperimentSummary summary;
    for (const auto& s : summaries_) *summary.add_variants() = *s;
    summary.set_elapsed_seconds(absl::ToDoubleSeconds(absl::Now() - start_));
    summary.set_samples(rows_);
    summary.set_input_size(input_size_);
    summary.set_output_size(output_size_);
    FillCurves();
    *record_.mutable_summary() = summary;
    record_.set_state(pb::EXPERIMENT_STATE_SUCCEEDED);
    // Durable before the client sees the end, as on one replica.
    if (!Write().ok()) {
      record_.clear_summary();
      record_.set_state(pb::EXPERIMENT_STATE_RUNNING);
      return false;  // again at the next poll
    }
    (void)owner_->store_->DeleteExperimentUnits(id_);
    if (sink_ != nullptr) sink_->Summary(summary, epochs_sent_);
    return true;
  }

  // The record's curves: every variant's epochs in (variant, epoch) order,
  // up to the record size bound.
  void FillCurves() {
    record_.clear_curves();
    record_.set_curves_truncated(false);
    int64_t bytes = static_cast<int64_t>(record_.ByteSizeLong());
    for (const auto& curve : curves_) {
      for (const pb::EpochMetrics& epoch : curve) {
        const int64_t more = static_cast<int64_t>(epoch.ByteSizeLong()) + 8;
        if (bytes + more > owner_->max_record_bytes_) {
          record_.set_curves_truncated(true);
          return;
        }
        *record_.add_curves() = epoch;
        bytes += more;
      }
    }
  }

  absl::Status Write() {
    last_record_ = absl::Now();
    TimeToProto(last_record_, record_.mutable_update_time());
    return owner_->store_->UpdateExperiment(ProgressRecordOf(record_));
  }

  ExperimentClaims* const owner_;
  const std::string id_;
  pb::Experiment record_;
  const std::vector<std::string> labels_;
  const int64_t rows_;
  const int input_size_;
  const int output_size_;
  const absl::Time start_;
  ExperimentSink* sink_;
  std::vector<std::vector<pb::EpochMetrics>> curves_;
  std::vector<std::optional<pb::VariantSummary>> summaries_;
  std::vector<size_t> sent_;
  int64_t epochs_sent_ = 0;
  absl::Time last_record_;
};

ExperimentClaims::ExperimentClaims(const ExperimentClaimOptions& options,
                                   store::ExperimentStore* store,
                                   const engine::Limits& limits,
                                   int64_t max_record_bytes,
                                   absl::Duration record_interval,
                                   int compute_threads)
    : options_(options),
      replica_id_(options.replica_id.empty() ? DefaultReplicaId()
                                             : options.replica_id),
      store_(store),
      limits_(limits),
      max_record_bytes_(max_record_bytes),
      record_interval_(record_interval),
      slots_(options.slots > 0 ? options.slots : std::max(1, compute_threads)) {
}

ExperimentClaims::~ExperimentClaims() { Shutdown(); }

void ExperimentClaims::Start() {
  poll_thread_ = std::thread([this] { Poll(); });
}

void ExperimentClaims::Coordinate(const pb::Experiment& record,
                                  const std::string& id,
                                  std::vector<std::string> labels,
                                  int64_t data_rows, int input_size,
                                  int output_size, absl::Time start,
                                  ExperimentSink* sink) {
  absl::MutexLock lock(&mu_);
  coordinators_[id] = std::make_unique<Coordinator>(
      this, id, record, std::move(labels), data_rows, input_size, output_size,
      start, sink);
}

void ExperimentClaims::Detach(const std::string& id,
                              const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  auto it = coordinators_.find(id);
  if (it == coordinators_.end()) return;  // over already
  if (stopping_) {
    it->second->set_sink(nullptr);
    return;
  }
  if (status.ok()) {
    it->second->set_sink(nullptr);  // goes on without a stream
    return;
  }
  it->second->Abandon(status);
  coordinators_.erase(it);
}

void ExperimentClaims::Shutdown() { Stop(/*release=*/true); }

void ExperimentClaims::StopWithoutRelease() { Stop(/*release=*/false); }

void ExperimentClaims::Stop(bool release) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (poll_thread_.joinable()) poll_thread_.join();
  std::vector<std::unique_ptr<VariantWorker>> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
    for (auto& w : workers) w->Cancel();
    for (auto& [id, coordinator] : coordinators_) coordinator->Leave(release);
  }
  for (auto& w : workers) {
    const std::string id = w->id();
    const int variant = w->variant();
    w.reset();  // joins
    if (release) (void)store_->ReleaseExperimentUnit(id, variant, replica_id_);
  }
}

void ExperimentClaims::Poll() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    Tick();
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll);
  }
}

void ExperimentClaims::Tick() {
  for (auto it = coordinators_.begin(); it != coordinators_.end();) {
    it = it->second->Tick() ? coordinators_.erase(it) : std::next(it);
  }
  for (auto it = workers_.begin(); it != workers_.end();) {
    VariantWorker& w = **it;
    if (w.finished()) {
      it = workers_.erase(it);  // joins a finished thread
      continue;
    }
    auto renewed =
        store_->ClaimExperimentUnit(w.id(), w.variant(), replica_id_, ttl());
    if (absl::IsAborted(renewed.status()) ||
        absl::IsNotFound(renewed.status())) {
      w.Cancel();
    }
    ++it;
  }
  while (static_cast<int>(workers_.size()) < slots_ && !stopping_) {
    auto unit = store_->ClaimFreeExperimentUnit(replica_id_, ttl());
    if (!unit.ok() || !unit->has_value()) return;
    Adopt(**unit);
  }
}

void ExperimentClaims::Adopt(const store::ExperimentUnit& unit) {
  const std::string& id = unit.experiment_id;
  if (unit.unit >= 0) {
    for (const auto& w : workers_) {
      if (w->id() == id && w->variant() == unit.unit) return;  // ours
    }
    workers_.push_back(std::make_unique<VariantWorker>(this, id, unit.unit));
    return;
  }
  // A coordinator whose replica died (or let it go): finish it here.
  if (coordinators_.count(id) > 0) return;
  auto record = store_->LoadExperiment(id);
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && record->status != pb::EXPERIMENT_STATE_RUNNING)) {
    (void)store_->DeleteExperimentUnits(id);
    return;
  }
  absl::StatusOr<pb::Experiment> experiment =
      record.ok() ? ExperimentOf(*record, /*with_curves=*/true)
                  : absl::StatusOr<pb::Experiment>(record.status());
  absl::StatusOr<PreparedExperiment> prepared =
      experiment.ok() ? PrepareExperiment(experiment->spec(), limits_)
                      : absl::StatusOr<PreparedExperiment>(experiment.status());
  if (!prepared.ok()) {
    // Unreadable here: another replica (or a later poll) may do better.
    (void)store_->ReleaseExperimentUnit(id, store::kCoordinatorUnit,
                                        replica_id_);
    return;
  }
  const absl::Time created =
      absl::FromUnixSeconds(experiment->create_time().seconds()) +
      absl::Nanoseconds(experiment->create_time().nanos());
  coordinators_[id] = std::make_unique<Coordinator>(
      this, id, *std::move(experiment), std::move(prepared->labels),
      prepared->data.inputs.rows(),
      static_cast<int>(prepared->data.inputs.cols()),
      static_cast<int>(prepared->data.targets.cols()), created, nullptr);
}

}  // namespace satlab::service
