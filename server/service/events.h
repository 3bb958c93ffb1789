// Observer of what the service does to networks, for metrics and dashboards.
// Called on executor threads right after the change; implementations must be
// cheap and must not block (they hand events to their own buffers).
#ifndef SATLAB_SERVER_SERVICE_EVENTS_H_
#define SATLAB_SERVER_SERVICE_EVENTS_H_

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "satlab/v1/metrics.pb.h"
#include "server/engine/network.h"

namespace satlab::service {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // After consecutive optimizer steps of `network` (`networks/{id}`), in
  // order: result(0) to result(count - 1) (a Train message's steps).
  virtual void OnSteps(
      absl::string_view network, size_t count,
      absl::FunctionRef<const engine::StepResult&(size_t)> result) = 0;
  // After one optimizer step of `network`.
  void OnStep(absl::string_view network, const engine::StepResult& result) {
    OnSteps(network, 1,
            [&result](size_t) -> const engine::StepResult& { return result; });
  }
  // After `network` was deleted.
  virtual void OnNetworkDeleted(absl::string_view network) = 0;
  // After each epoch of an experiment variant, and once at its end (with
  // `summary` set).
  virtual void OnExperimentProgress(const v1::ExperimentProgress& progress) = 0;
};

}  // namespace satlab::service

#endif  // SATLAB_SERVER_SERVICE_EVENTS_H_
