// Saturation experiments: one architecture, one dataset and one set of
// initial parameters shared by several loss/activation variants, each
// trained epoch by epoch and evaluated on the whole dataset after every
// epoch (and before the first, "epoch 0").
//
// Every variant is independent and deterministic: the same spec and data
// give bitwise-identical curves whatever the order or parallelism in which
// variants run. Shapes: n = rows of the dataset, d = input features,
// k = target columns (= output units).
#ifndef SATLAB_SERVER_ENGINE_EXPERIMENT_H_
#define SATLAB_SERVER_ENGINE_EXPERIMENT_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/engine/datasets.h"
#include "server/engine/network.h"
#include "server/engine/random.h"
#include "server/engine/spec.h"

namespace satlab::engine {

struct ExperimentVariantSpec {
  // Empty means "<output activation>+<loss>" (see VariantLabel).
  std::string label;
  Activation output_activation = Activation::kSigmoid;
  Loss loss = Loss::kMse;
  // Overrides of the experiment's hidden activation and optimizer.
  std::optional<Activation> hidden_activation;
  std::optional<OptimizerSpec> optimizer;
};

struct ExperimentSpec {
  // Hidden layers; the output layer has k units and each variant's
  // activation.
  std::vector<LayerSpec> hidden_layers;
  // Drawn once (for the first variant's shapes) and copied into every
  // variant, so all of them start from identical parameters.
  InitSpec init;
  std::vector<ExperimentVariantSpec> variants;
  int epochs = 1;
  // Rows per minibatch; 0 means n (full batch). The last minibatch of an
  // epoch holds the remainder.
  int64_t batch_size = 0;
  // Row order of each epoch: a Fisher-Yates shuffle of the previous epoch's
  // order with Rng(shuffle_seed), identical for every variant.
  uint64_t shuffle_seed = 0;
  bool shuffle = true;
  OptimizerSpec optimizer;
  DType dtype = DType::kFloat64;
  double saturation_threshold = 0.1;
};

// Server-side caps (RESOURCE_EXHAUSTED beyond them, naming the limit).
struct ExperimentLimits {
  int64_t max_samples = 100'000;
  int max_epochs = 100'000;
  int max_variants = 16;
  // epochs * n * variants * parameters: proportional to the multiply-adds of
  // the whole run (about 6 per unit of work: forward, backward, evaluation).
  // 2e10 is a few minutes of one core.
  int64_t max_work = 20'000'000'000;
};

// "<activation>+<loss>" unless the variant has a label.
std::string VariantLabel(const ExperimentVariantSpec& variant);

// The network of variant `v` on data with `input_size` features and
// `output_size` target columns (init as in spec; SharedInitialParameters
// replaces it).
NetworkSpec VariantNetworkSpec(const ExperimentSpec& spec, int v,
                               int input_size, int output_size);

// Checks the spec against the data before anything is allocated. Field names
// follow the proto (`spec.variants[1].loss`, `spec.epochs`, ...);
// `data_field` names the dataset in messages (e.g. "spec.dataset.inline").
// INVALID_ARGUMENT for a malformed spec or data, RESOURCE_EXHAUSTED over
// `limits`/`experiment_limits` (including a minibatch or evaluation whose
// scratch exceeds limits.max_call_scratch_bytes).
absl::Status ValidateExperiment(const ExperimentSpec& spec, const Dataset& data,
                                absl::string_view data_field,
                                const Limits& limits,
                                const ExperimentLimits& experiment_limits);

// The initial parameters every variant starts from, in float64 (exact for
// float32). Call after ValidateExperiment.
absl::StatusOr<std::vector<LayerParams>> SharedInitialParameters(
    const ExperimentSpec& spec, const Dataset& data, const Limits& limits);

// Metrics of one variant after one epoch, over the whole dataset.
struct EpochRecord {
  int variant = 0;
  int epoch = 0;          // 0 = before training
  int64_t step = 0;       // optimizer steps so far
  double loss = 0;        // mean loss over the n rows
  double accuracy = 0;    // in [0, 1]
  SaturationStats stats;  // with full-batch gradient norms
  bool diverged = false;  // some step so far was not finite (and skipped)
};

// An epoch trained but not yet evaluated: a copy of the network as the
// epoch left it. Any thread may evaluate it while the variant trains on,
// and gets the record VariantRun::NextEpoch would have returned.
class EpochSnapshot {
 public:
  // CANCELLED when `cancelled` turns true (checked between blocks);
  // RESOURCE_EXHAUSTED when out of memory.
  absl::StatusOr<EpochRecord> Evaluate(
      const std::atomic<bool>& cancelled) const;

  int variant() const { return variant_; }
  int epoch() const { return epoch_; }

 private:
  friend class VariantRun;
  EpochSnapshot(const Dataset* data, int variant, int epoch, bool diverged,
                int64_t max_scratch_bytes, std::unique_ptr<Network> network);

  const Dataset* data_;
  int variant_;
  int epoch_;
  bool diverged_;
  int64_t max_scratch_bytes_;
  std::unique_ptr<Network> network_;
};

// One variant, trained an epoch at a time (so a caller can interleave
// variants, pause for a slow reader, or stop between epochs).
class VariantRun {
 public:
  // `data` is borrowed and must outlive the run. `initial` comes from
  // SharedInitialParameters. Call after ValidateExperiment.
  static absl::StatusOr<std::unique_ptr<VariantRun>> Create(
      const ExperimentSpec& spec, const Dataset* data, int variant,
      absl::Span<const LayerParams> initial, const Limits& limits);

  // Epoch-0 (or current) metrics without training. RESOURCE_EXHAUSTED when
  // out of memory.
  absl::StatusOr<EpochRecord> Evaluate() const;

  // Trains one epoch (ceil(n / batch_size) steps) and evaluates. CANCELLED
  // when `cancelled` turns true; it is checked before every step and
  // between the layers and blocks of each step and evaluation, and the run
  // must not be continued afterwards. RESOURCE_EXHAUSTED when out of memory.
  absl::StatusOr<EpochRecord> NextEpoch(const std::atomic<bool>& cancelled);

  // The same training as NextEpoch, with the evaluation left to the
  // returned snapshot (a copy of the network: the run may train on).
  absl::StatusOr<EpochSnapshot> TrainEpoch(const std::atomic<bool>& cancelled);

  int epochs_done() const { return epoch_; }
  bool done() const { return epoch_ >= epochs_; }
  const Network& network() const { return *network_; }

 private:
  VariantRun(const Dataset* data, int variant, const ExperimentSpec& spec,
             const Limits& limits, std::unique_ptr<Network> network);

  // The steps of one epoch (NextEpoch and TrainEpoch without evaluation).
  absl::Status TrainSteps(const CallOptions& options);
  // Sizes the minibatch buffers to `rows`; RESOURCE_EXHAUSTED when out of
  // memory.
  absl::Status ResizeBatch(int64_t rows);

  const Dataset* const data_;
  const int variant_;
  const int64_t max_scratch_bytes_;
  const int epochs_;
  const int64_t batch_size_;
  const bool shuffle_;
  std::unique_ptr<Network> network_;
  Rng rng_;
  std::vector<int64_t> order_;  // row order of the current epoch
  RowMatrix<double> batch_inputs_, batch_targets_;  // gathered minibatch
  int epoch_ = 0;
  bool diverged_ = false;
};

// Summary of one variant's curve, built epoch by epoch (no curve is kept).
struct VariantSummary {
  double initial_loss = 0;
  double final_loss = 0;
  double final_accuracy = 0;
  // First epoch whose loss < initial_loss / 2; 0 if none.
  int epochs_to_half_loss = 0;
  double initial_output_attenuation = 0;
  // Mean of output_attenuation over epochs 0..E.
  double mean_output_attenuation = 0;
  bool diverged = false;
};

class SummaryAccumulator {
 public:
  // Records must arrive in epoch order, starting with epoch 0.
  void Add(const EpochRecord& record);
  VariantSummary Result() const;

 private:
  VariantSummary summary_;
  double attenuation_sum_ = 0;
  int64_t count_ = 0;
};

// The work of an experiment as tasks for a pool of workers, so that the
// variants and the evaluations of their epochs use every core: each
// variant's epochs are trained in order, one task at a time, and each
// trained epoch is evaluated by a task of its own on a copy of the network
// (EpochSnapshot) while the variant trains on. At most `active` variants
// hold a network at once, and a new one starts as soon as fewer are in
// flight; among them the one with the fewest epochs trained goes first, so
// that when there are more variants than workers (digits: 3 on 2 cores)
// they advance together instead of leaving the last one alone at the end.
// Records do not depend on the number of workers or on the order tasks run in,
// and Finish hands them back per variant in epoch order.
//
// Not thread-safe: the caller holds one lock around Next and Finish and
// runs Task::Run outside it (different tasks touch different variants).
class ExperimentSchedule {
 public:
  class Task {
   public:
    // The task's numerics. CANCELLED when `cancelled` turns true,
    // RESOURCE_EXHAUSTED when out of memory.
    absl::Status Run(const std::atomic<bool>& cancelled);
    int variant() const { return variant_; }

   private:
    friend class ExperimentSchedule;
    enum class Kind { kStart, kTrain, kEvaluate };
    const ExperimentSchedule* schedule_ = nullptr;
    Kind kind_ = Kind::kStart;
    int variant_ = 0;
    VariantRun* run_ = nullptr;              // kTrain: the variant's run
    std::unique_ptr<VariantRun> created_;    // kStart's result
    std::optional<EpochSnapshot> snapshot_;  // kTrain's result, kEvaluate's
    std::optional<EpochRecord> record_;      // kStart's, kEvaluate's result
  };

  // Call after ValidateExperiment; `initial` from SharedInitialParameters.
  // `spec` and `data` are borrowed. active >= 1.
  ExperimentSchedule(const ExperimentSpec* spec, const Dataset* data,
                     std::vector<LayerParams> initial, const Limits& limits,
                     int active);

  // A task that may run now, or nullopt when none can (each unfinished
  // variant is being trained and nothing waits for evaluation).
  std::optional<Task> Next();
  // Takes back a task whose Run succeeded; returns the records it made
  // ready (each variant's in epoch order, epoch 0 first).
  std::vector<EpochRecord> Finish(Task task);
  // Every record of every variant handed out by Finish.
  bool done() const {
    return variants_done_ == static_cast<int>(states_.size());
  }

 private:
  struct VariantState {
    std::unique_ptr<VariantRun> run;
    bool busy = false;    // a kStart or kTrain task is out
    int trained = 0;      // epochs trained (snapshots made)
    int next_record = 0;  // the epoch Finish hands out next
    // Evaluated out of order, waiting for the epochs before them.
    std::map<int, EpochRecord> records;
  };

  const ExperimentSpec* const spec_;
  const Dataset* const data_;
  const std::vector<LayerParams> initial_;
  const Limits limits_;
  const int active_;
  std::vector<VariantState> states_;
  std::deque<EpochSnapshot> to_evaluate_;
  int started_ = 0;  // variants started (in index order)
  int running_ = 0;  // started and not finished training
  int variants_done_ = 0;
};

// Runs every variant (tests, benchmarks): curves[v][e] is variant v after
// epoch e, e = 0..epochs. threads <= 1: one variant after the other on the
// calling thread; more: an ExperimentSchedule over that many threads
// (threads + 1 variants active). The curves are the same bits either way.
absl::StatusOr<std::vector<std::vector<EpochRecord>>> RunExperiment(
    const ExperimentSpec& spec, const Dataset& data, const Limits& limits,
    const ExperimentLimits& experiment_limits, int threads = 1);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_EXPERIMENT_H_
