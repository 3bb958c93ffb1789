// Helpers shared by the core tests: a small spec, batches, and a store
// double whose writes can be made to fail.
#ifndef SATLAB_TESTS_CORE_CORE_TEST_UTIL_H_
#define SATLAB_TESTS_CORE_CORE_TEST_UTIL_H_

#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/core/network_core.h"
#include "server/engine/network.h"
#include "server/store/network_store.h"

namespace satlab::core::testing {

// 3-8-2, tanh then sigmoid, BCE, Adam (so that optimizer slots and Adam's t
// must survive every commit and reload).
inline engine::NetworkSpec SmallSpec() {
  engine::NetworkSpec spec;
  spec.input_size = 3;
  spec.layers = {{8, engine::Activation::kTanh},
                 {2, engine::Activation::kSigmoid}};
  spec.loss = engine::Loss::kBce;
  spec.dtype = engine::DType::kFloat64;
  spec.init.scheme = engine::InitScheme::kGlorotUniform;
  spec.init.seed = 5;
  spec.optimizer.kind = engine::OptimizerKind::kAdam;
  spec.optimizer.learning_rate = 0.01;
  return spec;
}

// Minibatch number `i` (4 rows), deterministic.
struct TestBatch {
  explicit TestBatch(int i) {
    for (int k = 0; k < 12; ++k) x[k] = ((k * 7 + i * 3) % 11) / 11.0 - 0.4;
    for (int k = 0; k < 8; ++k) y[k] = (k + i) % 3 == 0 ? 1.0 : 0.0;
  }
  Batch view() const { return {{nullptr, x, 4, 3}, {nullptr, y, 4, 2}}; }
  double x[12];
  double y[8];
};

// The single-step calls the tests make, through the core's several-batch
// API: one minibatch, named "batch" in errors, no stop check.
inline absl::StatusOr<StepsOutcome> TrainOne(
    NetworkCore& core, absl::string_view id, const Batch& batch,
    const RequestKey& key, RecordStep record, Replay* replay) {
  return core.TrainStep(id, absl::MakeConstSpan(&batch, 1), {"batch"}, {}, key,
                        record, replay);
}

inline std::optional<absl::StatusOr<StepsOutcome>> TryOneInline(
    NetworkCore& core, absl::string_view id, const Batch& batch,
    const RequestKey& key) {
  return core.TryStepInline(id, absl::MakeConstSpan(&batch, 1), {"batch"}, key);
}

// One step of a session: the step applied, or the session's error.
inline absl::StatusOr<StepOutcome> StepOne(WriterSession& session,
                                           const Batch& batch) {
  std::vector<StepOutcome> applied;
  const absl::Status status =
      session.Steps(absl::MakeConstSpan(&batch, 1), {"batch"}, {}, &applied);
  if (!status.ok()) return status;
  if (applied.size() != 1) {
    return absl::InternalError(
        absl::StrCat("Steps: expected 1 step applied, got ", applied.size()));
  }
  return applied[0];
}

// Bitwise equality of two parameter lists.
inline bool SameBits(const std::vector<engine::AnyMatrix>& a,
                     const std::vector<engine::AnyMatrix>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& x = std::get<engine::RowMatrix<double>>(a[i]);
    const auto& y = std::get<engine::RowMatrix<double>>(b[i]);
    if (x.size() != y.size() ||
        std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) != 0) {
      return false;
    }
  }
  return true;
}

// The in-memory store, with writes that fail on demand (a full disk, a
// read-only directory) and durable() / shared() flags to choose. Several
// FlakyStores over one inner store, shared, stand for replicas sharing
// one database (each core gets its own).
class FlakyStore final : public store::NetworkStore {
 public:
  explicit FlakyStore(bool durable = false)
      : inner_(store::NewInMemoryStore(100)), durable_(durable) {}
  FlakyStore(std::shared_ptr<store::NetworkStore> inner, bool shared)
      : inner_(std::move(inner)), durable_(true), shared_(shared) {}

  // Commit answers `status` (OK: works) from now on.
  void FailCommits(absl::Status status) { fail_ = std::move(status); }
  int commits() const { return commits_.load(); }

  absl::Status Create(const store::NetworkRecord& record) override {
    return inner_->Create(record);
  }
  absl::StatusOr<store::NetworkRecord> Load(
      absl::string_view id) const override {
    return inner_->Load(id);
  }
  absl::StatusOr<std::vector<store::NetworkSummary>> List(
      absl::string_view after, int limit) const override {
    return inner_->List(after, limit);
  }
  absl::Status Commit(const store::NetworkRecord& record) override {
    if (!fail_.ok()) return fail_;
    commits_.fetch_add(1);
    return inner_->Commit(record);
  }
  absl::StatusOr<store::NetworkVersion> Version(
      absl::string_view id) const override {
    return inner_->Version(id);
  }
  absl::Status Delete(absl::string_view id) override {
    return inner_->Delete(id);
  }
  absl::StatusOr<int64_t> Count() const override { return inner_->Count(); }
  bool durable() const override { return durable_; }
  bool shared() const override { return shared_; }

 private:
  std::shared_ptr<store::NetworkStore> inner_;
  const bool durable_;
  const bool shared_ = false;
  absl::Status fail_;  // set by the test thread between calls
  std::atomic<int> commits_{0};
};

}  // namespace satlab::core::testing

#endif  // SATLAB_TESTS_CORE_CORE_TEST_UTIL_H_
