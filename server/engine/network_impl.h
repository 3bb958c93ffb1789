// The precision-specific implementation behind Network (one per dtype).
// Internal to the engine.
#ifndef SATLAB_SERVER_ENGINE_NETWORK_IMPL_H_
#define SATLAB_SERVER_ENGINE_NETWORK_IMPL_H_

#include <cstdint>
#include <memory>

#include "absl/types/span.h"
#include "server/engine/network.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// Network forwards to this after validating; the preconditions of each call
// are those of the matching Network method, and Network has checked the
// scratch bound. Const methods allocate their own scratch space and may run
// concurrently; TrainStep and SetParameters need exclusive access. The calls
// return `stop`'s status when it stops them (`stop` may be empty) and may
// throw std::bad_alloc, which Network turns into RESOURCE_EXHAUSTED: they
// leave the network unchanged and every surviving buffer consistent either
// way.
class NetworkImpl {
 public:
  virtual ~NetworkImpl() = default;

  virtual std::unique_ptr<NetworkImpl> Clone() const = 0;
  virtual int64_t step() const = 0;
  virtual int64_t samples_seen() const = 0;
  // Copies parameters, optimizer state and counters into *state (all but
  // its spec).
  virtual void ExportState(NetworkState* state) const = 0;
  virtual AnyMatrix weights(int layer) const = 0;
  virtual AnyMatrix biases(int layer) const = 0;
  // `params` has been checked (CheckLayerParams).
  virtual void SetParameters(absl::Span<const LayerParams> params,
                             bool reset_optimizer_state) = 0;
  // Rows in chunks of `chunk_rows` (a multiple of BlockRows, or all of
  // them).
  virtual absl::StatusOr<ForwardResult> Forward(
      const MatrixView& inputs, bool include_layers, int64_t chunk_rows,
      const StopCheck& stop) const = 0;
  virtual absl::StatusOr<GradientResult> ComputeGradients(
      const MatrixView& inputs, const MatrixView& targets, Loss loss,
      const StopCheck& stop) const = 0;
  virtual absl::StatusOr<StepResult> TrainStep(const MatrixView& inputs,
                                               const MatrixView& targets,
                                               const StopCheck& stop) = 0;
  virtual absl::StatusOr<EvalResult> Evaluate(const MatrixView& inputs,
                                              const MatrixView& targets,
                                              const StopCheck& stop) const = 0;
};

// A network of a validated spec in spec.dtype, with parameters drawn as
// spec.init says.
std::unique_ptr<NetworkImpl> MakeNetworkImpl(const NetworkSpec& spec);

// A network that continues from `state`, whose tensors Network::FromState
// has checked against `spec` (they are moved out of it).
std::unique_ptr<NetworkImpl> MakeNetworkImpl(const NetworkSpec& spec,
                                             NetworkState* state);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_NETWORK_IMPL_H_
