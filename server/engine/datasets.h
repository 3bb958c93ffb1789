// Seeded generators of small datasets for saturation experiments: Nielsen's
// single sample, XOR, and the two-class sets of TensorFlow Playground
// (circles, spirals, Gaussian blobs), plus k-class blobs. The same options
// give bitwise-identical data on every machine (engine Rng).
#ifndef SATLAB_SERVER_ENGINE_DATASETS_H_
#define SATLAB_SERVER_ENGINE_DATASETS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/engine/spec.h"

namespace satlab::engine {

enum class DatasetKind {
  kSingleSample,   // x = 1 -> y = 0 (Nielsen ch. 3); one row, one target
  kXor,            // {0,1}^2 -> x1 xor x2, the four points repeated
  kCircles,        // radius in [0, 2] -> class 0, [3, 5] -> class 1
  kSpirals,        // two interleaved spirals (radius 0..5, 1.75 turns)
  kGaussianBlobs,  // N((2, 2), I) -> class 0, N((-2, -2), I) -> class 1
  kKBlobs,  // `classes` blobs N(c_k, 0.5^2 I), c_k on a circle of radius 3
};

absl::string_view DatasetKindName(DatasetKind kind);

struct DatasetOptions {
  DatasetKind kind = DatasetKind::kXor;
  // Rows, >= 1 (ignored by kSingleSample).
  int64_t samples = 200;
  // Standard deviation of Gaussian jitter added to every feature, >= 0.
  double noise = 0;
  // Classes of kKBlobs, in [2, 64] (the others have 2).
  int classes = 3;
  uint64_t seed = 0;
  // True: one 0/1 target column (two-class kinds only); false: one-hot.
  bool single_output = false;
};

// Inputs [n, features] and targets [n, outputs], float64.
struct Dataset {
  RowMatrix<double> inputs;
  RowMatrix<double> targets;
};

// Row i belongs to class i % classes (classes stay balanced and
// interleaved). Errors: INVALID_ARGUMENT naming `field`.`samples`/`noise`/
// `classes`/`single_output`; RESOURCE_EXHAUSTED when samples > max_samples.
absl::StatusOr<Dataset> GenerateDataset(const DatasetOptions& options,
                                        int64_t max_samples,
                                        absl::string_view field);

}  // namespace satlab::engine

#endif  // SATLAB_SERVER_ENGINE_DATASETS_H_
