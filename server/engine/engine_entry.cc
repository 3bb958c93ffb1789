// The one symbol of a native engine's shared object
// (libsatlab_engine_x86-64-v3.so, ...; native_engine.h): built only into
// those objects, never into the portable engine.
#include <variant>
#include <vector>

#include "server/engine/gemm.h"
#include "server/engine/kernels.h"
#include "server/engine/native_engine.h"
#include "server/engine/network_impl.h"

namespace satlab::engine {
namespace {

// Replaces each matrix by a copy allocated here. The portable binary's
// blocks are 16-byte aligned, this object's 64: Eigen splits a loop into
// scalar and vector parts by its operands' alignment, the two parts round
// differently here (FMA), so a network restored from the portable side's
// tensors would not continue bit for bit as the one that was saved.
void OwnCopies(std::vector<AnyMatrix>* matrices) {
  for (AnyMatrix& m : *matrices) {
    std::visit(
        [](auto& values) {
          auto copy = values;
          values.swap(copy);
        },
        m);
  }
}

std::unique_ptr<NetworkImpl> Restore(const NetworkSpec& spec,
                                     NetworkState* state) {
  OwnCopies(&state->weights);
  OwnCopies(&state->biases);
  for (NetworkState::Slot& slot : state->optimizer_slots) {
    OwnCopies(&slot.weights);
    OwnCopies(&slot.biases);
  }
  return MakeNetworkImpl(spec, state);
}

}  // namespace
}  // namespace satlab::engine

extern "C" __attribute__((visibility("default")))
const satlab::engine::EngineEntry*
satlab_engine_entry() {
  using satlab::engine::EngineEntry;
  using satlab::engine::MakeNetworkImpl;
  using satlab::engine::NetworkImpl;
  using satlab::engine::NetworkSpec;
  using satlab::engine::NetworkState;
  // This object's baseline kernels are Eigen's code compiled for its level,
  // FMA included: the fastest here. (The dispatched variants reproduce the
  // portable SSE2 bits, which this engine does not keep anyway.)
  (void)satlab::engine::kernels::SetActiveIsa(
      satlab::engine::kernels::Isa::kBaseline);
  static const EngineEntry entry = {
      satlab::engine::kEngineAbi, SATLAB_ENGINE_LEVEL,
      static_cast<std::unique_ptr<NetworkImpl> (*)(const NetworkSpec&)>(
          &MakeNetworkImpl),
      &satlab::engine::Restore, &satlab::engine::SetBlasThreads};
  return &entry;
}
