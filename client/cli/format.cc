#include "client/cli/format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace satlab::cli {
namespace {

bool LooksNumeric(const std::string& s) {
  return !s.empty() && (absl::ascii_isdigit(s[0]) || s[0] == '-' ||
                        s[0] == '+' || s[0] == '.');
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

nlohmann::json TensorToJson(const v1::Tensor& tensor) {
  std::vector<double> values =
      tensor.float_values_size() > 0
          ? std::vector<double>(tensor.float_values().begin(),
                                tensor.float_values().end())
          : std::vector<double>(tensor.double_values().begin(),
                                tensor.double_values().end());
  if (tensor.shape_size() != 2) return values;
  nlohmann::json rows = nlohmann::json::array();
  const int64_t cols = tensor.shape(1);
  for (int64_t r = 0; r < tensor.shape(0); ++r) {
    rows.push_back(std::vector<double>(values.begin() + r * cols,
                                       values.begin() + (r + 1) * cols));
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

nlohmann::json ParamsToJson(const v1::GetParametersResponse& params) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : params.layers()) {
    layers.push_back({{"weights", TensorToJson(layer.weights())},
                      {"biases", TensorToJson(layer.biases())}});
  }
  return {{"step", params.step()}, {"layers", layers}};
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

std::string ActivationName(v1::Activation a) {
  std::string name = v1::Activation_Name(a);
  return absl::AsciiStrToLower(name.substr(std::string("ACTIVATION_").size()));
}

std::string LossName(v1::Loss l) {
  std::string name = v1::Loss_Name(l);
  return absl::AsciiStrToLower(name.substr(std::string("LOSS_").size()));
}

absl::StatusOr<v1::Activation> ParseActivation(const std::string& name) {
  v1::Activation a = v1::ACTIVATION_UNSPECIFIED;
  if (!v1::Activation_Parse(
          absl::StrCat("ACTIVATION_", absl::AsciiStrToUpper(name)), &a) ||
      a == v1::ACTIVATION_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown activation \"", name,
        "\" (identity, sigmoid, tanh, relu, leaky_relu, softplus, softmax)"));
  }
  return a;
}

absl::StatusOr<v1::Loss> ParseLoss(const std::string& name) {
  v1::Loss l = v1::LOSS_UNSPECIFIED;
  if (!v1::Loss_Parse(absl::StrCat("LOSS_", absl::AsciiStrToUpper(name)), &l) ||
      l == v1::LOSS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown loss \"", name, "\" (mse, bce, cce)"));
  }
  return l;
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
