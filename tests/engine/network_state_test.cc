// Network::ExportState / Network::FromState: what a store keeps and a
// restart restores. A rebuilt network is the same network, bit for bit, and
// every malformed state is refused naming its part, with nothing built.
#include <cstring>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/network.h"
#include "test_util.h"

namespace satlab::engine {
namespace {

using ::satlab::engine::testing::MakeNetwork;
using ::satlab::engine::testing::OneHot;
using ::satlab::engine::testing::Uniform;
using ::satlab::engine::testing::View;

enum class Opt { kSgd, kNesterov, kAdam };

NetworkSpec StateSpec(DType dtype, Opt opt) {
  NetworkSpec spec;
  spec.input_size = 6;
  spec.layers = {{8, Activation::kTanh}, {3, Activation::kSoftmax}};
  spec.loss = Loss::kCce;
  spec.dtype = dtype;
  spec.init.scheme = InitScheme::kGlorotUniform;
  spec.init.seed = 17;
  spec.optimizer.kind =
      opt == Opt::kAdam ? OptimizerKind::kAdam : OptimizerKind::kSgd;
  spec.optimizer.learning_rate = opt == Opt::kAdam ? 0.01 : 0.1;
  spec.optimizer.momentum = opt == Opt::kNesterov ? 0.9 : 0;
  spec.optimizer.nesterov = opt == Opt::kNesterov;
  spec.optimizer.weight_decay = 1e-3;
  return spec;
}

bool BitwiseEqual(const AnyMatrix& a, const AnyMatrix& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) {
        using M = std::decay_t<decltype(x)>;
        const M& y = std::get<M>(b);
        return x.rows() == y.rows() && x.cols() == y.cols() &&
               std::memcmp(x.data(), y.data(),
                           x.size() * sizeof(typename M::Scalar)) == 0;
      },
      a);
}

bool BitwiseEqual(const std::vector<AnyMatrix>& a,
                  const std::vector<AnyMatrix>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!BitwiseEqual(a[i], b[i])) return false;
  }
  return true;
}

// Everything but the spec (compared field by field where it matters).
void ExpectSameState(const NetworkState& a, const NetworkState& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.samples_seen, b.samples_seen);
  EXPECT_EQ(a.optimizer_updates, b.optimizer_updates);
  EXPECT_TRUE(BitwiseEqual(a.weights, b.weights));
  EXPECT_TRUE(BitwiseEqual(a.biases, b.biases));
  ASSERT_EQ(a.optimizer_slots.size(), b.optimizer_slots.size());
  for (size_t k = 0; k < a.optimizer_slots.size(); ++k) {
    EXPECT_TRUE(BitwiseEqual(a.optimizer_slots[k].weights,
                             b.optimizer_slots[k].weights));
    EXPECT_TRUE(
        BitwiseEqual(a.optimizer_slots[k].biases, b.optimizer_slots[k].biases));
  }
  EXPECT_EQ(a.spec.optimizer.kind, b.spec.optimizer.kind);
  EXPECT_EQ(a.spec.layers.size(), b.spec.layers.size());
  EXPECT_EQ(a.spec.dtype, b.spec.dtype);
}

template <typename T>
void Train(Network* net, uint64_t seed, int steps) {
  Rng rng(seed);
  for (int s = 0; s < steps; ++s) {
    const RowMatrix<T> x = Uniform(rng, 5, 6, -1, 1).cast<T>();
    const RowMatrix<T> y = OneHot(rng, 5, 3).cast<T>();
    auto r = net->TrainStep(View(x), View(y));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->diverged);
  }
}

NetworkState Exported(const Network& net) {
  auto state = net.ExportState();
  EXPECT_TRUE(state.ok()) << state.status();
  return state.ok() ? *std::move(state) : NetworkState{};
}

template <typename T>
void CheckContinuesBitwise(Opt opt) {
  const DType dtype = sizeof(T) == 4 ? DType::kFloat32 : DType::kFloat64;
  auto original = MakeNetwork(StateSpec(dtype, opt));
  Train<T>(original.get(), 1, 7);
  const NetworkState saved = Exported(*original);
  EXPECT_EQ(saved.step, 7);
  EXPECT_EQ(saved.samples_seen, 35);
  EXPECT_EQ(saved.optimizer_slots.size(), opt == Opt::kAdam       ? 2u
                                          : opt == Opt::kNesterov ? 1u
                                                                  : 0u);
  EXPECT_EQ(saved.optimizer_updates, opt == Opt::kAdam ? 7 : 0);

  auto rebuilt = Network::FromState(saved, Limits{}, "state");
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  // Round trip: the rebuilt network exports the same state.
  ExpectSameState(saved, Exported(**rebuilt));
  // Both continue identically.
  Train<T>(original.get(), 2, 9);
  Train<T>(rebuilt->get(), 2, 9);
  ExpectSameState(Exported(*original), Exported(**rebuilt));
}

TEST(NetworkState, RebuiltMidTraining_ContinuesBitwise) {
  for (Opt opt : {Opt::kSgd, Opt::kNesterov, Opt::kAdam}) {
    SCOPED_TRACE(static_cast<int>(opt));
    CheckContinuesBitwise<float>(opt);
    CheckContinuesBitwise<double>(opt);
  }
}

TEST(NetworkState, ExplicitInit_ExportsWithoutExplicitParams) {
  NetworkSpec spec = StateSpec(DType::kFloat64, Opt::kSgd);
  spec.init.scheme = InitScheme::kExplicit;
  auto drawn = MakeNetwork(StateSpec(DType::kFloat64, Opt::kSgd));
  for (int l = 0; l < drawn->num_layers(); ++l) {
    spec.init.explicit_params.push_back(
        {std::get<RowMatrix<double>>(drawn->weights(l)),
         std::get<RowMatrix<double>>(drawn->biases(l))});
  }
  auto net = MakeNetwork(spec);
  const NetworkState state = Exported(*net);
  EXPECT_TRUE(state.spec.init.explicit_params.empty());
  auto rebuilt = Network::FromState(state, Limits{}, "state");
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  ExpectSameState(state, Exported(**rebuilt));
}

// A valid Adam float64 state to break one part of.
NetworkState ValidState() {
  auto net = MakeNetwork(StateSpec(DType::kFloat64, Opt::kAdam));
  Train<double>(net.get(), 3, 2);
  return Exported(*net);
}

struct BadStateCase {
  std::string name;
  void (*mutate)(NetworkState*);
  std::string message;  // expected substring
};

TEST(NetworkState, MalformedState_InvalidArgumentNamingField) {
  const std::vector<BadStateCase> cases = {
      {"missing layer", [](NetworkState* s) { s->weights.pop_back(); },
       "state: expected 2 weights and biases (one per layer), got 1 weights "
       "and 2 biases"},
      {"extra bias",
       [](NetworkState* s) { s->biases.push_back(s->biases.back()); },
       "state: expected 2 weights and biases"},
      {"weight shape",
       [](NetworkState* s) {
         s->weights[1] = RowMatrix<double>(RowMatrix<double>::Zero(8, 4));
       },
       "state.weights[1]: expected shape [8, 3], got [8, 4]"},
      {"bias shape",
       [](NetworkState* s) {
         s->biases[0] = RowMatrix<double>(RowMatrix<double>::Zero(2, 8));
       },
       "state.biases[0]: expected shape [1, 8], got [2, 8]"},
      {"dtype",
       [](NetworkState* s) {
         s->weights[0] = RowMatrix<float>(RowMatrix<float>::Zero(6, 8));
       },
       "state.weights[0]: expected float64, got float32"},
      {"non-finite weight",
       [](NetworkState* s) {
         std::get<RowMatrix<double>>(s->weights[0])(2, 3) = NAN;
       },
       "state.weights[0]"},
      {"non-finite slot",
       [](NetworkState* s) {
         std::get<RowMatrix<double>>(s->optimizer_slots[1].biases[1])(0, 1) =
             INFINITY;
       },
       "state.optimizer_slots[1].biases[1]"},
      {"missing slot", [](NetworkState* s) { s->optimizer_slots.pop_back(); },
       "state.optimizer_slots: expected 2"},
      {"extra slot",
       [](NetworkState* s) {
         s->optimizer_slots.push_back(s->optimizer_slots[0]);
       },
       "state.optimizer_slots: expected 2"},
      {"slot layer missing",
       [](NetworkState* s) { s->optimizer_slots[0].weights.pop_back(); },
       "state.optimizer_slots[0]: expected 2 weights and biases"},
      {"negative step", [](NetworkState* s) { s->step = -1; },
       "state.step: expected >= 0, got -1"},
      {"negative samples", [](NetworkState* s) { s->samples_seen = -5; },
       "state.samples_seen: expected >= 0, got -5"},
      {"negative updates", [](NetworkState* s) { s->optimizer_updates = -2; },
       "state.optimizer_updates: expected >= 0, got -2"},
      {"sgd with updates",
       [](NetworkState* s) {
         s->spec.optimizer.kind = OptimizerKind::kSgd;
         s->optimizer_slots.clear();
       },
       "state.optimizer_updates: expected 0"},
      {"explicit params in spec",
       [](NetworkState* s) {
         s->spec.init.scheme = InitScheme::kExplicit;
         s->spec.init.explicit_params.resize(2);
       },
       "state.spec.init.explicit_params: expected none"},
      {"invalid spec", [](NetworkState* s) { s->spec.layers[0].units = 0; },
       "units"},
  };
  for (const BadStateCase& c : cases) {
    SCOPED_TRACE(c.name);
    NetworkState state = ValidState();
    c.mutate(&state);
    auto built = Network::FromState(std::move(state), Limits{}, "state");
    ASSERT_FALSE(built.ok());
    EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(built.status().message().find(c.message), std::string::npos)
        << built.status();
  }
}

TEST(NetworkState, OverLimit_RefusedNamingLimit) {
  Limits limits;
  limits.max_units = 4;
  auto built = Network::FromState(ValidState(), limits, "state");
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.status().message().find("at most 4"), std::string::npos)
      << built.status();
}

}  // namespace
}  // namespace satlab::engine
