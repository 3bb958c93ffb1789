// The satlab CLI's subcommands. Each takes its own arguments (after the
// subcommand name), prints a table or, with --json, JSON to stdout, and
// returns a status (non-OK statuses are printed by main and give exit 1).
#ifndef SATLAB_CLIENT_CLI_COMMANDS_H_
#define SATLAB_CLIENT_CLI_COMMANDS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/client.h"

namespace satlab::cli {

struct Context {
  Client* client = nullptr;
  // Print JSON instead of tables.
  bool json = false;
  // Progress bars and notes go to stderr; false with --quiet.
  bool progress = true;
};

using CommandFn =
    std::function<absl::Status(Context&, const std::vector<std::string>&)>;

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
};

// Every subcommand, in the order `satlab --help` lists them.
const std::vector<Command>& AllCommands();

// Accepts "networks/x" or "x".
std::string NetworkNameArg(const std::string& arg);

// Defined in experiment.cc.
absl::Status RunExperimentCommand(Context& ctx,
                                  const std::vector<std::string>& argv);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_COMMANDS_H_
