// satlab export / import: a network to and from a portable export file
// (docs/storage.md, "Export files"), streamed in chunks with a progress bar.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cli/command.h"
#include "client/cli/format.h"
#include "client/cli/progress.h"
#include "client/cli/status_macros.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {
namespace {

// A bar over bytes, drawn only for files large enough to take a while.
constexpr int64_t kProgressMinBytes = int64_t{8} << 20;

std::string Megabytes(int64_t bytes) {
  return absl::StrCat(bytes >> 20, " MiB");
}

}  // namespace

Action DeclareExport(CLI::App& app) {
  struct Options {
    std::string name;
    std::string file;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Writes a network (spec, parameters, optimizer state, step) to a "
      "portable file that `satlab import` reads.\n"
      "  satlab export NAME FILE");
  app.add_option("NAME", o->name, "networks/ID or ID")->required();
  app.add_option("FILE", o->file, "the export file to write")->required();
  return [o](Context& ctx) -> absl::Status {
    const std::string name = NetworkNameArg(o->name);
    std::unique_ptr<ProgressBar> bar;
    SATLAB_RETURN_IF_ERROR(ctx.client->ExportNetworkToFile(
        name, o->file, [&](int64_t done, int64_t total) {
          if (bar == nullptr) {
            bar = std::make_unique<ProgressBar>(
                total, ctx.progress && total >= kProgressMinBytes);
          }
          bar->Update(done, Megabytes(done));
        }));
    if (bar != nullptr) bar->Finish("done");
    if (ctx.json) {
      std::cout << nlohmann::json{{"name", name}, {"file", o->file}}.dump()
                << "\n";
    } else {
      std::cout << "exported " << name << " to " << o->file << "\n";
    }
    return absl::OkStatus();
  };
}

Action DeclareImport(CLI::App& app) {
  struct Options {
    std::string file;
    std::string id;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Creates a network from a file written by `satlab export`; all or "
      "nothing.\n"
      "  satlab import FILE [--id ID]");
  app.add_option("FILE", o->file, "the export file to read")->required();
  app.add_option("--id", o->id,
                 "the new network's id (default: server-assigned)")
      ->type_name("ID");
  return [o](Context& ctx) -> absl::Status {
    std::unique_ptr<ProgressBar> bar;
    SATLAB_ASSIGN_OR_RETURN(
        network, ctx.client->ImportNetworkFromFile(
                     o->file, o->id, [&](int64_t done, int64_t total) {
                       if (bar == nullptr) {
                         bar = std::make_unique<ProgressBar>(
                             total, ctx.progress && total >= kProgressMinBytes);
                       }
                       bar->Update(done, Megabytes(done));
                     }));
    if (bar != nullptr) bar->Finish("done");
    if (ctx.json) {
      std::cout << ToJson(network) << "\n";
    } else {
      std::cout << NetworksTable({network});
    }
    return absl::OkStatus();
  };
}

}  // namespace satlab::cli
