#include "client/cli/data.h"

#include <zlib.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client.h"

namespace satlab::cli {
namespace {

// One field as a double: SimpleAtod, with a fast path for the common case
// of a short unsigned integer (every value of the digits data set), whose
// double is exact and the same as SimpleAtod's.
bool ParseField(absl::string_view field, double* out) {
  if (field.size() <= 15) {
    int64_t value = 0;
    bool digits = true;
    for (const char c : field) {
      if (c < '0' || c > '9') {
        digits = false;
        break;
      }
      value = value * 10 + (c - '0');
    }
    if (digits) {
      *out = static_cast<double>(value);
      return true;
    }
  }
  return absl::SimpleAtod(field, out);
}

bool IsSeparator(char c) {
  return c == ',' || c == ' ' || c == '\t' || c == ';';
}

// Parses one line of numbers (separated by any run of ", \t;"); false if
// any field is not a number. Scans the line in place: the reading of a
// whole CSV is a fixed cost of every `satlab experiment` run.
bool ParseRow(absl::string_view line, std::vector<double>* out) {
  out->clear();
  size_t i = 0;
  while (i < line.size()) {
    if (IsSeparator(line[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < line.size() && !IsSeparator(line[end])) ++end;
    double v;
    if (!ParseField(line.substr(i, end - i), &v)) return false;
    out->push_back(v);
    i = end;
  }
  return !out->empty();
}

absl::StatusOr<Matrix> FromLines(const std::vector<absl::string_view>& lines,
                                 const std::string& what, bool allow_header) {
  Matrix m;
  std::vector<double> row;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = absl::StripAsciiWhitespace(lines[i]);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    if (!ParseRow(line, &row)) {
      if (allow_header && m.rows == 0 && i == 0) continue;  // header
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": line ", i + 1, " is not a list of numbers: \"", line, "\""));
    }
    if (m.rows == 0) {
      m.cols = static_cast<int64_t>(row.size());
      m.values.reserve(lines.size() * row.size());
    } else if (static_cast<int64_t>(row.size()) != m.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": line ", i + 1, " has ", row.size(),
                       " values, expected ", m.cols));
    }
    m.values.insert(m.values.end(), row.begin(), row.end());
    ++m.rows;
  }
  if (m.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no data"));
  }
  return m;
}

}  // namespace

absl::StatusOr<Matrix> ParseMatrix(const std::string& text,
                                   const std::string& what) {
  if (absl::StartsWith(text, "@")) return ReadCsv(text.substr(1));
  // Rows are separated by ';', values within a row by commas or spaces.
  const std::vector<std::string> lines = absl::StrSplit(text, ';');
  Matrix m;
  std::vector<double> row;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!ParseRow(lines[i], &row)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": row ", i + 1, " is not a list of numbers: \"",
                       lines[i], "\" (write rows as 1,2;3,4)"));
    }
    if (i == 0) {
      m.cols = static_cast<int64_t>(row.size());
    } else if (static_cast<int64_t>(row.size()) != m.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": row ", i + 1, " has ", row.size(),
                       " values, expected ", m.cols));
    }
    m.values.insert(m.values.end(), row.begin(), row.end());
    ++m.rows;
  }
  return m;
}

absl::StatusOr<std::string> TextOrFile(const std::string& text) {
  if (!absl::StartsWith(text, "@")) return text;
  std::ifstream in(text.substr(1));
  if (!in) return absl::NotFoundError("cannot open " + text.substr(1));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<Matrix> ReadCsv(const std::string& path) {
  // gzopen reads uncompressed files transparently.
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  // The whole (decompressed) text at once, then lines as views into it.
  std::string text;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0) {
    text.append(buffer, static_cast<size_t>(n));
  }
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  int error = Z_OK;
  const char* message = gzerror(file, &error);
  const bool failed = error != Z_OK && error != Z_STREAM_END;
  const std::string error_text = failed ? message : "";
  gzclose(file);
  if (failed) {
    return absl::DataLossError(absl::StrCat(path, ": ", error_text));
  }
  return FromLines(lines, path, /*allow_header=*/true);
}

absl::StatusOr<Dataset> SplitDataset(const Matrix& csv,
                                     const DatasetOptions& options) {
  const int64_t k = options.target_columns;
  if (k < 1 || k >= csv.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--targets: expected 1..", csv.cols - 1, " target columns for a ",
        csv.cols, "-column file, got ", k));
  }
  if (options.one_hot > 0 && k != 1) {
    return absl::InvalidArgumentError(
        "--one-hot needs exactly one target column (--targets 1)");
  }
  Dataset d;
  d.inputs.rows = d.targets.rows = csv.rows;
  d.inputs.cols = csv.cols - k;
  d.targets.cols = options.one_hot > 0 ? options.one_hot : k;
  d.inputs.values.reserve(csv.rows * d.inputs.cols);
  d.targets.values.reserve(csv.rows * d.targets.cols);
  for (int64_t r = 0; r < csv.rows; ++r) {
    const double* row = &csv.values[r * csv.cols];
    for (int64_t c = 0; c < d.inputs.cols; ++c) {
      d.inputs.values.push_back(row[c] * options.input_scale);
    }
    if (options.one_hot > 0) {
      const double label = row[csv.cols - 1];
      // Checked before the cast: converting NaN, an infinity or a value
      // outside int64's range to an integer is undefined behaviour.
      if (!(label >= 0 && label < options.one_hot) ||
          label != std::floor(label)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "row ", r + 1, ": class label ", label, " is not an integer in 0..",
            options.one_hot - 1, " (--one-hot ", options.one_hot, ")"));
      }
      const int64_t cls = static_cast<int64_t>(label);
      for (int64_t c = 0; c < options.one_hot; ++c) {
        d.targets.values.push_back(c == cls ? 1.0 : 0.0);
      }
    } else {
      for (int64_t c = d.inputs.cols; c < csv.cols; ++c) {
        d.targets.values.push_back(row[c]);
      }
    }
  }
  return d;
}

v1::Tensor RowsToTensor(const Matrix& m, const std::vector<int64_t>& order,
                        size_t begin, size_t end) {
  v1::Tensor t;
  t.add_shape(static_cast<int64_t>(end - begin));
  t.add_shape(m.cols);
  auto* values = t.mutable_double_values();
  values->Reserve(static_cast<int>((end - begin) * m.cols));
  for (size_t i = begin; i < end; ++i) {
    const double* row = &m.values[order[i] * m.cols];
    values->Add(row, row + m.cols);
  }
  return t;
}

absl::StatusOr<Matrix> MatrixFromTensor(const v1::Tensor& tensor,
                                        absl::string_view field) {
  std::vector<int64_t> shape(tensor.shape().begin(), tensor.shape().end());
  if (shape.size() == 1) shape.insert(shape.begin(), 1);
  if (shape.size() != 2 || shape[0] < 0 || shape[1] < 0) {
    return absl::DataLossError(absl::StrCat(
        field, ".shape: expected [rows, cols] or [n] with sizes >= 0, got [",
        absl::StrJoin(tensor.shape(), ", "), "]"));
  }
  const int64_t count = tensor.float_values_size() > 0
                            ? tensor.float_values_size()
                            : tensor.double_values_size();
  // rows * cols compared without overflow: count fits in an int.
  const bool fits =
      shape[1] == 0
          ? count == 0
          : shape[0] <= std::numeric_limits<int64_t>::max() / shape[1] &&
                shape[0] * shape[1] == count;
  if (!fits) {
    return absl::DataLossError(
        absl::StrCat(field, ": shape [", absl::StrJoin(tensor.shape(), ", "),
                     "] does not match its ", count, " values"));
  }
  Matrix m;
  m.rows = shape[0];
  m.cols = shape[1];
  m.values = TensorValues(tensor);
  return m;
}

v1::Tensor ToTensor(const Matrix& m) {
  v1::Tensor t;
  t.add_shape(m.rows);
  t.add_shape(m.cols);
  t.mutable_double_values()->Add(m.values.begin(), m.values.end());
  return t;
}

std::vector<v1::Minibatch> EpochBatches(const Dataset& data, int64_t batch_size,
                                        bool shuffle, uint64_t seed,
                                        int epoch) {
  std::vector<int64_t> order(data.inputs.rows);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    std::mt19937_64 rng(seed + static_cast<uint64_t>(epoch));
    for (size_t i = order.size(); i > 1; --i) {
      // Rejection sampling keeps the draw unbiased and portable.
      const uint64_t n = i;
      const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
      uint64_t x;
      do {
        x = rng();
      } while (x >= limit);
      std::swap(order[i - 1], order[x % n]);
    }
  }
  std::vector<v1::Minibatch> batches;
  for (size_t begin = 0; begin < order.size();
       begin += static_cast<size_t>(batch_size)) {
    const size_t end =
        std::min(order.size(), begin + static_cast<size_t>(batch_size));
    v1::Minibatch b;
    *b.mutable_inputs() = RowsToTensor(data.inputs, order, begin, end);
    *b.mutable_targets() = RowsToTensor(data.targets, order, begin, end);
    batches.push_back(std::move(b));
  }
  return batches;
}

}  // namespace satlab::cli
