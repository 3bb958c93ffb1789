#include "client/cli/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/cli/data.h"
#include "google/protobuf/util/json_util.h"

namespace satlab::cli {
namespace {

bool LooksNumeric(const std::string& s) {
  return !s.empty() && (absl::ascii_isdigit(s[0]) || s[0] == '-' ||
                        s[0] == '+' || s[0] == '.');
}

// "INIT_SCHEME_" for satlab.v1.InitScheme: the prefix every value carries.
std::string EnumPrefix(const google::protobuf::EnumDescriptor* descriptor) {
  std::string prefix;
  for (char c : descriptor->name()) {
    if (absl::ascii_isupper(c) && !prefix.empty()) prefix += '_';
    prefix += absl::ascii_toupper(c);
  }
  return prefix + "_";
}

}  // namespace

Table::Table(std::vector<std::string> header) {
  rows_.push_back(std::move(header));
}

void Table::AddRow(std::vector<std::string> row) {
  rows_.push_back(std::move(row));
}

std::string Table::ToString() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  std::string out;
  for (size_t r = 0; r < rows_.size(); ++r) {
    std::string line;
    for (size_t c = 0; c < rows_[r].size(); ++c) {
      const std::string& cell = rows_[r][c];
      const std::string pad(widths[c] - cell.size(), ' ');
      if (c > 0) line += "  ";
      line += (r > 0 && LooksNumeric(cell)) ? pad + cell : cell + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string Num(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.6g", x);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options)
           .ok()) {
    return "{}";
  }
  return out;
}

absl::StatusOr<nlohmann::json> TensorToJson(const v1::Tensor& tensor,
                                            absl::string_view field) {
  auto m = MatrixFromTensor(tensor, field);
  if (!m.ok()) return m.status();
  if (tensor.shape_size() != 2) return m->values;
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t r = 0; r < m->rows; ++r) {
    rows.push_back(std::vector<double>(m->values.begin() + r * m->cols,
                                       m->values.begin() + (r + 1) * m->cols));
  }
  return rows;
}

absl::StatusOr<v1::Tensor> TensorFromJson(const nlohmann::json& j,
                                          const std::string& field) {
  v1::Tensor t;
  if (!j.is_array() || j.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected a non-empty array"));
  }
  if (j[0].is_array()) {
    const size_t cols = j[0].size();
    t.add_shape(static_cast<int64_t>(j.size()));
    t.add_shape(static_cast<int64_t>(cols));
    for (size_t r = 0; r < j.size(); ++r) {
      if (!j[r].is_array() || j[r].size() != cols) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, "[", r, "]: expected a row of ", cols, " numbers"));
      }
      for (const auto& v : j[r]) {
        if (!v.is_number()) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, "[", r, "]: expected numbers"));
        }
        t.add_double_values(v.get<double>());
      }
    }
    return t;
  }
  t.add_shape(static_cast<int64_t>(j.size()));
  for (const auto& v : j) {
    if (!v.is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": expected numbers"));
    }
    t.add_double_values(v.get<double>());
  }
  return t;
}

absl::StatusOr<nlohmann::json> ParamsToJson(
    const v1::GetParametersResponse& params) {
  nlohmann::json layers = nlohmann::json::array();
  for (int i = 0; i < params.layers_size(); ++i) {
    const std::string field = absl::StrCat("layers[", i, "]");
    auto weights = TensorToJson(params.layers(i).weights(), field + ".weights");
    if (!weights.ok()) return weights.status();
    auto biases = TensorToJson(params.layers(i).biases(), field + ".biases");
    if (!biases.ok()) return biases.status();
    layers.push_back(
        {{"weights", *std::move(weights)}, {"biases", *std::move(biases)}});
  }
  return nlohmann::json{{"step", params.step()}, {"layers", layers}};
}

absl::Status ParamsFromJson(const std::string& text,
                            v1::SetParametersRequest* request) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") ||
      !j["layers"].is_array()) {
    return absl::InvalidArgumentError(
        "parameters: expected JSON like {\"layers\":[{\"weights\":[[...]],"
        "\"biases\":[...]}]}");
  }
  for (size_t i = 0; i < j["layers"].size(); ++i) {
    const auto& layer = j["layers"][i];
    const std::string field = absl::StrCat("layers[", i, "]");
    if (!layer.is_object() || !layer.contains("weights") ||
        !layer.contains("biases")) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": expected {\"weights\": ..., \"biases\": ...}"));
    }
    auto weights = TensorFromJson(layer["weights"], field + ".weights");
    if (!weights.ok()) return weights.status();
    auto biases = TensorFromJson(layer["biases"], field + ".biases");
    if (!biases.ok()) return biases.status();
    v1::LayerParameters* out = request->add_layers();
    *out->mutable_weights() = *std::move(weights);
    *out->mutable_biases() = *std::move(biases);
  }
  return absl::OkStatus();
}

std::vector<std::string> EnumNames(
    const google::protobuf::EnumDescriptor* descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    if (descriptor->value(i)->number() == 0) continue;  // UNSPECIFIED
    names.push_back(EnumName(descriptor, descriptor->value(i)->number()));
  }
  return names;
}

std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int number) {
  const google::protobuf::EnumValueDescriptor* value =
      descriptor->FindValueByNumber(number);
  if (value == nullptr) return absl::StrCat(number);
  // ACTIVATION_LEAKY_RELU -> leaky_relu: the enum's prefix is its type name
  // in upper snake case, e.g. ACTIVATION_ or INIT_SCHEME_.
  const std::string prefix = EnumPrefix(descriptor);
  return absl::AsciiStrToLower(absl::StripPrefix(value->name(), prefix));
}

absl::StatusOr<int> ParseEnumName(
    const google::protobuf::EnumDescriptor* descriptor, const std::string& name,
    const std::string& what) {
  const google::protobuf::EnumValueDescriptor* value =
      descriptor->FindValueByName(EnumPrefix(descriptor) +
                                  absl::AsciiStrToUpper(name));
  if (value == nullptr || value->number() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown ", what, " \"", name, "\" (",
                     absl::StrJoin(EnumNames(descriptor), ", "), ")"));
  }
  return value->number();
}

std::string ActivationName(v1::Activation a) {
  return EnumName(v1::Activation_descriptor(), a);
}

std::string LossName(v1::Loss l) { return EnumName(v1::Loss_descriptor(), l); }

absl::StatusOr<v1::Activation> ParseActivation(const std::string& name) {
  auto number = ParseEnumName(v1::Activation_descriptor(), name, "activation");
  if (!number.ok()) return number.status();
  return static_cast<v1::Activation>(*number);
}

absl::StatusOr<v1::Loss> ParseLoss(const std::string& name) {
  auto number = ParseEnumName(v1::Loss_descriptor(), name, "loss");
  if (!number.ok()) return number.status();
  return static_cast<v1::Loss>(*number);
}

std::string NetworksTable(const std::vector<v1::Network>& networks) {
  Table table({"NAME", "ARCHITECTURE", "LOSS", "DTYPE", "STEP", "SAMPLES",
               "PARAMETERS"});
  for (const auto& n : networks) {
    table.AddRow({n.name(), Architecture(n.spec()), LossName(n.spec().loss()),
                  n.spec().dtype() == v1::DTYPE_FLOAT32 ? "float32" : "float64",
                  absl::StrCat(n.step()), absl::StrCat(n.samples_seen()),
                  absl::StrCat(n.parameter_count())});
  }
  return table.ToString();
}

std::string Architecture(const v1::NetworkSpec& spec) {
  std::string out = absl::StrCat(spec.input_size());
  for (const auto& layer : spec.layers()) {
    absl::StrAppend(&out, "-", layer.units(), "(",
                    ActivationName(layer.activation()), ")");
  }
  return out;
}

}  // namespace satlab::cli
