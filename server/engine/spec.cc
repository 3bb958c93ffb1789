#include "server/engine/spec.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/engine/activation.h"
#include "server/engine/check.h"
#include "server/engine/loss.h"

namespace satlab::engine {
namespace {

// `field` is a whole path (SpecFields names them).
absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status Exhausted(absl::string_view field, absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat(field, ": ", what));
}

// "expected in [lo, hi), got x" style range checks; NaN fails all of them.
bool InHalfOpen(double x, double lo, double hi) { return x >= lo && x < hi; }

// A positive hyperparameter of a float32 network must stay finite and
// non-zero when rounded to float32.
absl::Status CheckFloat32(double x, bool positive, absl::string_view field) {
  // Compared before the cast: a double-to-float cast out of range is
  // undefined.
  if (std::abs(x) > std::numeric_limits<float>::max()) {
    return Invalid(field, absl::StrCat(x, " is not a finite float32"));
  }
  if (positive && static_cast<float>(x) == 0) {
    return Invalid(field, absl::StrCat(x, " rounds to 0 in float32"));
  }
  return absl::OkStatus();
}

absl::Status CheckOptimizerFloat32(const OptimizerSpec& o,
                                   absl::string_view field) {
  const std::string p =
      absl::StrCat(field, o.kind == OptimizerKind::kAdam ? ".adam." : ".sgd.");
  if (absl::Status s =
          CheckFloat32(o.learning_rate, true, absl::StrCat(p, "learning_rate"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckFloat32(o.weight_decay, false, absl::StrCat(p, "weight_decay"));
      !s.ok()) {
    return s;
  }
  if (o.kind != OptimizerKind::kAdam) return absl::OkStatus();
  return CheckFloat32(o.epsilon, true, absl::StrCat(p, "epsilon"));
}

absl::Status CheckOptimizer(const OptimizerSpec& o, absl::string_view field) {
  const bool adam = o.kind == OptimizerKind::kAdam;
  if (!adam && o.kind != OptimizerKind::kSgd) {
    return Invalid(field, absl::StrCat("expected sgd or adam, got ",
                                       static_cast<int>(o.kind)));
  }
  const std::string p = absl::StrCat(field, adam ? ".adam." : ".sgd.");
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate)) {
    return Invalid(absl::StrCat(p, "learning_rate"),
                   absl::StrCat("expected finite > 0, got ", o.learning_rate));
  }
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) {
    return Invalid(absl::StrCat(p, "weight_decay"),
                   absl::StrCat("expected finite >= 0, got ", o.weight_decay));
  }
  if (!adam) {
    if (!InHalfOpen(o.momentum, 0, 1)) {
      return Invalid(absl::StrCat(p, "momentum"),
                     absl::StrCat("expected in [0, 1), got ", o.momentum));
    }
    if (o.nesterov && o.momentum == 0) {
      return Invalid(absl::StrCat(p, "nesterov"),
                     "expected momentum > 0 with nesterov, got momentum 0");
    }
    return absl::OkStatus();
  }
  if (!InHalfOpen(o.beta1, 0, 1)) {
    return Invalid(absl::StrCat(p, "beta1"),
                   absl::StrCat("expected in [0, 1), got ", o.beta1));
  }
  if (!InHalfOpen(o.beta2, 0, 1)) {
    return Invalid(absl::StrCat(p, "beta2"),
                   absl::StrCat("expected in [0, 1), got ", o.beta2));
  }
  if (!(o.epsilon > 0) || !std::isfinite(o.epsilon)) {
    return Invalid(absl::StrCat(p, "epsilon"),
                   absl::StrCat("expected finite > 0, got ", o.epsilon));
  }
  return absl::OkStatus();
}

absl::Status CheckInit(const NetworkSpec& spec, const SpecFields& fields) {
  const InitSpec& init = spec.init;
  const int scheme = static_cast<int>(init.scheme);
  if (scheme < 0 || scheme > static_cast<int>(InitScheme::kExplicit)) {
    return Invalid(fields.Field("init.scheme"),
                   absl::StrCat("expected a valid scheme, got ", scheme));
  }
  if (init.scheme == InitScheme::kNormal) {
    if (!std::isfinite(init.mean)) {
      return Invalid(fields.Field("init.mean"),
                     absl::StrCat("expected a finite value, got ", init.mean));
    }
    if (!(init.std > 0) || !std::isfinite(init.std)) {
      return Invalid(fields.Field("init.std"),
                     absl::StrCat("expected finite > 0, got ", init.std));
    }
    // Box-Muller draws lie within 8.6 standard deviations of the mean (53-bit
    // uniforms), so this bound keeps every parameter finite in the dtype.
    const double largest = std::abs(init.mean) + 9 * init.std;
    const double limit = spec.dtype == DType::kFloat32
                             ? std::numeric_limits<float>::max()
                             : std::numeric_limits<double>::max();
    if (!(largest <= limit)) {
      return Invalid(fields.Field("init.std"),
                     absl::StrCat("expected |mean| + 9 std <= ", limit,
                                  " (draws must fit the dtype), got mean ",
                                  init.mean, ", std ", init.std));
    }
  }
  if (init.scheme != InitScheme::kExplicit) {
    if (!init.explicit_params.empty()) {
      return Invalid(fields.Field("init.parameters"),
                     absl::StrCat("expected none with scheme ",
                                  InitSchemeName(init.scheme), ", got ",
                                  init.explicit_params.size(), " entries"));
    }
    return absl::OkStatus();
  }
  if (init.explicit_params.size() != spec.layers.size()) {
    return Invalid(fields.Field("init.parameters"),
                   absl::StrCat("expected ", spec.layers.size(),
                                " layers, got ", init.explicit_params.size()));
  }
  int64_t fan_in = spec.input_size;
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const int64_t units = spec.layers[l].units;
    if (absl::Status s = CheckLayerParams(
            init.explicit_params[l], fan_in, units, spec.dtype,
            absl::StrCat(fields.Field("init.parameters"), "[", l, "]"));
        !s.ok()) {
      return s;
    }
    fan_in = units;
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ActivationName(Activation a) {
  if (!IsValidActivation(a)) return "unknown";
  return GetActivationOps<double>(a).name;
}

absl::string_view LossName(Loss l) {
  if (!IsValidLoss(l)) return "unknown";
  return GetLossOps<double>(l).name;
}

absl::string_view InitSchemeName(InitScheme s) {
  switch (s) {
    case InitScheme::kZeros:
      return "zeros";
    case InitScheme::kUniformFanIn:
      return "uniform_fan_in";
    case InitScheme::kGlorotUniform:
      return "glorot_uniform";
    case InitScheme::kGlorotNormal:
      return "glorot_normal";
    case InitScheme::kHeNormal:
      return "he_normal";
    case InitScheme::kNormal:
      return "normal";
    case InitScheme::kExplicit:
      return "explicit";
  }
  return "unknown";
}

absl::Status CheckLossActivation(Loss loss, Activation activation,
                                 absl::string_view field) {
  if (!IsValidLoss(loss)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ",
                                                   LossNameList(), ", got ",
                                                   static_cast<int>(loss)));
  }
  const std::optional<Activation> needed =
      GetLossOps<double>(loss).fused_output;
  if (!needed.has_value() || activation == *needed) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", LossName(loss), " needs a ", ActivationName(*needed),
      " output layer, got ", ActivationName(activation)));
}

SpecFields::SpecFields(absl::string_view path)
    : prefix(path),
      layers(absl::StrCat(path, ".layers")),
      loss(absl::StrCat(path, ".loss")),
      optimizer(absl::StrCat(path, ".optimizer")) {}

std::string SpecFields::Field(absl::string_view name) const {
  return absl::StrCat(prefix, ".", name);
}

std::string SpecFields::Layer(size_t l, size_t count) const {
  if (l + 1 == count && !output_layer.empty()) return output_layer;
  return absl::StrCat(layers, "[", l, "]");
}

absl::Status ValidateSpec(const NetworkSpec& spec, const Limits& limits,
                          const SpecFields& fields) {
  if (spec.input_size < 1) {
    return Invalid(fields.Field("input_size"),
                   absl::StrCat("expected >= 1, got ", spec.input_size));
  }
  if (spec.input_size > limits.max_units) {
    return Exhausted(fields.Field("input_size"),
                     absl::StrCat("expected at most ", limits.max_units,
                                  ", got ", spec.input_size));
  }
  if (spec.layers.empty()) {
    return Invalid(fields.layers, "expected at least 1 layer, got 0");
  }
  if (static_cast<int64_t>(spec.layers.size()) > limits.max_layers) {
    return Exhausted(fields.layers,
                     absl::StrCat("expected at most ", limits.max_layers,
                                  " layers, got ", spec.layers.size()));
  }
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const LayerSpec& layer = spec.layers[l];
    const std::string field =
        absl::StrCat(fields.Layer(l, spec.layers.size()), ".");
    if (layer.units < 1) {
      return Invalid(absl::StrCat(field, "units"),
                     absl::StrCat("expected >= 1, got ", layer.units));
    }
    if (layer.units > limits.max_units) {
      return Exhausted(absl::StrCat(field, "units"),
                       absl::StrCat("expected at most ", limits.max_units,
                                    ", got ", layer.units));
    }
    if (!IsValidActivation(layer.activation)) {
      return Invalid(absl::StrCat(field, "activation"),
                     absl::StrCat("expected a valid activation, got ",
                                  static_cast<int>(layer.activation)));
    }
    if (GetActivationOps<double>(layer.activation).output_only &&
        l + 1 != spec.layers.size()) {
      return Invalid(absl::StrCat(field, "activation"),
                     absl::StrCat(ActivationName(layer.activation),
                                  " is allowed on the output layer only"));
    }
    if (layer.activation == Activation::kLeakyRelu &&
        !InHalfOpen(layer.leaky_relu_slope, 0, 1)) {
      return Invalid(
          absl::StrCat(field, "leaky_relu_slope"),
          absl::StrCat("expected in [0, 1), got ", layer.leaky_relu_slope));
    }
  }
  if (absl::Status s = CheckLossActivation(
          spec.loss, spec.layers.back().activation, fields.loss);
      !s.ok()) {
    return s;
  }
  if (spec.dtype != DType::kFloat32 && spec.dtype != DType::kFloat64) {
    return Invalid(fields.Field("dtype"),
                   absl::StrCat("expected float32 or float64, got ",
                                static_cast<int>(spec.dtype)));
  }
  if (!(spec.saturation_threshold > 0 && spec.saturation_threshold < 1)) {
    return Invalid(
        fields.Field("saturation_threshold"),
        absl::StrCat("expected in (0, 1), got ", spec.saturation_threshold));
  }
  if (const int64_t count = ParameterCount(spec);
      count > limits.max_parameters) {
    return Exhausted(fields.layers,
                     absl::StrCat("expected at most ", limits.max_parameters,
                                  " parameters, got ", count));
  }
  if (absl::Status s = CheckOptimizer(spec.optimizer, fields.optimizer);
      !s.ok()) {
    return s;
  }
  if (spec.dtype == DType::kFloat32) {
    if (absl::Status s =
            CheckOptimizerFloat32(spec.optimizer, fields.optimizer);
        !s.ok()) {
      return s;
    }
  }
  return CheckInit(spec, fields);
}

int64_t ParameterCount(const NetworkSpec& spec) {
  int64_t count = 0;
  int64_t fan_in = spec.input_size;
  for (const LayerSpec& layer : spec.layers) {
    count += fan_in * layer.units + layer.units;
    fan_in = layer.units;
  }
  return count;
}

}  // namespace satlab::engine
