// Validation helpers shared by ValidateSpec, Network::ValidateBatch and
// Network::SetParameters. They read raw memory of a given shape only, so
// they are safe on anything whose shape has been checked.
#ifndef SATLAB_SERVER_ENGINE_CHECK_H_
#define SATLAB_SERVER_ENGINE_CHECK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/engine/spec.h"

namespace satlab::engine {

// Where a checked value sits in a request, for error messages: empty (a
// top-level field: "inputs"), a field ("batch": "batch.inputs") or an
// element of a repeated field ("batches", 12: "batches[12].inputs"). Held
// as a view and an index and joined only when a message needs it: checks
// run for every minibatch of every message, and a heap string per
// minibatch was a visible share of a tiny step.
class FieldPath {
 public:
  FieldPath() = default;
  // Implicit, so that a field name is a path: ValidateBatch(..., "batch").
  FieldPath(absl::string_view name)  // NOLINT(google-explicit-constructor)
      : name_(name) {}
  FieldPath(const char* name)  // NOLINT(google-explicit-constructor)
      : name_(name) {}
  FieldPath(absl::string_view name, size_t index)
      : name_(name), index_(static_cast<int64_t>(index)) {}

  bool empty() const { return name_.empty(); }
  // The path's field `child`: "batches[12].inputs", or "inputs" when empty.
  std::string Join(absl::string_view child) const;

 private:
  absl::string_view name_;
  int64_t index_ = -1;  // >= 0: an element of the repeated field name_
};

// "[rows, cols]".
std::string ShapeString(int64_t rows, int64_t cols);

// OK, or INVALID_ARGUMENT "<field>: non-finite value nan at (r, c)" for the
// first non-finite element of a row-major [rows, cols] array.
absl::Status CheckFinite(const float* data, int64_t rows, int64_t cols,
                         absl::string_view field);
absl::Status CheckFinite(const double* data, int64_t rows, int64_t cols,
                         absl::string_view field);

// OK, or INVALID_ARGUMENT "<field>: value 1e+300 at (r, c) overflows
// float32" for the first element of a finite row-major [rows, cols] array
// whose magnitude exceeds the largest float.
absl::Status CheckFitsFloat32(const double* data, int64_t rows, int64_t cols,
                              absl::string_view field);

// Shape [fan_in, units] / [units], finite values and, for float32 networks,
// values representable as finite float32. Fields: "<prefix>.weights",
// "<prefix>.biases". INVALID_ARGUMENT otherwise.
absl::Status CheckLayerParams(const LayerParams& params, int64_t fan_in,
                              int64_t units, DType dtype,
                              absl::string_view prefix);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_CHECK_H_
