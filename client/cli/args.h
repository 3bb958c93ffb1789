// A small per-subcommand option parser: each command declares its options
// (with help text), and `--help` prints them. Accepts --name=value,
// --name value, and boolean --name.
#ifndef SATLAB_CLIENT_CLI_ARGS_H_
#define SATLAB_CLIENT_CLI_ARGS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace satlab::cli {

class Args {
 public:
  // `usage`: e.g. "satlab grad NAME --inputs M --targets M"; `summary`: one
  // line on what the command does.
  Args(std::string usage, std::string summary);

  // Declares an option taking a value; `default_value` empty means none.
  Args& Option(const std::string& name, const std::string& help,
               const std::string& default_value = "");
  // Declares a boolean flag.
  Args& Flag(const std::string& name, const std::string& help);
  // Declares a positional argument (for help only).
  Args& Positional(const std::string& name, const std::string& help);

  // Parses argv[first..]. INVALID_ARGUMENT for unknown options or missing
  // values. After a successful parse, help_requested() may be true.
  absl::Status Parse(const std::vector<std::string>& argv);

  bool help_requested() const { return help_; }
  std::string Help() const;

  bool Has(const std::string& name) const;
  // The value of an option (its default if not given).
  std::string Get(const std::string& name) const;
  bool GetFlag(const std::string& name) const;
  absl::StatusOr<double> GetDouble(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // The i-th positional argument, or INVALID_ARGUMENT naming `what`.
  absl::StatusOr<std::string> Arg(size_t i, const std::string& what) const;

 private:
  struct Spec {
    std::string help;
    std::string default_value;
    bool is_flag;
  };
  std::string usage_;
  std::string summary_;
  std::map<std::string, Spec> specs_;
  std::vector<std::pair<std::string, std::string>> positional_help_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_ARGS_H_
