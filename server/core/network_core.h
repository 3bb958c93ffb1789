// The core: the one owner of live network state, between the gRPC service
// and the engine (docs/architecture/core.md). It takes and returns engine
// types and absl::Status only.
//
// Where state lives: the store (store::NetworkStore) holds every network as
// a value; the core keeps a cache of live engine::Network objects, loaded
// from the store on first use (so a durable store restores them after a
// restart) and written back through NetworkStore::Commit:
//  - a unary mutation (TrainStep, SetParameters) commits before it returns
//    OK; if the commit fails the live network is reloaded from the store and
//    the call fails with the store's status: memory never runs ahead of a
//    durable store (an ephemeral store is written by Flush, CommitLocked);
//  - a WriterSession (a Train stream) commits every commit_every_steps
//    steps and/or commit_interval, and when it closes; durable_step says
//    which step the store holds.
//
// Who may change it: one writer per network at a time (the writer slot: a
// unary mutation or a session; a second writer gets ABORTED at once, see
// BusyError), under the network's exclusive lock; readers (Get, Forward,
// ComputeGradients, Evaluate, GetParameters) hold it shared and see the
// state between two steps.
//
// Several replicas (a shared store, NetworkStore::shared(): PostgreSQL):
// each replica's cache may fall behind what another replica committed, so
// a cached network is checked against the store's Version before use and
// reloaded when another replica committed, deleted or recreated it;
// readers thus see the latest durable state. A writer also takes the
// network's lease in the WriterLeaseStore (one writer across replicas: a
// second gets ABORTED naming the holder), re-reads the network if it
// changed, and commits with the revision it read, so even a writer whose
// lease lapsed (a stalled replica) never overwrites another's commit: its
// commit fails with ABORTED and it falls back to what the store holds.
// docs/architecture/core.md has the sequence.
//
// Thread-safe. Every call may block on the store (a durable one fsyncs);
// only TryStepInline never waits.
#ifndef SATLAB_SERVER_CORE_NETWORK_CORE_H_
#define SATLAB_SERVER_CORE_NETWORK_CORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/memory_budget.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"
#include "server/store/network_store.h"
#include "server/store/writer_lease.h"

namespace satlab::core {

struct CoreOptions {
  engine::Limits limits;
  // Bytes of network state and running calls' scratch the server holds at
  // most (MemoryBudget); 0 means MemoryBudget::DefaultLimit().
  int64_t memory_budget_bytes = 0;
  // Recent request_ids remembered per network (TrainStep, SetParameters),
  // kept in the store with the network.
  int request_ids_per_network = 32;
  // Minibatches one call may carry at most (a TrainStep, or one message of
  // a Train stream, with several); their rows together are bounded by
  // limits.max_batch_rows, so that a call's work stays that of one
  // largest step.
  int64_t max_batches_per_message = 1024;
  // A writer session (Train stream) commits after this many steps since
  // its last commit (0: not by count) ...
  int64_t commit_every_steps = 10000;
  // ... and once this long has passed since its last commit (zero: not by
  // time); and always when it closes.
  absl::Duration commit_interval = absl::Seconds(1);
  // With a shared store and a lease store: this replica's name on its
  // writer leases (unique per process), and how long a lease lasts unless
  // its writer renews it (a Train stream renews it every lease_ttl / 3
  // while it steps). A replica that dies holds its networks this long.
  std::string replica_id;
  absl::Duration lease_ttl = absl::Seconds(5);
};

// A network as Get and List show it: a consistent snapshot.
struct NetworkInfo {
  std::string id;  // without "networks/"
  absl::Time create_time;
  absl::Time update_time;
  engine::NetworkSpec spec;  // init.explicit_params empty
  int64_t step = 0;
  int64_t samples_seen = 0;
  int64_t parameter_count = 0;
  // The latest step the store holds (all of them, unless a Train stream
  // has steps not yet committed).
  int64_t durable_step = 0;
};

// A minibatch over the caller's memory (e.g. a request's packed floats).
struct Batch {
  engine::MatrixView inputs;
  engine::MatrixView targets;
};

// Where a call's minibatches are in its request, for error messages:
// `name` for the one minibatch of a single-step call ("batch"), `name[i]`
// when the call carries several ("batches[3]").
struct BatchFields {
  absl::string_view name;
  bool indexed = false;
  engine::FieldPath At(size_t i) const {
    return indexed ? engine::FieldPath(name, i) : engine::FieldPath(name);
  }
};

// One step applied (a session's steps).
struct StepOutcome {
  engine::StepResult result;
  // The latest step the store holds after this step: for a session, its
  // last commit.
  int64_t durable_step = 0;
};

// A TrainStep's steps, all applied and committed.
struct StepsOutcome {
  // One per minibatch, in order.
  std::vector<engine::StepResult> results;
  // The latest step the store holds: the last result's step.
  int64_t durable_step = 0;
};

// A client's request id and a fingerprint of the whole request: a retry
// with the same id and fingerprint is answered with the first response; the
// same id with another fingerprint is INVALID_ARGUMENT. Empty id: no
// deduplication.
struct RequestKey {
  absl::string_view request_id;
  uint64_t fingerprint = 0;
};

// A mutation's answer: what the caller serialized the first time the
// request was applied (replayed), or nothing (applied now).
struct Replay {
  std::optional<std::string> response;
};

// Reader results. `charge` holds the result's memory in the budget until
// the caller drops it (after building its response).
struct ForwardOutcome {
  engine::ForwardResult result;
  int64_t step = 0;
  MemoryBudget::Charge charge;
};
struct GradientsOutcome {
  std::vector<engine::GradientResult> results;  // spec loss first
  int64_t step = 0;
  MemoryBudget::Charge charge;
};
struct EvalOutcome {
  engine::EvalResult result;
  int64_t step = 0;
};
struct ParametersOutcome {
  std::vector<engine::AnyMatrix> weights;  // per layer [fan_in, units]
  std::vector<engine::AnyMatrix> biases;   // per layer [1, units]
  int64_t step = 0;
  MemoryBudget::Charge charge;
};

// Bytes of the response a reader call will send for a network of `spec`
// and a batch of `rows` rows, or the caller's error when it would be too
// large (checked before computing).
using ResponseBytes = absl::FunctionRef<absl::StatusOr<int64_t>(
    const engine::NetworkSpec& spec, int64_t rows)>;

// Serialize the response of a mutation that was just applied, to be
// recorded under its request id and committed with the network.
using RecordStep = absl::FunctionRef<std::string(const StepsOutcome&)>;
using RecordParameters = absl::FunctionRef<std::string(const NetworkInfo&)>;

class WriterSession;

class NetworkCore {
 public:
  // Multiply-adds (batch rows x parameters) up to which a TrainStep may run
  // on the caller's (gRPC callback) thread: a few tens of microseconds at
  // most, less than the executor hand-off it saves for the tiny networks.
  static constexpr int64_t kInlineStepWork = int64_t{1} << 16;

  // `store` (and `leases`, when given) must outlive the core. Networks
  // already in the store are loaded on first use. `leases` is used only
  // with a shared store (options.replica_id must then be set).
  NetworkCore(const CoreOptions& options, store::NetworkStore* store,
              store::WriterLeaseStore* leases = nullptr);
  ~NetworkCore();
  NetworkCore(const NetworkCore&) = delete;
  NetworkCore& operator=(const NetworkCore&) = delete;

  const CoreOptions& options() const { return options_; }
  MemoryBudget& memory_budget() const { return *budget_; }
  bool durable() const { return store_->durable(); }

  // ABORTED: another writer (TrainStep, SetParameters or a Train stream)
  // holds networks/{id}.
  static absl::Status BusyError(absl::string_view id);

  // Builds `spec` (validated against the limits, charged to the memory
  // budget) and adds it to the store as networks/{id}. INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED, ALREADY_EXISTS, or the store's error; nothing is
  // kept on error. `fields` names the spec's fields in errors (the
  // service passes its request's path, "network.spec").
  absl::StatusOr<NetworkInfo> Create(absl::string_view id,
                                     const engine::NetworkSpec& spec,
                                     const engine::SpecFields& fields = "spec");
  // NOT_FOUND naming networks/{id}, or the store's error loading it.
  absl::StatusOr<NetworkInfo> Get(absl::string_view id);
  // Up to `limit` networks with id > `after`, in id order: the store's
  // summaries, with live networks' counters (steps not yet committed).
  absl::StatusOr<std::vector<NetworkInfo>> List(absl::string_view after,
                                                int limit);
  // Removes networks/{id} from the store and the cache. An open writer
  // session on it fails its next Step with ABORTED; a running step
  // finishes first. NOT_FOUND if absent.
  absl::Status Delete(absl::string_view id);

  // --- Readers (shared lock). `field` names the batch in errors. ---
  absl::StatusOr<ParametersOutcome> GetParameters(absl::string_view id,
                                                  ResponseBytes response);
  // Validates `inputs` (field "inputs"), checks the response size, runs
  // in as few chunks as the budget allows (down to one block).
  absl::StatusOr<ForwardOutcome> Forward(absl::string_view id,
                                         const engine::MatrixView& inputs,
                                         bool include_layers,
                                         const engine::CallOptions& call,
                                         ResponseBytes response);
  // Gradients under the spec's loss, then each of `counterfactuals`
  // (checked first against the output activation, each named
  // "counterfactual_losses[i]"; targets must suit every loss).
  absl::StatusOr<GradientsOutcome> ComputeGradients(
      absl::string_view id, const Batch& batch, absl::string_view field,
      const std::vector<engine::Loss>& counterfactuals,
      const engine::CallOptions& call, ResponseBytes response);
  absl::StatusOr<EvalOutcome> Evaluate(absl::string_view id, const Batch& batch,
                                       absl::string_view field,
                                       const engine::CallOptions& call);

  // --- Unary mutations: take the writer slot (ABORTED if taken), apply,
  // commit to the store, then return OK. ---

  // One optimizer step under the spec's loss per minibatch of `batches`
  // (at least one), in order, committed once. All or nothing: every batch
  // is validated (named by `fields`) and the count and total rows checked
  // against the limits before the first step; `call`'s stop check reaches
  // the first step only, after which the rest follow (their work is
  // bounded by max_batch_rows). With a request id seen before, nothing is
  // applied and the first response is replayed.
  absl::StatusOr<StepsOutcome> TrainStep(absl::string_view id,
                                         absl::Span<const Batch> batches,
                                         const BatchFields& fields,
                                         const engine::CallOptions& call,
                                         const RequestKey& key,
                                         RecordStep record, Replay* replay);

  // The one place that decides whether a TrainStep may run on the caller's
  // thread: only when the store commits without blocking (not durable),
  // there is no request id to look up, the network is live, its writer
  // slot and lock are free now and the steps are tiny (all their rows x
  // parameters <= kInlineStepWork). Otherwise returns nullopt having
  // changed nothing, and the caller runs TrainStep on its executor.
  std::optional<absl::StatusOr<StepsOutcome>> TryStepInline(
      absl::string_view id, absl::Span<const Batch> batches,
      const BatchFields& fields, const RequestKey& key);

  // Replaces every layer's parameters with what `params` makes for the
  // network's spec (called once the writer slot is held, so a busy network
  // is ABORTED before the request is converted; its errors are returned
  // as they are), checked by the engine (layers[i].weights ...).
  using MakeParams =
      absl::FunctionRef<absl::StatusOr<std::vector<engine::LayerParams>>(
          const engine::NetworkSpec& spec)>;
  absl::StatusOr<NetworkInfo> SetParameters(
      absl::string_view id, MakeParams params, bool reset_optimizer_state,
      const RequestKey& key, RecordParameters record, Replay* replay);

  // Writes every live network changed since its last commit to the store.
  // Needed only with an ephemeral store (durable() false), where commits
  // are deferred (see CommitLocked), and only when another core will read
  // that store (tests): the server's in-memory store dies with its core, so
  // nothing flushes it at shutdown (that would copy every network once
  // more on the way out). The first error.
  absl::Status Flush();

  // --- Export / import (satlab export / import) ---

  // A consistent snapshot of networks/{id}'s whole state (taken under the
  // shared lock: between two steps), charged to the memory budget until
  // the caller drops `charge`. NOT_FOUND, RESOURCE_EXHAUSTED.
  struct StateSnapshot {
    engine::NetworkState state;
    MemoryBudget::Charge charge;
  };
  absl::StatusOr<StateSnapshot> ExportState(absl::string_view id);

  // Creates networks/{id} from an exported state: validated by
  // Network::FromState (errors name `field`), charged to the memory budget
  // and added to the store like Create. All or nothing; ALREADY_EXISTS,
  // INVALID_ARGUMENT, RESOURCE_EXHAUSTED or the store's error.
  absl::StatusOr<NetworkInfo> Import(absl::string_view id,
                                     engine::NetworkState state,
                                     absl::string_view field);

  // --- Streams ---
  struct SessionOptions {
    // 0 / zero duration: the core's defaults (CoreOptions).
    int64_t commit_every_steps = 0;
    absl::Duration commit_interval = absl::ZeroDuration();
    // When set, the session opens only if the network is at this step
    // (FAILED_PRECONDITION otherwise, naming both): a client resuming
    // after a failure never has a minibatch applied twice.
    std::optional<int64_t> expected_step;
  };
  // Takes networks/{id}'s writer slot for a session (a Train stream) until
  // the session is closed or destroyed. NOT_FOUND, ABORTED (busy),
  // FAILED_PRECONDITION (not at options.expected_step).
  absl::StatusOr<std::unique_ptr<WriterSession>> OpenWriter(
      absl::string_view id, const SessionOptions& options);

 private:
  friend class WriterSession;
  struct Live;

  // The live network `id`, loaded from the store if not cached; with a
  // shared store, brought up to the store's latest revision unless a
  // writer of this process holds it.
  absl::StatusOr<std::shared_ptr<Live>> Find(absl::string_view id);
  // Find without the shared store's check (a writer checks once it holds
  // the lease: SyncLocked).
  absl::StatusOr<std::shared_ptr<Live>> FindLocal(absl::string_view id);
  // Drops `live` from the cache (if it is still the cached one) and marks
  // it deleted: the store no longer holds it.
  void Forget(Live& live);
  // With a shared store: the stored revision of `live`'s network, read
  // without its tensors. NOT_FOUND when the store no longer holds it,
  // ABORTED (Deleted) when another network was created under its id; in
  // both cases `live` is forgotten.
  absl::StatusOr<int64_t> StoredRevision(Live& live);
  // Whether writers take leases (a shared store with a lease store).
  bool leased() const { return leases_ != nullptr && store_->shared(); }
  // Takes networks/{id}'s writer slot in this process, then its lease
  // across replicas (released again if the lease is refused). BusyError or
  // the lease's ABORTED / UNAVAILABLE.
  absl::StatusOr<std::shared_ptr<Live>> AcquireWriter(absl::string_view id);
  // Gives both back.
  void ReleaseWriter(Live& live);
  // With a shared store, under live.mu held exclusively by a writer that
  // holds the lease: reloads the network if another replica committed
  // since it was read; NOT_FOUND / ABORTED (deleted or recreated there).
  absl::Status SyncLocked(Live& live);
  // The live network if cached (no store access), else null.
  std::shared_ptr<Live> FindCached(absl::string_view id);
  absl::StatusOr<std::shared_ptr<Live>> LoadLive(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cache_mu_);

  // Validates every batch of `batches` (count, shapes, values, total
  // rows) before the first step, charges the scratch of the largest, then
  // steps through them in order, calling `after` with each result (a
  // non-OK status from it stops there and is returned). `call` reaches
  // every step, or with `whole` only the first. Under live.mu.
  absl::Status StepsLocked(
      Live& live, absl::Span<const Batch> batches, const BatchFields& fields,
      const engine::CallOptions& call, bool whole,
      absl::FunctionRef<absl::Status(engine::StepResult)> after);
  // A commit point. With a durable store: CommitNowLocked. With an
  // ephemeral one, whose only reader is this core and which does not
  // outlive the process, the network is only marked changed and Flush
  // writes it: a commit there would copy the whole network per step for
  // nobody (docs/notes/core.md has the figures).
  absl::Status CommitLocked(Live& live);
  // Writes the live state to the store. On failure, reloads the live
  // network from the store (what it holds) and returns the store's error.
  absl::Status CommitNowLocked(Live& live);
  // Replaces the live network with what the store holds (or drops it from
  // the cache when the store cannot give it back, returning why).
  absl::Status ReloadLocked(Live& live);
  // Mutation bookkeeping under live.mu.
  absl::StatusOr<bool> FindRequestLocked(Live& live, const RequestKey& key,
                                         Replay* replay);
  void RememberRequestLocked(Live& live, const RequestKey& key,
                             std::string response);
  NetworkInfo InfoLocked(const Live& live) const;

  const CoreOptions options_;
  store::NetworkStore* const store_;
  store::WriterLeaseStore* const leases_;
  const std::shared_ptr<MemoryBudget> budget_;
  absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Live>> live_
      ABSL_GUARDED_BY(cache_mu_);
};

// A Train stream's hold on one network: the writer slot from OpenWriter to
// Close (or destruction, which closes). Steps run one at a time (not
// thread-safe: one caller at a time, as a stream's steps are). Commits
// every commit_every_steps / commit_interval and on Close.
class WriterSession {
 public:
  ~WriterSession();
  WriterSession(const WriterSession&) = delete;
  WriterSession& operator=(const WriterSession&) = delete;

  const std::string& id() const { return id_; }

  // One step per minibatch of `batches`, in order, as if each came alone:
  // a commit whenever one is due, `call` checked in every step. Every
  // batch is validated (named by `fields`; count and total rows against
  // the limits) before the first step, so a bad one applies none. Appends
  // each applied step to `applied` (also the steps before a failure).
  // ABORTED when the network was deleted; the batches' errors; the
  // store's error if a due commit fails (the network is then back at its
  // last committed state). On error the session stays open but the
  // caller should end it.
  absl::Status Steps(absl::Span<const Batch> batches, const BatchFields& fields,
                     const engine::CallOptions& call,
                     std::vector<StepOutcome>* applied);

  // Commits what is not yet committed and releases the writer slot.
  // Idempotent; the first call's status (OK for a deleted network).
  absl::Status Close();

  int64_t durable_step() const { return durable_step_; }

 private:
  friend class NetworkCore;
  WriterSession(NetworkCore* core, std::shared_ptr<NetworkCore::Live> live,
                int64_t commit_every_steps, absl::Duration commit_interval,
                int64_t durable_step);
  absl::Status CommitNow();
  // With leases: renews the session's lease once a third of its ttl has
  // passed; if it had lapsed, checks that no other replica committed
  // meanwhile (ABORTED then, the network back at the store's state).
  absl::Status RenewLeaseLocked();

  NetworkCore* const core_;
  std::shared_ptr<NetworkCore::Live> live_;  // null once closed
  const std::string id_;
  const int64_t commit_every_steps_;
  const absl::Duration commit_interval_;
  int64_t uncommitted_steps_ = 0;
  absl::Time last_commit_;
  absl::Time lease_renewed_;
  int64_t durable_step_ = 0;
  bool closed_ = false;
  absl::Status close_status_;
};

}  // namespace satlab::core

#endif  // SATLAB_SERVER_CORE_NETWORK_CORE_H_
