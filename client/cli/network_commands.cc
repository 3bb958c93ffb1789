// The commands that manage networks: get, list, delete, params, health
// (create has its own file, create.cc).
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/command.h"
#include "client/cli/data.h"
#include "client/cli/format.h"
#include "client/cli/status_macros.h"
#include "nlohmann/json.hpp"

namespace satlab::cli {
namespace {

constexpr char kNameHelp[] = "networks/ID or ID";

// One network as a table, or as JSON with --json.
void PrintNetwork(const Context& ctx, const v1::Network& network) {
  if (ctx.json) {
    std::cout << ToJson(network) << "\n";
  } else {
    std::cout << NetworksTable({network});
  }
}

}  // namespace

Action DeclareGet(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  app.description("Shows a network.");
  app.add_option("NAME", *name, kNameHelp)->required();
  return [name](Context& ctx) -> absl::Status {
    SATLAB_ASSIGN_OR_RETURN(network,
                            ctx.client->GetNetwork(NetworkNameArg(*name)));
    PrintNetwork(ctx, network);
    return absl::OkStatus();
  };
}

Action DeclareList(CLI::App& app) {
  struct Options {
    int32_t page_size = 0;
    std::string page_token;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Lists networks in name order (every page unless --page-size).");
  CLI::Option* page_size = AddInteger(app, "--page-size", &o->page_size,
                                      "networks per page (one page only)", 0,
                                      std::numeric_limits<int32_t>::max());
  app.add_option("--page-token", o->page_token,
                 "token printed after the previous page")
      ->type_name("T");
  return [o, page_size](Context& ctx) -> absl::Status {
    if (page_size->count() > 0) {
      SATLAB_ASSIGN_OR_RETURN(
          page, ctx.client->ListNetworks(o->page_size, o->page_token));
      if (ctx.json) {
        std::cout << ToJson(page) << "\n";
        return absl::OkStatus();
      }
      std::cout << NetworksTable(
          {page.networks().begin(), page.networks().end()});
      if (!page.next_page_token().empty()) {
        std::cout << "next page: --page-token " << page.next_page_token()
                  << "\n";
      }
      return absl::OkStatus();
    }
    SATLAB_ASSIGN_OR_RETURN(all, ctx.client->ListAllNetworks());
    if (ctx.json) {
      v1::ListNetworksResponse response;
      for (auto& n : all) *response.add_networks() = n;
      std::cout << ToJson(response) << "\n";
    } else {
      std::cout << NetworksTable(all);
    }
    return absl::OkStatus();
  };
}

Action DeclareDelete(CLI::App& app) {
  auto name = std::make_shared<std::string>();
  app.description("Deletes a network.");
  app.add_option("NAME", *name, kNameHelp)->required();
  return [name](Context& ctx) -> absl::Status {
    SATLAB_RETURN_IF_ERROR(ctx.client->DeleteNetwork(NetworkNameArg(*name)));
    if (ctx.json) {
      std::cout << "{}\n";
    } else {
      std::cout << "deleted " << NetworkNameArg(*name) << "\n";
    }
    return absl::OkStatus();
  };
}

Action DeclareParams(CLI::App& app) {
  struct Options {
    std::string verb;
    std::string name;
    std::string json;
    bool reset_optimizer = false;
  };
  auto o = std::make_shared<Options>();
  app.description(
      "Reads or replaces every layer's weights and biases, as JSON "
      "{\"layers\":[{\"weights\":[[..]],\"biases\":[..]}]} (weights "
      "are [fan_in][units]).\n"
      "  satlab params get NAME | satlab params set NAME JSON|@FILE");
  app.add_option("get|set", o->verb, "read or write")
      ->required()
      ->check(CLI::IsMember({"get", "set"}));
  app.add_option("NAME", o->name, kNameHelp)->required();
  app.add_option("JSON", o->json, "set: the parameters, or @file.json");
  app.add_flag("--reset-optimizer", o->reset_optimizer,
               "set: also zero momentum / Adam moments");
  return [o](Context& ctx) -> absl::Status {
    if (o->verb == "get") {
      SATLAB_ASSIGN_OR_RETURN(
          params, ctx.client->GetParameters(NetworkNameArg(o->name)));
      SATLAB_ASSIGN_OR_RETURN(json, ParamsToJson(params));
      // Parameters are data: JSON is the readable form too.
      std::cout << json.dump(ctx.json ? -1 : 2) << "\n";
      return absl::OkStatus();
    }
    if (o->json.empty()) return UsageError("params set needs JSON or @FILE");
    SATLAB_ASSIGN_OR_RETURN(text, TextOrFile(o->json));
    v1::SetParametersRequest request;
    request.set_name(NetworkNameArg(o->name));
    request.set_reset_optimizer_state(o->reset_optimizer);
    SATLAB_RETURN_IF_ERROR(ParamsFromJson(text, &request));
    SATLAB_ASSIGN_OR_RETURN(network, ctx.client->SetParameters(request));
    if (ctx.json) {
      std::cout << ToJson(network) << "\n";
    } else {
      std::cout << "set parameters of " << network.name() << " (step "
                << network.step() << ")\n";
    }
    return absl::OkStatus();
  };
}

Action DeclareHealth(CLI::App& app) {
  auto service = std::make_shared<std::string>("satlab.v1.TrainingService");
  app.description(
      "grpc.health.v1 check; exit 0 when SERVING (for container health "
      "checks).");
  app.add_option("SERVICE", *service,
                 "service name (\"\" for the whole server)")
      ->capture_default_str();
  return [service](Context& ctx) -> absl::Status {
    SATLAB_ASSIGN_OR_RETURN(serving, ctx.client->CheckHealth(*service));
    if (ctx.json) {
      std::cout << nlohmann::json{{"service", *service},
                                  {"status",
                                   serving ? "SERVING" : "NOT_SERVING"}}
                       .dump()
                << "\n";
    } else {
      std::cout << (service->empty() ? "server" : *service) << ": "
                << (serving ? "SERVING" : "NOT_SERVING") << "\n";
    }
    if (!serving) return absl::UnavailableError(*service + " is not serving");
    return absl::OkStatus();
  };
}

}  // namespace satlab::cli
