// Request decoding and validation: bytes -> one satlab.v1 request message
// (chosen by the first byte) -> the service's conversions (convert.h) ->
// the engine's validation -> the engine call the handler would make, on
// small fixed networks. Checks the contract the handlers rely on: every
// rejection is INVALID_ARGUMENT or RESOURCE_EXHAUSTED (never a crash), and
// whatever passes validation can be computed and converted back to proto.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/stubs/logging.h"
#include "satlab/v1/training_service.pb.h"
#include "server/service/convert.h"
#include "tests/fuzz/fuzz_common.h"

namespace satlab::fuzz {
namespace {

namespace pb = ::satlab::v1;

// The request kinds, selected by data[0] % kKinds (tests/fuzz/corpus
// seeds use the same numbering).
enum Kind : uint8_t {
  kCreateNetwork = 0,
  kSetParameters = 1,
  kForward = 2,
  kComputeGradients = 3,
  kTrainStep = 4,
  kEvaluate = 5,
  kTrain = 6,
  kNames = 7,
  kKinds = 8,
};

void CheckRejection(const absl::Status& s) {
  FUZZ_CHECK(!s.ok());
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument ||
             s.code() == absl::StatusCode::kResourceExhausted);
  FUZZ_CHECK(!s.message().empty());
}

// Which fixed network a request addresses: its name picks one, so the
// fuzzer can steer shapes by editing the name.
engine::Network& Pick(const std::string& name) {
  static auto* nets =
      new std::vector<std::unique_ptr<engine::Network>>(FixedNetworks());
  return *(*nets)[name.size() % nets->size()];
}

void CreateNetwork(const pb::CreateNetworkRequest& req) {
  if (absl::Status s = service::ValidateNetworkId(req.network_id()); !s.ok()) {
    CheckRejection(s);
  }
  auto spec = service::SpecFromProto(req.network().spec(), "network.spec");
  if (!spec.ok()) return CheckRejection(spec.status());
  const engine::Limits limits = SmallLimits();
  if (absl::Status s = engine::ValidateSpec(*spec, limits, "network.spec");
      !s.ok()) {
    return CheckRejection(s);
  }
  auto net = engine::Network::Create(*spec, limits, "network.spec");
  FUZZ_CHECK(net.ok());  // ValidateSpec passed: creation cannot fail
  pb::NetworkSpec back;
  service::SpecToProto((*net)->spec(), &back);
  // What GetNetwork reports must be accepted back, except an explicit
  // init, whose parameters it leaves out (GetParameters returns them).
  if (back.init().scheme() == pb::INIT_SCHEME_EXPLICIT) return;
  auto again = service::SpecFromProto(back, "spec");
  if (!again.ok()) {
    std::fprintf(stderr, "reported spec rejected: %s\n%s\n",
                 again.status().ToString().c_str(), back.DebugString().c_str());
    std::abort();
  }
}

void SetParameters(const pb::SetParametersRequest& req) {
  engine::Network& net = Pick(req.name());
  auto params = service::ParamsFromProto(req.layers(), "layers");
  if (!params.ok()) return CheckRejection(params.status());
  auto copy = MustOk(net.Clone(), "Clone");
  const auto before = Parameters(*copy);
  absl::Status s = copy->SetParameters(*params, req.reset_optimizer_state());
  if (!s.ok()) {
    CheckRejection(s);
    FUZZ_CHECK(SameBits(before, Parameters(*copy)));  // nothing changed
  }
}

// A minibatch through the handler's path (training_service.cc's
// BatchViews): both views, then ValidateBatch. Returns false if rejected.
bool Batch(const engine::Network& net, const pb::Minibatch& batch,
           engine::MatrixView* inputs, engine::MatrixView* targets) {
  auto in = service::MatrixViewOf(batch.inputs(), "batch.inputs");
  if (!in.ok()) {
    CheckRejection(in.status());
    return false;
  }
  auto tg = service::MatrixViewOf(batch.targets(), "batch.targets");
  if (!tg.ok()) {
    CheckRejection(tg.status());
    return false;
  }
  absl::Status s = net.ValidateBatch(*in, &*tg, net.spec().loss, "batch",
                                     SmallLimits().max_batch_rows);
  if (!s.ok()) {
    CheckRejection(s);
    return false;
  }
  *inputs = *in;
  *targets = *tg;
  return true;
}

void Forward(const pb::ForwardRequest& req) {
  const engine::Network& net = Pick(req.name());
  auto in = service::MatrixViewOf(req.inputs(), "inputs");
  if (!in.ok()) return CheckRejection(in.status());
  absl::Status s = net.ValidateBatch(*in, nullptr, net.spec().loss, "inputs",
                                     SmallLimits().max_batch_rows);
  if (!s.ok()) return CheckRejection(s);
  const engine::ForwardResult result =
      MustOk(net.Forward(*in, req.include_layers()), "Forward");
  pb::ForwardResponse response;
  MustOk(service::ToProto(result.outputs, false, response.mutable_outputs()),
         "ToProto");
  FUZZ_CHECK(response.outputs().shape_size() == 2);
  FUZZ_CHECK(response.outputs().shape(0) == in->rows);
  FUZZ_CHECK(response.outputs().shape(1) == net.output_size());
  for (size_t i = 0; i < result.z.size(); ++i) {
    auto* layer = response.add_layers();
    MustOk(service::ToProto(result.z[i], false, layer->mutable_z()), "ToProto");
    MustOk(service::ToProto(result.a[i], false, layer->mutable_a()), "ToProto");
  }
}

void ComputeGradients(const pb::ComputeGradientsRequest& req) {
  const engine::Network& net = Pick(req.name());
  engine::MatrixView inputs, targets;
  if (!Batch(net, req.batch(), &inputs, &targets)) return;
  const engine::GradientResult g =
      MustOk(net.ComputeGradients(inputs, targets, net.spec().loss),
             "ComputeGradients");
  FUZZ_CHECK(static_cast<int>(g.weight_grads.size()) == net.num_layers());
  for (int i = 0; i < req.counterfactual_losses_size() && i < 4; ++i) {
    auto loss = service::LossFromProto(req.counterfactual_losses(i),
                                       "counterfactual_losses");
    if (!loss.ok()) {
      CheckRejection(loss.status());
      continue;
    }
    const auto& out = net.spec().layers.back();
    if (absl::Status s = engine::CheckLossActivation(*loss, out.activation,
                                                     "counterfactual_losses");
        !s.ok()) {
      CheckRejection(s);
      continue;
    }
    MustOk(net.ComputeGradients(inputs, targets, *loss), "ComputeGradients");
  }
}

void TrainStep(const std::string& name, const pb::Minibatch& batch) {
  const engine::Network& net = Pick(name);
  engine::MatrixView inputs, targets;
  if (!Batch(net, batch, &inputs, &targets)) return;
  auto copy = MustOk(net.Clone(), "Clone");
  const auto before = Parameters(*copy);
  const engine::StepResult r =
      MustOk(copy->TrainStep(inputs, targets), "TrainStep");
  FUZZ_CHECK(r.step == net.step() + 1);
  if (r.diverged) {
    FUZZ_CHECK(SameBits(before, Parameters(*copy)));
  } else {
    FUZZ_CHECK(std::isfinite(r.loss));
  }
  pb::StepResult out;
  service::StepResultToProto(r, &out);
}

void Evaluate(const pb::EvaluateRequest& req) {
  const engine::Network& net = Pick(req.name());
  engine::MatrixView inputs, targets;
  if (!Batch(net, req.data(), &inputs, &targets)) return;
  const engine::EvalResult r =
      MustOk(net.Evaluate(inputs, targets), "Evaluate");
  FUZZ_CHECK(r.samples == inputs.rows);
}

void Names(const std::string& bytes) {
  // Every field that carries a network name goes through these two.
  auto id = service::ParseNetworkName(bytes, "name");
  if (!id.ok()) return CheckRejection(id.status());
  FUZZ_CHECK(service::NetworkName(*id) == bytes);
}

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* m) {
  return m->ParseFromArray(data, static_cast<int>(size));
}

}  // namespace
}  // namespace satlab::fuzz

// Undecodable strings are what the fuzzer sends all day: protobuf's log
// line for each one would drown libFuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace satlab::fuzz;  // NOLINT: the harness's own namespace
  if (size == 0) return 0;
  const uint8_t kind = data[0] % kKinds;
  ++data;
  --size;
  switch (kind) {
    case kCreateNetwork: {
      pb::CreateNetworkRequest m;
      if (Parse(data, size, &m)) CreateNetwork(m);
      break;
    }
    case kSetParameters: {
      pb::SetParametersRequest m;
      if (Parse(data, size, &m)) SetParameters(m);
      break;
    }
    case kForward: {
      pb::ForwardRequest m;
      if (Parse(data, size, &m)) Forward(m);
      break;
    }
    case kComputeGradients: {
      pb::ComputeGradientsRequest m;
      if (Parse(data, size, &m)) ComputeGradients(m);
      break;
    }
    case kTrainStep: {
      pb::TrainStepRequest m;
      if (Parse(data, size, &m)) TrainStep(m.name(), m.batch());
      break;
    }
    case kEvaluate: {
      pb::EvaluateRequest m;
      if (Parse(data, size, &m)) Evaluate(m);
      break;
    }
    case kTrain: {
      pb::TrainRequest m;
      if (Parse(data, size, &m)) TrainStep(m.name(), m.batch());
      break;
    }
    case kNames: {
      pb::GetNetworkRequest m;
      if (Parse(data, size, &m)) Names(m.name());
      break;
    }
  }
  return 0;
}
