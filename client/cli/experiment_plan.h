// What `satlab experiment` runs and what it gathers: a Plan of
// RunExperiment calls (presets.h builds them), and the Curves that come back
// (experiment_run.h collects them; experiment_report.h and
// experiment_figures.h write them out).
#ifndef SATLAB_CLIENT_CLI_EXPERIMENT_PLAN_H_
#define SATLAB_CLIENT_CLI_EXPERIMENT_PLAN_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "satlab/v1/experiment.pb.h"

namespace satlab::cli {

// One RunExperiment call of a plan; its variants are renumbered after the
// previous runs' and their labels get `suffix`.
struct Run {
  v1::ExperimentSpec spec;
  std::string suffix;
};

// What `satlab experiment X` does.
struct Plan {
  std::string name;   // file stem in --out
  std::string title;  // figure titles
  std::vector<Run> runs;
  bool classification = true;
  // Plot the output unit's activation a (single-neuron presets).
  bool plot_output = false;
};

// One variant's curve over all epochs (epoch 0 first).
struct Curve {
  int variant = 0;
  int run = 0;  // index into Plan::runs
  std::string label;
  std::vector<v1::EpochMetrics> epochs;
  v1::VariantSummary summary;
};

// Everything a plan's runs sent back.
struct PlanResult {
  std::vector<Curve> curves;
  // Per run: {"spec": ..., "summary": ...} as proto3 JSON.
  nlohmann::json runs = nlohmann::json::array();
  // The most hidden layers and epochs of any run.
  int hidden_layers = 0;
  int epochs = 0;
  // Server compute time of all runs.
  double elapsed_seconds = 0;
  // Wall time of all RunExperiment calls as this client saw them: the
  // compute plus sending the data, the server's checks and its durable
  // record, and the stream; not this process's start or its files. Shown
  // on the progress line only: the files hold results, which a replay of a
  // kept run (--id) writes again byte for byte.
  double call_seconds = 0;
};

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_EXPERIMENT_PLAN_H_
