// Output for the CLI: aligned text tables for people, JSON for machines,
// and the friendly parameter JSON
// ({"layers":[{"weights":[[..]],"biases":[..]}]}).
#ifndef SATLAB_CLIENT_CLI_FORMAT_H_
#define SATLAB_CLIENT_CLI_FORMAT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"
#include "satlab/v1/network.pb.h"
#include "satlab/v1/training_service.pb.h"

namespace satlab::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  // Columns padded to their widest cell; numbers right-aligned.
  std::string ToString() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// A number with 6 significant digits ("0.0173450" style for |x| < 1).
std::string Num(double x);

// A message as proto3 JSON (field names in lowerCamelCase, as every gRPC
// JSON tool prints them).
std::string ToJson(const google::protobuf::Message& message);

// Tensor -> nested JSON array ([rows][cols] or [n]); DATA_LOSS naming
// `field` when its shape does not match its values (MatrixFromTensor).
absl::StatusOr<nlohmann::json> TensorToJson(const v1::Tensor& tensor,
                                            absl::string_view field);
// JSON array (nested for matrices) -> float64 tensor; INVALID_ARGUMENT
// naming `field` when ragged or not numeric.
absl::StatusOr<v1::Tensor> TensorFromJson(const nlohmann::json& j,
                                          const std::string& field);

// {"step": N, "layers": [{"weights": [[..]], "biases": [..]}, ...]}.
// DATA_LOSS naming the layer when a tensor is malformed.
absl::StatusOr<nlohmann::json> ParamsToJson(
    const v1::GetParametersResponse& params);
// Parses the same shape into SetParametersRequest.layers.
absl::Status ParamsFromJson(const std::string& text,
                            v1::SetParametersRequest* request);

// Short names used on the command line and in tables, generated from the
// proto enums: ACTIVATION_LEAKY_RELU <-> "leaky_relu". A value the enum does
// not know (a newer server) prints as its number.
std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int number);
// Every name but UNSPECIFIED's, in enum order (for help and errors).
std::vector<std::string> EnumNames(
    const google::protobuf::EnumDescriptor* descriptor);
// The number of `name`; INVALID_ARGUMENT ("unknown loss "x" (mse, bce,
// cce)") naming `what` otherwise. UNSPECIFIED is not accepted.
absl::StatusOr<int> ParseEnumName(
    const google::protobuf::EnumDescriptor* descriptor, const std::string& name,
    const std::string& what);
std::string ActivationName(v1::Activation a);
std::string LossName(v1::Loss l);
absl::StatusOr<v1::Activation> ParseActivation(const std::string& name);
absl::StatusOr<v1::Loss> ParseLoss(const std::string& name);

// The NAME ... PARAMETERS table of `satlab list`, `get` and `create`.
std::string NetworksTable(const std::vector<v1::Network>& networks);

// "784-256(sigmoid)-10(softmax)"-style summary of a spec.
std::string Architecture(const v1::NetworkSpec& spec);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_FORMAT_H_
