// satlab: command-line client of satlab-server.
//   satlab [--server HOST:PORT] [--json] [--timeout SECONDS] COMMAND [ARGS]
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"

namespace {

void PrintUsage() {
  std::cout << "usage: satlab [--server HOST:PORT] [--json] [--quiet] "
               "[--timeout SECONDS] COMMAND [ARGS]\n\n"
               "Client of satlab-server (default server $SATLAB_SERVER or "
               "127.0.0.1:50051).\n\ncommands:\n";
  for (const auto& c : satlab::cli::AllCommands()) {
    std::cout << absl::StrFormat("  %-12s %s\n", c.name, c.summary);
  }
  std::cout << "\n'satlab COMMAND --help' describes a command.\n";
}

}  // namespace

int main(int argc, char** argv) {
  satlab::ClientOptions options;
  if (const char* env = std::getenv("SATLAB_SERVER"); env != nullptr) {
    options.target = env;
  }
  bool json = false;
  bool quiet = false;
  int i = 1;
  // Global options come before the command.
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (arg.size() > flag.size() && arg[flag.size()] == '=') {
        return arg.substr(flag.size() + 1);
      }
      if (i + 1 < argc) return argv[++i];
      std::cerr << "satlab: " << flag << " needs a value\n";
      std::exit(2);
    };
    if (arg == "--help" || arg == "-h") {
      PrintUsage();
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--quiet") {
      quiet = true;
    } else if (arg.rfind("--server", 0) == 0) {
      options.target = value("--server");
    } else if (arg.rfind("--timeout", 0) == 0) {
      double seconds;
      const std::string text = value("--timeout");
      if (!absl::SimpleAtod(text, &seconds) || seconds <= 0) {
        std::cerr << "satlab: --timeout: expected seconds > 0, got " << text
                  << "\n";
        return 2;
      }
      options.timeout = absl::Seconds(seconds);
    } else {
      break;
    }
  }
  if (i >= argc) {
    PrintUsage();
    return 2;
  }
  const std::string command = argv[i];
  const std::vector<std::string> args(argv + i + 1, argv + argc);
  for (const auto& c : satlab::cli::AllCommands()) {
    if (c.name != command) continue;
    satlab::Client client(options);
    satlab::cli::Context ctx{&client, json, !quiet};
    absl::Status status = c.run(ctx, args);
    if (!status.ok()) {
      std::cerr << "satlab " << command << ": "
                << absl::StatusCodeToString(status.code()) << ": "
                << status.message() << "\n";
      return 1;
    }
    return 0;
  }
  std::cerr << "satlab: unknown command \"" << command
            << "\" (satlab --help lists them)\n";
  return 2;
}
