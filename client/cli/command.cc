#include "client/cli/command.h"

#include <cmath>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace satlab::cli {
namespace {

// The payload that marks a status as a usage error.
constexpr char kUsagePayload[] = "type.satlab.dev/cli.UsageError";

}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord());
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

std::string NetworkNameArg(const std::string& arg) {
  return absl::StartsWith(arg, "networks/") ? arg : "networks/" + arg;
}

CLI::Option* AddNumber(CLI::App& app, const std::string& name, double* value,
                       const std::string& help) {
  return app.add_option(name, *value, help)
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            double parsed;
            if (absl::SimpleAtod(text, &parsed)) return "";
            return absl::StrCat("expected a number, got \"", text, "\"");
          },
          ""))
      ->type_name("X");
}

CLI::Validator IntegerIn(int64_t min, int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        int64_t parsed;
        if (absl::SimpleAtoi(text, &parsed) && parsed >= min && parsed <= max) {
          return "";
        }
        return absl::StrCat("expected an integer in ", min, "..", max,
                            ", got \"", text, "\"");
      },
      "");
}

}  // namespace satlab::cli
