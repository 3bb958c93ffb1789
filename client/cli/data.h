// Reading data for the CLI: inline matrices ("1,2;3,4"), CSV files (plain
// or gzip-compressed), class labels to one-hot targets, and minibatches.
#ifndef SATLAB_CLIENT_CLI_DATA_H_
#define SATLAB_CLIENT_CLI_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "satlab/v1/tensor.pb.h"

namespace satlab::cli {

// A dense row-major float64 matrix.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> values;
};

// "1,2;3,4" -> 2x2 (rows separated by ';', values by ','); "@file.csv"
// reads a CSV file. INVALID_ARGUMENT naming `what` on malformed text.
absl::StatusOr<Matrix> ParseMatrix(const std::string& text,
                                   const std::string& what);

// `text` itself, or the contents of the file when it is "@path" (NOT_FOUND
// when it cannot be read).
absl::StatusOr<std::string> TextOrFile(const std::string& text);

// Reads a numeric CSV (comma or whitespace separated; a first line that is
// not numeric is taken as a header and skipped; '#' starts a comment line).
// Files ending in .gz are decompressed. Every row must have the same width.
absl::StatusOr<Matrix> ReadCsv(const std::string& path);

struct Dataset {
  Matrix inputs;
  Matrix targets;
};

struct DatasetOptions {
  // The last `target_columns` columns are targets.
  int target_columns = 1;
  // If > 0, the single target column holds class indices 0..one_hot-1,
  // expanded to one-hot rows.
  int one_hot = 0;
  // Inputs are multiplied by this (e.g. 1/16 for 0..16 pixel values).
  double input_scale = 1.0;
};

// Splits a CSV matrix into inputs and targets. A one-hot label that is not
// an integer in 0..one_hot-1 (NaN, 1e300, 2.5, -1) is INVALID_ARGUMENT
// naming its row.
absl::StatusOr<Dataset> SplitDataset(const Matrix& csv,
                                     const DatasetOptions& options);

// Row subset [rows in `order` from begin to end) as a tensor.
v1::Tensor RowsToTensor(const Matrix& m, const std::vector<int64_t>& order,
                        size_t begin, size_t end);
v1::Tensor ToTensor(const Matrix& m);

// A tensor received from the server as a matrix ([n] is taken as [1, n]).
// DATA_LOSS naming `field` when its shape is not 1-D or 2-D, has a negative
// size, or does not match the number of values: every index computed from
// the shape is then within `values`.
absl::StatusOr<Matrix> MatrixFromTensor(const v1::Tensor& tensor,
                                        absl::string_view field);

// Minibatches of one epoch (batch_size >= 1): rows shuffled with `seed`
// (Fisher-Yates over a 64-bit Mersenne Twister seeded with seed + epoch) unless
// `shuffle` is false.
std::vector<v1::Minibatch> EpochBatches(const Dataset& data, int64_t batch_size,
                                        bool shuffle, uint64_t seed, int epoch);

}  // namespace satlab::cli

#endif  // SATLAB_CLIENT_CLI_DATA_H_
