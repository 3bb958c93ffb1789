// The one way the server says "no room": every refusal for lack of
// capacity (a full compute queue, the memory budget, the open-stream cap)
// is RESOURCE_EXHAUSTED with the message shape
//
//   "<what was refused>: <which limit is full and how full> (--<flag>); retry
//   later[, or <advice>]"
//
// and only a server that is shutting down answers UNAVAILABLE (a client
// retries elsewhere). proto/satlab/v1/training_service.proto documents both.
#ifndef SATLAB_SERVER_CORE_CAPACITY_H_
#define SATLAB_SERVER_CORE_CAPACITY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace satlab::core {

// RESOURCE_EXHAUSTED "<what>: <limit> (--<flag>); retry later" and, when
// `advice` is not empty, ", or <advice>".
absl::Status NoCapacity(absl::string_view what, absl::string_view limit,
                        absl::string_view flag, absl::string_view advice = "");

// UNAVAILABLE: the server is shutting down; `what` was not done.
absl::Status ShuttingDown(absl::string_view what);

}  // namespace satlab::core

#endif  // SATLAB_SERVER_CORE_CAPACITY_H_
