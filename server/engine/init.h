// Initial parameters drawn as InitSpec says.
#ifndef SATLAB_SERVER_ENGINE_INIT_H_
#define SATLAB_SERVER_ENGINE_INIT_H_

#include "server/engine/optimizer.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// Parameters of a validated spec. Random schemes draw from Rng(init.seed)
// layer by layer, each layer's weights in row-major order and then its biases
// (when the scheme draws them), in double and rounded to T.
template <typename T>
ParamSet<T> InitialParameters(const NetworkSpec& spec);

extern template ParamSet<float> InitialParameters<float>(const NetworkSpec&);
extern template ParamSet<double> InitialParameters<double>(const NetworkSpec&);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_INIT_H_
