// `satlab experiment PRESET|spec.json --out DIR`: runs saturation
// experiments through RunExperiment (or, for `factor`, one ComputeGradients
// call), prints a summary table, and writes every curve as CSV and JSON and
// every figure as PNG and SVG (rendered by gnuplot) into DIR.
//
// The pieces: presets.h (what each preset runs), experiment_run.h (the run
// loop), experiment_report.h (CSV, JSON, tables), experiment_figures.h,
// factor.h.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/command.h"
#include "client/cli/experiment_run.h"
#include "client/cli/factor.h"
#include "client/cli/presets.h"
#include "client/cli/status_macros.h"

namespace satlab::cli {
namespace {

struct ExperimentOptions {
  std::string what;
  std::string out = "satlab-experiment";
  int epochs = 0;
  std::string digits = kDigitsPath;
  int parallelism = 0;
  double timeout_seconds = 0;
  bool no_figures = false;
  std::string id;
};

absl::StatusOr<Plan> PlanFor(const ExperimentOptions& o) {
  if (o.what == "nielsen") return NielsenPlan(o.epochs);
  if (o.what == "glorot") return GlorotPlan(o.epochs, o.digits);
  if (o.what == "digits") return DigitsPlan(o.epochs, o.digits);
  if (absl::EndsWith(o.what, ".json")) return SpecFilePlan(o.what, o.epochs);
  return UsageError(absl::StrCat(
      "PRESET: expected nielsen, factor, glorot, digits or a .json spec, "
      "got \"",
      o.what, "\""));
}

absl::Status RunExperimentCommand(Context& ctx, const ExperimentOptions& o) {
  const bool figures = !o.no_figures;
  if (o.what == "factor") return RunFactor(ctx, o.out, figures);
  // Connect (gRPC's own threads: name resolution, TCP, HTTP/2 handshake)
  // while this thread reads the preset's data, instead of after.
  ctx.client->channel()->GetState(/*try_to_connect=*/true);
  SATLAB_ASSIGN_OR_RETURN(plan, PlanFor(o));
  const absl::Duration timeout = o.timeout_seconds > 0
                                     ? absl::Seconds(o.timeout_seconds)
                                     : absl::InfiniteDuration();
  SATLAB_ASSIGN_OR_RETURN(result,
                          RunPlan(ctx, plan, timeout, o.parallelism, o.id));
  return WriteResults(ctx, plan, result, o.out, figures);
}

}  // namespace

Action DeclareExperiment(CLI::App& app) {
  auto o = std::make_shared<ExperimentOptions>();
  app.description(
      "Runs a saturation experiment; writes curves (CSV, JSON) and "
      "figures (PNG, SVG via gnuplot) to --out.\n"
      "  satlab experiment nielsen|factor|glorot|digits|SPEC.json "
      "[--out DIR]");
  app.add_option("PRESET|SPEC.json", o->what,
                 "a preset name, or an ExperimentSpec in proto3 JSON")
      ->required();
  app.add_option("--out", o->out, "output directory")
      ->capture_default_str()
      ->type_name("DIR");
  AddInteger(app, "--epochs", &o->epochs,
             "override the preset's epochs (0 = keep)", 0, 1'000'000)
      ->capture_default_str();
  app.add_option("--digits", o->digits,
                 "the digits CSV (64 pixel columns 0..16 + label)")
      ->capture_default_str()
      ->type_name("FILE");
  AddInteger(app, "--parallelism", &o->parallelism,
             "server compute threads the experiment uses (0 = all)", 0, 1 << 20)
      ->capture_default_str();
  AddNumber(app, "--timeout", &o->timeout_seconds,
            "deadline of each run in seconds (0 = none)")
      ->capture_default_str();
  app.add_flag("--no-figures", o->no_figures, "write CSV/JSON only");
  app.add_option("--id", o->id,
                 "keep the run on the server as experiments/ID (ID-1, ID-2, "
                 "... for presets of several runs); the same command with "
                 "the same ID later fetches the kept runs and writes the same "
                 "files without training again")
      ->type_name("ID");
  return [o](Context& ctx) { return RunExperimentCommand(ctx, *o); };
}

}  // namespace satlab::cli
