#include "server/engine/experiment.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <numeric>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "server/engine/activation.h"
#include "server/engine/check.h"
#include "server/engine/loss.h"

namespace satlab::engine {
namespace {

MatrixView ViewOf(const RowMatrix<double>& m) {
  return {nullptr, m.data(), m.rows(), m.cols()};
}

// Where the fields of variant v's network live in an ExperimentSpec: the
// hidden layers are shared, the output layer, the loss and possibly the
// optimizer belong to the variant.
SpecFields VariantFields(const ExperimentSpec& spec, int v) {
  const std::string variant = absl::StrCat("spec.variants[", v, "]");
  SpecFields fields("spec");
  fields.layers = "spec.hidden_layers";
  fields.output_layer = absl::StrCat(variant, " (output layer)");
  fields.loss = absl::StrCat(variant, ".loss");
  if (spec.variants[v].optimizer.has_value()) {
    fields.optimizer = absl::StrCat(variant, ".optimizer");
  }
  return fields;
}

}  // namespace

std::string VariantLabel(const ExperimentVariantSpec& variant) {
  if (!variant.label.empty()) return variant.label;
  return absl::StrCat(ActivationName(variant.output_activation), "+",
                      LossName(variant.loss));
}

NetworkSpec VariantNetworkSpec(const ExperimentSpec& spec, int v,
                               int input_size, int output_size) {
  const ExperimentVariantSpec& variant = spec.variants[v];
  NetworkSpec out;
  out.input_size = input_size;
  out.layers = spec.hidden_layers;
  if (variant.hidden_activation.has_value()) {
    for (LayerSpec& layer : out.layers) {
      layer.activation = *variant.hidden_activation;
    }
  }
  LayerSpec output;
  output.units = output_size;
  output.activation = variant.output_activation;
  out.layers.push_back(output);
  out.loss = variant.loss;
  out.init = spec.init;
  out.optimizer = variant.optimizer.value_or(spec.optimizer);
  out.dtype = spec.dtype;
  out.saturation_threshold = spec.saturation_threshold;
  return out;
}

absl::Status ValidateExperiment(const ExperimentSpec& spec, const Dataset& data,
                                absl::string_view data_field,
                                const Limits& limits,
                                const ExperimentLimits& experiment_limits) {
  // The data: shapes, size, finiteness.
  const int64_t n = data.inputs.rows();
  if (n < 1 || data.inputs.cols() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        data_field, ".inputs: expected at least one row and one column, got [",
        n, ", ", data.inputs.cols(), "]"));
  }
  if (data.targets.rows() != n || data.targets.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(data_field, ".targets: expected ", n,
                     " rows (as inputs) and at least one column, got [",
                     data.targets.rows(), ", ", data.targets.cols(), "]"));
  }
  if (n > experiment_limits.max_samples) {
    return absl::ResourceExhaustedError(absl::StrCat(
        data_field, ": expected at most ", experiment_limits.max_samples,
        " rows (the server's experiment dataset limit), got ", n));
  }
  if (absl::Status s =
          CheckFinite(data.inputs.data(), data.inputs.rows(),
                      data.inputs.cols(), absl::StrCat(data_field, ".inputs"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckFinite(data.targets.data(), data.targets.rows(),
                                   data.targets.cols(),
                                   absl::StrCat(data_field, ".targets"));
      !s.ok()) {
    return s;
  }

  // Run length.
  if (spec.variants.empty()) {
    return absl::InvalidArgumentError(
        "spec.variants: expected at least one variant, got none");
  }
  if (static_cast<int64_t>(spec.variants.size()) >
      experiment_limits.max_variants) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "spec.variants: expected at most ", experiment_limits.max_variants,
        " (the server's variant limit), got ", spec.variants.size()));
  }
  if (spec.epochs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.epochs: expected >= 1, got ", spec.epochs));
  }
  if (spec.epochs > experiment_limits.max_epochs) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "spec.epochs: expected at most ", experiment_limits.max_epochs,
        " (the server's epoch limit), got ", spec.epochs));
  }
  if (spec.batch_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.batch_size: expected >= 0 (0 = whole dataset), got ",
                     spec.batch_size));
  }
  if (spec.batch_size > limits.max_batch_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("spec.batch_size: expected at most ",
                     limits.max_batch_rows, ", got ", spec.batch_size));
  }

  // Each variant's network (ValidateSpec checks the shared hidden layers
  // with the first).
  const int input_size = static_cast<int>(data.inputs.cols());
  const int output_size = static_cast<int>(data.targets.cols());
  int64_t parameters = 0;
  for (size_t v = 0; v < spec.variants.size(); ++v) {
    const ExperimentVariantSpec& variant = spec.variants[v];
    const std::string field = absl::StrCat("spec.variants[", v, "]");
    // The override replaces every hidden layer's activation, which
    // ValidateSpec would blame on spec.hidden_layers: name the override.
    if (variant.hidden_activation.has_value() &&
        IsValidActivation(*variant.hidden_activation) &&
        GetActivationOps<double>(*variant.hidden_activation).output_only) {
      return absl::InvalidArgumentError(absl::StrCat(
          field,
          ".hidden_activation: ", ActivationName(*variant.hidden_activation),
          " is only allowed on the output layer"));
    }
    const NetworkSpec net =
        VariantNetworkSpec(spec, static_cast<int>(v), input_size, output_size);
    if (absl::Status s =
            ValidateSpec(net, limits, VariantFields(spec, static_cast<int>(v)));
        !s.ok()) {
      return s;
    }
    parameters = std::max(parameters, ParameterCount(net));
    // Every minibatch is one TrainStep and every epoch ends with an
    // evaluation of the whole dataset: both must fit the scratch bound.
    const int64_t batch_rows =
        spec.batch_size == 0 ? n : std::min(spec.batch_size, n);
    for (const auto& [kind, rows, what] :
         {std::tuple(CallKind::kTrainStep, batch_rows, "a minibatch step"),
          std::tuple(CallKind::kEvaluate, n, "an evaluation")}) {
      const int64_t needed = CallScratchBytes(net, kind, rows);
      if (needed > limits.max_call_scratch_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "spec.batch_size: ", what, " of ", field, " over ", rows,
            " rows needs ", needed,
            " bytes of scratch, over the server's per-call scratch limit of ",
            limits.max_call_scratch_bytes,
            " bytes; use a smaller batch_size or fewer units"));
      }
    }
    if (GetLossOps<double>(variant.loss).unit_targets) {
      const auto& y = data.targets.array();
      if ((y < 0).any() || (y > 1).any()) {
        Eigen::Index r = 0, c = 0;
        ((y < 0) || (y > 1)).cast<int>().maxCoeff(&r, &c);
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".loss: ", LossName(variant.loss),
                         " needs targets in [0, 1], got ", data.targets(r, c),
                         " at ", data_field, ".targets[", r, ", ", c, "]"));
      }
    }
  }
  const double work = static_cast<double>(spec.epochs) *
                      static_cast<double>(n) *
                      static_cast<double>(spec.variants.size()) *
                      static_cast<double>(parameters);
  if (work > static_cast<double>(experiment_limits.max_work)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "spec.epochs: epochs x samples x variants x parameters = %d x %d x "
        "%d x %d = %.3g exceeds the server's experiment work limit of %.3g; "
        "use fewer epochs, rows, variants or units",
        spec.epochs, n, spec.variants.size(), parameters, work,
        static_cast<double>(experiment_limits.max_work)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LayerParams>> SharedInitialParameters(
    const ExperimentSpec& spec, const Dataset& data, const Limits& limits) try {
  const NetworkSpec net =
      VariantNetworkSpec(spec, 0, static_cast<int>(data.inputs.cols()),
                         static_cast<int>(data.targets.cols()));
  auto network = Network::Create(net, limits, VariantFields(spec, 0));
  if (!network.ok()) return network.status();
  std::vector<LayerParams> params;
  for (int l = 0; l < (*network)->num_layers(); ++l) {
    LayerParams p;
    std::visit([&](const auto& w) { p.weights = w.template cast<double>(); },
               (*network)->weights(l));
    std::visit([&](const auto& b) { p.biases = b.template cast<double>(); },
               (*network)->biases(l));
    params.push_back(std::move(p));
  }
  return params;
} catch (const std::bad_alloc&) {
  return absl::ResourceExhaustedError(
      "experiment: the server ran out of memory for the initial parameters");
}

VariantRun::VariantRun(const Dataset* data, int variant,
                       const ExperimentSpec& spec, const Limits& limits,
                       std::unique_ptr<Network> network)
    : data_(data),
      variant_(variant),
      max_scratch_bytes_(limits.max_call_scratch_bytes),
      epochs_(spec.epochs),
      batch_size_(
          spec.batch_size == 0
              ? data->inputs.rows()
              : std::min<int64_t>(spec.batch_size, data->inputs.rows())),
      shuffle_(spec.shuffle),
      network_(std::move(network)),
      rng_(spec.shuffle_seed),
      order_(static_cast<size_t>(data->inputs.rows())) {
  std::iota(order_.begin(), order_.end(), int64_t{0});
}

absl::StatusOr<std::unique_ptr<VariantRun>> VariantRun::Create(
    const ExperimentSpec& spec, const Dataset* data, int variant,
    absl::Span<const LayerParams> initial, const Limits& limits) try {
  NetworkSpec net =
      VariantNetworkSpec(spec, variant, static_cast<int>(data->inputs.cols()),
                         static_cast<int>(data->targets.cols()));
  net.init = InitSpec{};
  net.init.scheme = InitScheme::kExplicit;
  net.init.explicit_params.assign(initial.begin(), initial.end());
  auto network = Network::Create(net, limits, VariantFields(spec, variant));
  if (!network.ok()) return network.status();
  return std::unique_ptr<VariantRun>(
      new VariantRun(data, variant, spec, limits, *std::move(network)));
} catch (const std::bad_alloc&) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "spec.variants[", variant, "]: the server ran out of memory"));
}

namespace {

// The record of `network` evaluated on the whole dataset.
absl::StatusOr<EpochRecord> EvaluateRecord(const Network& network,
                                           const Dataset& data, int variant,
                                           int epoch, bool diverged,
                                           const CallOptions& options) {
  auto evaluated =
      network.Evaluate(ViewOf(data.inputs), ViewOf(data.targets), options);
  if (!evaluated.ok()) return evaluated.status();
  const EvalResult& eval = *evaluated;
  EpochRecord record;
  record.variant = variant;
  record.epoch = epoch;
  record.step = network.step();
  record.loss = eval.loss;
  record.accuracy = eval.accuracy;
  record.stats = eval.stats;
  record.diverged = diverged || !std::isfinite(eval.loss);
  return record;
}

CallOptions Cancellable(const std::atomic<bool>& cancelled,
                        int64_t max_scratch_bytes) {
  CallOptions options;
  options.max_scratch_bytes = max_scratch_bytes;
  options.stop = [&cancelled] {
    return cancelled.load(std::memory_order_relaxed)
               ? absl::CancelledError("the experiment was cancelled")
               : absl::OkStatus();
  };
  return options;
}

}  // namespace

EpochSnapshot::EpochSnapshot(const Dataset* data, int variant, int epoch,
                             bool diverged, int64_t max_scratch_bytes,
                             std::unique_ptr<Network> network)
    : data_(data),
      variant_(variant),
      epoch_(epoch),
      diverged_(diverged),
      max_scratch_bytes_(max_scratch_bytes),
      network_(std::move(network)) {}

absl::StatusOr<EpochRecord> EpochSnapshot::Evaluate(
    const std::atomic<bool>& cancelled) const {
  return EvaluateRecord(*network_, *data_, variant_, epoch_, diverged_,
                        Cancellable(cancelled, max_scratch_bytes_));
}

absl::StatusOr<EpochRecord> VariantRun::Evaluate() const {
  CallOptions options;
  options.max_scratch_bytes = max_scratch_bytes_;
  return EvaluateRecord(*network_, *data_, variant_, epoch_, diverged_,
                        options);
}

absl::Status VariantRun::ResizeBatch(int64_t rows) {
  try {
    if (batch_inputs_.rows() != rows) {
      // Emptied first: Eigen keeps a freed pointer if the allocation throws.
      batch_inputs_.resize(0, 0);
      batch_targets_.resize(0, 0);
    }
    batch_inputs_.resize(rows, data_->inputs.cols());
    batch_targets_.resize(rows, data_->targets.cols());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        "experiment: the server ran out of memory for a minibatch");
  }
  return absl::OkStatus();
}

absl::Status VariantRun::TrainSteps(const CallOptions& options) {
  const int64_t n = data_->inputs.rows();
  if (shuffle_) rng_.Shuffle(absl::MakeSpan(order_));
  const bool whole = !shuffle_ && batch_size_ == n;
  for (int64_t start = 0; start < n; start += batch_size_) {
    if (absl::Status s = options.stop(); !s.ok()) return s;
    absl::StatusOr<StepResult> step;
    if (whole) {
      step = network_->TrainStep(ViewOf(data_->inputs), ViewOf(data_->targets),
                                 options);
    } else {
      // Gather rows order_[start, start + rows) into the minibatch.
      const int64_t rows = std::min(batch_size_, n - start);
      if (absl::Status s = ResizeBatch(rows); !s.ok()) return s;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t source = order_[static_cast<size_t>(start + r)];
        batch_inputs_.row(r) = data_->inputs.row(source);
        batch_targets_.row(r) = data_->targets.row(source);
      }
      step = network_->TrainStep(ViewOf(batch_inputs_), ViewOf(batch_targets_),
                                 options);
    }
    if (!step.ok()) return step.status();
    diverged_ = diverged_ || step->diverged;
  }
  ++epoch_;
  return absl::OkStatus();
}

absl::StatusOr<EpochRecord> VariantRun::NextEpoch(
    const std::atomic<bool>& cancelled) {
  const CallOptions options = Cancellable(cancelled, max_scratch_bytes_);
  if (absl::Status s = TrainSteps(options); !s.ok()) return s;
  return EvaluateRecord(*network_, *data_, variant_, epoch_, diverged_,
                        options);
}

absl::StatusOr<EpochSnapshot> VariantRun::TrainEpoch(
    const std::atomic<bool>& cancelled) {
  const CallOptions options = Cancellable(cancelled, max_scratch_bytes_);
  if (absl::Status s = TrainSteps(options); !s.ok()) return s;
  auto copy = network_->Clone();
  if (!copy.ok()) return copy.status();
  return EpochSnapshot(data_, variant_, epoch_, diverged_, max_scratch_bytes_,
                       *std::move(copy));
}

void SummaryAccumulator::Add(const EpochRecord& record) {
  const double attenuation = record.stats.output_attenuation;
  if (count_ == 0) {
    summary_.initial_loss = record.loss;
    summary_.initial_output_attenuation = attenuation;
  } else if (summary_.epochs_to_half_loss == 0 &&
             record.loss < summary_.initial_loss / 2) {
    summary_.epochs_to_half_loss = record.epoch;
  }
  summary_.final_loss = record.loss;
  summary_.final_accuracy = record.accuracy;
  summary_.diverged = summary_.diverged || record.diverged;
  attenuation_sum_ += attenuation;
  ++count_;
  summary_.mean_output_attenuation =
      attenuation_sum_ / static_cast<double>(count_);
}

VariantSummary SummaryAccumulator::Result() const { return summary_; }

absl::Status ExperimentSchedule::Task::Run(const std::atomic<bool>& cancelled) {
  const ExperimentSchedule& s = *schedule_;
  switch (kind_) {
    case Kind::kStart: {
      auto run = VariantRun::Create(*s.spec_, s.data_, variant_, s.initial_,
                                    s.limits_);
      if (!run.ok()) return run.status();
      created_ = *std::move(run);
      auto record = created_->Evaluate();
      if (!record.ok()) return record.status();
      record_ = *std::move(record);
      return absl::OkStatus();
    }
    case Kind::kTrain: {
      auto snapshot = run_->TrainEpoch(cancelled);
      if (!snapshot.ok()) return snapshot.status();
      snapshot_.emplace(*std::move(snapshot));
      return absl::OkStatus();
    }
    case Kind::kEvaluate: {
      auto record = snapshot_->Evaluate(cancelled);
      if (!record.ok()) return record.status();
      record_ = *std::move(record);
      return absl::OkStatus();
    }
  }
  return absl::InternalError("experiment: unknown task kind");
}

ExperimentSchedule::ExperimentSchedule(const ExperimentSpec* spec,
                                       const Dataset* data,
                                       std::vector<LayerParams> initial,
                                       const Limits& limits, int active)
    : spec_(spec),
      data_(data),
      initial_(std::move(initial)),
      limits_(limits),
      active_(std::max(1, active)),
      states_(spec->variants.size()) {}

std::optional<ExperimentSchedule::Task> ExperimentSchedule::Next() {
  Task task;
  task.schedule_ = this;
  // Evaluations first: each holds a copy of a network, so they should not
  // pile up.
  if (!to_evaluate_.empty()) {
    task.kind_ = Task::Kind::kEvaluate;
    task.variant_ = to_evaluate_.front().variant();
    task.snapshot_.emplace(std::move(to_evaluate_.front()));
    to_evaluate_.pop_front();
    return task;
  }
  // Then a new variant while fewer than `active` are in flight, before any
  // started one trains on: with 2 workers and 3 variants, starting the
  // third only when a worker finds both others busy would leave it to run
  // alone at the end (a worker is always free for one of two variants),
  // its epochs one after the other on one core.
  if (started_ < static_cast<int>(states_.size()) && running_ < active_) {
    VariantState& state = states_[started_];
    state.busy = true;
    task.kind_ = Task::Kind::kStart;
    task.variant_ = started_++;
    ++running_;
    return task;
  }
  // The idle active variant with the fewest epochs trained (ties: the
  // lowest index) trains its next epoch.
  int best = -1;
  for (int v = 0; v < started_; ++v) {
    const VariantState& state = states_[v];
    if (state.busy || state.run == nullptr) continue;
    if (best < 0 || state.trained < states_[best].trained) best = v;
  }
  if (best >= 0) {
    VariantState& state = states_[best];
    state.busy = true;
    task.kind_ = Task::Kind::kTrain;
    task.variant_ = best;
    task.run_ = state.run.get();
    return task;
  }
  return std::nullopt;
}

std::vector<EpochRecord> ExperimentSchedule::Finish(Task task) {
  VariantState& state = states_[task.variant_];
  switch (task.kind_) {
    case Task::Kind::kStart:
      state.run = std::move(task.created_);
      state.records.emplace(0, *std::move(task.record_));
      state.busy = false;
      break;
    case Task::Kind::kTrain:
      state.busy = false;
      ++state.trained;
      to_evaluate_.push_back(std::move(*task.snapshot_));
      // The run is idle now (only its own train task touches it, and that
      // has finished): free it after its last epoch; the snapshots have
      // what is left to evaluate.
      if (state.trained == spec_->epochs) {
        state.run.reset();
        --running_;
      }
      break;
    case Task::Kind::kEvaluate: {
      const int epoch = task.record_->epoch;
      state.records.emplace(epoch, *std::move(task.record_));
      break;
    }
  }
  std::vector<EpochRecord> ready;
  for (auto it = state.records.begin();
       it != state.records.end() && it->first == state.next_record;
       it = state.records.erase(it)) {
    ready.push_back(std::move(it->second));
    ++state.next_record;
  }
  if (state.next_record > spec_->epochs && !ready.empty()) ++variants_done_;
  return ready;
}

absl::StatusOr<std::vector<std::vector<EpochRecord>>> RunExperiment(
    const ExperimentSpec& spec, const Dataset& data, const Limits& limits,
    const ExperimentLimits& experiment_limits, int threads) {
  if (absl::Status s =
          ValidateExperiment(spec, data, "dataset", limits, experiment_limits);
      !s.ok()) {
    return s;
  }
  auto initial = SharedInitialParameters(spec, data, limits);
  if (!initial.ok()) return initial.status();
  const std::atomic<bool> never(false);
  std::vector<std::vector<EpochRecord>> curves;
  if (threads <= 1) {
    for (size_t v = 0; v < spec.variants.size(); ++v) {
      auto run = VariantRun::Create(spec, &data, static_cast<int>(v), *initial,
                                    limits);
      if (!run.ok()) return run.status();
      auto first = (*run)->Evaluate();
      if (!first.ok()) return first.status();
      std::vector<EpochRecord> curve = {*std::move(first)};
      while (!(*run)->done()) {
        auto record = (*run)->NextEpoch(never);
        if (!record.ok()) return record.status();
        curve.push_back(*std::move(record));
      }
      curves.push_back(std::move(curve));
    }
    return curves;
  }

  curves.resize(spec.variants.size());
  const int active =
      std::min(static_cast<int>(spec.variants.size()), threads + 1);
  ExperimentSchedule schedule(&spec, &data, *std::move(initial), limits,
                              active);
  absl::Mutex mu;
  absl::CondVar changed;
  absl::Status failed;
  int running = 0;  // tasks out
  std::atomic<bool> stop(false);
  auto worker = [&] {
    mu.Lock();
    while (failed.ok() && !schedule.done()) {
      std::optional<ExperimentSchedule::Task> task = schedule.Next();
      if (!task.has_value()) {
        if (running == 0) break;  // cannot happen: nothing would wake us
        changed.Wait(&mu);
        continue;
      }
      ++running;
      mu.Unlock();
      absl::Status status = task->Run(stop);
      mu.Lock();
      --running;
      if (status.ok()) {
        for (EpochRecord& record : schedule.Finish(*std::move(task))) {
          curves[static_cast<size_t>(record.variant)].push_back(
              std::move(record));
        }
      } else if (failed.ok()) {
        failed = status;
        stop.store(true);
      }
      changed.SignalAll();
    }
    changed.SignalAll();
    mu.Unlock();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  if (!failed.ok()) return failed;
  return curves;
}

}  // namespace satlab::engine
