#include "server/engine/check.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"

namespace satlab::engine {
namespace {

template <typename T>
absl::Status CheckFiniteImpl(const T* data, int64_t rows, int64_t cols,
                             absl::string_view field) {
  // Every finite x gives x * 0 == 0, an infinity or NaN gives NaN: one
  // vectorized sum clears a whole minibatch (a scalar isfinite scan was 1%
  // of a 784-256-256-10 step); only a failing batch is searched.
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> values(
      data, rows * cols);
  if ((values * T(0)).sum() == T(0)) return absl::OkStatus();
  const T* end = data + rows * cols;
  const T* bad = std::find_if(data, end, [](T x) { return !std::isfinite(x); });
  const int64_t index = bad - data;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": non-finite value ", static_cast<double>(*bad),
                   " at (", index / cols, ", ", index % cols, ")"));
}

absl::Status CheckValues(const double* data, int64_t rows, int64_t cols,
                         DType dtype, absl::string_view field) {
  if (absl::Status s = CheckFinite(data, rows, cols, field); !s.ok()) return s;
  if (dtype == DType::kFloat32)
    return CheckFitsFloat32(data, rows, cols, field);
  return absl::OkStatus();
}

}  // namespace

std::string FieldPath::Join(absl::string_view child) const {
  if (name_.empty()) return std::string(child);
  if (index_ < 0) return absl::StrCat(name_, ".", child);
  return absl::StrCat(name_, "[", index_, "].", child);
}

std::string ShapeString(int64_t rows, int64_t cols) {
  return absl::StrCat("[", rows, ", ", cols, "]");
}

absl::Status CheckFinite(const float* data, int64_t rows, int64_t cols,
                         absl::string_view field) {
  return CheckFiniteImpl(data, rows, cols, field);
}

absl::Status CheckFinite(const double* data, int64_t rows, int64_t cols,
                         absl::string_view field) {
  return CheckFiniteImpl(data, rows, cols, field);
}

absl::Status CheckFitsFloat32(const double* data, int64_t rows, int64_t cols,
                              absl::string_view field) {
  const double* end = data + rows * cols;
  // Compared, not cast: a double-to-float cast out of range is undefined.
  const double* bad = std::find_if(data, end, [](double x) {
    return std::abs(x) > std::numeric_limits<float>::max();
  });
  if (bad == end) return absl::OkStatus();
  const int64_t index = bad - data;
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": value ", *bad, " at (", index / cols, ", ", index % cols,
      ") overflows float32 (|x| <= ", std::numeric_limits<float>::max(), ")"));
}

absl::Status CheckLayerParams(const LayerParams& params, int64_t fan_in,
                              int64_t units, DType dtype,
                              absl::string_view prefix) {
  const std::string weights_field = absl::StrCat(prefix, ".weights");
  const std::string biases_field = absl::StrCat(prefix, ".biases");
  if (params.weights.rows() != fan_in || params.weights.cols() != units) {
    return absl::InvalidArgumentError(absl::StrCat(
        weights_field, ": expected shape ", ShapeString(fan_in, units),
        ", got ", ShapeString(params.weights.rows(), params.weights.cols())));
  }
  if (params.biases.cols() != units) {
    return absl::InvalidArgumentError(
        absl::StrCat(biases_field, ": expected shape [", units, "], got [",
                     params.biases.cols(), "]"));
  }
  if (absl::Status s = CheckValues(params.weights.data(), fan_in, units, dtype,
                                   weights_field);
      !s.ok()) {
    return s;
  }
  return CheckValues(params.biases.data(), 1, units, dtype, biases_field);
}

}  // namespace satlab::engine
