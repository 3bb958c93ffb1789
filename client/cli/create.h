// `satlab create`: the options that describe a network and their
// translation into a v1::NetworkSpec (exposed for unit tests; the command
// itself is DeclareCreate in command.h).
#ifndef SATLAB_CLIENT_CLI_CREATE_H_
#define SATLAB_CLIENT_CLI_CREATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "satlab/v1/network.pb.h"

namespace satlab::cli {

// The command line of `satlab create`, defaults as in its --help.
struct CreateOptions {
  std::string id;
  // A proto3 JSON NetworkSpec file; the options below are then ignored.
  std::string spec_file;
  int32_t input_size = 0;
  // "30:sigmoid,10:softmax", first hidden layer to output.
  std::string layers;
  std::string loss;
  std::string init = "uniform_fan_in";
  uint64_t seed = 0;
  double mean = 0;
  double std_dev = 1;
  // --init explicit: parameters as JSON, or @file.json.
  std::string params;
  std::string optimizer = "sgd";
  double learning_rate = 0.1;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  std::string dtype = "float64";
  double theta = 0.1;
};

// The spec the options describe (reading --spec or --params files).
// Usage errors (see command.h) name the option, what was expected and what
// arrived; NOT_FOUND when a file cannot be read.
absl::StatusOr<v1::NetworkSpec> NetworkSpecFromOptions(
    const CreateOptions& options);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_CREATE_H_
