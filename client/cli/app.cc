#include "client/cli/app.h"

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli/command.h"

namespace satlab::cli {
namespace {

// Every subcommand, in the order `satlab --help` lists them.
const std::vector<Command>& AllCommands() {
  static const auto* commands = new std::vector<Command>{
      {"create", "create a network", DeclareCreate},
      {"get", "show a network", DeclareGet},
      {"list", "list networks", DeclareList},
      {"delete", "delete a network", DeclareDelete},
      {"params", "get or set weights and biases (JSON)", DeclareParams},
      {"forward", "run inputs through a network", DeclareForward},
      {"grad", "loss, gradients and saturation, with counterfactual losses",
       DeclareGrad},
      {"step", "one optimizer step", DeclareStep},
      {"train", "train on a CSV dataset (progress bar)", DeclareTrain},
      {"eval", "evaluate on a dataset", DeclareEval},
      {"experiment", "run a saturation experiment (preset or spec.json)",
       DeclareExperiment},
      {"health", "health check (exit 0 when serving)", DeclareHealth},
      {"export", "write a network to a portable file", DeclareExport},
      {"import", "create a network from an exported file", DeclareImport},
      {"experiments", "kept experiments: get, list, delete",
       DeclareExperiments},
  };
  return *commands;
}

// CLI11's help with the usage line first, then the description: a
// command's full description (its summary is what `satlab --help` lists).
class HelpFormatter final : public CLI::Formatter {
 public:
  void SetDescription(const CLI::App* command, std::string description) {
    descriptions_[command] = std::move(description);
  }

  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
    const auto it = descriptions_.find(app);
    const std::string description =
        it != descriptions_.end() ? it->second : app->get_description();
    return absl::StrCat(make_usage(app, name), "\n", description, "\n",
                        make_positionals(app), make_groups(app, mode),
                        make_subcommands(app, mode), "\n", make_footer(app));
  }

 private:
  std::map<const CLI::App*, std::string> descriptions_;
};

// "satlab" or "satlab COMMAND", for messages.
std::string Prefix(const CLI::App* command) {
  return command == nullptr ? "satlab" : "satlab " + command->get_name();
}

// What went wrong: CLI11's own text, except for arguments nobody declared,
// which it reports as "not expected". `app` is the one they were given to;
// `root` when that is the top level (global options, the command's name).
std::string ParseErrorMessage(const CLI::ParseError& error, const CLI::App& app,
                              bool root) {
  const std::vector<std::string> extras = app.remaining();
  if (dynamic_cast<const CLI::ExtrasError*>(&error) == nullptr ||
      extras.empty()) {
    return error.what();
  }
  const std::string& first = extras.front();
  if (first.size() > 1 && first[0] == '-') {
    return absl::StrCat("unknown option ", first.substr(0, first.find('=')));
  }
  if (root) return absl::StrCat("unknown command \"", first, "\"");
  return absl::StrCat("unexpected argument \"", first, "\"");
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out,
           std::ostream& err) {
  ClientOptions options;
  if (const char* env = std::getenv("SATLAB_SERVER"); env != nullptr) {
    options.target = env;
  }
  // Credentials may come from the environment, so that a key stays out of
  // the shell history and the process list.
  const std::pair<const char*, std::string*> from_env[] = {
      {"SATLAB_API_KEY", &options.api_key},
      {"SATLAB_TLS_CA_FILE", &options.tls_ca_file},
      {"SATLAB_CLIENT_CERT_FILE", &options.tls_cert_file},
      {"SATLAB_CLIENT_KEY_FILE", &options.tls_key_file},
      {"SATLAB_TLS_SERVER_NAME", &options.tls_server_name}};
  for (const auto& [name, field] : from_env) {
    if (const char* env = std::getenv(name); env != nullptr) *field = env;
  }
  bool json = false;
  bool quiet = false;
  double timeout_seconds = absl::ToDoubleSeconds(options.timeout);

  CLI::App app(
      "Client of satlab-server (default server $SATLAB_SERVER or "
      "127.0.0.1:50051).",
      "satlab");
  // Set before the subcommands are added: they copy these settings.
  auto formatter = std::make_shared<HelpFormatter>();
  formatter->label("Usage", "usage");
  formatter->label("SUBCOMMAND", "COMMAND");
  formatter->column_width(26);
  app.formatter(formatter);
  // A repeated option takes its last value, as shell aliases expect.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.require_subcommand(0, 1);
  app.footer("'satlab COMMAND --help' describes a command.");

  app.add_option("--server", options.target,
                 "server address (default: $SATLAB_SERVER, else "
                 "127.0.0.1:50051)")
      ->type_name("HOST:PORT");
  app.add_flag("--tls", options.tls,
               "connect with TLS (implied by the --tls_* files)");
  app.add_option("--tls_ca_file", options.tls_ca_file,
                 "PEM CA certificates the server's certificate must chain "
                 "to (default: $SATLAB_TLS_CA_FILE, else the system's)")
      ->type_name("FILE");
  app.add_option("--tls_cert_file", options.tls_cert_file,
                 "PEM client certificate for mutual TLS (default: "
                 "$SATLAB_CLIENT_CERT_FILE)")
      ->type_name("FILE");
  app.add_option("--tls_key_file", options.tls_key_file,
                 "PEM private key of --tls_cert_file (default: "
                 "$SATLAB_CLIENT_KEY_FILE)")
      ->type_name("FILE");
  app.add_option("--tls_server_name", options.tls_server_name,
                 "name the server's certificate must carry, if not the "
                 "--server host (default: $SATLAB_TLS_SERVER_NAME)")
      ->type_name("NAME");
  app.add_option("--api_key", options.api_key,
                 "API key sent as 'authorization: Bearer' (default: "
                 "$SATLAB_API_KEY; prefer the variable: arguments are "
                 "visible to other users)")
      ->type_name("KEY");
  app.add_flag("--json", json, "print JSON (proto3 JSON) instead of tables");
  app.add_flag("--quiet", quiet, "no progress bars or notes on stderr");
  app.add_option("--timeout", timeout_seconds, "deadline of each call")
      ->capture_default_str()
      ->type_name("SECONDS")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            double seconds;
            if (absl::SimpleAtod(text, &seconds) && std::isfinite(seconds) &&
                seconds > 0) {
              return "";
            }
            return absl::StrCat("expected seconds > 0, got ", text);
          },
          ""));

  std::map<const CLI::App*, Action> actions;
  for (const Command& c : AllCommands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.summary);
    sub->group("Commands");
    actions[sub] = c.declare(*sub);
    formatter->SetDescription(sub, sub->get_description());
    sub->description(c.summary);
  }

  const CLI::App* command = nullptr;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e, out, err);  // --help
    }
    // Extras of the root (a misspelt global option) before the command's.
    if (app.remaining().empty() && !app.get_subcommands().empty()) {
      command = app.get_subcommands()[0];
    }
    const CLI::App& culprit = command != nullptr ? *command : app;
    err << Prefix(command) << ": "
        << ParseErrorMessage(e, culprit, command == nullptr) << " (see "
        << Prefix(command) << " --help)\n";
    return 2;
  }
  if (app.get_subcommands().empty()) {
    out << app.help();
    return 2;
  }
  command = app.get_subcommands()[0];
  options.timeout = absl::Seconds(timeout_seconds);
  if (const auto credentials = ChannelCredentialsOf(options);
      !credentials.ok()) {
    err << "satlab: " << credentials.status().message() << "\n";
    return 2;
  }
  Client client(options);
  Context ctx{&client, json, !quiet};
  const absl::Status status = actions.at(command)(ctx);
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    err << Prefix(command) << ": " << status.message() << " (see "
        << Prefix(command) << " --help)\n";
    return 2;
  }
  err << Prefix(command) << ": " << absl::StatusCodeToString(status.code())
      << ": " << status.message() << "\n";
  return 1;
}

}  // namespace satlab::cli
