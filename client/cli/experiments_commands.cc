// `satlab experiments get|list|delete`: the experiments the server keeps
// (`experiments/{id}`, issue 12). To write a kept run's CSV, JSON and
// figures again, run the same `satlab experiment ... --id ID` command: the
// server streams the kept run back instead of training.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "client/cli/command.h"
#include "client/cli/format.h"
#include "client/cli/status_macros.h"

namespace satlab::cli {
namespace {

constexpr char kExperimentNameHelp[] = "experiments/ID or ID";

std::string ExperimentNameArg(const std::string& name) {
  return absl::StartsWith(name, "experiments/")
             ? name
             : absl::StrCat("experiments/", name);
}

std::string StateName(v1::ExperimentState state) {
  const std::string& full = v1::ExperimentState_Name(state);
  if (full.empty()) return absl::StrCat(static_cast<int>(state));
  absl::string_view name = full;
  absl::ConsumePrefix(&name, "EXPERIMENT_STATE_");
  return std::string(name);
}

Table ExperimentsTable(const std::vector<v1::Experiment>& experiments) {
  Table table({"name", "state", "display name", "variants", "epochs"});
  for (const v1::Experiment& e : experiments) {
    table.AddRow({e.name(), StateName(e.state()), e.spec().display_name(),
                  absl::StrCat(e.spec().variants_size()),
                  absl::StrCat(e.spec().epochs())});
  }
  return table;
}

}  // namespace

Action DeclareExperiments(CLI::App& app) {
  struct Options {
    std::string name;
    CLI::App* get = nullptr;
    CLI::App* list = nullptr;
    CLI::App* del = nullptr;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "The experiments the server keeps (experiments/ID):\n"
      "  satlab experiments get NAME | list | delete NAME\n"
      "Fetch a kept run's files again with the same `satlab experiment ... "
      "--id ID` command.");
  app.require_subcommand(1);
  o->get = app.add_subcommand("get", "spec, state, curves and summary");
  o->get->add_option("NAME", o->name, kExperimentNameHelp)->required();
  o->list = app.add_subcommand("list", "every kept experiment");
  o->del = app.add_subcommand("delete", "delete a finished experiment");
  o->del->add_option("NAME", o->name, kExperimentNameHelp)->required();
  return [o](Context& ctx) -> absl::Status {
    if (o->get->parsed()) {
      SATLAB_ASSIGN_OR_RETURN(
          e, ctx.client->GetExperiment(ExperimentNameArg(o->name)));
      if (ctx.json) {
        std::cout << ToJson(e) << "\n";
        return absl::OkStatus();
      }
      std::cout << ExperimentsTable({e}).ToString();
      Table summary({"variant", "initial loss", "final loss", "final acc"});
      for (const v1::VariantSummary& v : e.summary().variants()) {
        summary.AddRow({v.label(), absl::StrFormat("%.6g", v.initial_loss()),
                        absl::StrFormat("%.6g", v.final_loss()),
                        absl::StrFormat("%.4f", v.final_accuracy())});
      }
      if (e.summary().variants_size() > 0) std::cout << summary.ToString();
      std::cout << e.curves_size() << " epoch messages kept"
                << (e.curves_truncated() ? " (truncated)" : "") << "\n";
      if (!e.error().empty()) std::cout << "error: " << e.error() << "\n";
      return absl::OkStatus();
    }
    if (o->list->parsed()) {
      std::vector<v1::Experiment> all;
      std::string token;
      do {
        SATLAB_ASSIGN_OR_RETURN(page, ctx.client->ListExperiments(1000, token));
        for (auto& e : *page.mutable_experiments()) all.push_back(std::move(e));
        token = page.next_page_token();
      } while (!token.empty());
      if (ctx.json) {
        v1::ListExperimentsResponse response;
        for (auto& e : all) *response.add_experiments() = e;
        std::cout << ToJson(response) << "\n";
      } else {
        std::cout << ExperimentsTable(all).ToString();
      }
      return absl::OkStatus();
    }
    SATLAB_RETURN_IF_ERROR(
        ctx.client->DeleteExperiment(ExperimentNameArg(o->name)));
    if (ctx.json) {
      std::cout << "{}\n";
    } else {
      std::cout << "deleted " << ExperimentNameArg(o->name) << "\n";
    }
    return absl::OkStatus();
  };
}

}  // namespace satlab::cli
