#include "client/cli/args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace satlab::cli {

Args::Args(std::string usage, std::string summary)
    : usage_(std::move(usage)), summary_(std::move(summary)) {}

Args& Args::Option(const std::string& name, const std::string& help,
                   const std::string& default_value) {
  specs_[name] = Spec{help, default_value, false};
  return *this;
}

Args& Args::Flag(const std::string& name, const std::string& help) {
  specs_[name] = Spec{help, "", true};
  return *this;
}

Args& Args::Positional(const std::string& name, const std::string& help) {
  positional_help_.emplace_back(name, help);
  return *this;
}

absl::Status Args::Parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = specs_.find(name);
    if (it == specs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option --", name, " (see --help)"));
    }
    if (it->second.is_flag) {
      if (value.has_value() && *value != "true" && *value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, ": expected true or false, got ", *value));
      }
      values_[name] = value.value_or("true");
      continue;
    }
    if (!value.has_value()) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
      value = argv[++i];
    }
    values_[name] = *value;
  }
  return absl::OkStatus();
}

std::string Args::Help() const {
  std::string out = absl::StrCat("usage: ", usage_, "\n\n", summary_, "\n");
  if (!positional_help_.empty()) out += "\narguments:\n";
  for (const auto& [name, help] : positional_help_) {
    absl::StrAppendFormat(&out, "  %-22s %s\n", name, help);
  }
  out += "\noptions:\n";
  for (const auto& [name, spec] : specs_) {
    std::string left = absl::StrCat("--", name, spec.is_flag ? "" : " X");
    std::string help = spec.help;
    if (!spec.default_value.empty()) {
      absl::StrAppend(&help, " (default ", spec.default_value, ")");
    }
    absl::StrAppendFormat(&out, "  %-22s %s\n", left, help);
  }
  absl::StrAppendFormat(&out, "  %-22s %s\n", "--help", "show this help");
  return out;
}

bool Args::Has(const std::string& name) const {
  return values_.count(name) > 0;
}

std::string Args::Get(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  if (auto it = specs_.find(name); it != specs_.end()) {
    return it->second.default_value;
  }
  return "";
}

bool Args::GetFlag(const std::string& name) const {
  return Get(name) == "true";
}

absl::StatusOr<double> Args::GetDouble(const std::string& name) const {
  double value;
  if (!absl::SimpleAtod(Get(name), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, ": expected a number, got \"", Get(name), "\""));
  }
  return value;
}

absl::StatusOr<int64_t> Args::GetInt(const std::string& name) const {
  int64_t value;
  if (!absl::SimpleAtoi(Get(name), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, ": expected an integer, got \"", Get(name), "\""));
  }
  return value;
}

absl::StatusOr<std::string> Args::Arg(size_t i, const std::string& what) const {
  if (i >= positional_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing ", what, " (usage: ", usage_, ")"));
  }
  return positional_[i];
}

}  // namespace satlab::cli
