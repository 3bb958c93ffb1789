#include "server/service/convert.h"

#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/engine/activation.h"
#include "server/engine/loss.h"

namespace satlab::service {
namespace {

constexpr absl::string_view kNetworkPrefix = "networks/";

std::string ShapeString(const pb::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.shape(), ", "), "]");
}

// Checks the tensor's dims and data count; `rank` is 1 or 2.
absl::Status CheckTensor(const pb::Tensor& t, int rank,
                         absl::string_view field) {
  if (t.shape_size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected a rank-", rank, " shape",
        rank == 2 ? " [rows, cols]" : " [n]", ", got ", ShapeString(t)));
  }
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    if (t.shape(i) < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".shape[", i, "]: expected >= 1, got ",
                       t.shape(i), t.shape(i) == 0 ? " (empty batch)" : ""));
    }
    if (t.shape(i) > (int64_t{1} << 40) / count) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": shape ", ShapeString(t), " is too large"));
    }
    count *= t.shape(i);
  }
  const bool has_float = t.float_values_size() > 0;
  const bool has_double = t.double_values_size() > 0;
  if (has_float && has_double) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": set float_values or double_values, not both"));
  }
  const int64_t got =
      has_float ? t.float_values_size() : t.double_values_size();
  if (got != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": shape ", ShapeString(t), " needs ", count,
                     " values, got ", got));
  }
  return absl::OkStatus();
}

// Float64 copy of a tensor whose shape CheckTensor accepted.
engine::RowMatrix<double> ToDouble(const pb::Tensor& t, int64_t rows,
                                   int64_t cols) {
  if (t.float_values_size() > 0) {
    return Eigen::Map<const engine::RowMatrix<float>>(t.float_values().data(),
                                                      rows, cols)
        .cast<double>();
  }
  return Eigen::Map<const engine::RowMatrix<double>>(t.double_values().data(),
                                                     rows, cols);
}

template <typename Enum>
absl::Status UnknownEnum(absl::string_view field, absl::string_view what,
                         Enum value) {
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": expected a ", what, ", got ", static_cast<int>(value),
      static_cast<int>(value) == 0 ? " (unspecified)" : " (unknown value)"));
}

// An engine enum <-> proto enum mapping derived from the engine's table
// names: the proto value is the name in upper case after the enum's prefix
// (leaky_relu <-> ACTIVATION_LEAKY_RELU), so adding a row to the engine
// table and a value to the proto enum is all a new activation or loss
// needs. tests/service/enum_tables_test.cc checks that every value has
// its counterpart.
class EnumBridge {
 public:
  // Engine values are 0, 1, ... while `valid` holds; `name` is the table's.
  template <typename Engine>
  EnumBridge(const google::protobuf::EnumDescriptor* proto,
             absl::string_view prefix, bool (*valid)(Engine),
             absl::string_view (*name)(Engine)) {
    for (int e = 0; valid(static_cast<Engine>(e)); ++e) {
      const google::protobuf::EnumValueDescriptor* value =
          proto->FindValueByName(absl::StrCat(
              prefix, absl::AsciiStrToUpper(name(static_cast<Engine>(e)))));
      // 0 (UNSPECIFIED) when the proto lacks the value: the test fails.
      engine_to_proto_.push_back(value == nullptr ? 0 : value->number());
    }
  }

  // The engine value of a proto value; nullopt for UNSPECIFIED and values
  // the engine does not know.
  std::optional<int> ToEngine(int proto) const {
    if (proto == 0) return std::nullopt;
    for (size_t e = 0; e < engine_to_proto_.size(); ++e) {
      if (engine_to_proto_[e] == proto) return static_cast<int>(e);
    }
    return std::nullopt;
  }

  // The proto value of a valid engine value (0 otherwise).
  int ToProto(int engine) const {
    if (engine < 0 || engine >= static_cast<int>(engine_to_proto_.size())) {
      return 0;
    }
    return engine_to_proto_[engine];
  }

 private:
  std::vector<int> engine_to_proto_;  // indexed by the engine value
};

const EnumBridge& ActivationBridge() {
  static const EnumBridge* const bridge =
      new EnumBridge(pb::Activation_descriptor(), "ACTIVATION_",
                     &engine::IsValidActivation, &engine::ActivationName);
  return *bridge;
}

const EnumBridge& LossBridge() {
  static const EnumBridge* const bridge = new EnumBridge(
      pb::Loss_descriptor(), "LOSS_", &engine::IsValidLoss, &engine::LossName);
  return *bridge;
}

}  // namespace

absl::Status CheckLength(absl::string_view value, size_t max,
                         absl::string_view field) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": expected at most ", max, " bytes, got ", value.size()));
}

std::string QuoteForError(absl::string_view value) {
  constexpr size_t kShown = 64;
  if (value.size() <= kShown) {
    return absl::StrCat("\"", absl::CHexEscape(value), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kShown)),
                      "...\" (", value.size(), " bytes)");
}

absl::StatusOr<std::string> ParseNetworkName(absl::string_view name,
                                             absl::string_view field) {
  if (absl::Status s = CheckLength(name, kMaxNetworkNameBytes, field);
      !s.ok()) {
    return s;
  }
  if (!absl::StartsWith(name, kNetworkPrefix) ||
      name.size() == kNetworkPrefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected networks/{network_id}, got ", QuoteForError(name)));
  }
  std::string id(name.substr(kNetworkPrefix.size()));
  if (absl::Status s = ValidateNetworkId(id); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", s.message()));
  }
  return id;
}

std::string NetworkName(absl::string_view id) {
  return absl::StrCat(kNetworkPrefix, id);
}

absl::Status ValidateNetworkId(absl::string_view id) {
  bool ok = !id.empty() && id.size() <= kMaxNetworkIdBytes &&
            absl::ascii_islower(id[0]);
  for (char c : id) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected an id of 1-", kMaxNetworkIdBytes,
        " characters [a-z0-9-] starting with a letter, got ",
        id.size() > kMaxNetworkIdBytes ? absl::StrCat(id.size(), " characters")
                                       : QuoteForError(id)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StoredId(const core::TenantScope& scope,
                                     absl::string_view id,
                                     absl::string_view field) {
  // ValidateNetworkId and ValidateTenantName bound the lengths.
  absl::string_view local = id;
  if (const size_t dot = id.find(core::kTenantSeparator);
      scope.names_tenants() && dot != absl::string_view::npos) {
    if (absl::Status s = core::ValidateTenantName(id.substr(0, dot), field);
        !s.ok()) {
      return s;
    }
    local = id.substr(dot + 1);
  }
  if (absl::Status s = ValidateNetworkId(local); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", s.message()));
  }
  return scope.Stored(id);
}

absl::StatusOr<std::string> ParseNetworkName(const core::TenantScope& scope,
                                             absl::string_view name,
                                             absl::string_view field) {
  if (absl::Status s = CheckLength(
          name, kMaxNetworkNameBytes + (scope.names_tenants() ? 33 : 0), field);
      !s.ok()) {
    return s;
  }
  if (!absl::StartsWith(name, kNetworkPrefix) ||
      name.size() == kNetworkPrefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected networks/{network_id}, got ", QuoteForError(name)));
  }
  return StoredId(scope, name.substr(kNetworkPrefix.size()), field);
}

absl::StatusOr<PageRequest> PageFromRequest(int32_t page_size,
                                            const std::string& page_token) {
  constexpr int kDefaultPageSize = 50;
  constexpr int kMaxPageSize = 1000;
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: expected 0..", kMaxPageSize, ", got ", page_size));
  }
  if (absl::Status s =
          CheckLength(page_token, kMaxNetworkIdBytes, "page_token");
      !s.ok()) {
    return s;
  }
  if (!page_token.empty() && !ValidateNetworkId(page_token).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not a token from a previous page: ",
                     QuoteForError(page_token)));
  }
  return PageRequest{page_token, page_size == 0 ? kDefaultPageSize : page_size};
}

absl::StatusOr<PageRequest> PageFromRequest(const core::TenantScope& scope,
                                            int32_t page_size,
                                            const std::string& page_token) {
  auto page = PageFromRequest(page_size, std::string());
  if (page.ok()) {
    if (absl::Status s = CheckLength(
            page_token, kMaxNetworkIdBytes + (scope.names_tenants() ? 33 : 0),
            "page_token");
        !s.ok()) {
      return s;
    }
  }
  if (!page.ok() || page_token.empty()) {
    if (page.ok()) page->after = scope.prefix();
    return page;
  }
  auto after = StoredId(scope, page_token, "page_token");
  if (!after.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not a token from a previous page: ",
                     QuoteForError(page_token)));
  }
  page->after = *std::move(after);
  return page;
}

absl::StatusOr<engine::MatrixView> MatrixViewOf(const pb::Tensor& tensor,
                                                absl::string_view field) {
  if (absl::Status s = CheckTensor(tensor, 2, field); !s.ok()) return s;
  engine::MatrixView view;
  view.rows = tensor.shape(0);
  view.cols = tensor.shape(1);
  if (tensor.float_values_size() > 0) {
    view.f32 = tensor.float_values().data();
  } else {
    view.f64 = tensor.double_values().data();
  }
  return view;
}

absl::Status ToProto(const engine::AnyMatrix& matrix, bool as_vector,
                     pb::Tensor* out) {
  return std::visit(
      [&](const auto& m) -> absl::Status {
        using Scalar = typename std::decay_t<decltype(m)>::Scalar;
        out->Clear();
        // RepeatedField sizes are int: a larger count would wrap and the
        // copy below overrun the field.
        if (m.size() > std::numeric_limits<int>::max()) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "a result tensor of ", m.size(),
              " values is over the 2^31 - 1 values a message can hold"));
        }
        if (as_vector) {
          out->add_shape(m.size());
        } else {
          out->add_shape(m.rows());
          out->add_shape(m.cols());
        }
        auto* values = [&] {
          if constexpr (std::is_same_v<Scalar, float>) {
            return out->mutable_float_values();
          } else {
            return out->mutable_double_values();
          }
        }();
        values->Resize(static_cast<int>(m.size()), Scalar{0});
        std::memcpy(values->mutable_data(), m.data(),
                    sizeof(Scalar) * static_cast<size_t>(m.size()));
        return absl::OkStatus();
      },
      matrix);
}

absl::StatusOr<std::vector<engine::LayerParams>> ParamsFromProto(
    const google::protobuf::RepeatedPtrField<pb::LayerParameters>& layers,
    absl::string_view field) {
  std::vector<engine::LayerParams> params(layers.size());
  for (int i = 0; i < layers.size(); ++i) {
    const std::string wfield = absl::StrCat(field, "[", i, "].weights");
    const std::string bfield = absl::StrCat(field, "[", i, "].biases");
    const pb::Tensor& w = layers[i].weights();
    const pb::Tensor& b = layers[i].biases();
    if (absl::Status s = CheckTensor(w, 2, wfield); !s.ok()) return s;
    // Biases are [units]; [1, units] is accepted too.
    const int brank = b.shape_size() == 2 ? 2 : 1;
    if (absl::Status s = CheckTensor(b, brank, bfield); !s.ok()) return s;
    if (brank == 2 && b.shape(0) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(bfield, ": expected shape [units] or [1, units], got ",
                       ShapeString(b)));
    }
    // Shapes against the layer sizes and the values (finite, within
    // float32 for a float32 network) are the engine's to check:
    // Network::SetParameters and ValidateSpec do.
    params[i].weights = ToDouble(w, w.shape(0), w.shape(1));
    const int64_t units = b.shape(brank - 1);
    params[i].biases = ToDouble(b, 1, units);
  }
  return params;
}

absl::StatusOr<engine::Activation> ActivationFromProto(
    pb::Activation a, absl::string_view field) {
  const std::optional<int> value = ActivationBridge().ToEngine(a);
  if (!value.has_value()) return UnknownEnum(field, "satlab.v1.Activation", a);
  return static_cast<engine::Activation>(*value);
}

pb::Activation ActivationToProto(engine::Activation a) {
  return static_cast<pb::Activation>(
      ActivationBridge().ToProto(static_cast<int>(a)));
}

absl::StatusOr<engine::Loss> LossFromProto(pb::Loss l,
                                           absl::string_view field) {
  const std::optional<int> value = LossBridge().ToEngine(l);
  if (!value.has_value()) return UnknownEnum(field, "satlab.v1.Loss", l);
  return static_cast<engine::Loss>(*value);
}

pb::Loss LossToProto(engine::Loss l) {
  return static_cast<pb::Loss>(LossBridge().ToProto(static_cast<int>(l)));
}

absl::StatusOr<engine::DType> DTypeFromProto(pb::DType d,
                                             absl::string_view field) {
  switch (d) {
    case pb::DTYPE_UNSPECIFIED:
    case pb::DTYPE_FLOAT64:
      return engine::DType::kFloat64;
    case pb::DTYPE_FLOAT32:
      return engine::DType::kFloat32;
    default:
      return UnknownEnum(field, "satlab.v1.DType", d);
  }
}

absl::StatusOr<engine::OptimizerSpec> OptimizerFromProto(
    const pb::Optimizer& optimizer, absl::string_view field) {
  engine::OptimizerSpec out;
  switch (optimizer.kind_case()) {
    case pb::Optimizer::KIND_NOT_SET:
      break;  // SGD, lr 0.1
    case pb::Optimizer::kSgd:
      out.kind = engine::OptimizerKind::kSgd;
      out.learning_rate = optimizer.sgd().learning_rate();
      out.momentum = optimizer.sgd().momentum();
      out.nesterov = optimizer.sgd().nesterov();
      out.weight_decay = optimizer.sgd().weight_decay();
      break;
    case pb::Optimizer::kAdam: {
      const pb::Adam& adam = optimizer.adam();
      out.kind = engine::OptimizerKind::kAdam;
      out.learning_rate = adam.learning_rate();
      if (adam.beta1() != 0) out.beta1 = adam.beta1();
      if (adam.beta2() != 0) out.beta2 = adam.beta2();
      if (adam.epsilon() != 0) out.epsilon = adam.epsilon();
      out.weight_decay = adam.weight_decay();
      break;
    }
  }
  return out;
}

namespace {

absl::StatusOr<engine::LayerSpec> LayerFromProto(const pb::LayerSpec& layer,
                                                 absl::string_view field) {
  engine::LayerSpec out;
  out.units = layer.units();
  auto activation = ActivationFromProto(layer.activation(),
                                        absl::StrCat(field, ".activation"));
  if (!activation.ok()) return activation.status();
  out.activation = *activation;
  if (layer.leaky_relu_slope() != 0) {
    out.leaky_relu_slope = layer.leaky_relu_slope();
  }
  return out;
}

absl::StatusOr<engine::InitSpec> InitFromProto(const pb::Initialization& init,
                                               absl::string_view field) {
  engine::InitSpec out;
  out.seed = init.seed();
  out.mean = init.mean();
  out.std = init.std();
  switch (init.scheme()) {
    case pb::INIT_SCHEME_UNSPECIFIED:
    case pb::INIT_SCHEME_UNIFORM_FAN_IN:
      out.scheme = engine::InitScheme::kUniformFanIn;
      break;
    case pb::INIT_SCHEME_ZEROS:
      out.scheme = engine::InitScheme::kZeros;
      break;
    case pb::INIT_SCHEME_GLOROT_UNIFORM:
      out.scheme = engine::InitScheme::kGlorotUniform;
      break;
    case pb::INIT_SCHEME_GLOROT_NORMAL:
      out.scheme = engine::InitScheme::kGlorotNormal;
      break;
    case pb::INIT_SCHEME_HE_NORMAL:
      out.scheme = engine::InitScheme::kHeNormal;
      break;
    case pb::INIT_SCHEME_NORMAL:
      out.scheme = engine::InitScheme::kNormal;
      break;
    case pb::INIT_SCHEME_EXPLICIT:
      out.scheme = engine::InitScheme::kExplicit;
      break;
    default:
      return UnknownEnum(absl::StrCat(field, ".scheme"), "satlab.v1.InitScheme",
                         init.scheme());
  }
  // Counts and shapes against the layers are ValidateSpec's to check, as
  // is whether the scheme allows parameters at all.
  auto params =
      ParamsFromProto(init.parameters(), absl::StrCat(field, ".parameters"));
  if (!params.ok()) return params.status();
  out.explicit_params = *std::move(params);
  return out;
}

// 0 means the default, 0.1 (engine::NetworkSpec).
double SaturationThresholdFromProto(double theta) {
  return theta != 0 ? theta : engine::NetworkSpec().saturation_threshold;
}

}  // namespace

absl::StatusOr<engine::NetworkSpec> SpecFromProto(const pb::NetworkSpec& spec,
                                                  absl::string_view field) {
  engine::NetworkSpec out;
  out.input_size = spec.input_size();
  for (int i = 0; i < spec.layers_size(); ++i) {
    auto layer =
        LayerFromProto(spec.layers(i), absl::StrCat(field, ".layers[", i, "]"));
    if (!layer.ok()) return layer.status();
    out.layers.push_back(*layer);
  }
  auto loss = LossFromProto(spec.loss(), absl::StrCat(field, ".loss"));
  if (!loss.ok()) return loss.status();
  out.loss = *loss;
  auto dtype = DTypeFromProto(spec.dtype(), absl::StrCat(field, ".dtype"));
  if (!dtype.ok()) return dtype.status();
  out.dtype = *dtype;
  auto optimizer =
      OptimizerFromProto(spec.optimizer(), absl::StrCat(field, ".optimizer"));
  if (!optimizer.ok()) return optimizer.status();
  out.optimizer = *optimizer;
  out.saturation_threshold =
      SaturationThresholdFromProto(spec.saturation_threshold());
  auto init = InitFromProto(spec.init(), absl::StrCat(field, ".init"));
  if (!init.ok()) return init.status();
  out.init = *std::move(init);
  return out;
}

absl::StatusOr<engine::ExperimentSpec> ExperimentFromProto(
    const pb::ExperimentSpec& spec) {
  engine::ExperimentSpec out;
  // Both strings go into every metric event the experiment publishes.
  if (absl::Status s = CheckLength(spec.display_name(), kMaxDisplayNameBytes,
                                   "spec.display_name");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < spec.hidden_layers_size(); ++i) {
    auto layer = LayerFromProto(spec.hidden_layers(i),
                                absl::StrCat("spec.hidden_layers[", i, "]"));
    if (!layer.ok()) return layer.status();
    out.hidden_layers.push_back(*layer);
  }
  for (int v = 0; v < spec.variants_size(); ++v) {
    const pb::ExperimentVariant& variant = spec.variants(v);
    const std::string field = absl::StrCat("spec.variants[", v, "]");
    engine::ExperimentVariantSpec ev;
    if (absl::Status s = CheckLength(variant.label(), kMaxLabelBytes,
                                     absl::StrCat(field, ".label"));
        !s.ok()) {
      return s;
    }
    ev.label = variant.label();
    auto output = ActivationFromProto(
        variant.output_activation(), absl::StrCat(field, ".output_activation"));
    if (!output.ok()) return output.status();
    ev.output_activation = *output;
    auto loss = LossFromProto(variant.loss(), absl::StrCat(field, ".loss"));
    if (!loss.ok()) return loss.status();
    ev.loss = *loss;
    if (variant.hidden_activation() != pb::ACTIVATION_UNSPECIFIED) {
      auto hidden =
          ActivationFromProto(variant.hidden_activation(),
                              absl::StrCat(field, ".hidden_activation"));
      if (!hidden.ok()) return hidden.status();
      ev.hidden_activation = *hidden;
    }
    if (variant.has_optimizer()) {
      auto optimizer = OptimizerFromProto(variant.optimizer(),
                                          absl::StrCat(field, ".optimizer"));
      if (!optimizer.ok()) return optimizer.status();
      ev.optimizer = *optimizer;
    }
    out.variants.push_back(std::move(ev));
  }
  auto init = InitFromProto(spec.init(), "spec.init");
  if (!init.ok()) return init.status();
  out.init = *std::move(init);
  auto optimizer = OptimizerFromProto(spec.optimizer(), "spec.optimizer");
  if (!optimizer.ok()) return optimizer.status();
  out.optimizer = *optimizer;
  auto dtype = DTypeFromProto(spec.dtype(), "spec.dtype");
  if (!dtype.ok()) return dtype.status();
  out.dtype = *dtype;
  out.saturation_threshold =
      SaturationThresholdFromProto(spec.saturation_threshold());
  out.epochs = spec.epochs();
  out.batch_size = spec.batch_size();
  out.shuffle_seed = spec.shuffle_seed();
  out.shuffle = !spec.no_shuffle();
  if (spec.parallelism() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.parallelism: expected >= 0, got ", spec.parallelism()));
  }
  return out;
}

void SpecToProto(const engine::NetworkSpec& spec, pb::NetworkSpec* out) {
  out->Clear();
  out->set_input_size(spec.input_size);
  for (const auto& l : spec.layers) {
    pb::LayerSpec* layer = out->add_layers();
    layer->set_units(l.units);
    layer->set_activation(ActivationToProto(l.activation));
    if (l.activation == engine::Activation::kLeakyRelu) {
      layer->set_leaky_relu_slope(l.leaky_relu_slope);
    }
  }
  out->set_loss(LossToProto(spec.loss));
  pb::Initialization* init = out->mutable_init();
  init->set_seed(spec.init.seed);
  switch (spec.init.scheme) {
    case engine::InitScheme::kZeros:
      init->set_scheme(pb::INIT_SCHEME_ZEROS);
      break;
    case engine::InitScheme::kUniformFanIn:
      init->set_scheme(pb::INIT_SCHEME_UNIFORM_FAN_IN);
      break;
    case engine::InitScheme::kGlorotUniform:
      init->set_scheme(pb::INIT_SCHEME_GLOROT_UNIFORM);
      break;
    case engine::InitScheme::kGlorotNormal:
      init->set_scheme(pb::INIT_SCHEME_GLOROT_NORMAL);
      break;
    case engine::InitScheme::kHeNormal:
      init->set_scheme(pb::INIT_SCHEME_HE_NORMAL);
      break;
    case engine::InitScheme::kNormal:
      init->set_scheme(pb::INIT_SCHEME_NORMAL);
      init->set_mean(spec.init.mean);
      init->set_std(spec.init.std);
      break;
    case engine::InitScheme::kExplicit:
      init->set_scheme(pb::INIT_SCHEME_EXPLICIT);
      break;
  }
  const engine::OptimizerSpec& o = spec.optimizer;
  if (o.kind == engine::OptimizerKind::kSgd) {
    pb::Sgd* sgd = out->mutable_optimizer()->mutable_sgd();
    sgd->set_learning_rate(o.learning_rate);
    sgd->set_momentum(o.momentum);
    sgd->set_nesterov(o.nesterov);
    sgd->set_weight_decay(o.weight_decay);
  } else {
    pb::Adam* adam = out->mutable_optimizer()->mutable_adam();
    adam->set_learning_rate(o.learning_rate);
    adam->set_beta1(o.beta1);
    adam->set_beta2(o.beta2);
    adam->set_epsilon(o.epsilon);
    adam->set_weight_decay(o.weight_decay);
  }
  out->set_dtype(spec.dtype == engine::DType::kFloat32 ? pb::DTYPE_FLOAT32
                                                       : pb::DTYPE_FLOAT64);
  out->set_saturation_threshold(spec.saturation_threshold);
}

void StatsToProto(const engine::SaturationStats& stats,
                  pb::SaturationStats* out) {
  out->Clear();
  out->set_output_attenuation(stats.output_attenuation);
  for (size_t i = 0; i < stats.layers.size(); ++i) {
    const engine::LayerStats& s = stats.layers[i];
    pb::LayerStats* l = out->add_layers();
    l->set_layer(static_cast<int>(i));
    l->set_mean_derivative(s.mean_derivative);
    l->set_saturated_fraction(s.saturated_fraction);
    l->set_dead_units(s.dead_units);
    l->set_weight_gradient_norm(s.weight_gradient_norm);
    l->set_bias_gradient_norm(s.bias_gradient_norm);
    l->set_mean_activation(s.mean_activation);
  }
}

void StepResultToProto(const engine::StepResult& result, pb::StepResult* out) {
  out->set_step(result.step);
  out->set_loss(result.loss);
  out->set_batch_size(result.batch_size);
  out->set_diverged(result.diverged);
  out->set_accuracy(result.accuracy);
  StatsToProto(result.stats, out->mutable_saturation());
}

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

}  // namespace satlab::service
