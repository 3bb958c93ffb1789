#include "server/core/network_core.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace satlab::core {

// One live network. `mu` guards its state: a writer (holding the writer
// slot) changes it under the exclusive lock; readers hold it shared and see
// the state between two steps. The slot is taken before the lock, so a
// second writer fails at once instead of queueing behind a long stream.
struct NetworkCore::Live {
  Live(std::string id_in, absl::Time created, engine::NetworkSpec spec_in,
       MemoryBudget::Charge charge_in)
      : id(std::move(id_in)),
        create_time(created),
        spec(std::move(spec_in)),
        charge(std::move(charge_in)) {}

  bool TryAcquireWriter() {
    bool expected = false;
    return writer.compare_exchange_strong(expected, true);
  }
  void ReleaseWriter() {
    writer_synced.store(false);
    writer.store(false);
  }
  // Whether this process's writer holds the newest state there is: it has
  // the slot and has read the store since it took it (SyncLocked). Between
  // the two (its lease is being taken, a store round trip) the cached state
  // may be another replica's commits behind, and readers must check.
  bool SyncedWriter() const { return writer.load() && writer_synced.load(); }

  const std::string id;
  const absl::Time create_time;
  const engine::NetworkSpec spec;  // init.explicit_params empty
  absl::Mutex mu;
  std::unique_ptr<engine::Network> network ABSL_GUARDED_BY(mu);
  absl::Time update_time ABSL_GUARDED_BY(mu);
  std::vector<store::RequestRecord> requests ABSL_GUARDED_BY(mu);
  // network's step when it was last committed (or loaded).
  int64_t durable_step ABSL_GUARDED_BY(mu) = 0;
  // The store's revision of the state held here (NetworkRecord::revision).
  int64_t revision ABSL_GUARDED_BY(mu) = 0;
  // Changed since the store last got it (ephemeral store: CommitLocked).
  bool dirty ABSL_GUARDED_BY(mu) = false;
  std::atomic<bool> writer{false};
  std::atomic<bool> writer_synced{false};  // see SyncedWriter
  // Set by Delete; writers check it before each step.
  std::atomic<bool> deleted{false};
  // The network's parameters and optimizer state in the memory budget,
  // returned when the last holder (the cache, a call, a session) lets go.
  MemoryBudget::Charge charge;
};

namespace {

std::string Name(absl::string_view id) { return absl::StrCat("networks/", id); }

// The spec without explicit initial parameters (which may be megabytes and
// are part of the state once the network exists).
engine::NetworkSpec SpecWithoutParams(const engine::NetworkSpec& spec) {
  engine::NetworkSpec out = spec;
  out.init.explicit_params.clear();
  out.init.explicit_params.shrink_to_fit();
  return out;
}

absl::Status Deleted(absl::string_view id) {
  return absl::AbortedError(absl::StrCat(Name(id), " was deleted"));
}

absl::Status OutOfMemory(absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "the server ran out of memory for ", what, "; nothing changed"));
}

// A network's state in the budget: once live, and once more when the
// store keeps its copy in memory (an ephemeral store).
absl::StatusOr<MemoryBudget::Charge> ChargeState(
    MemoryBudget& budget, absl::string_view id, const engine::NetworkSpec& spec,
    bool durable_store) {
  const int64_t bytes = engine::StateBytes(spec);
  return budget.TryCharge(
      durable_store ? bytes : 2 * bytes,
      absl::StrCat(Name(id), durable_store
                                 ? ": parameters and optimizer state"
                                 : ": parameters and optimizer state, live "
                                   "and in the in-memory store"));
}

}  // namespace

NetworkCore::NetworkCore(const CoreOptions& options, store::NetworkStore* store,
                         store::WriterLeaseStore* leases)
    : options_(options),
      store_(store),
      leases_(leases),
      budget_(MemoryBudget::Create(options.memory_budget_bytes > 0
                                       ? options.memory_budget_bytes
                                       : MemoryBudget::DefaultLimit())) {}

NetworkCore::~NetworkCore() = default;

absl::Status NetworkCore::Flush() {
  std::vector<std::shared_ptr<Live>> live;
  {
    absl::ReaderMutexLock lock(&cache_mu_);
    for (const auto& [id, network] : live_) live.push_back(network);
  }
  absl::Status first;
  for (const std::shared_ptr<Live>& network : live) {
    absl::MutexLock lock(&network->mu);
    if (!network->dirty || network->deleted.load()) continue;
    first.Update(CommitNowLocked(*network));
  }
  return first;
}

absl::Status NetworkCore::BusyError(absl::string_view id) {
  return absl::AbortedError(absl::StrCat(
      Name(id),
      " is being written by another caller (TrainStep, SetParameters or an "
      "open Train stream); retry when it finishes"));
}

std::shared_ptr<NetworkCore::Live> NetworkCore::FindCached(
    absl::string_view id) {
  absl::ReaderMutexLock lock(&cache_mu_);
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<NetworkCore::Live>> NetworkCore::FindLocal(
    absl::string_view id) {
  if (std::shared_ptr<Live> live = FindCached(id)) return live;
  // Not live yet: loaded under the exclusive lock, so that two callers do
  // not both load it (the second finds the first's).
  absl::MutexLock lock(&cache_mu_);
  auto it = live_.find(id);
  if (it != live_.end()) return it->second;
  return LoadLive(id);
}

absl::StatusOr<std::shared_ptr<NetworkCore::Live>> NetworkCore::Find(
    absl::string_view id) {
  std::shared_ptr<Live> live = FindCached(id);
  if (live == nullptr) return FindLocal(id);  // loaded now: the latest
  // A writer of this process that has synced holds the newest state there
  // is (its commit fails if another replica wrote meanwhile, see
  // SyncLocked).
  if (!store_->shared() || live->SyncedWriter()) return live;
  // Another replica may have committed, deleted or recreated it since it
  // was cached: one cheap read of its version says.
  absl::StatusOr<int64_t> revision = StoredRevision(*live);
  if (absl::IsAborted(revision.status())) return FindLocal(id);  // recreated
  if (!revision.ok()) return revision.status();
  {
    absl::ReaderMutexLock lock(&live->mu);
    if (live->revision >= *revision) return live;
  }
  absl::MutexLock lock(&live->mu);
  if (!live->SyncedWriter() && live->revision < *revision) {
    if (absl::Status s = ReloadLocked(*live); !s.ok()) return s;
  }
  return live;
}

absl::StatusOr<int64_t> NetworkCore::StoredRevision(Live& live) {
  absl::StatusOr<store::NetworkVersion> version = store_->Version(live.id);
  if (!version.ok()) {
    if (absl::IsNotFound(version.status())) Forget(live);
    return version.status();
  }
  if (version->create_time != live.create_time) {
    // Deleted and created again on another replica.
    Forget(live);
    return Deleted(live.id);
  }
  return version->revision;
}

void NetworkCore::Forget(Live& live) {
  live.deleted.store(true);
  absl::MutexLock lock(&cache_mu_);
  auto it = live_.find(live.id);
  if (it != live_.end() && it->second.get() == &live) live_.erase(it);
}

absl::StatusOr<std::shared_ptr<NetworkCore::Live>> NetworkCore::AcquireWriter(
    absl::string_view id) {
  auto found = FindLocal(id);
  if (!found.ok()) return found.status();
  std::shared_ptr<Live> live = *std::move(found);
  if (!live->TryAcquireWriter()) return BusyError(id);
  if (leased()) {
    auto lease =
        leases_->AcquireLease(id, options_.replica_id, options_.lease_ttl);
    if (!lease.ok()) {
      live->ReleaseWriter();
      return lease.status();
    }
  }
  return live;
}

void NetworkCore::ReleaseWriter(Live& live) {
  // A lease that cannot be given back (the store is unreachable) lapses
  // after its ttl by itself.
  if (leased()) {
    leases_->ReleaseLease(live.id, options_.replica_id).IgnoreError();
  }
  live.ReleaseWriter();
}

absl::Status NetworkCore::SyncLocked(Live& live)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu exclusively
  if (!store_->shared()) return absl::OkStatus();
  // A network recreated on another replica is gone for this writer, as if
  // deleted under it (ABORTED).
  absl::StatusOr<int64_t> revision = StoredRevision(live);
  if (!revision.ok()) return revision.status();
  if (*revision != live.revision) {
    if (absl::Status s = ReloadLocked(live); !s.ok()) return s;
  }
  if (live.writer.load()) live.writer_synced.store(true);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<NetworkCore::Live>> NetworkCore::LoadLive(
    absl::string_view id) {
  auto record = store_->Load(id);
  if (!record.ok()) return record.status();
  auto charge =
      ChargeState(*budget_, id, record->state.spec, store_->durable());
  if (!charge.ok()) return charge.status();
  engine::NetworkSpec spec = SpecWithoutParams(record->state.spec);
  auto network = engine::Network::FromState(std::move(record->state),
                                            options_.limits, "state");
  if (!network.ok()) {
    if (absl::IsResourceExhausted(network.status())) return network.status();
    // What the store holds does not make a network: not the caller's fault.
    return absl::DataLossError(
        absl::StrCat(Name(id), " in the store: ", network.status().message()));
  }
  auto live = std::make_shared<Live>(std::string(id), record->create_time,
                                     std::move(spec), *std::move(charge));
  {
    absl::MutexLock live_lock(&live->mu);
    live->durable_step = (*network)->step();
    live->revision = record->revision;
    live->network = *std::move(network);
    live->update_time = record->update_time;
    live->requests = std::move(record->requests);
  }
  live_.insert_or_assign(live->id, live);
  return live;
}

NetworkInfo NetworkCore::InfoLocked(const Live& live) const
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu
  NetworkInfo info;
  info.id = live.id;
  info.create_time = live.create_time;
  info.update_time = live.update_time;
  info.spec = live.spec;
  info.step = live.network->step();
  info.samples_seen = live.network->samples_seen();
  info.parameter_count = live.network->parameter_count();
  info.durable_step = live.durable_step;
  return info;
}

absl::StatusOr<NetworkInfo> NetworkCore::Create(
    absl::string_view id, const engine::NetworkSpec& spec,
    const engine::SpecFields& fields) {
  if (absl::Status s = engine::ValidateSpec(spec, options_.limits, fields);
      !s.ok()) {
    return s;
  }
  auto charge = ChargeState(*budget_, id, spec, store_->durable());
  if (!charge.ok()) return charge.status();
  auto network = engine::Network::Create(spec, options_.limits, fields);
  if (!network.ok()) return network.status();
  auto state = (*network)->ExportState();
  if (!state.ok()) return state.status();
  const absl::Time now = absl::Now();
  store::NetworkRecord record;
  record.id = std::string(id);
  record.create_time = now;
  record.update_time = now;
  record.state = *std::move(state);
  auto live = std::make_shared<Live>(record.id, now, SpecWithoutParams(spec),
                                     *std::move(charge));
  absl::MutexLock lock(&cache_mu_);
  if (absl::Status s = store_->Create(record); !s.ok()) return s;
  absl::MutexLock live_lock(&live->mu);
  live->network = *std::move(network);
  live->update_time = now;
  // Replaces a cached network of that id that another replica deleted.
  live_.insert_or_assign(live->id, live);
  return InfoLocked(*live);
}

absl::StatusOr<NetworkCore::StateSnapshot> NetworkCore::ExportState(
    absl::string_view id) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  const engine::Network& net = *(*live)->network;
  auto charge = budget_->TryCharge(engine::StateBytes(net.spec()),
                                   absl::StrCat("exporting ", Name(id)));
  if (!charge.ok()) return charge.status();
  auto state = net.ExportState();
  if (!state.ok()) return state.status();
  return StateSnapshot{*std::move(state), *std::move(charge)};
}

absl::StatusOr<NetworkInfo> NetworkCore::Import(absl::string_view id,
                                                engine::NetworkState state,
                                                absl::string_view field) {
  // Refused before the (large) state is validated and copied (with a shared
  // store the cache may still hold one another replica deleted: the
  // store's Create decides).
  if (!store_->shared() && FindCached(id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat(Name(id), " already exists"));
  }
  auto charge = ChargeState(*budget_, id, state.spec, store_->durable());
  if (!charge.ok()) return charge.status();
  engine::NetworkSpec spec = SpecWithoutParams(state.spec);
  auto network =
      engine::Network::FromState(std::move(state), options_.limits, field);
  if (!network.ok()) return network.status();
  // The store gets its own copy (FromState consumed the state); it is
  // dropped once committed, except by the in-memory store, which keeps it
  // (charged twice above).
  auto copy = (*network)->ExportState();
  if (!copy.ok()) return copy.status();
  const absl::Time now = absl::Now();
  store::NetworkRecord record;
  record.id = std::string(id);
  record.create_time = now;
  record.update_time = now;
  record.state = *std::move(copy);
  auto live = std::make_shared<Live>(record.id, now, std::move(spec),
                                     *std::move(charge));
  absl::MutexLock lock(&cache_mu_);
  if (absl::Status s = store_->Create(record); !s.ok()) return s;
  record = store::NetworkRecord();
  absl::MutexLock live_lock(&live->mu);
  live->durable_step = (*network)->step();
  live->network = *std::move(network);
  live->update_time = now;
  live_.insert_or_assign(live->id, live);
  return InfoLocked(*live);
}

absl::StatusOr<NetworkInfo> NetworkCore::Get(absl::string_view id) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  return InfoLocked(**live);
}

absl::StatusOr<std::vector<NetworkInfo>> NetworkCore::List(
    absl::string_view after, int limit) {
  auto summaries = store_->List(after, limit);
  if (!summaries.ok()) return summaries.status();
  std::vector<std::shared_ptr<Live>> live(summaries->size());
  {
    absl::ReaderMutexLock lock(&cache_mu_);
    for (size_t i = 0; i < summaries->size(); ++i) {
      auto it = live_.find((*summaries)[i].id);
      if (it != live_.end()) live[i] = it->second;
    }
  }
  std::vector<NetworkInfo> page;
  page.reserve(summaries->size());
  for (size_t i = 0; i < summaries->size(); ++i) {
    store::NetworkSummary& s = (*summaries)[i];
    // Live: its counters may be ahead of the store (a Train stream's steps
    // not yet committed). With a shared store only a writer of this
    // process makes it so; otherwise the store's row is the newer.
    if (live[i] != nullptr && (!store_->shared() || live[i]->SyncedWriter())) {
      absl::ReaderMutexLock lock(&live[i]->mu);
      page.push_back(InfoLocked(*live[i]));
      continue;
    }
    NetworkInfo& info = page.emplace_back();
    info.id = std::move(s.id);
    info.create_time = s.create_time;
    info.update_time = s.update_time;
    info.parameter_count = engine::ParameterCount(s.spec);
    info.spec = std::move(s.spec);
    info.step = s.step;
    info.samples_seen = s.samples_seen;
    info.durable_step = s.step;
  }
  return page;
}

absl::Status NetworkCore::Delete(absl::string_view id) {
  std::shared_ptr<Live> gone;  // released after the cache lock
  absl::MutexLock lock(&cache_mu_);
  if (absl::Status s = store_->Delete(id); !s.ok()) return s;
  auto it = live_.find(id);
  if (it != live_.end()) {
    it->second->deleted.store(true);
    gone = std::move(it->second);
    live_.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<ParametersOutcome> NetworkCore::GetParameters(
    absl::string_view id, ResponseBytes response) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  const engine::Network& net = *(*live)->network;
  auto bytes = response(net.spec(), 0);
  if (!bytes.ok()) return bytes.status();
  ParametersOutcome out;
  // A copy per layer, then the response.
  auto charge = budget_->TryCharge(2 * *bytes, "GetParameters");
  if (!charge.ok()) return charge.status();
  out.charge = *std::move(charge);
  for (int l = 0; l < net.num_layers(); ++l) {
    out.weights.push_back(net.weights(l));
    out.biases.push_back(net.biases(l));
  }
  out.step = net.step();
  return out;
}

absl::StatusOr<ForwardOutcome> NetworkCore::Forward(
    absl::string_view id, const engine::MatrixView& inputs, bool include_layers,
    const engine::CallOptions& call_in, ResponseBytes response) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  const engine::Network& net = *(*live)->network;
  const engine::NetworkSpec& spec = net.spec();
  if (absl::Status s = net.ValidateBatch(inputs, nullptr, spec.loss, "",
                                         options_.limits.max_batch_rows);
      !s.ok()) {
    return s;
  }
  // The response, before computing.
  auto bytes = response(spec, inputs.rows);
  if (!bytes.ok()) return bytes.status();
  engine::CallOptions call = call_in;
  const int64_t rows = inputs.rows;
  int64_t scratch =
      std::min(engine::CallScratchBytes(spec, engine::CallKind::kForward, rows),
               call.max_scratch_bytes);
  // When the budget has less room than that, Forward runs in smaller
  // chunks, down to one block; with less room than one block it is
  // refused, saying what that least amount is.
  const int64_t room = budget_->available() - 2 * *bytes;
  const int64_t block_scratch =
      engine::CallScratchBytes(spec, engine::CallKind::kForward,
                               std::min(rows, engine::BlockRows(spec)));
  if (room < scratch) {
    scratch = std::max(room, std::min(scratch, block_scratch));
  }
  call.max_scratch_bytes = scratch;
  // The result, its copy in the response, and the scratch.
  auto charge = budget_->TryCharge(2 * *bytes + scratch, "Forward");
  if (!charge.ok()) return charge.status();
  auto result = net.Forward(inputs, include_layers, call);
  if (!result.ok()) return result.status();
  return ForwardOutcome{*std::move(result), net.step(), *std::move(charge)};
}

absl::StatusOr<GradientsOutcome> NetworkCore::ComputeGradients(
    absl::string_view id, const Batch& batch, absl::string_view field,
    const std::vector<engine::Loss>& counterfactuals,
    const engine::CallOptions& call, ResponseBytes response) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  const engine::Network& net = *(*live)->network;
  const engine::NetworkSpec& spec = net.spec();
  // Every loss is checked before any is computed: all or nothing.
  std::vector<engine::Loss> losses = {spec.loss};
  for (size_t i = 0; i < counterfactuals.size(); ++i) {
    if (absl::Status s = engine::CheckLossActivation(
            counterfactuals[i], spec.layers.back().activation,
            absl::StrCat("counterfactual_losses[", i, "]"));
        !s.ok()) {
      return s;
    }
    losses.push_back(counterfactuals[i]);
  }
  // Targets must suit every requested loss (bce/cce need [0, 1]).
  for (engine::Loss loss : losses) {
    if (absl::Status s =
            net.ValidateBatch(batch.inputs, &batch.targets, loss, field,
                              options_.limits.max_batch_rows);
        !s.ok()) {
      return s;
    }
  }
  auto bytes = response(spec, batch.inputs.rows);
  if (!bytes.ok()) return bytes.status();
  auto charge = budget_->TryCharge(
      2 * *bytes + engine::CallScratchBytes(spec,
                                            engine::CallKind::kComputeGradients,
                                            batch.inputs.rows),
      "ComputeGradients");
  if (!charge.ok()) return charge.status();
  GradientsOutcome out;
  out.charge = *std::move(charge);
  for (engine::Loss loss : losses) {
    auto computed =
        net.ComputeGradients(batch.inputs, batch.targets, loss, call);
    if (!computed.ok()) return computed.status();
    out.results.push_back(*std::move(computed));
  }
  out.step = net.step();
  return out;
}

absl::StatusOr<EvalOutcome> NetworkCore::Evaluate(
    absl::string_view id, const Batch& batch, absl::string_view field,
    const engine::CallOptions& call) {
  auto live = Find(id);
  if (!live.ok()) return live.status();
  absl::ReaderMutexLock lock(&(*live)->mu);
  const engine::Network& net = *(*live)->network;
  if (absl::Status s =
          net.ValidateBatch(batch.inputs, &batch.targets, net.spec().loss,
                            field, options_.limits.max_batch_rows);
      !s.ok()) {
    return s;
  }
  auto charge = budget_->TryCharge(
      engine::CallScratchBytes(net.spec(), engine::CallKind::kEvaluate,
                               batch.inputs.rows),
      "Evaluate");
  if (!charge.ok()) return charge.status();
  auto result = net.Evaluate(batch.inputs, batch.targets, call);
  if (!result.ok()) return result.status();
  return EvalOutcome{*std::move(result), net.step()};
}

absl::Status NetworkCore::StepsLocked(
    Live& live, absl::Span<const Batch> batches, const BatchFields& fields,
    const engine::CallOptions& call, bool whole,
    absl::FunctionRef<absl::Status(engine::StepResult)> after)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Callers hold live.mu exclusively.
  if (live.deleted.load()) return Deleted(live.id);
  engine::Network& net = *live.network;
  const int64_t max_rows = options_.limits.max_batch_rows;
  if (batches.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(fields.name, ": expected at least 1 minibatch, got 0"));
  }
  if (static_cast<int64_t>(batches.size()) > options_.max_batches_per_message) {
    return absl::ResourceExhaustedError(absl::StrCat(
        fields.name, ": at most ", options_.max_batches_per_message,
        " minibatches per message (--max_batches_per_message), got ",
        batches.size()));
  }
  // Everything is checked before the first step, so a bad minibatch in the
  // middle applies none of the message.
  int64_t total_rows = 0;
  int64_t largest = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (absl::Status s =
            net.ValidateBatch(batches[i].inputs, &batches[i].targets,
                              net.spec().loss, fields.At(i), max_rows);
        !s.ok()) {
      return s;
    }
    total_rows += batches[i].inputs.rows;
    largest = std::max(largest, batches[i].inputs.rows);
  }
  if (total_rows > max_rows) {
    return absl::ResourceExhaustedError(absl::StrCat(
        fields.name, ": at most ", max_rows,
        " rows in all the minibatches of one message (--max_batch_rows), got ",
        total_rows));
  }
  try {
    // The steps run one after another: the largest one's scratch is the
    // peak.
    auto charge = budget_->TryCharge(
        engine::CallScratchBytes(net.spec(), engine::CallKind::kTrainStep,
                                 largest),
        "TrainStep");
    if (!charge.ok()) return charge.status();
    engine::CallOptions rest = call;
    if (whole) rest.stop = nullptr;
    for (size_t i = 0; i < batches.size(); ++i) {
      if (live.deleted.load()) return Deleted(live.id);
      auto result = net.TrainStep(batches[i].inputs, batches[i].targets,
                                  i == 0 ? call : rest);
      if (!result.ok()) return result.status();
      live.update_time = absl::Now();
      if (absl::Status s = after(*std::move(result)); !s.ok()) return s;
    }
    return absl::OkStatus();
  } catch (const std::bad_alloc&) {
    return OutOfMemory("this step");
  }
}

absl::Status NetworkCore::CommitLocked(Live& live)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu exclusively
  if (store_->durable()) return CommitNowLocked(live);
  if (live.deleted.load()) return Deleted(live.id);
  live.dirty = true;
  live.durable_step = live.network->step();
  return absl::OkStatus();
}

absl::Status NetworkCore::CommitNowLocked(Live& live)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu exclusively
  if (live.deleted.load()) return Deleted(live.id);
  absl::Status status;
  int64_t step = 0;
  try {
    auto state = live.network->ExportState();
    if (state.ok()) {
      step = state->step;
      store::NetworkRecord record;
      record.id = live.id;
      record.create_time = live.create_time;
      record.update_time = live.update_time;
      record.state = *std::move(state);
      record.requests = live.requests;
      record.revision = live.revision + 1;
      status = store_->Commit(record);
    } else {
      status = state.status();
    }
  } catch (const std::bad_alloc&) {
    status = OutOfMemory("a copy of the network to commit");
  }
  if (status.ok()) {
    live.durable_step = step;
    live.revision += 1;  // what the store holds now
    live.dirty = false;
    return status;
  }
  // Memory never runs ahead of the store: back to what the store holds.
  ReloadLocked(live).IgnoreError();  // status says why the commit failed
  if (absl::IsNotFound(status)) {
    // Deleted (on another replica) under this writer: what a writer sees
    // when its network is deleted here.
    Forget(live);
    return Deleted(live.id);
  }
  return status;
}

absl::Status NetworkCore::ReloadLocked(Live& live)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Callers hold live.mu exclusively.
  auto record = store_->Load(live.id);
  absl::StatusOr<std::unique_ptr<engine::Network>> network =
      record.ok() ? engine::Network::FromState(std::move(record->state),
                                               options_.limits, "state")
                  : record.status();
  if (network.ok() && record->create_time == live.create_time) {
    live.dirty = false;
    live.durable_step = (*network)->step();
    live.revision = record->revision;
    live.network = *std::move(network);
    live.update_time = record->update_time;
    live.requests = std::move(record->requests);
    return absl::OkStatus();
  }
  // Unreadable now: drop it from the cache; the next call loads it again
  // (or reports why it cannot).
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = live_.find(live.id);
    if (it != live_.end() && it->second.get() == &live) live_.erase(it);
  }
  if (!network.ok()) return network.status();
  return absl::NotFoundError(absl::StrCat(Name(live.id), " not found"));
}

absl::StatusOr<bool> NetworkCore::FindRequestLocked(
    Live& live, const RequestKey& key,
    Replay* replay) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu
  for (const store::RequestRecord& recent : live.requests) {
    if (recent.request_id != key.request_id) continue;
    if (recent.fingerprint != key.fingerprint) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request_id: \"", key.request_id, "\" was already used on ",
          Name(live.id),
          " for a different request; use a new id for a new request"));
    }
    replay->response = recent.response;
    return true;
  }
  return false;
}

void NetworkCore::RememberRequestLocked(Live& live, const RequestKey& key,
                                        std::string response)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // callers hold live.mu
  live.requests.push_back(
      {std::string(key.request_id), key.fingerprint, std::move(response)});
  const size_t keep =
      static_cast<size_t>(std::max(0, options_.request_ids_per_network));
  if (live.requests.size() > keep) {
    live.requests.erase(live.requests.begin(),
                        live.requests.end() - static_cast<ptrdiff_t>(keep));
  }
}

absl::StatusOr<StepsOutcome> NetworkCore::TrainStep(
    absl::string_view id, absl::Span<const Batch> batches,
    const BatchFields& fields, const engine::CallOptions& call,
    const RequestKey& key, RecordStep record, Replay* replay) {
  auto found = AcquireWriter(id);
  if (!found.ok()) return found.status();
  Live& live = **found;
  absl::Cleanup release = [this, &live] { ReleaseWriter(live); };
  absl::MutexLock lock(&live.mu);
  if (absl::Status s = SyncLocked(live); !s.ok()) return s;
  if (!key.request_id.empty()) {
    // A retry of an applied step: its first answer, not a second step.
    auto seen = FindRequestLocked(live, key, replay);
    if (!seen.ok()) return seen.status();
    if (*seen) return StepsOutcome{{}, live.durable_step};
  }
  StepsOutcome out;
  out.results.reserve(batches.size());
  if (absl::Status s = StepsLocked(live, batches, fields, call, /*whole=*/true,
                                   [&out](engine::StepResult result) {
                                     out.results.push_back(std::move(result));
                                     return absl::OkStatus();
                                   });
      !s.ok()) {
    if (!out.results.empty()) {
      // Only a failing allocator stops a validated, charged message
      // midway. A durable store still holds the state before it: back to
      // that, as for a failed commit.
      if (store_->durable()) ReloadLocked(live).IgnoreError();  // s says
    }
    return s;
  }
  out.durable_step = out.results.back().step;
  if (!key.request_id.empty()) {
    RememberRequestLocked(live, key, record(out));
  }
  if (absl::Status s = CommitLocked(live); !s.ok()) return s;
  return out;
}

std::optional<absl::StatusOr<StepsOutcome>> NetworkCore::TryStepInline(
    absl::string_view id, absl::Span<const Batch> batches,
    const BatchFields& fields, const RequestKey& key) {
  // A durable commit may wait on the disk; a request id needs the
  // recorded requests: both go to the executor.
  if (store_->durable() || !key.request_id.empty()) return std::nullopt;
  std::shared_ptr<Live> live = FindCached(id);
  if (live == nullptr || batches.empty() ||
      static_cast<int64_t>(batches.size()) > options_.max_batches_per_message) {
    return std::nullopt;
  }
  int64_t rows = 0;
  for (const Batch& batch : batches) {
    if (batch.inputs.rows <= 0) return std::nullopt;
    rows += batch.inputs.rows;
  }
  if (rows > kInlineStepWork / engine::ParameterCount(live->spec) ||
      !live->TryAcquireWriter()) {
    return std::nullopt;
  }
  absl::Cleanup release = [&live] { live->ReleaseWriter(); };
  if (!live->mu.TryLock()) return std::nullopt;
  // No call to follow: tiny steps take microseconds.
  engine::CallOptions call;
  call.max_scratch_bytes = options_.limits.max_call_scratch_bytes;
  absl::StatusOr<StepsOutcome> out = [&]() -> absl::StatusOr<StepsOutcome> {
    StepsOutcome steps;
    steps.results.reserve(batches.size());
    if (absl::Status s =
            StepsLocked(*live, batches, fields, call,
                        /*whole=*/true,
                        [&steps](engine::StepResult result) {
                          steps.results.push_back(std::move(result));
                          return absl::OkStatus();
                        });
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CommitLocked(*live); !s.ok()) return s;
    steps.durable_step = steps.results.back().step;
    return steps;
  }();
  live->mu.Unlock();  // StepsLocked and CommitLocked throw nothing
  return out;
}

absl::StatusOr<NetworkInfo> NetworkCore::SetParameters(
    absl::string_view id, MakeParams params, bool reset_optimizer_state,
    const RequestKey& key, RecordParameters record, Replay* replay) {
  auto found = AcquireWriter(id);
  if (!found.ok()) return found.status();
  Live& live = **found;
  absl::Cleanup release = [this, &live] { ReleaseWriter(live); };
  absl::MutexLock lock(&live.mu);
  if (absl::Status s = SyncLocked(live); !s.ok()) return s;
  if (!key.request_id.empty()) {
    auto seen = FindRequestLocked(live, key, replay);
    if (!seen.ok()) return seen.status();
    if (*seen) return InfoLocked(live);
  }
  if (live.deleted.load()) return Deleted(id);
  auto made = params(live.spec);
  if (!made.ok()) return made.status();
  if (absl::Status s =
          live.network->SetParameters(*made, reset_optimizer_state);
      !s.ok()) {
    return s;
  }
  live.update_time = absl::Now();
  NetworkInfo info = InfoLocked(live);
  info.durable_step = info.step;
  if (!key.request_id.empty()) {
    RememberRequestLocked(live, key, record(info));
  }
  if (absl::Status s = CommitLocked(live); !s.ok()) return s;
  return info;
}

absl::StatusOr<std::unique_ptr<WriterSession>> NetworkCore::OpenWriter(
    absl::string_view id, const SessionOptions& options) {
  auto found = AcquireWriter(id);
  if (!found.ok()) return found.status();
  int64_t durable_step;
  int64_t step;
  {
    absl::MutexLock lock(&(*found)->mu);
    if (absl::Status s = SyncLocked(**found); !s.ok()) {
      ReleaseWriter(**found);
      return s;
    }
    durable_step = (*found)->durable_step;
    step = (*found)->network->step();
  }
  // Checked with the slot held: no other writer can move the step now.
  if (options.expected_step.has_value() && *options.expected_step != step) {
    ReleaseWriter(**found);
    return absl::FailedPreconditionError(absl::StrCat(
        "expected_step: networks/", id, " is at step ", step,
        ", not the expected ", *options.expected_step, " (its durable step is ",
        durable_step,
        "); read the network and resend the minibatches after its step"));
  }
  return std::unique_ptr<WriterSession>(new WriterSession(
      this, *std::move(found),
      options.commit_every_steps > 0 ? options.commit_every_steps
                                     : options_.commit_every_steps,
      options.commit_interval > absl::ZeroDuration() ? options.commit_interval
                                                     : options_.commit_interval,
      durable_step));
}

WriterSession::WriterSession(NetworkCore* core,
                             std::shared_ptr<NetworkCore::Live> live,
                             int64_t commit_every_steps,
                             absl::Duration commit_interval,
                             int64_t durable_step)
    : core_(core),
      live_(std::move(live)),
      id_(live_->id),
      commit_every_steps_(commit_every_steps),
      commit_interval_(commit_interval),
      last_commit_(absl::Now()),
      lease_renewed_(last_commit_),
      durable_step_(durable_step) {}

WriterSession::~WriterSession() { Close().IgnoreError(); }

absl::Status WriterSession::Steps(absl::Span<const Batch> batches,
                                  const BatchFields& fields,
                                  const engine::CallOptions& call,
                                  std::vector<StepOutcome>* applied) {
  if (closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("networks/", id_, ": the writer session is closed"));
  }
  absl::MutexLock lock(&live_->mu);
  if (absl::Status s = RenewLeaseLocked(); !s.ok()) return s;
  return core_->StepsLocked(
      *live_, batches, fields, call, /*whole=*/false,
      [this, applied](engine::StepResult result)
          ABSL_NO_THREAD_SAFETY_ANALYSIS {  // under live_->mu
            ++uncommitted_steps_;
            const absl::Time now = absl::Now();
            const bool due = (commit_every_steps_ > 0 &&
                              uncommitted_steps_ >= commit_every_steps_) ||
                             (commit_interval_ > absl::ZeroDuration() &&
                              now - last_commit_ >= commit_interval_);
            if (due) {
              if (absl::Status s = CommitNow(); !s.ok()) return s;
            }
            applied->push_back(StepOutcome{std::move(result), durable_step_});
            return absl::OkStatus();
          });
}

absl::Status WriterSession::CommitNow() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Callers hold live_->mu exclusively.
  absl::Status s = core_->CommitLocked(*live_);
  // On failure the live network is back at the stored state.
  durable_step_ = live_->durable_step;
  uncommitted_steps_ = 0;
  last_commit_ = absl::Now();
  return s;
}

absl::Status WriterSession::RenewLeaseLocked() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Callers hold live_->mu exclusively.
  if (!core_->leased()) return absl::OkStatus();
  const absl::Duration ttl = core_->options_.lease_ttl;
  const absl::Time now = absl::Now();
  if (now - lease_renewed_ < ttl / 3) return absl::OkStatus();
  auto lease =
      core_->leases_->AcquireLease(id_, core_->options_.replica_id, ttl);
  if (!lease.ok()) return lease.status();
  const bool lapsed = now - lease_renewed_ >= ttl;
  lease_renewed_ = now;
  if (!lapsed) return absl::OkStatus();
  // Another replica may have held it meanwhile and committed: then the
  // steps since this session's last commit are lost, and it must end.
  const int64_t revision = live_->revision;
  if (absl::Status s = core_->SyncLocked(*live_); !s.ok()) return s;
  if (live_->revision != revision) {
    uncommitted_steps_ = 0;
    durable_step_ = live_->durable_step;
    return absl::AbortedError(absl::StrCat(
        "networks/", id_,
        ": this stream's writer lease lapsed and another replica wrote the "
        "network meanwhile; it is back at step ",
        live_->network->step(), ": resume from there"));
  }
  return absl::OkStatus();
}

absl::Status WriterSession::Close() {
  if (closed_) return close_status_;
  closed_ = true;
  if (uncommitted_steps_ > 0 && !live_->deleted.load()) {
    absl::MutexLock lock(&live_->mu);
    close_status_ = CommitNow();
  }
  core_->ReleaseWriter(*live_);
  // The network's memory goes back to the budget now if it was deleted.
  live_.reset();
  return close_status_;
}

}  // namespace satlab::core
