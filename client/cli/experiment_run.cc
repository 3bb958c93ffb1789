#include "client/cli/experiment_run.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/experiment_figures.h"
#include "client/cli/experiment_report.h"
#include "client/cli/figures.h"
#include "client/cli/progress.h"
#include "client/cli/status_macros.h"

namespace satlab::cli {
namespace {

// A label safe in a CSV cell and a gnuplot title.
std::string CleanLabel(const std::string& label) {
  return absl::StrReplaceAll(label, {{",", ";"}, {"\"", "'"}, {"\n", " "}});
}

// Epochs (0 included) times variants: what the progress bar counts. In
// int64: epochs + 1 overflows an int32 spec field at its maximum.
int64_t ProgressUnits(const Run& run) {
  return static_cast<int64_t>(run.spec.variants_size()) *
         (static_cast<int64_t>(run.spec.epochs()) + 1);
}

}  // namespace

void CurveSet::BeginRun(const Plan& plan, int run) {
  offset_ = static_cast<int>(curves_.size());
  variants_ = plan.runs[run].spec.variants_size();
  suffix_ = plan.runs[run].suffix;
  for (int v = 0; v < variants_; ++v) {
    Curve c;
    c.variant = offset_ + v;
    c.run = run;
    curves_.push_back(std::move(c));
  }
}

absl::StatusOr<Curve*> CurveSet::Find(int variant, const std::string& field) {
  if (variant < 0 || variant >= variants_) {
    return absl::DataLossError(
        absl::StrCat(field, ": expected a variant in 0..", variants_ - 1,
                     " (the spec has ", variants_, "), got ", variant));
  }
  return &curves_[offset_ + variant];
}

absl::Status CurveSet::AddEpoch(const v1::EpochMetrics& epoch) {
  SATLAB_ASSIGN_OR_RETURN(c, Find(epoch.variant(), "epoch.variant"));
  c->label = CleanLabel(epoch.label() + suffix_);
  c->epochs.push_back(epoch);
  c->epochs.back().set_variant(c->variant);
  c->epochs.back().set_label(c->label);
  return absl::OkStatus();
}

absl::Status CurveSet::AddSummary(const v1::VariantSummary& summary) {
  SATLAB_ASSIGN_OR_RETURN(c, Find(summary.variant(), "summary.variant"));
  c->summary = summary;
  c->summary.set_variant(c->variant);
  c->summary.set_label(c->label);
  return absl::OkStatus();
}

std::vector<Curve> CurveSet::Take() {
  for (Curve& c : curves_) {
    std::sort(
        c.epochs.begin(), c.epochs.end(),
        [](const auto& a, const auto& b) { return a.epoch() < b.epoch(); });
  }
  return std::move(curves_);
}

std::string ExperimentRunId(const Plan& plan, int run, const std::string& id) {
  if (id.empty() || plan.runs.size() == 1) return id;
  return absl::StrCat(id, "-", run + 1);
}

absl::StatusOr<PlanResult> RunPlan(Context& ctx, const Plan& plan,
                                   absl::Duration timeout, int parallelism,
                                   const std::string& id) {
  int64_t total = 0;
  for (const Run& run : plan.runs) total += ProgressUnits(run);
  ProgressBar bar(total, ctx.progress && !ctx.json);
  PlanResult result;
  CurveSet curves;
  int64_t done_before = 0;
  for (int r = 0; r < static_cast<int>(plan.runs.size()); ++r) {
    const Run& run = plan.runs[r];
    v1::RunExperimentRequest request;
    *request.mutable_spec() = run.spec;
    if (parallelism > 0) request.mutable_spec()->set_parallelism(parallelism);
    request.set_experiment_id(ExperimentRunId(plan, r, id));
    curves.BeginRun(plan, r);
    result.hidden_layers =
        std::max(result.hidden_layers, run.spec.hidden_layers_size());
    result.epochs = std::max(result.epochs, run.spec.epochs());
    // A malformed message stops the stream; its error is the result.
    absl::Status bad_message;
    const absl::Time call_start = absl::Now();
    auto summary = ctx.client->RunExperiment(
        request,
        [&](const v1::RunExperimentResponse& m) {
          if (m.has_epoch()) {
            bad_message = curves.AddEpoch(m.epoch());
            if (!bad_message.ok()) return false;
          }
          bar.Update(done_before + std::clamp<int64_t>(m.epochs_done(), 0,
                                                       ProgressUnits(run)),
                     absl::StrCat(run.spec.display_name(), " ", m.epochs_done(),
                                  "/", m.epochs_total()));
          return true;
        },
        timeout);
    const double call_seconds = absl::ToDoubleSeconds(absl::Now() - call_start);
    if (bad_message.ok() && summary.ok()) {
      for (const v1::VariantSummary& s : summary->variants()) {
        bad_message = curves.AddSummary(s);
        if (!bad_message.ok()) break;
      }
    }
    if (!bad_message.ok() || !summary.ok()) {
      bar.Finish("failed");
      return bad_message.ok() ? summary.status() : bad_message;
    }
    done_before += ProgressUnits(run);
    result.elapsed_seconds += summary->elapsed_seconds();
    result.call_seconds += call_seconds;
    v1::ExperimentSpec spec_copy = run.spec;
    if (spec_copy.dataset().has_inline_()) {
      // The data is in the CSV the user gave; keep the JSON readable.
      spec_copy.mutable_dataset()->mutable_inline_()->Clear();
    }
    result.runs.push_back(
        {{"spec", MessageJson(spec_copy)}, {"summary", MessageJson(*summary)}});
  }
  bar.Finish(
      absl::StrFormat("done in %.3f s of server compute, %.3f s of calls",
                      result.elapsed_seconds, result.call_seconds));
  result.curves = curves.Take();
  return result;
}

absl::Status WriteResults(Context& ctx, const Plan& plan,
                          const PlanResult& result, const std::string& dir,
                          bool figures) {
  SATLAB_RETURN_IF_ERROR(MakeDir(dir));
  const std::string stem = absl::StrCat(dir, "/", plan.name);
  SATLAB_RETURN_IF_ERROR(WriteFile(
      stem + ".csv", CurvesCsv(result.curves, result.hidden_layers + 1)));
  SATLAB_RETURN_IF_ERROR(
      WriteFile(stem + ".json", ExperimentJson(plan, result).dump() + "\n"));
  const Table table = SummaryTable(plan, result);
  SATLAB_RETURN_IF_ERROR(WriteFile(stem + "_summary.txt", table.ToString()));
  if (ctx.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Curve& c : result.curves) out.push_back(MessageJson(c.summary));
    std::cout
        << nlohmann::json({{"preset", plan.name}, {"variants", out}}).dump(1)
        << "\n";
  } else {
    std::cout << table.ToString();
  }

  if (!figures) return absl::OkStatus();
  if (!GnuplotAvailable()) {
    std::cerr << "note: gnuplot not found; wrote CSV/JSON only\n";
    return absl::OkStatus();
  }
  for (const Figure& f :
       CurveFigures(plan, result.curves, result.hidden_layers)) {
    SATLAB_RETURN_IF_ERROR(RenderFigure(f, dir));
  }
  if (ctx.progress && !ctx.json) {
    std::cerr << "wrote " << dir << "/" << plan.name
              << "{.csv,.json,_summary.txt} and figures (.png, .svg, .gp)\n";
  }
  return absl::OkStatus();
}

}  // namespace satlab::cli
