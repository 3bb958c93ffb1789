// The activation and loss tables are the one list of each: the proto enums,
// the service's conversions, the CLI's names (derived from the proto enum
// descriptors) and the README must all agree with them.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "satlab/v1/network.pb.h"
#include "server/engine/activation.h"
#include "server/engine/loss.h"
#include "server/service/convert.h"

namespace satlab::service {
namespace {

namespace pb = ::satlab::v1;

std::set<std::string> EngineActivations() {
  std::set<std::string> names;
  for (int a = 0; engine::IsValidActivation(static_cast<engine::Activation>(a));
       ++a) {
    names.insert(std::string(
        engine::ActivationName(static_cast<engine::Activation>(a))));
  }
  return names;
}

std::set<std::string> EngineLosses() {
  std::set<std::string> names;
  for (int l = 0; engine::IsValidLoss(static_cast<engine::Loss>(l)); ++l) {
    names.insert(std::string(engine::LossName(static_cast<engine::Loss>(l))));
  }
  return names;
}

// ACTIVATION_LEAKY_RELU -> leaky_relu, for every value but UNSPECIFIED.
std::set<std::string> ProtoNames(const google::protobuf::EnumDescriptor* d,
                                 absl::string_view prefix) {
  std::set<std::string> names;
  for (int i = 0; i < d->value_count(); ++i) {
    if (d->value(i)->number() == 0) continue;
    names.insert(
        absl::AsciiStrToLower(absl::StripPrefix(d->value(i)->name(), prefix)));
  }
  return names;
}

TEST(EnumTables, ProtoEnums_MatchEngineTables) {
  EXPECT_EQ(ProtoNames(pb::Activation_descriptor(), "ACTIVATION_"),
            EngineActivations());
  EXPECT_EQ(ProtoNames(pb::Loss_descriptor(), "LOSS_"), EngineLosses());
}

TEST(EnumTables, EveryActivation_RoundTripsThroughProto) {
  const google::protobuf::EnumDescriptor* d = pb::Activation_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto proto = static_cast<pb::Activation>(d->value(i)->number());
    auto converted = ActivationFromProto(proto, "activation");
    if (proto == pb::ACTIVATION_UNSPECIFIED) {
      EXPECT_FALSE(converted.ok());
      continue;
    }
    ASSERT_TRUE(converted.ok()) << d->value(i)->name();
    EXPECT_EQ(absl::AsciiStrToUpper(engine::ActivationName(*converted)),
              absl::StripPrefix(d->value(i)->name(), "ACTIVATION_"));
    EXPECT_EQ(ActivationToProto(*converted), proto);
  }
  EXPECT_FALSE(ActivationFromProto(static_cast<pb::Activation>(99), "a").ok());
}

TEST(EnumTables, EveryLoss_RoundTripsThroughProto) {
  const google::protobuf::EnumDescriptor* d = pb::Loss_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto proto = static_cast<pb::Loss>(d->value(i)->number());
    auto converted = LossFromProto(proto, "loss");
    if (proto == pb::LOSS_UNSPECIFIED) {
      EXPECT_FALSE(converted.ok());
      continue;
    }
    ASSERT_TRUE(converted.ok()) << d->value(i)->name();
    EXPECT_EQ(absl::AsciiStrToUpper(engine::LossName(*converted)),
              absl::StripPrefix(d->value(i)->name(), "LOSS_"));
    EXPECT_EQ(LossToProto(*converted), proto);
  }
  EXPECT_FALSE(LossFromProto(static_cast<pb::Loss>(99), "l").ok());
}

// The names in a list such as "Losses: mse (per sample ½Σ(a−y)²), bce
// (sigmoid outputs), cce (softmax outputs)." — up to the first period
// outside parentheses, parenthesized notes dropped.
std::set<std::string> ListedNames(const std::string& text, size_t start) {
  std::string list;
  int depth = 0;
  for (size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (depth == 0) {
      if (c == '.') break;
      list += c == '\n' ? ' ' : c;
    }
  }
  std::set<std::string> names;
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    names.insert(std::string(absl::StripAsciiWhitespace(name)));
  }
  return names;
}

// Every "Activations:" / "Losses:" list in README.md and docs/ names the
// table's entries, no more and no fewer (a label in backquotes is a mention
// of such a list, not one).
TEST(EnumTables, DocumentedLists_MatchEngineTables) {
  const std::filesystem::path root = SATLAB_SOURCE_DIR;
  std::vector<std::filesystem::path> files = {root / "README.md"};
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(root / "docs")) {
    if (entry.path().extension() == ".md") files.push_back(entry.path());
  }
  int lists = 0;
  for (const auto& file : files) {
    std::ifstream in(file);
    ASSERT_TRUE(in) << file;
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string text = buffer.str();
    for (const auto& [label, names] :
         {std::pair<std::string, std::set<std::string>>{"Activations:",
                                                        EngineActivations()},
          {"Losses:", EngineLosses()}}) {
      for (size_t at = text.find(label); at != std::string::npos;
           at = text.find(label, at + 1)) {
        if (at > 0 && text[at - 1] == '`') continue;  // a mention, not a list
        // Part of a longer word (reportLosses: in a code sample).
        if (at > 0 && std::isalnum(static_cast<unsigned char>(text[at - 1]))) {
          continue;
        }
        ++lists;
        EXPECT_EQ(ListedNames(text, at + label.size()), names)
            << file << ": " << label;
      }
    }
  }
  EXPECT_GE(lists, 2) << "README.md lists the activations and the losses";
}

}  // namespace
}  // namespace satlab::service
