// spdlog set-up for satlab-server: human-readable text or one JSON object
// per line (for log collectors).
#ifndef SATLAB_SERVER_LOGGING_H_
#define SATLAB_SERVER_LOGGING_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace satlab::server {

// `format`: "text" or "json"; `level`: trace|debug|info|warn|error.
// INVALID_ARGUMENT for anything else.
absl::Status ConfigureLogging(absl::string_view format,
                              absl::string_view level);

}  // namespace satlab::server

#endif  // SATLAB_SERVER_LOGGING_H_
