// satlab: command-line client of satlab-server.
//   satlab [--server HOST:PORT] [--json] [--quiet] [--timeout SECONDS]
//          COMMAND [ARGS]
#include <iostream>

#include "client/cli/app.h"

int main(int argc, char** argv) {
  return satlab::cli::RunCli(argc, argv, std::cout, std::cerr);
}
