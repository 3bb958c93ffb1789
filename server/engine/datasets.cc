#include "server/engine/datasets.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/engine/random.h"

namespace satlab::engine {
namespace {

constexpr int kMaxClasses = 64;

int ClassCount(const DatasetOptions& options) {
  switch (options.kind) {
    case DatasetKind::kSingleSample:
      return 1;
    case DatasetKind::kKBlobs:
      return options.classes;
    default:
      return 2;
  }
}

// (x1, x2) of row `i` of class `label` before jitter.
void Point(const DatasetOptions& o, int64_t i, int64_t n, int label, Rng& rng,
           double* x1, double* x2) {
  switch (o.kind) {
    case DatasetKind::kSingleSample:
      *x1 = 1;
      *x2 = 0;
      return;
    case DatasetKind::kXor:
      // The four corners in turn: (0,0) (0,1) (1,0) (1,1).
      *x1 = static_cast<double>((i % 4) / 2);
      *x2 = static_cast<double>(i % 2);
      return;
    case DatasetKind::kCircles: {
      const double radius =
          label == 0 ? rng.Uniform(0.0, 2.0) : rng.Uniform(3.0, 5.0);
      const double angle = rng.Uniform(0.0, 2.0 * M_PI);
      *x1 = radius * std::sin(angle);
      *x2 = radius * std::cos(angle);
      return;
    }
    case DatasetKind::kSpirals: {
      // Position along the arm in [0, 1): r = 5t, angle = 1.75 turns * t,
      // the second arm rotated by pi.
      const double t = static_cast<double>(i / 2) /
                       static_cast<double>(std::max<int64_t>(1, (n + 1) / 2));
      const double radius = 5.0 * t;
      const double angle = 1.75 * 2.0 * M_PI * t + (label == 0 ? 0.0 : M_PI);
      *x1 = radius * std::sin(angle);
      *x2 = radius * std::cos(angle);
      return;
    }
    case DatasetKind::kGaussianBlobs: {
      const double centre = label == 0 ? 2.0 : -2.0;
      *x1 = centre + rng.Normal();
      *x2 = centre + rng.Normal();
      return;
    }
    case DatasetKind::kKBlobs: {
      const double angle = 2.0 * M_PI * label / o.classes;
      *x1 = 3.0 * std::cos(angle) + 0.5 * rng.Normal();
      *x2 = 3.0 * std::sin(angle) + 0.5 * rng.Normal();
      return;
    }
  }
}

}  // namespace

absl::string_view DatasetKindName(DatasetKind kind) {
  switch (kind) {
    case DatasetKind::kSingleSample:
      return "single_sample";
    case DatasetKind::kXor:
      return "xor";
    case DatasetKind::kCircles:
      return "circles";
    case DatasetKind::kSpirals:
      return "spirals";
    case DatasetKind::kGaussianBlobs:
      return "gaussian_blobs";
    case DatasetKind::kKBlobs:
      return "k_blobs";
  }
  return "unknown";
}

absl::StatusOr<Dataset> GenerateDataset(const DatasetOptions& options,
                                        int64_t max_samples,
                                        absl::string_view field) {
  const bool single = options.kind == DatasetKind::kSingleSample;
  if (!single && options.samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".samples: expected >= 1, got ", options.samples));
  }
  if (!single && options.samples > max_samples) {
    return absl::ResourceExhaustedError(absl::StrCat(
        field, ".samples: expected at most ", max_samples,
        " (the server's dataset row limit), got ", options.samples));
  }
  if (!(options.noise >= 0 && std::isfinite(options.noise))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".noise: expected finite >= 0, got ", options.noise));
  }
  if (options.kind == DatasetKind::kKBlobs &&
      (options.classes < 2 || options.classes > kMaxClasses)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".classes: expected in [2, ", kMaxClasses,
                     "], got ", options.classes));
  }
  const int classes = ClassCount(options);
  if (options.single_output && classes > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".single_output: needs two-class data, ",
        DatasetKindName(options.kind), " has ", classes, " classes"));
  }

  const int64_t n = single ? 1 : options.samples;
  const bool one_column = single || options.single_output;
  Dataset data;
  data.inputs.resize(n, single ? 1 : 2);
  data.targets.setZero(n, one_column ? 1 : classes);
  Rng rng(options.seed);
  for (int64_t i = 0; i < n; ++i) {
    int label = static_cast<int>(i % classes);
    if (options.kind == DatasetKind::kXor) label = ((i % 4) / 2) ^ (i % 2);
    double x1 = 0, x2 = 0;
    Point(options, i, n, label, rng, &x1, &x2);
    if (single) {
      data.inputs(i, 0) = x1;  // y = 0: targets stay zero
      continue;
    }
    if (options.noise > 0) {
      x1 += options.noise * rng.Normal();
      x2 += options.noise * rng.Normal();
    }
    data.inputs(i, 0) = x1;
    data.inputs(i, 1) = x2;
    if (one_column) {
      data.targets(i, 0) = label;
    } else {
      data.targets(i, label) = 1;
    }
  }
  return data;
}

}  // namespace satlab::engine
