// The engine's entry points, without the service: a small NetworkSpec built
// field by field from the input (sizes, activations, losses, init schemes,
// optimizer settings including NaN/Inf/huge values), Network::Create, then
// small batches through ValidateBatch, Forward, ComputeGradients, TrainStep,
// Evaluate and SetParameters. Properties: a rejected spec or batch is
// INVALID_ARGUMENT/RESOURCE_EXHAUSTED; an accepted one computes with the
// promised shapes; a step either has a finite loss or reports `diverged`
// and leaves the parameters bitwise unchanged.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tests/fuzz/fuzz_common.h"

namespace satlab::fuzz {
namespace {

using engine::MatrixView;

// A double that is often one of the values that break arithmetic.
double Value(FuzzedDataProvider& in) {
  static constexpr double kSpecial[] = {
      0.0,
      1.0,
      -1.0,
      0.5,
      1e-300,
      1e300,
      -1e300,
      std::numeric_limits<double>::quiet_NaN(),
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      std::numeric_limits<double>::denorm_min(),
      std::numeric_limits<float>::max(),
      3.5e38,  // just above float32's range
      1e-45,   // float32 denormal
      40.0,    // saturates sigmoid/tanh
      -745.0,  // exp underflow
  };
  if (in.ConsumeBool()) {
    return kSpecial[in.ConsumeIntegralInRange<size_t>(
        0, sizeof(kSpecial) / sizeof(kSpecial[0]) - 1)];
  }
  return in.ConsumeFloatingPointInRange<double>(-8.0, 8.0);
}

engine::NetworkSpec Spec(FuzzedDataProvider& in) {
  engine::NetworkSpec spec;
  spec.input_size = in.ConsumeIntegralInRange<int>(-1, 6);
  const int layers = in.ConsumeIntegralInRange<int>(0, 4);
  for (int l = 0; l < layers; ++l) {
    engine::LayerSpec layer;
    layer.units = in.ConsumeIntegralInRange<int>(-1, 6);
    layer.activation =
        static_cast<engine::Activation>(in.ConsumeIntegralInRange<int>(0, 7));
    layer.leaky_relu_slope = in.ConsumeBool() ? Value(in) : 0.01;
    spec.layers.push_back(layer);
  }
  spec.loss = static_cast<engine::Loss>(in.ConsumeIntegralInRange<int>(0, 3));
  spec.dtype =
      in.ConsumeBool() ? engine::DType::kFloat32 : engine::DType::kFloat64;
  spec.init.scheme =
      static_cast<engine::InitScheme>(in.ConsumeIntegralInRange<int>(0, 7));
  spec.init.seed = in.ConsumeIntegral<uint64_t>();
  if (in.ConsumeBool()) {
    spec.init.mean = Value(in);
    spec.init.std = Value(in);
  }
  if (spec.init.scheme == engine::InitScheme::kExplicit) {
    int fan_in = spec.input_size;
    for (const auto& layer : spec.layers) {
      // Mostly the right shapes, sometimes one off.
      const int rows = std::max(
          0, fan_in + in.ConsumeIntegralInRange(-1, 1) * in.ConsumeBool());
      const int cols = std::max(0, layer.units);
      engine::LayerParams p;
      p.weights.resize(rows, cols);
      p.biases.resize(cols);
      for (int64_t i = 0; i < p.weights.size(); ++i)
        p.weights.data()[i] = Value(in);
      for (int64_t i = 0; i < p.biases.size(); ++i)
        p.biases.data()[i] = Value(in);
      spec.init.explicit_params.push_back(std::move(p));
      fan_in = cols;
    }
  }
  auto& opt = spec.optimizer;
  opt.kind = in.ConsumeBool() ? engine::OptimizerKind::kAdam
                              : engine::OptimizerKind::kSgd;
  if (in.ConsumeBool()) {
    opt.learning_rate = Value(in);
    opt.momentum = Value(in);
    opt.nesterov = in.ConsumeBool();
    opt.weight_decay = Value(in);
    opt.beta1 = Value(in);
    opt.beta2 = Value(in);
    opt.epsilon = Value(in);
  }
  if (in.ConsumeBool()) spec.saturation_threshold = Value(in);
  return spec;
}

// Storage for one fuzzed matrix in the chosen precision, and its view.
struct Matrix {
  std::vector<float> f32;
  std::vector<double> f64;
  MatrixView view;
};

void Fill(FuzzedDataProvider& in, int64_t rows, int64_t cols, bool as_f32,
          Matrix* m) {
  const int64_t n = std::max<int64_t>(0, rows) * std::max<int64_t>(0, cols);
  for (int64_t i = 0; i < n; ++i) {
    const double v = Value(in);
    if (as_f32) {
      m->f32.push_back(static_cast<float>(v));
    } else {
      m->f64.push_back(v);
    }
  }
  if (as_f32) {
    m->view.f32 = m->f32.data();
  } else {
    m->view.f64 = m->f64.data();
  }
  m->view.rows = rows;
  m->view.cols = cols;
}

void CheckRejection(const absl::Status& s) {
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument ||
             s.code() == absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace satlab::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace satlab;        // NOLINT: harness scope
  using namespace satlab::fuzz;  // NOLINT
  FuzzedDataProvider in(data, size);
  const engine::Limits limits = SmallLimits();
  const engine::NetworkSpec spec = Spec(in);
  absl::Status valid = engine::ValidateSpec(spec, limits, "network.spec");
  auto created = engine::Network::Create(spec, limits, "network.spec");
  FUZZ_CHECK(valid.ok() == created.ok());
  if (!created.ok()) {
    CheckRejection(created.status());
    return 0;
  }
  engine::Network& net = **created;

  // Up to four batches; each one exercises every entry point.
  for (int round = 0; round < 4 && in.remaining_bytes() > 0; ++round) {
    const int64_t rows = in.ConsumeIntegralInRange<int64_t>(0, 6);
    const int64_t in_cols =
        net.input_size() + in.ConsumeIntegralInRange(-1, 1) * in.ConsumeBool();
    const int64_t out_cols =
        net.output_size() + in.ConsumeIntegralInRange(-1, 1) * in.ConsumeBool();
    Matrix x, y;
    Fill(in, rows, in_cols, in.ConsumeBool(), &x);
    Fill(in, rows, out_cols, in.ConsumeBool(), &y);
    const engine::Loss loss = net.spec().loss;

    absl::Status s = net.ValidateBatch(x.view, nullptr, loss, "inputs",
                                       limits.max_batch_rows);
    if (!s.ok()) {
      CheckRejection(s);
      continue;
    }
    const engine::ForwardResult fwd =
        MustOk(net.Forward(x.view, in.ConsumeBool()), "Forward");
    FUZZ_CHECK(Flatten(fwd.outputs).size() ==
               static_cast<size_t>(rows * net.output_size()));

    s = net.ValidateBatch(x.view, &y.view, loss, "batch",
                          limits.max_batch_rows);
    if (!s.ok()) {
      CheckRejection(s);
      continue;
    }
    const engine::GradientResult g =
        MustOk(net.ComputeGradients(x.view, y.view, loss), "ComputeGradients");
    FUZZ_CHECK(static_cast<int>(g.weight_grads.size()) == net.num_layers());

    const auto before = Parameters(net);
    const int64_t step = net.step();
    const engine::StepResult r =
        MustOk(net.TrainStep(x.view, y.view), "TrainStep");
    FUZZ_CHECK(r.step == step + 1);
    FUZZ_CHECK(r.batch_size == rows);
    if (r.diverged) {
      FUZZ_CHECK(SameBits(before, Parameters(net)));
    } else {
      FUZZ_CHECK(std::isfinite(r.loss));
    }
    const engine::EvalResult e =
        MustOk(net.Evaluate(x.view, y.view), "Evaluate");
    FUZZ_CHECK(e.samples == rows);

    // Parameters read back are accepted back, whatever training did to
    // them, unless they stopped being finite (then SetParameters refuses
    // and nothing changes).
    std::vector<engine::LayerParams> params;
    for (int l = 0; l < net.num_layers(); ++l) {
      engine::LayerParams p;
      std::visit([&](const auto& w) { p.weights = w.template cast<double>(); },
                 net.weights(l));
      std::visit([&](const auto& b) { p.biases = b.template cast<double>(); },
                 net.biases(l));
      params.push_back(std::move(p));
    }
    const auto current = Parameters(net);
    s = net.SetParameters(params, in.ConsumeBool());
    if (!s.ok()) {
      CheckRejection(s);
      FUZZ_CHECK(SameBits(current, Parameters(net)));
    }
  }
  return 0;
}
