#include "client/cli/commands.h"

namespace satlab::cli {

absl::Status RunExperimentCommand(Context&, const std::vector<std::string>&) {
  return absl::UnimplementedError("satlab experiment is not built yet");
}

}  // namespace satlab::cli
