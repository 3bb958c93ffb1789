#include "server/core/capacity.h"

#include "absl/strings/str_cat.h"

namespace satlab::core {

absl::Status NoCapacity(absl::string_view what, absl::string_view limit,
                        absl::string_view flag, absl::string_view advice) {
  return absl::ResourceExhaustedError(
      absl::StrCat(what, ": ", limit, " (--", flag, "); retry later",
                   advice.empty() ? "" : ", or ", advice));
}

absl::Status ShuttingDown(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(
      what,
      ": the server is shutting down; retry on another server or once it "
      "is back"));
}

}  // namespace satlab::core
