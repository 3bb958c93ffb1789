#include "server/engine/network.h"

#include "gtest/gtest.h"

namespace satlab::engine {
namespace {

TEST(Network_Create_Placeholder, Builds) {
  NetworkSpec spec;
  spec.input_size = 2;
  spec.layers = {{3, Activation::kTanh}, {1, Activation::kSigmoid}};
  auto net = Network::Create(spec, Limits{});
  ASSERT_TRUE(net.ok()) << net.status();
}

}  // namespace
}  // namespace satlab::engine
