// Unit tests of the CLI's data handling: inline matrices, CSV (plain and
// gzip), one-hot targets (no undefined casts), tensors from the server
// (shape checked against values), epoch minibatches, parameter JSON.
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "client/cli/data.h"
#include "client/cli/format.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace satlab::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name;
}

TEST(ParseMatrixTest, RowsAndColumns_RowMajor) {
  auto m = ParseMatrix("1,2;3, 4", "--inputs");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rows, 2);
  EXPECT_EQ(m->cols, 2);
  EXPECT_THAT(m->values, ElementsAre(1, 2, 3, 4));
}

TEST(ParseMatrixTest, RaggedOrNonNumeric_NamesTheRow) {
  EXPECT_THAT(ParseMatrix("1,2;3", "--inputs").status().message(),
              HasSubstr("--inputs: row 2 has 1 values, expected 2"));
  EXPECT_THAT(ParseMatrix("1,x", "--targets").status().message(),
              HasSubstr("--targets: row 1 is not a list of numbers"));
}

TEST(ReadCsvTest, HeaderCommentsAndGzip_Read) {
  const std::string plain = TempPath("plain.csv");
  {
    std::ofstream out(plain);
    out << "a,b,label\n# comment\n1,2,0\n3,4,1\n";
  }
  auto m = ReadCsv(plain);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rows, 2);
  EXPECT_THAT(m->values, ElementsAre(1, 2, 0, 3, 4, 1));

  const std::string gz = TempPath("data.csv.gz");
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzputs(f, "5,6,1\n7,8,0\n");
  gzclose(f);
  auto z = ReadCsv(gz);
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_THAT(z->values, ElementsAre(5, 6, 1, 7, 8, 0));
}

TEST(ReadCsvTest, MissingFileOrRaggedRow_Error) {
  EXPECT_EQ(ReadCsv(TempPath("absent.csv")).status().code(),
            absl::StatusCode::kNotFound);
  const std::string ragged = TempPath("ragged.csv");
  {
    std::ofstream out(ragged);
    out << "1,2\n3\n";
  }
  EXPECT_THAT(ReadCsv(ragged).status().message(),
              HasSubstr("line 2 has 1 values, expected 2"));
}

// The in-place scanner (with its integer fast path) reads every number
// form as absl::SimpleAtod does, and counts blank lines in line numbers.
TEST(ReadCsvTest, NumberFormsAndSeparators_AsSimpleAtod) {
  const std::vector<std::string> fields = {"0",
                                           "16",
                                           "007",
                                           "-3",
                                           "+4",
                                           "2.5",
                                           "1e3",
                                           "-0",
                                           "inf",
                                           "1E-2",
                                           "123456789012345",
                                           "1234567890123456789",
                                           "0.1",
                                           "99999999999999999999"};
  const std::string path = TempPath("forms.csv");
  {
    std::ofstream out(path);
    out << "\r\n";  // a blank first line still counts as line 1
    for (size_t i = 0; i < fields.size(); i += 2) {
      out << fields[i] << " ;\t," << fields[i + 1] << "\r\n";
    }
    out << "\n1 2 3\n";
  }
  auto m = ReadCsv(path);
  ASSERT_FALSE(m.ok());
  // Line 1 is blank, lines 2-8 hold the pairs, line 9 is blank.
  EXPECT_THAT(m.status().message(),
              HasSubstr("line 10 has 3 values, expected 2"));
  {
    std::ofstream out(path);
    for (size_t i = 0; i < fields.size(); i += 2) {
      out << fields[i] << " ;\t," << fields[i + 1] << "\n";
    }
  }
  m = ReadCsv(path);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->values.size(), fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    double expected;
    ASSERT_TRUE(absl::SimpleAtod(fields[i], &expected)) << fields[i];
    EXPECT_EQ(std::signbit(m->values[i]), std::signbit(expected)) << fields[i];
    EXPECT_EQ(m->values[i], expected) << fields[i];
  }
}

TEST(SplitDatasetTest, OneHot_ExpandsLabelsAndScalesInputs) {
  Matrix csv{2, 3, {16, 8, 2, 0, 4, 0}};
  DatasetOptions options;
  options.one_hot = 3;
  options.input_scale = 1.0 / 16;
  auto d = SplitDataset(csv, options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->inputs.values, ElementsAre(1, 0.5, 0, 0.25));
  EXPECT_THAT(d->targets.values, ElementsAre(0, 0, 1, 1, 0, 0));
}

TEST(SplitDatasetTest, BadLabelOrColumns_Error) {
  Matrix csv{1, 2, {1, 3}};
  DatasetOptions options;
  options.one_hot = 3;
  EXPECT_THAT(SplitDataset(csv, options).status().message(),
              HasSubstr("class label 3 is not an integer in 0..2"));
  options = DatasetOptions{};
  options.target_columns = 2;
  EXPECT_THAT(SplitDataset(csv, options).status().message(),
              HasSubstr("--targets"));
}

TEST(EpochBatchesTest, SeededShuffle_CoversEveryRowOnceAndRepeats) {
  Dataset d;
  d.inputs = {10, 1, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}};
  d.targets = d.inputs;
  auto a = EpochBatches(d, 4, true, 7, 0);
  auto b = EpochBatches(d, 4, true, 7, 0);
  auto c = EpochBatches(d, 4, true, 7, 1);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a.back().inputs().shape(0), 2);
  std::multiset<double> seen;
  std::string a_bytes, b_bytes, c_bytes;
  for (size_t i = 0; i < a.size(); ++i) {
    for (double v : a[i].inputs().double_values()) seen.insert(v);
    a_bytes += a[i].SerializeAsString();
    b_bytes += b[i].SerializeAsString();
    c_bytes += c[i].SerializeAsString();
  }
  EXPECT_EQ(seen, std::multiset<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(a_bytes, b_bytes);  // same seed and epoch: same order
  EXPECT_NE(a_bytes, c_bytes);  // next epoch: another order
}

TEST(SplitDatasetTest, NonIntegerOrHugeLabel_ErrorNotUndefinedCast) {
  // Each label used to be cast to int64 before it was checked: undefined
  // behaviour for NaN, infinities and values beyond int64's range.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double label : {nan, inf, -inf, 1e300, -1e300, 2.5, -1.0, 3.0}) {
    Matrix csv{1, 2, {0.5, label}};
    DatasetOptions options;
    options.one_hot = 3;
    const auto d = SplitDataset(csv, options);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << label;
    EXPECT_THAT(d.status().message(), HasSubstr("row 1: class label "))
        << label;
    EXPECT_THAT(d.status().message(), HasSubstr("is not an integer in 0..2"))
        << label;
  }
}

TEST(SplitDatasetTest, LabelAtTheTopOfTheRange_Accepted) {
  Matrix csv{1, 2, {0.5, 2.0}};
  DatasetOptions options;
  options.one_hot = 3;
  const auto d = SplitDataset(csv, options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->targets.values, ElementsAre(0, 0, 1));
}

TEST(MatrixFromTensorTest, WellFormed_RowsColsValues) {
  auto m = MatrixFromTensor(MakeTensor(2, 3, {1, 2, 3, 4, 5, 6}), "outputs");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rows, 2);
  EXPECT_EQ(m->cols, 3);
  auto v = MatrixFromTensor(MakeVector({1, 2}), "biases");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->rows, 1);
  EXPECT_EQ(v->cols, 2);
}

TEST(MatrixFromTensorTest, ShapeNotMatchingValues_DataLossNotOutOfBounds) {
  struct Case {
    std::vector<int64_t> shape;
    int values;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{3, 2}, 5, "outputs: shape [3, 2] does not match its 5 values"},
      {{1, 7}, 6, "outputs: shape [1, 7] does not match its 6 values"},
      {{-1, -2}, 2, "outputs.shape: expected [rows, cols] or [n]"},
      {{2, 2, 2}, 8, "outputs.shape: expected [rows, cols] or [n]"},
      {{}, 1, "outputs.shape: expected [rows, cols] or [n]"},
      // rows * cols overflows int64.
      {{int64_t{1} << 62, 8}, 0, "does not match its 0 values"},
      {{0, 3}, 1, "does not match its 1 values"},
  };
  for (const Case& c : cases) {
    v1::Tensor t;
    for (int64_t d : c.shape) t.add_shape(d);
    for (int i = 0; i < c.values; ++i) t.add_double_values(i);
    const auto m = MatrixFromTensor(t, "outputs");
    EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss)
        << t.ShortDebugString();
    EXPECT_THAT(m.status().message(), HasSubstr(c.message))
        << t.ShortDebugString();
  }
}

TEST(ParamsJsonTest, MalformedTensorFromServer_NamesTheLayer) {
  v1::GetParametersResponse response;
  v1::LayerParameters* layer = response.add_layers();
  *layer->mutable_weights() = MakeTensor(2, 2, {1, 2, 3, 4});
  *layer->mutable_biases() = MakeVector({1, 2});
  layer = response.add_layers();
  *layer->mutable_weights() = MakeTensor(2, 1, {1, 2});
  layer->mutable_weights()->set_shape(0, 5);  // 5 x 1 but 2 values
  *layer->mutable_biases() = MakeVector({1});
  const auto json = ParamsToJson(response);
  EXPECT_EQ(json.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(json.status().message(),
              HasSubstr("layers[1].weights: shape [5, 1] does not match its "
                        "2 values"));
}

TEST(ParamsJsonTest, RoundTripAndErrors) {
  v1::SetParametersRequest request;
  ASSERT_TRUE(
      ParamsFromJson(R"({"layers":[{"weights":[[1,2],[3,4]],"biases":[5,6]}]})",
                     &request)
          .ok());
  ASSERT_EQ(request.layers_size(), 1);
  EXPECT_THAT(request.layers(0).weights().shape(), ElementsAre(2, 2));
  EXPECT_THAT(request.layers(0).weights().double_values(),
              ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(request.layers(0).biases().shape(), ElementsAre(2));
  v1::GetParametersResponse response;
  *response.mutable_layers() = request.layers();
  const auto json = ParamsToJson(response);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ((*json)["layers"][0]["weights"][1][0], 3.0);

  v1::SetParametersRequest bad;
  EXPECT_THAT(ParamsFromJson(
                  R"({"layers":[{"weights":[[1,2],[3]],"biases":[1]}]})", &bad)
                  .message(),
              HasSubstr("layers[0].weights[1]: expected a row of 2 numbers"));
  EXPECT_THAT(ParamsFromJson("not json", &bad).message(),
              HasSubstr("expected JSON"));
}

TEST(TableTest, AlignsColumnsAndRightAlignsNumbers) {
  Table t({"NAME", "LOSS"});
  t.AddRow({"a", "1.5"});
  t.AddRow({"longer", "10"});
  EXPECT_EQ(t.ToString(), "NAME    LOSS\na        1.5\nlonger    10\n");
}

}  // namespace
}  // namespace satlab::cli
