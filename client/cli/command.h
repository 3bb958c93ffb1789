// What every satlab subcommand shares: the context it runs in, how it
// declares its arguments on the argument parser (CLI11, see app.h), and the
// typed option helpers whose errors name the option, what was expected and
// what arrived.
#ifndef SATLAB_CLIENT_CLI_COMMAND_H_
#define SATLAB_CLIENT_CLI_COMMAND_H_

#include <cstdint>
#include <functional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/client.h"

namespace satlab::cli {

struct Context {
  Client* client = nullptr;
  // Print JSON instead of tables.
  bool json = false;
  // Progress bars and notes go to stderr; false with --quiet.
  bool progress = true;
};

// Runs a parsed command. A non-OK status is printed by RunCli: exit 2 when
// it is a UsageError, 1 otherwise (the call failed).
using Action = std::function<absl::Status(Context&)>;

// A subcommand: `declare` adds its positionals and options to `app`, bound
// to storage that the returned Action owns, and returns that Action.
struct Command {
  std::string name;
  std::string summary;
  std::function<Action(CLI::App& app)> declare;
};

// The arguments make no sense together, found after parsing (e.g. neither
// --spec nor --layers): INVALID_ARGUMENT marked so that it exits 2, as
// parse errors do, and never mistaken for a server's INVALID_ARGUMENT.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

// Accepts "networks/x" or "x".
std::string NetworkNameArg(const std::string& arg);

// A double option; a value that is not a number is a parse error
// ("--lr: expected a number, got "abc"").
CLI::Option* AddNumber(CLI::App& app, const std::string& name, double* value,
                       const std::string& help);
// An integer option in [min, max]; anything else is a parse error
// ("--epochs: expected an integer in 1..1000000, got "0""), so the value
// always fits T.
template <typename T>
CLI::Option* AddInteger(CLI::App& app, const std::string& name, T* value,
                        const std::string& help, int64_t min, int64_t max);

// The declarations of the subcommands, one per command, in files by
// concern: create.cc; network_commands.cc (get, list, delete, params,
// health); compute_commands.cc (forward, grad, step, train, eval);
// experiment.cc.
Action DeclareCreate(CLI::App& app);
Action DeclareGet(CLI::App& app);
Action DeclareList(CLI::App& app);
Action DeclareDelete(CLI::App& app);
Action DeclareParams(CLI::App& app);
Action DeclareHealth(CLI::App& app);
Action DeclareForward(CLI::App& app);
Action DeclareGrad(CLI::App& app);
Action DeclareStep(CLI::App& app);
Action DeclareTrain(CLI::App& app);
Action DeclareEval(CLI::App& app);
Action DeclareExperiment(CLI::App& app);
// transfer_commands.cc: export, import.
Action DeclareExport(CLI::App& app);
Action DeclareImport(CLI::App& app);
Action DeclareExperiments(CLI::App& app);

// --- implementation ---

// The validator behind AddInteger (not a template: one copy of the text).
CLI::Validator IntegerIn(int64_t min, int64_t max);

template <typename T>
CLI::Option* AddInteger(CLI::App& app, const std::string& name, T* value,
                        const std::string& help, int64_t min, int64_t max) {
  return app.add_option(name, *value, help)
      ->check(IntegerIn(min, max))
      ->type_name("N");
}

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_COMMAND_H_
