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

  int epochs_done() const { return epoch_; }
  bool done() const { return epoch_ >= epochs_; }
  const Network& network() const { return *network_; }

 private:
  VariantRun(const Dataset* data, int variant, const ExperimentSpec& spec,
             const Limits& limits, std::unique_ptr<Network> network);

  absl::StatusOr<EpochRecord> EvaluateWith(const CallOptions& options) const;
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

// Runs every variant in order (tests, benchmarks): curves[v][e] is variant
// v after epoch e, e = 0..epochs.
absl::StatusOr<std::vector<std::vector<EpochRecord>>> RunExperiment(
    const ExperimentSpec& spec, const Dataset& data, const Limits& limits,
    const ExperimentLimits& experiment_limits);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_EXPERIMENT_H_
