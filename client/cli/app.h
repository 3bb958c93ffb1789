// The satlab command line: global options, the subcommands of command.h,
// parsing and exit codes.
//
// The parser is CLI11 (Debian's libcli11-dev 2.1.2, header-only): kept
// upstream, exact option names only (no prefix matching), typed options with
// validators, per-subcommand --help, and `--name value` / `--name=value`
// like the hand-written parsers it replaces. cxxopts (the other Debian
// candidate) has no subcommands, so it would have kept a dispatcher of ours.
#ifndef SATLAB_CLIENT_CLI_APP_H_
#define SATLAB_CLIENT_CLI_APP_H_

#include <iosfwd>

namespace satlab::cli {

// Parses argv and runs the command. Help goes to `out`, parse errors to
// `err`; commands print their own output to stdout/stderr. Returns the
// exit code: 0 success (or --help); 1 the command failed (its gRPC code and
// message on stderr); 2 a usage error (unknown command or option, missing
// or malformed argument).
int RunCli(int argc, const char* const* argv, std::ostream& out,
           std::ostream& err);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_APP_H_
