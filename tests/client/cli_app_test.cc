// Unit tests of the CLI's command line (no server needed: every case stops
// at parsing, before a call): exact option names, exit codes, --help of
// every command; and of `satlab create`'s options -> NetworkSpec.
#include <sstream>
#include <string>
#include <vector>

#include "client/cli/app.h"
#include "client/cli/command.h"
#include "client/cli/create.h"
#include "client/cli/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace satlab::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunSatlab(std::vector<std::string> args) {
  args.insert(args.begin(), "satlab");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

const std::vector<std::string> kCommands = {
    "create",     "get",    "list",   "delete", "params",
    "forward",    "grad",   "step",   "train",  "eval",
    "experiment", "health", "export", "import", "experiments"};

TEST(CliParseTest, PrefixOfAGlobalOption_UsageErrorExit2) {
  // The hand-written parser took --serverX (and --timeoutX) as --server.
  for (const std::string flag : {"--serverX", "--serv", "--timeout2"}) {
    const Result r = RunSatlab({flag, "127.0.0.1:1", "health"});
    EXPECT_EQ(r.code, 2) << flag;
    EXPECT_THAT(r.err, HasSubstr("satlab: unknown option " + flag)) << flag;
  }
  const Result r = RunSatlab({"--serverX=127.0.0.1:1", "health"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown option --serverX"));
}

TEST(CliParseTest, UnknownOrPrefixOptionOfACommand_UsageErrorExit2) {
  for (const std::string flag : {"--nope", "--input", "--layer", "--lrx"}) {
    const Result r = RunSatlab({"create", "n", flag, "1"});
    EXPECT_EQ(r.code, 2) << flag;
    EXPECT_THAT(r.err, HasSubstr("satlab create: unknown option " + flag))
        << flag;
    EXPECT_THAT(r.err, HasSubstr("satlab create --help")) << flag;
  }
}

TEST(CliParseTest, UnknownCommandOrNone_Exit2) {
  Result r = RunSatlab({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command \"frobnicate\""));
  r = RunSatlab({});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("usage: satlab"));
}

TEST(CliParseTest, MalformedValues_NameOptionExpectedAndGot) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--timeout", "0", "health"}, "--timeout: expected seconds > 0, got 0"},
      {{"--timeout", "nan", "health"}, "expected seconds > 0, got nan"},
      {{"train", "n", "--data", "x.csv", "--epochs", "0"},
       "--epochs: expected an integer in 1..1000000, got \"0\""},
      {{"train", "n", "--data", "x.csv", "--batch-size", "1e3"},
       "--batch-size: expected an integer in 1..2147483647, got \"1e3\""},
      {{"create", "n", "--lr", "fast"},
       "--lr: expected a number, got \"fast\""},
      {{"create", "n", "--input-size", "99999999999"},
       "--input-size: expected an integer in -2147483648..2147483647"},
      {{"get"}, "NAME is required"},
      {{"get", "a", "b"}, "unexpected argument \"b\""},
      {{"params", "copy", "n"}, "copy not in {get,set}"},
      {{"create", "--lr"}, "--lr"},
  };
  for (const Case& c : cases) {
    const Result r = RunSatlab(c.args);
    EXPECT_EQ(r.code, 2) << c.args[0] << " " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
  }
}

TEST(CliParseTest, Help_ListsEveryCommandAndEveryOption) {
  Result r = RunSatlab({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.err, IsEmpty());
  for (const std::string& c : kCommands) {
    EXPECT_THAT(r.out, HasSubstr("\n  " + c + " ")) << c;
  }
  for (const char* flag : {"--server", "--json", "--quiet", "--timeout"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  for (const std::string& c : kCommands) {
    r = RunSatlab({c, "--help"});
    EXPECT_EQ(r.code, 0) << c;
    EXPECT_THAT(r.out, HasSubstr("usage: satlab " + c)) << c;
  }
  r = RunSatlab({"create", "--help"});
  for (const char* flag :
       {"--spec", "--input-size", "--layers", "--loss", "--init", "--seed",
        "--mean", "--std", "--params", "--optimizer", "--lr", "--momentum",
        "--nesterov", "--weight-decay", "--dtype", "--theta"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  // Names come from the proto enums.
  EXPECT_THAT(r.out, HasSubstr("leaky_relu"));
  EXPECT_THAT(r.out, HasSubstr("glorot_uniform"));
}

CreateOptions NeuronOptions() {
  CreateOptions o;
  o.input_size = 2;
  o.layers = "3:tanh,1:sigmoid";
  o.loss = "bce";
  return o;
}

TEST(CreateOptionsTest, Defaults_SpecAsBefore) {
  CreateOptions o = NeuronOptions();
  o.seed = 4;
  o.optimizer = "sgd";
  o.momentum = 0.9;
  o.nesterov = true;
  const auto spec = NetworkSpecFromOptions(o);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->input_size(), 2);
  ASSERT_EQ(spec->layers_size(), 2);
  EXPECT_EQ(spec->layers(0).units(), 3);
  EXPECT_EQ(spec->layers(0).activation(), v1::ACTIVATION_TANH);
  EXPECT_EQ(spec->layers(1).activation(), v1::ACTIVATION_SIGMOID);
  EXPECT_EQ(spec->loss(), v1::LOSS_BCE);
  EXPECT_EQ(spec->init().scheme(), v1::INIT_SCHEME_UNIFORM_FAN_IN);
  EXPECT_EQ(spec->init().seed(), 4u);
  EXPECT_DOUBLE_EQ(spec->optimizer().sgd().learning_rate(), 0.1);
  EXPECT_DOUBLE_EQ(spec->optimizer().sgd().momentum(), 0.9);
  EXPECT_TRUE(spec->optimizer().sgd().nesterov());
  EXPECT_EQ(spec->dtype(), v1::DTYPE_FLOAT64);
  EXPECT_DOUBLE_EQ(spec->saturation_threshold(), 0.1);
}

TEST(CreateOptionsTest, ExplicitParams_SchemeExplicit) {
  CreateOptions o = NeuronOptions();
  o.layers = "1:sigmoid";
  o.input_size = 1;
  o.params = R"({"layers":[{"weights":[[2]],"biases":[2]}]})";
  const auto spec = NetworkSpecFromOptions(o);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->init().scheme(), v1::INIT_SCHEME_EXPLICIT);
  ASSERT_EQ(spec->init().parameters_size(), 1);
}

TEST(CreateOptionsTest, BadValues_UsageErrorsNamingTheOption) {
  struct Case {
    void (*edit)(CreateOptions&);
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](CreateOptions& o) { o.layers = "3"; },
       "--layers: expected units:activation, got \"3\""},
      {[](CreateOptions& o) { o.layers = "99999999999:tanh"; },
       "--layers: expected units:activation"},
      {[](CreateOptions& o) { o.layers = "3:swish"; },
       "--layers: unknown activation \"swish\" (identity, sigmoid, tanh, "
       "relu, leaky_relu, softplus, softmax)"},
      {[](CreateOptions& o) { o.layers = "3:unspecified"; },
       "unknown activation \"unspecified\""},
      {[](CreateOptions& o) { o.loss = "hinge"; },
       "--loss: unknown loss \"hinge\" (mse, bce, cce)"},
      {[](CreateOptions& o) { o.init = "lecun"; },
       "--init: unknown scheme \"lecun\""},
      {[](CreateOptions& o) { o.optimizer = "rmsprop"; },
       "--optimizer: expected sgd or adam, got \"rmsprop\""},
      {[](CreateOptions& o) { o.dtype = "float16"; },
       "--dtype: expected float32 or float64, got \"float16\""},
      {[](CreateOptions& o) { o.loss.clear(); },
       "create needs --input-size, --layers and --loss (or --spec)"},
  };
  for (const Case& c : cases) {
    CreateOptions o = NeuronOptions();
    c.edit(o);
    const auto spec = NetworkSpecFromOptions(o);
    EXPECT_TRUE(IsUsageError(spec.status())) << spec.status();
    EXPECT_THAT(spec.status().message(), HasSubstr(c.message));
  }
}

TEST(UsageErrorTest, OnlyMarkedStatusesAreUsageErrors) {
  EXPECT_TRUE(IsUsageError(UsageError("x")));
  EXPECT_EQ(UsageError("x").code(), absl::StatusCode::kInvalidArgument);
  // A server's INVALID_ARGUMENT is a failed call (exit 1), not usage.
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("x")));
  EXPECT_FALSE(IsUsageError(absl::OkStatus()));
}

TEST(EnumNamesTest, FromTheProtoEnums_UnknownNumberPrintsAsNumber) {
  EXPECT_THAT(EnumNames(v1::Loss_descriptor()),
              ::testing::ElementsAre("mse", "bce", "cce"));
  EXPECT_EQ(ActivationName(v1::ACTIVATION_LEAKY_RELU), "leaky_relu");
  // A value a newer server may send: printed, not a crash (the old code
  // took substr() of an empty name and threw).
  EXPECT_EQ(LossName(static_cast<v1::Loss>(42)), "42");
}

}  // namespace
}  // namespace satlab::cli
